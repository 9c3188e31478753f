"""Confidence intervals for scores: scipy's bootstrap over test pairs, paired differences between two runs scored
on the same pairs, and a t-interval over seeds (per-pair scores: ``mixsep.record.scores``)."""

from __future__ import annotations

import math

import numpy as np


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
