"""Confidence intervals: checked against closed forms and against what pairing must give."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixsep.report.stats import bootstrap_mean, paired_difference, t_interval, unpaired_difference


def test_the_bootstrap_interval_of_a_mean_matches_the_normal_closed_form():
    rng = np.random.default_rng(1)
    sigma, n = 2.0, 10000
    x = rng.normal(30.0, sigma, n)
    mean, lo, hi = bootstrap_mean(x, n_boot=2000)
    half = 1.959964 * sigma / math.sqrt(n)  # the known-variance interval of a normal mean
    assert mean == pytest.approx(x.mean())
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert lo < mean < hi


def test_a_paired_interval_is_narrower_than_the_unpaired_one_on_correlated_runs():
    rng = np.random.default_rng(2)
    hardness = rng.normal(0, 3, 5000)  # what makes a pair hard is shared by both runs
    a = 30 + hardness + rng.normal(0, 0.3, 5000)
    b = 29.9 + hardness + rng.normal(0, 0.3, 5000)
    d, plo, phi = paired_difference(a, b)
    u, ulo, uhi = unpaired_difference(a, b)
    assert d == pytest.approx(u)
    assert phi - plo < (uhi - ulo) / 5
    assert plo > 0  # the 0.1 dB gain is seen with pairing ...
    assert ulo < 0 < uhi  # ... and lost in the noise without it


def test_the_t_interval_over_seeds_matches_scipy_and_needs_two_seeds():
    from scipy import stats

    values = [32.1, 32.4, 31.9]
    mean, std, lo, hi = t_interval(values)
    ref = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert (lo, hi) == pytest.approx(ref)
    assert std == pytest.approx(np.std(values, ddof=1))
    assert math.isnan(t_interval([32.0])[2])


def test_paired_scores_must_be_on_the_same_pairs():
    with pytest.raises(ValueError, match="same pairs"):
        paired_difference(np.zeros(3), np.zeros(4))
