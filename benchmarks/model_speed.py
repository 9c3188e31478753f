"""How fast a shared model is to use: images per second of PyTorch eager and ONNX Runtime side by side (batch 1
and 256, the shipped bundle's network on real test mixes), and the wall time of ``python -m mixsep.separate`` on
one image from the checkpoint, from the bundle and with ONNX Runtime, beside ``python -c "import torch"``.

    python benchmarks/model_speed.py                    # ~1 minute on 2 cores

Rounds alternate between the contenders (A B A B ...) and the medians are printed, so a machine's drift
touches both alike. Reads the real test mixes from MIXSEP_DATA_ROOT (else random mixes, said so).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixsep.models.separator import load_separator  # noqa: E402
from mixsep.pretrained import DEFAULT_MODEL  # noqa: E402
from mixsep.training.hardware import describe_machine  # noqa: E402

BUNDLE = DEFAULT_MODEL


def test_mixes(n: int) -> tuple[np.ndarray, str]:
    """The first ``n`` fixed test pairs' mean images (float32 in [0, 1]), or random ones without the data."""
    root = os.environ.get("MIXSEP_DATA_ROOT")
    if root:
        from mixsep.data.datamodule import MixDataModule

        dm = MixDataModule(root=root, test_pairs=n, download=False)
        dm.setup("test")
        mix = dm.fixed_batch("test", n)[0]
        return mix.numpy().astype(np.float32), f"the first {n} fixed test pairs"
    return np.random.default_rng(0).random((n, 3, 32, 32), dtype=np.float32), f"{n} random mixes (no data root)"


def per_second(run, mixes: np.ndarray, batch: int, seconds: float) -> float:
    """Images per second of ``run`` on batches of ``batch`` mixes, over about ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        i = (done // batch * batch) % (len(mixes) - batch + 1)
        run(mixes[i : i + batch])
        done += batch
    return done / (time.perf_counter() - start)


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per contender, batch size and round")
    args = parser.parse_args()
    import onnxruntime

    mixes, what = test_mixes(512)
    separator = load_separator(BUNDLE)
    session = onnxruntime.InferenceSession(str(BUNDLE / "model.onnx"), providers=["CPUExecutionProvider"])
    contenders = {
        "PyTorch eager (fp32)": lambda m: separator(torch.from_numpy(m)),
        "ONNX Runtime (CPU)": lambda m: session.run(None, {"mix": m}),
    }
    agree = max(
        float(np.abs(a - b.numpy()).max())
        for a, b in zip(session.run(None, {"mix": mixes[:256]}), separator(torch.from_numpy(mixes[:256])))
    )
    print(
        f"machine: {describe_machine()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{torch.get_num_threads()} threads; data: {what}"
    )
    print(f"largest difference ONNX Runtime vs PyTorch on 256 mixes: {agree:.1e}\n")
    print("| runtime | batch | images/s (median of rounds) |\n|---|---:|---:|")
    for batch in (1, 256):
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, run in contenders.items():
                rates[name].append(per_second(run, mixes, batch, args.seconds))
        for name in contenders:
            print(f"| {name} | {batch} | {statistics.median(rates[name]):,.0f} |")
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        image = Path(tmp) / "mix.png"
        Image.fromarray((mixes[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(image)
        separate = [sys.executable, "-m", "mixsep.separate", str(image), "--out", f"{tmp}/out"]
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "separate --model model.ckpt": separate + ["--model", str(BUNDLE / "model.ckpt")],
            "separate --model BUNDLE": separate + ["--model", str(BUNDLE)],
            "separate --model BUNDLE --onnx": separate + ["--model", str(BUNDLE), "--onnx"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                times[name].append(wall(command))
    print("\n| one image, a fresh process | wall seconds (median) |\n|---|---:|")
    for name, values in times.items():
        print(f"| `{name}` | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
