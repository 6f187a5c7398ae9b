"""KS and TV distances, balanced tier scores and the overall score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from bayes_retail.metrics import balanced_score, ks_statistic, overall_score, tv_distance
from bayes_retail.metrics.scoring import TIER_WEIGHTS


@pytest.mark.parametrize("seed", range(5))
def test_ks_equals_scipy_on_continuous_data(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rng.integers(5, 400))
    b = rng.normal(0.2, 1.3, rng.integers(5, 400))
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_ks_equals_scipy_on_tied_discrete_data(seed):
    rng = np.random.default_rng(100 + seed)
    a = rng.poisson(0.4, rng.integers(3, 500)).astype(float)  # mostly zeros, like sales_volume
    b = rng.poisson(0.6, rng.integers(3, 500)).astype(float)
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    c = rng.integers(1, 4, 50).astype(float)
    assert ks_statistic(c, c[:20]) == pytest.approx(ks_2samp(c, c[:20]).statistic, abs=1e-12)


def test_ks_limits_and_hand_value():
    assert ks_statistic([1, 2, 3], [3, 2, 1]) == 0.0
    assert ks_statistic([1, 2], [5, 6, 7]) == 1.0
    # F_a(1) = 1/2, F_b(1) = 1/4 -> 1/4; F_a(2) = 1, F_b(2) = 1/2 -> 1/2
    assert ks_statistic([1, 2], [1, 2, 3, 3]) == pytest.approx(0.5)


def test_ks_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        ks_statistic([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        ks_statistic([np.nan, 1.0], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        ks_statistic(np.ones((2, 2)), [1.0])


def test_tv_distance_by_hand():
    # p: 1 -> 1/2, 2 -> 1/4, 3 -> 1/4; q: 1 -> 1/4, 2 -> 3/4; 0.5 * (1/4 + 1/2 + 1/4) = 1/2
    assert tv_distance([1, 1, 2, 3], [1, 2, 2, 2]) == pytest.approx(0.5)
    assert tv_distance([0, 0, 1], [1, 0, 0]) == 0.0
    assert tv_distance([0, 0], [1, 2]) == 1.0


def test_balanced_score_of_a_perfect_tier_and_suite_is_one():
    assert balanced_score([1.0] * 4) == 1.0
    assert balanced_score([1.0]) == 1.0
    assert overall_score({1: 1.0, 2: 1.0, 3: 1.0}) == 1.0


def test_one_weak_metric_pulls_the_tier_below_its_mean():
    scores = [0.9, 0.9, 0.9, 0.3]
    # harmonic mean 4 / (3/0.9 + 1/0.3) = 0.6; population sd = sqrt(0.0675);
    # no bonus (0.3 <= 0.7); one score < 0.5 -> -0.05
    expected = 0.7 * 0.6 + 0.2 * (1 - math.sqrt(0.0675) / 0.3) - 0.05
    assert balanced_score(scores) == pytest.approx(expected, abs=1e-12)
    assert balanced_score(scores) < np.mean(scores)


def test_balanced_score_uses_population_sd():
    # sd (ddof=0) of [0.5, 1] = 0.25 -> spread term 0.2 * (1 - 0.25/0.3) = 1/30;
    # harmonic mean 2/3 -> 0.7 * 2/3; 0.5 is not < 0.5, not all > 0.7. Total 0.5.
    # (ddof=1 would give sd 0.354 -> spread 0 -> 0.467.)
    assert balanced_score([0.5, 1.0]) == pytest.approx(0.5, abs=1e-12)


def test_balanced_score_floors_zero_scores_and_clips():
    # floor 0.01 keeps the harmonic mean finite: 2 / (1/0.01 + 1/1)
    expected = 0.7 * 2 / 101 + 0.2 * (1 - min(0.5 / 0.3, 1)) - 0.05
    assert balanced_score([0.0, 1.0]) == pytest.approx(max(expected, 0.0))
    # 7 scores at 0.01: 0.007 + 0.2 - 0.35 < 0 -> clipped to 0
    assert balanced_score([0.01] * 7) == 0.0
    # a larger bonus weight would exceed 1 -> clipped to 1
    assert balanced_score([1.0] * 3, weight_bonus=0.5) == 1.0


def test_balanced_score_rejects_empty():
    with pytest.raises(ValueError):
        balanced_score([])


def test_overall_score_weights_and_renormalisation():
    assert TIER_WEIGHTS == {1: 0.40, 2: 0.35, 3: 0.25}
    assert overall_score({1: 0.5, 2: 1.0, 3: 0.0}) == pytest.approx(0.40 * 0.5 + 0.35)
    # tier 3 absent: weights 0.40 / 0.75 and 0.35 / 0.75
    assert overall_score({1: 0.5, 2: 1.0}) == pytest.approx((0.40 * 0.5 + 0.35) / 0.75)
    with pytest.raises(ValueError):
        overall_score({4: 1.0})
