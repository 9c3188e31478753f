"""A bundle's ``model.onnx`` under ONNX Runtime, opened from its verified bytes (so it can read no other file) and
held against the bundle's weights on a probe batch before any image is separated; every run of it has a time limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mixsep.errors import CheckpointError, MixsepError
from mixsep.models.bundle import AGAIN, ONNX_FILE, WEIGHTS_FILE, read_bundle_config, verify_file
from mixsep.models.saved import first_line
from mixsep.models.separator import load_separator

PROBE_MIXES = 2
PROBE_SECONDS = 5.0  # the probe batch's time limit (a separator takes milliseconds)
SLOWER_THAN_PROBE = 50  # a later batch's limit: this many times the probe's time per image
ONNX_TOLERANCE = 1e-3  # the graph against the weights under PyTorch (an export differs by about 1e-6)

Separate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def open_onnx(folder: Path, device: str = "cpu") -> Separate:
    """``separate(mixes) -> (gray, colour)`` on (B, 3, 32, 32) float32 arrays in [0, 1]: the bundle's model.onnx
    under ONNX Runtime (CPU), once it is the graph recorded in config.json and maps a probe batch of random mixes
    within seconds to what the bundle's weights give under PyTorch (a graph whose SHA-256 its author recorded is
    otherwise anything they wrote)."""
    folder = Path(folder)
    path = folder / ONNX_FILE
    if device != "cpu":
        raise MixsepError("--onnx runs on the CPU; use --device cpu")
    if not folder.is_dir() or not path.is_file():
        raise CheckpointError(
            f"--onnx needs a bundle with {ONNX_FILE}; {folder} has none: python -m mixsep.export CKPT DIR --onnx"
        )
    verify_file(folder, read_bundle_config(folder), ONNX_FILE)
    try:
        import onnxruntime
    except ImportError as err:
        raise MixsepError("--onnx needs ONNX Runtime: pip install 'mixsep[onnx]'") from err
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # its own error lines would repeat the one line mixsep prints
    try:  # from the verified bytes: a graph naming external data finds no folder to read it from
        session = onnxruntime.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise CheckpointError(f"{path}: ONNX Runtime cannot open it ({first_line(err)}); {AGAIN}") from err
    seconds_per_image = 0.0  # until the probe batch is timed: its limit is PROBE_SECONDS

    def separate(mixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        limit = max(PROBE_SECONDS, SLOWER_THAN_PROBE * seconds_per_image * len(mixes))
        outputs = _run_limited(onnxruntime, session, path, np.ascontiguousarray(mixes, np.float32), limit)
        if len(outputs) != 2:
            raise CheckpointError(f"{path} gives {len(outputs)} outputs: a separator gives (gray, colour); {AGAIN}")
        for name, out in zip(("gray", "colour"), outputs):
            if not isinstance(out, np.ndarray) or out.shape != mixes.shape or out.dtype != np.float32:
                what = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
                raise CheckpointError(
                    f"{path} gives {name} as {what} for {mixes.shape} mixes: a separator gives float32 images of "
                    f"the mixes' shape; {AGAIN}"
                )
            if not np.isfinite(out).all():
                raise CheckpointError(f"{path} gives {name} values that are not finite; {AGAIN}")
        return np.clip(outputs[0], 0, 1), np.clip(outputs[1], 0, 1)  # as the PyTorch separator clamps them

    probe = np.random.default_rng().random((PROBE_MIXES, 3, 32, 32), dtype=np.float32)  # nothing to recognise
    start = time.perf_counter()
    given = separate(probe)
    seconds_per_image = max(time.perf_counter() - start, 0.01) / len(probe)
    expected = load_separator(folder)(torch.from_numpy(probe))
    gap = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(given, expected))
    if gap > ONNX_TOLERANCE:
        raise CheckpointError(
            f"{path} does not give the weights' outputs (it differs from {WEIGHTS_FILE} under PyTorch by {gap:.2g} "
            f"on random mixes): the graph is not the bundle's model; {AGAIN}"
        )
    return separate


def _run_limited(onnxruntime, session, path: Path, mixes: np.ndarray, seconds: float) -> list:
    """The graph on ``mixes``, stopped after ``seconds`` (ONNX Runtime's terminate flag: a Loop of 10**15
    iterations is a few hundred bytes)."""
    run_options = onnxruntime.RunOptions()
    timer = threading.Timer(seconds, lambda: setattr(run_options, "terminate", True))
    timer.start()
    try:
        return session.run(None, {"mix": mixes}, run_options)
    except Exception as err:
        if run_options.terminate:
            raise CheckpointError(
                f"{path} runs longer than {seconds:.0f} s on {len(mixes)} images (a separator takes milliseconds): "
                f"stopped; {AGAIN}"
            ) from err
        raise CheckpointError(f"{path}: ONNX Runtime fails on the images ({first_line(err)}); {AGAIN}") from err
    finally:
        timer.cancel()
