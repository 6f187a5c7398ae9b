"""Distances between two samples, and the balanced scores that aggregate them (pure numpy).

docs/metrics.md writes out every formula; the thresholds are keyword arguments
with the DESIGN §5 values as defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["TIER_WEIGHTS", "ks_statistic", "tv_distance", "balanced_score", "overall_score"]

#: Weight of each tier in the overall score.
TIER_WEIGHTS: dict[int, float] = {1: 0.40, 2: 0.35, 3: 0.25}


def _sample(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: sup over x of |F_a(x) - F_b(x)|.

    Equal to ``scipy.stats.ks_2samp(a, b).statistic``, ties included: both
    empirical CDFs are right-continuous step functions, so evaluating them
    (``searchsorted(..., side="right")``) at every distinct observed value finds
    the supremum.

    Parameters
    ----------
    a, b
        1-D samples, non-empty, without NaN.

    Returns
    -------
    float
        In [0, 1].
    """
    a = np.sort(_sample(a, "a"))
    b = np.sort(_sample(b, "b"))
    # Distinct values only: discrete metrics (sales_volume is mostly zeros) have
    # few, so the CDFs are evaluated at far fewer points than len(a) + len(b).
    merged = np.concatenate([a, b])
    merged.sort(kind="stable")  # two sorted runs: a linear merge
    points = merged[np.concatenate([merged[1:] != merged[:-1], [True]])]
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def tv_distance(a, b) -> float:
    """Total variation distance between the empirical distributions of two discrete samples.

    ``0.5 * sum_x |p(x) - q(x)|`` over the union of the observed values, where
    ``p`` and ``q`` are the relative frequencies in ``a`` and ``b``.

    Parameters
    ----------
    a, b
        1-D samples, non-empty, without NaN (values compared exactly).

    Returns
    -------
    float
        In [0, 1].
    """
    a = _sample(a, "a")
    b = _sample(b, "b")
    support = np.unique(np.concatenate([a, b]))
    p = np.bincount(np.searchsorted(support, a), minlength=support.size) / a.size
    q = np.bincount(np.searchsorted(support, b), minlength=support.size) / b.size
    return float(0.5 * np.abs(p - q).sum())


def balanced_score(
    scores: Iterable[float],
    *,
    floor: float = 0.01,
    sd_scale: float = 0.3,
    bonus_threshold: float = 0.7,
    penalty_threshold: float = 0.5,
    weight_hmean: float = 0.7,
    weight_spread: float = 0.2,
    weight_bonus: float = 0.1,
    penalty: float = 0.05,
) -> float:
    """Aggregate a tier's metric scores, penalising weak and uneven ones.

    ``weight_hmean * H + weight_spread * (1 - min(sd / sd_scale, 1))
    + weight_bonus * [all > bonus_threshold] - penalty * #(score < penalty_threshold)``,
    clipped to [0, 1]; ``H`` is the harmonic mean of the scores each floored at
    ``floor`` and ``sd`` their population standard deviation (ddof=0) of the
    unfloored scores. With the defaults a perfect tier (all 1.0) scores 1.0.
    The result is rounded to 12 decimals.

    Parameters
    ----------
    scores
        The metric scores (1 - KS), each in [0, 1]; at least one.
    floor, sd_scale, bonus_threshold, penalty_threshold, weight_hmean, weight_spread, weight_bonus, penalty
        The formula's constants (DESIGN §5 defaults).

    Returns
    -------
    float
        In [0, 1].
    """
    s = np.asarray(list(scores), dtype=np.float64)
    if s.size == 0:
        raise ValueError("balanced_score needs at least one score")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if sd_scale <= 0 or floor <= 0:
        raise ValueError("sd_scale and floor must be > 0")
    hmean = s.size / np.sum(1.0 / np.maximum(s, floor))
    spread = 1.0 - min(float(np.std(s, ddof=0)) / sd_scale, 1.0)
    bonus = float(np.all(s > bonus_threshold))
    n_weak = int(np.sum(s < penalty_threshold))
    value = weight_hmean * hmean + weight_spread * spread + weight_bonus * bonus - penalty * n_weak
    # Rounded so float noise does not turn a perfect tier into 0.9999999999999999.
    return float(np.clip(round(value, 12), 0.0, 1.0))


def overall_score(tier_scores: Mapping[int, float], *, weights: Mapping[int, float] = TIER_WEIGHTS) -> float:
    """Weighted sum of the tier scores.

    With every tier present this is ``0.40 T1 + 0.35 T2 + 0.25 T3``. A tier
    without any computed metric is absent from ``tier_scores``; the weights of the
    present tiers are then renormalised to sum to 1.

    Parameters
    ----------
    tier_scores
        Tier -> balanced score.
    weights
        Tier -> weight.

    Returns
    -------
    float
    """
    if not tier_scores:
        raise ValueError("overall_score needs at least one tier score")
    unknown = set(tier_scores) - set(weights)
    if unknown:
        raise ValueError(f"no weight for tiers {sorted(unknown)}")
    total = sum(weights[t] for t in tier_scores)
    return round(float(sum(weights[t] * s for t, s in tier_scores.items()) / total), 12)
