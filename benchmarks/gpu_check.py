"""Does mixsep's GPU path work on this machine, and how fast? One command, at most ~8 minutes.

    python benchmarks/gpu_check.py                      # data from MIXSEP_DATA_ROOT
    python benchmarks/gpu_check.py --data BUNDLE/data   # on a GPU node without network (gpu_bundle.sh)

1. versions: Python, torch, CUDA, cuDNN, Lightning, torchmetrics, the GPU's name;
2. the GPU-only tests (``pytest -m gpu``: bf16-mixed, data kept in GPU memory, channels-last, TTA, the
   divergence check);
3. training pairs/s of the best_gpu U-Net and of conv_dual, mixsep's pipeline beside the usual per-item
   DataLoader pipeline on the same device (alternating rounds in this one process: a ratio), and the share
   of step time mixsep spends waiting for data;
4. a short best_gpu training (its one-cycle schedule laid over ``--minutes``) on the given data, with the
   validation dB it reaches per minute.

Without a GPU it runs on the CPU, says so, and its figures are CPU figures (CI checks the script this way,
``--quick`` on tiny data).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # mixsep from this checkout (installed or not), and the other benchmarks


def versions() -> str:
    import lightning
    import torch
    import torchmetrics

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none: CPU figures below, not GPU ones"
    return (
        f"python {platform.python_version()}  torch {torch.__version__}  CUDA {torch.version.cuda}  "
        f"cuDNN {torch.backends.cudnn.version()}  lightning {lightning.__version__}  "
        f"torchmetrics {torchmetrics.__version__}\nGPU: {gpu}"
    )


def gpu_tests() -> str:
    """The summary line of ``pytest -m gpu``."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "tests/user_paths/test_gpu.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    failures = [line for line in lines if line.startswith("FAILED")]
    return "\n".join([*failures, lines[-1] if lines else f"pytest gave no output (exit {run.returncode})"])


def throughput(
    model: str,
    rounds: int,
    pairs: int,
    batch_size: int | None,
    data_kwargs: dict,
    warmup: int = 2,
    per_item_batch: int = 64,
) -> dict:
    """mixsep vs per-item pipeline for ``model``, medians of alternating rounds."""
    from throughput import build

    args = Namespace(model=model, batch_size=batch_size, cpu=False)
    fast, slow = build(args, per_item_batch, **data_kwargs)
    for p in (fast, slow):
        p.train_steps(warmup)  # warm-up: allocator, cuDNN / oneDNN kernels, workers
    rates, wait = {p.name: [] for p in (fast, slow)}, []
    for _ in range(rounds):
        for p in (fast, slow):
            rate, waited = p.train_steps(max(warmup, pairs // p.batch_size))
            rates[p.name].append(rate)
            if p is fast:
                wait.append(waited)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "model": model,
        "batch": fast.batch_size,
        **med,
        "ratio": med["mixsep"] / med["per-item"],
        "wait": statistics.median(wait),
    }


def training(minutes: float, overrides: tuple) -> list[tuple[float, int, float, float]]:
    from time_to_quality import mixsep_time

    clock = mixsep_time("best_gpu", every=max(5.0, minutes * 60 / 8), max_minutes=minutes, overrides=overrides)
    return clock.history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data root (default: MIXSEP_DATA_ROOT)")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the best_gpu training")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script works (CI)")
    args = parser.parse_args()
    if args.data:
        if not (Path(args.data) / "MNIST" / "raw").is_dir():
            sys.exit(f"mixsep: --data {args.data} holds no MNIST/raw: pass the data folder of gpu_bundle.sh (DIR/data)")
        os.environ["MIXSEP_DATA_ROOT"] = str(Path(args.data).resolve())
    os.chdir(ROOT)
    start = time.perf_counter()
    import torch

    print("== versions\n" + versions(), flush=True)
    if not torch.cuda.is_available():
        print("note: no CUDA GPU here; the GPU-only tests skip and every figure below is a CPU figure")
    print("\n== GPU-only tests (pytest -m gpu)\n" + gpu_tests(), flush=True)

    data_kwargs, overrides = {}, ()
    rounds, pairs, batch, warmup, per_item_batch = 3, 20000, None, 2, 64
    if args.quick:  # the tiny data sets of the tests: a smoke test, not a measurement
        data_kwargs = {"val_holdout": 8, "val_pairs": 8, "test_pairs": 12}
        overrides = ("data.val_holdout=8", "data.val_pairs=8", "data.test_pairs=12", "data.batch_size=8")
        rounds, pairs, batch, warmup, per_item_batch = 1, 8, 8, 1, 8
    print("\n== training throughput, mixsep vs the per-item DataLoader pipeline (same device, one process)")
    per_item = f"per-item pairs/s (batch {per_item_batch})"
    print(f"| model | mixsep batch | mixsep pairs/s | {per_item} | ratio | waiting for data |")
    print("|---|---:|---:|---:|---:|---:|")
    for model in ("best_gpu_unet", "conv_dual"):
        r = throughput(model, rounds, pairs, batch, data_kwargs, warmup, per_item_batch)
        print(
            f"| {model} | {r['batch']} | {r['mixsep']:.0f} | {r['per-item']:.0f} | {r['ratio']:.2f}x "
            f"| {100 * r['wait']:.1f} % |",
            flush=True,
        )

    minutes = 0.1 if args.quick else args.minutes
    print(f"\n== experiment=best_gpu for {minutes:g} minutes (validation on 1,000 pairs)")
    history = training(minutes, overrides)
    print("| minutes | step | val MNIST dB | val CIFAR dB |\n|---:|---:|---:|---:|")
    for seconds, step, mnist, cifar in history:
        print(f"| {seconds / 60:.2f} | {step} | {mnist:.2f} | {cifar:.2f} |")
    if history:
        seconds, _, mnist, cifar = history[-1]
        print(
            f"db_per_minute={min(mnist, cifar) / max(seconds / 60, 1e-9):.2f}  (both sources >= "
            f"{min(mnist, cifar):.2f} dB after {seconds / 60:.2f} min)"
        )
    print(f"gpu_check_seconds={time.perf_counter() - start:.0f}")


if __name__ == "__main__":
    main()
