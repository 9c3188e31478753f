"""Confidence intervals for scores: scipy's bootstrap over test pairs, paired differences between two runs scored
on the same pairs, and a t-interval over seeds. Per-pair scores live in ``<run dir>/scores.npz``."""

from __future__ import annotations

import math
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


def _bootstrap(samples: tuple, statistic, level: float, n_boot: int, seed: int) -> tuple[float, float, float]:
    """The statistic of the samples and its percentile-bootstrap interval (one pair: nothing to resample)."""
    from scipy.stats import bootstrap

    samples = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    value = float(statistic(*samples, axis=-1))
    if min(len(s) for s in samples) < 2:
        return value, value, value
    rng = np.random.default_rng(seed)
    ci = bootstrap(
        samples, statistic, n_resamples=n_boot, batch=200, confidence_level=level, method="percentile", random_state=rng
    ).confidence_interval
    return value, float(ci.low), float(ci.high)


def bootstrap_mean(values: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Mean and its percentile-bootstrap interval over the pairs (resampled with replacement)."""
    return _bootstrap((values,), np.mean, level, n_boot, seed)


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Mean of a − b over the same pairs, with its bootstrap interval: the pairs are resampled together, so
    what both runs find hard or easy cancels out."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"paired scores need the same pairs: {np.shape(a)} vs {np.shape(b)}")
    return bootstrap_mean(np.subtract(a, b, dtype=np.float64), level, n_boot, seed)


def unpaired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Mean of a − mean of b, each resampled on its own (what one can say without the pairing)."""
    difference = lambda x, y, axis: x.mean(axis) - y.mean(axis)
    return _bootstrap((a, b), difference, level, n_boot, seed)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, standard deviation and the Student-t interval of the mean over a few seeds."""
    from scipy.stats import sem, t

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), 0.0, math.nan, math.nan
    half = float(t.ppf(0.5 + level / 2, len(x) - 1) * sem(x))
    return float(x.mean()), float(x.std(ddof=1)), float(x.mean()) - half, float(x.mean()) + half


def pair_psnr(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Per pair, the mean of the two sources' PSNR: what the leaderboard ranks by."""
    return (scores["mnist_psnr"].astype(np.float64) + scores["cifar_psnr"].astype(np.float64)) / 2
