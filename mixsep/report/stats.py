"""Confidence intervals for scores: a bootstrap over test pairs, paired differences between two runs scored
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


def write_scores(path: str | Path, scores: dict[str, np.ndarray]) -> None:
    np.savez_compressed(
        path, **{k: np.asarray(v, dtype=np.float32 if k != "pair" else np.int64) for k, v in scores.items()}
    )


def read_scores(run: str | Path, name: str = SCORES_FILE) -> dict[str, np.ndarray] | None:
    """A run's per-pair scores (None where it has none). Each array's size is read from the zip's header before
    it is loaded: a compressed file of kilobytes can hold gigabytes of zeros."""
    path = Path(run) / name
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            for key in data.files:
                size = data.zip.getinfo(f"{key}.npy").file_size
                if size > MAX_PAIRS * 8 + 1024:  # float64 at most, and the .npy header
                    raise MixsepError(
                        f"{path}: its {key[:40]} holds {size:,} bytes, more than {MAX_PAIRS:,} pairs' scores: not "
                        "scores a mixsep run wrote; remove it or score the model again (python -m mixsep.evaluate)"
                    )
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise MixsepError(
            f"{path} is not a readable scores file ({type(err).__name__}: {str(err)[:120]}); remove it or score "
            "the model again (python -m mixsep.evaluate)"
        ) from err


def bootstrap_mean(
    values: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and its percentile-bootstrap interval over the pairs (resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for i in range(0, n_boot, 200):  # 200 resamples at a time: memory stays small for 10,000 pairs
        k = min(200, n_boot - i)
        means[i : i + k] = values[rng.integers(0, len(values), size=(k, len(values)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Mean of a − b over the same pairs, with its bootstrap interval: the pairs are resampled together, so
    what both runs find hard or easy cancels out."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same pairs: {a.shape} vs {b.shape}")
    return bootstrap_mean(a - b, level, n_boot, seed)


def unpaired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Mean of a − mean of b, each resampled on its own (what one can say without the pairing)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diffs = np.array(
        [a[rng.integers(0, len(a), len(a))].mean() - b[rng.integers(0, len(b), len(b))].mean() for _ in range(n_boot)]
    )
    alpha = (1 - level) / 2
    return float(a.mean() - b.mean()), float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, standard deviation and the Student-t interval of the mean over a few seeds."""
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, 0.0, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


def pair_psnr(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Per pair, the mean of the two sources' PSNR: what the leaderboard ranks by."""
    return (scores["mnist_psnr"].astype(np.float64) + scores["cifar_psnr"].astype(np.float64)) / 2
