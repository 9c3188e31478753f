"""A run's per-pair scores (``<run dir>/scores.npz``, ``val_scores.npz``): written by the run, read back as data
from elsewhere (sizes first, one number per pair in each array)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mixsep.errors import MixsepError

SCORES_FILE = "scores.npz"  # per-pair test scores: pair (index into the fixed test pairs), {mnist,cifar}_{psnr,ssim}
VAL_SCORES_FILE = "val_scores.npz"  # the same for the validation pairs of the tested checkpoint
MAX_PAIRS = 100_000  # a run scores 10,000 test pairs
RESCORE = "remove it or score the model again (python -m mixsep.evaluate)"


def write_scores(path: str | Path, scores: dict[str, np.ndarray]) -> None:
    np.savez_compressed(
        path, **{k: np.asarray(v, dtype=np.float32 if k != "pair" else np.int64) for k, v in scores.items()}
    )


def read_scores(run: str | Path, name: str = SCORES_FILE, needs: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """A run's per-pair scores (None where it has none); one line where they are not one number per pair in each
    array, ``needs`` among them. Sizes are read first: a compressed file of kilobytes can hold gigabytes of zeros."""
    path = Path(run) / name
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            sizes = {key: data.zip.getinfo(f"{key}.npy").file_size for key in data.files}
            big = [key for key, size in sizes.items() if size > MAX_PAIRS * 8 + 1024]  # float64, and the header
            scores = {} if big else {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise MixsepError(
            f"{path} is not a readable scores file ({type(err).__name__}: {str(err)[:120]}); {RESCORE}"
        ) from err
    too_big = big and f"its {big[0][:40]} holds {sizes[big[0]]:,} bytes, more than {MAX_PAIRS:,} pairs' scores"
    problem = too_big or scores_problem(scores, needs)
    if problem:
        raise MixsepError(f"{path}: {problem}: not scores a mixsep run wrote; {RESCORE}")
    return scores


def scores_problem(scores: dict[str, np.ndarray], needs: tuple[str, ...] = ()) -> str | None:
    """What in per-pair scores is not one number per pair in each array, or missing of ``needs``; None if nothing."""
    missing = [key for key in needs if key not in scores]
    if missing:
        return f"it has no {' or '.join(missing)}"
    pairs = len(scores["pair"]) if "pair" in scores and scores["pair"].ndim == 1 else -1
    for key, values in scores.items():
        if values.ndim != 1 or values.dtype.kind not in "iuf" or len(values) != pairs:
            return f"its {key[:40]} ({values.dtype}, shape {values.shape[:4]}) is not one number per pair"
    return None
