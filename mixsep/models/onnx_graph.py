"""A bundle's ``model.onnx`` opened under ONNX Runtime from its checked bytes (so it can read no other file) and
tried on a probe batch (within seconds, against the weights' outputs under PyTorch) before any image is
separated. Every failure is one CheckpointError line."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mixsep.errors import CheckpointError, MixsepError
from mixsep.models.bundle_files import AGAIN, ONNX_FILE, WEIGHTS_FILE, read_bundle_config, verify_file
from mixsep.models.separator import load_separator

PROBE_MIXES = 2
PROBE_SECONDS = 5.0  # the probe batch's time limit (a separator takes milliseconds)
SLOWER_THAN_PROBE = 50  # a later batch's limit: this many times the probe's time per image
ONNX_TOLERANCE = 1e-3  # the graph against the weights under PyTorch (an export differs by about 1e-6)

Separate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def open_onnx(folder: Path, device: str = "cpu") -> Separate:
    """``separate(mixes) -> (gray, colour)`` on (B, 3, 32, 32) float32 arrays in [0, 1]: the bundle's model.onnx
    under ONNX Runtime (CPU), after checking that it is the graph exported with the bundle, that ONNX Runtime
    opens it from those bytes alone, that it maps a probe batch of random mixes to two finite (B, 3, 32, 32)
    images within seconds, and that these are the outputs of the bundle's own weights under PyTorch (a graph
    with a recomputed SHA-256 is otherwise anything its author wrote). Every run of the graph has a time limit."""
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
        raise CheckpointError(f"{path}: ONNX Runtime cannot open it ({_first_line(err)}); {AGAIN}") from err
    inputs, outputs = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if inputs != ["mix"] or len(outputs) != 2:
        raise CheckpointError(
            f"{path} takes {inputs} and gives {outputs}: a mixsep graph takes 'mix' and gives (gray, colour); {AGAIN}"
        )
    seconds_per_image = 0.0  # until the probe batch is timed: its limit is PROBE_SECONDS

    def separate(mixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        limit = max(PROBE_SECONDS, SLOWER_THAN_PROBE * seconds_per_image * len(mixes))
        gray, colour = _run_limited(onnxruntime, session, path, np.ascontiguousarray(mixes, np.float32), limit)
        for name, out in (("gray", gray), ("colour", colour)):
            if not isinstance(out, np.ndarray) or out.shape != mixes.shape or out.dtype != np.float32:
                what = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
                raise CheckpointError(
                    f"{path} gives {name} as {what} for {mixes.shape} mixes: a separator gives float32 images of "
                    f"the mixes' shape; {AGAIN}"
                )
            if not np.isfinite(out).all():
                raise CheckpointError(f"{path} gives {name} values that are not finite; {AGAIN}")
        return np.clip(gray, 0, 1), np.clip(colour, 0, 1)  # as the PyTorch separator clamps them

    probe = np.random.default_rng().random((PROBE_MIXES, 3, 32, 32), dtype=np.float32)  # nothing to recognise
    start = time.perf_counter()
    given = separate(probe)
    seconds_per_image = max(time.perf_counter() - start, 0.01) / len(probe)
    expected = _weights_outputs(folder, probe)
    gap = max(float(np.abs(g - e).max()) for g, e in zip(given, expected))
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
        raise CheckpointError(f"{path}: ONNX Runtime fails on the images ({_first_line(err)}); {AGAIN}") from err
    finally:
        timer.cancel()


def _weights_outputs(folder: Path, mixes: np.ndarray) -> tuple[np.ndarray, ...]:
    """What the bundle's weights give on ``mixes`` under PyTorch, built as ``load_separator`` builds them."""
    outputs = load_separator(folder)(torch.from_numpy(mixes))
    return tuple(o.numpy() for o in outputs)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}"
