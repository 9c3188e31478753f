"""A model bundle's files read as one verified thing: ``config.json`` (checked JSON of the expected shape), the
SHA-256 it records of ``model.safetensors`` and ``model.onnx`` (a file that is not the one exported with it is
refused), and ``model.onnx`` opened under ONNX Runtime from its checked bytes (so it can read no other file) and
tried on a probe batch (within seconds, against the weights' outputs under PyTorch, which only this check imports)
before any image is separated. Every failure is one CheckpointError line.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mixsep.errors import CheckpointError, MixsepError

BUNDLE_FORMAT = "mixsep-bundle"
FORMAT_VERSION = 2  # 2: config.json records the SHA-256 of the weights and the graph ("files")
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, ONNX_FILE = "model.safetensors", "config.json", "README.md", "model.onnx"
MAX_CONFIG_BYTES = 1 << 20  # a bundle's config.json is about 1.5 kB
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
PROBE_MIXES = 2
PROBE_SECONDS = 5.0  # the probe batch's time limit (a separator takes milliseconds)
SLOWER_THAN_PROBE = 50  # a later batch's limit: this many times the probe's time per image
ONNX_TOLERANCE = 1e-3  # the graph against the weights under PyTorch (an export differs by about 1e-6)
TYPE_NAMES = {str: "a string", dict: "a mapping", int: "an integer", type(None): "null"}
AGAIN = "export it again (python -m mixsep.export CKPT DIR [--onnx])"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_records(folder: Path, names: list[str]) -> dict[str, dict]:
    """config.json's ``files``: each file's SHA-256 and size in bytes."""
    return {name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size} for name in names}


def read_json(path: Path, what: str) -> object:
    """A JSON file, its failures (not JSON, nested too deeply, too large) one line naming ``what`` it should be."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path} is {path.stat().st_size:,} bytes: not {what}")
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({str(err)[:160]}): not {what}") from err
    except RecursionError as err:
        raise CheckpointError(f"{path} is nested too deeply to be {what}") from err


def read_bundle_config(folder: Path) -> dict:
    """A bundle's config.json, its fields of the types mixsep writes (CheckpointError otherwise)."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a mixsep model bundle: it has no {CONFIG_FILE}; {AGAIN}")
    config = read_json(path, "a mixsep bundle's config")
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path} is not a mixsep bundle's config (its format is not {BUNDLE_FORMAT})")
    kinds = {
        "architecture": (str,),
        "arguments": (dict,),
        "settings": (dict, type(None)),
        "sources": (str, type(None)),
        "precision": (str, type(None)),
        "format_version": (int,),
        "files": (dict, type(None)),
        "network_module": (str, type(None)),
    }
    for key, allowed in kinds.items():
        if not isinstance(config.get(key), allowed) or isinstance(config.get(key), bool):
            wanted = " or ".join(TYPE_NAMES[t] for t in allowed)
            raise CheckpointError(f"{path}: {key} must be {wanted}, not {json.dumps(config.get(key))[:80]}; {AGAIN}")
    module = config.get("network_module")
    if module is not None and not MODULE_NAME.fullmatch(module[:200]):
        raise CheckpointError(f"{path}: network_module {module[:80]!r} is not a Python module name; {AGAIN}")
    return config


def verify_file(folder: Path, config: dict, name: str) -> None:
    """``name`` in ``folder`` is the file exported with config.json: its SHA-256 is the one recorded. A bundle
    of format 1 (mixsep 0.1, before hashes were recorded) has none: its weights load unverified, its graph not
    at all (nothing ties it to the weights)."""
    recorded = (config.get("files") or {}).get(name)
    if recorded is None and name == WEIGHTS_FILE and config["format_version"] < FORMAT_VERSION:
        return
    if recorded is None:
        raise CheckpointError(
            f"{folder / name} is not recorded in {CONFIG_FILE} (no SHA-256 for it): nothing says it belongs to "
            f"this bundle; {AGAIN}"
        )
    digest = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not isinstance(digest, str) or sha256_of(folder / name) != digest.lower():
        raise CheckpointError(
            f"{folder / name} is not the file exported with this bundle (its SHA-256 differs from the one in "
            f"{CONFIG_FILE}): it was replaced or damaged; {AGAIN}"
        )


def network_module(config: dict) -> str | None:
    return config.get("network_module")


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
    import torch

    from mixsep.models.separator import load_separator

    outputs = load_separator(folder)(torch.from_numpy(mixes))
    return tuple(o.numpy() for o in outputs)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}"
