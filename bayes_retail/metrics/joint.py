"""Checks the per-metric KS suite cannot see (DESIGN.md §5, "beyond KS").

Each function reads one side's :class:`~bayes_retail.metrics.distributions.Prepared`
groupings, so real and synthetic data are measured by the same code:

- :func:`household_totals`: spend and visits per household, for predictive
  interval coverage and PIT of households replayed over many posterior draws;
- :func:`visits_basket_correlation`: the joint of visit frequency and basket
  size across households (a model that draws them independently gives ~0);
- :func:`copurchase_lifts`: for pairs of frequent categories, how much more
  often than independence they are bought in the same visit. Real grocery
  baskets centre well above 1; independent category draws give ~1.
  :func:`copurchase_lifts_between_households` is the part households'
  differences alone make; the rest is week-to-week co-purchase;
- :func:`week_size_correlations`: per category, how strongly buying it goes
  with the size of the household's week (alike across categories when one
  shock moves every category of a week);
- :func:`repeat_rates`: how often a category purchase repeats a product of the
  household's previous purchase in that category, and of any earlier one (the
  gap between the two is what a one-occasion state memory cannot reproduce);
- :func:`category_count_dispersion`: how much the number of categories a
  household buys varies from week to week with the number of trips held at
  one (week-level shocks to the whole basket, which trips do not explain);
- :func:`discount_share_spread`: how much households differ in the share of
  their lines bought on a retail discount, and how much more their visits
  swing around that share than independent lines would (deal-proneness of the
  household and of the trip, which the ``marketing_signal`` KS sees only mixed
  together);
- :func:`discount_week_dispersion`: the same swing of a household's weeks,
  measured around a baseline that also knows which categories had deals in
  which weeks (what is left is the household's week leaning toward or away
  from deals across its categories).

The pure-numpy coverage and PIT helpers (:func:`interval_coverage`,
:func:`mid_pit`) take a real vector and a ``(draws, units)`` replicate matrix.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from bayes_retail.metrics.distributions import (
    Prepared,
    _in_previous_week,
    _previous_purchase_weeks,
    _weeks_holding,
)

__all__ = [
    "household_totals",
    "visits_basket_correlation",
    "frequent_categories",
    "copurchase_lifts",
    "copurchase_lifts_between_households",
    "week_size_correlations",
    "repeat_rates",
    "category_count_dispersion",
    "discount_share_spread",
    "discount_week_dispersion",
    "interval_coverage",
    "mid_pit",
]


def household_totals(prep: Prepared, households: np.ndarray) -> pd.DataFrame:
    """Spend (sum of sales_value) and visits (household-weeks with a line) of each of ``households`` (0 when absent)."""
    spend = np.bincount(prep.visit_household, weights=prep.visit_sales, minlength=prep.n_households)
    visits = np.bincount(prep.visit_household, minlength=prep.n_households)
    frame = pd.DataFrame({"spend": spend, "visits": visits.astype(np.float64)}, index=prep.household_ids)
    return frame.reindex(np.asarray(households), fill_value=0.0).rename_axis("household_id")


def visits_basket_correlation(prep: Prepared) -> float:
    """Spearman correlation, across households with >= 2 visits, of visit count and mean units per visit."""
    visits = np.bincount(prep.visit_household, minlength=prep.n_households)
    units = np.bincount(prep.visit_household, weights=prep.visit_quantity, minlength=prep.n_households)
    keep = visits >= 2
    if keep.sum() < 3:
        return float("nan")
    return float(spearmanr(visits[keep], units[keep] / visits[keep]).statistic)


def frequent_categories(prep: Prepared, n: int = 30) -> list[str]:
    """The ``n`` category names bought in the most visits (ties by name)."""
    counts = pd.Series(np.bincount(prep.hcw_category, minlength=prep.n_categories), index=prep.category_names)
    return counts.sort_index().sort_values(ascending=False, kind="stable").index[:n].tolist()


def _visit_of_purchases(prep: Prepared) -> np.ndarray:
    """Visit index (row of the ``visit_*`` arrays) of each household-category-week."""
    visit_key = prep.visit_household.astype(np.int64) * prep.n_weeks + prep.visit_week
    hcw_key = prep.hcw_household.astype(np.int64) * prep.n_weeks + prep.hcw_week
    return np.searchsorted(visit_key, hcw_key)


def _purchases_in(prep: Prepared, categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Visit index and position in ``categories`` of each purchase of one of ``categories``."""
    code = {name: c for c, name in enumerate(prep.category_names)}
    column = np.full(len(prep.category_names), -1)
    for i, name in enumerate(categories):
        if name in code:
            column[code[name]] = i
    keep = column[prep.hcw_category] >= 0
    return _visit_of_purchases(prep)[keep], column[prep.hcw_category[keep]]


def _incidence(prep: Prepared, categories: list[str]) -> np.ndarray:
    """``(visits, categories)`` 1 where the visit bought the category (a column of 0s for one never bought)."""
    visit_of, column = _purchases_in(prep, categories)
    incidence = np.zeros((prep.n_visits, len(categories)), dtype=np.float64)
    incidence[visit_of, column] = 1.0
    return incidence


def _pair_series(matrix: np.ndarray, categories: list[str], name: str) -> pd.Series:
    """The upper triangle of a square ``(categories, categories)`` matrix, indexed ``"a | b"``."""
    pairs = list(itertools.combinations(range(len(categories)), 2))
    return pd.Series([matrix[a, b] for a, b in pairs], index=[f"{categories[a]} | {categories[b]}" for a, b in pairs],
                     name=name)


def copurchase_lifts(prep: Prepared, categories: list[str]) -> pd.Series:
    """``lift(a, b) = P(a and b in a visit) / (P(a) P(b))`` over visits, for every pair of ``categories``.

    Indexed by ``"a | b"`` (in the order given). A pair with a category never
    bought on this side has a NaN lift.
    """
    incidence = _incidence(prep, categories)
    both = incidence.T @ incidence
    single = np.diag(both)
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = both * prep.n_visits / np.outer(single, single)
    return _pair_series(lift, categories, "lift")


def copurchase_lifts_between_households(prep: Prepared, categories: list[str]) -> pd.Series:
    """The part of :func:`copurchase_lifts` that households' differences alone make.

    The lift expected when each household's purchases of each category are
    shuffled over its own visits independently (which keeps how often every
    household buys every category and removes which of its weeks bought them
    together): ``E[both(a, b)] = sum_h n_ha n_hb / V_h``, with ``n_ha`` the
    household's visits buying a and ``V_h`` its visits (the exact mean of
    that permutation), over ``P(a) P(b)`` as in the lift. What the full lift
    has beyond it is week-to-week co-purchase within households (big shops
    against top-ups). NaN like the lift.
    """
    incidence = _incidence(prep, categories)
    household = prep.visit_household
    counts = np.zeros((prep.n_households, len(categories)))
    np.add.at(counts, household, incidence)
    visits = np.bincount(household, minlength=prep.n_households).astype(np.float64)
    weighted = counts / np.maximum(visits, 1.0)[:, None]
    expected = counts.T @ weighted
    single = incidence.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = expected * prep.n_visits / np.outer(single, single)
    return _pair_series(lift, categories, "lift_between_households")


def week_size_correlations(prep: Prepared, categories: list[str]) -> pd.Series:
    """Per category, how much its purchase rides on the size of the household's week.

    The correlation, pooled over households after centring both on each
    household's visits, between a visit buying the category (0 / 1) and the
    number of other categories the visit bought: near 0 for a category bought
    whatever the week's size (a checkout impulse, a single-purpose trip),
    high for one bought in big shops. A household-week shock shared equally
    by every category makes these alike across categories. Indexed by
    category; NaN where either side has no variation within households.
    """
    visit_of, column = _purchases_in(prep, categories)
    cross, own, others = week_size_moments(visit_of, column, prep.visit_categories, prep.visit_household,
                                           prep.n_households, len(categories))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cross / np.sqrt(own * others)
    return pd.Series(corr, index=list(categories), name="week_size_correlation")


def week_size_moments(purchase_visit: np.ndarray, purchase_column: np.ndarray, total: np.ndarray,
                      household: np.ndarray, n_households: int,
                      n_columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within-household second moments of buying each category and the week's other categories.

    Sparse: ``purchase_visit`` and ``purchase_column`` list the (visit,
    column) pairs where a visit bought a category (each pair once);
    ``total`` ``(visits,)`` is the categories each visit bought, ``household``
    ``(visits,)`` its household index. Both sides are centred on each
    household's visits; returns, per column, the sums of ``own * others``,
    ``own**2`` and ``others**2`` (``own`` the 0 / 1 purchase,
    ``others = total - own``; all three 0 where a side does not vary): what :func:`week_size_correlations` and the
    category stage's week-size slope are made of. Computed from per-household
    sums (``sum (x - xbar)(y - ybar) = sum xy - n xbar ybar``), so no
    ``(visits, columns)`` array is built.
    """
    total = np.asarray(total, dtype=np.float64)
    visits = np.bincount(household, minlength=n_households).astype(np.float64)
    inverse = np.divide(1.0, visits, out=np.zeros_like(visits), where=visits > 0)[:, None]
    total_h = np.bincount(household, weights=total, minlength=n_households)[:, None]
    square_h = np.bincount(household, weights=total**2, minlength=n_households)
    own_h = np.zeros((n_households, n_columns))  # purchases per household and column
    np.add.at(own_h, (household[purchase_visit], purchase_column), 1.0)
    bought = np.bincount(purchase_column, minlength=n_columns).astype(np.float64)
    with_total = np.bincount(purchase_column, weights=total[purchase_visit], minlength=n_columns)
    others_h = total_h - own_h
    cross = (with_total - bought) - (own_h * others_h * inverse).sum(axis=0)
    own = bought - (own_h**2 * inverse).sum(axis=0)
    others = (square_h.sum() - 2.0 * with_total + bought) - (others_h**2 * inverse).sum(axis=0)
    # the differences of sums leave rounding where a side does not vary: make that an exact 0
    tol = 1e-9 * max(float(household.size), 1.0)
    own[own < tol], others[others < tol] = 0.0, 0.0
    cross[(own == 0) | (others == 0)] = 0.0
    return cross, own, others


def repeat_rates(prep: Prepared) -> tuple[float, float]:
    """Share of repeat category purchases that rebuy a product of the previous / of any earlier purchase.

    Over every household-category-week that is not the household's first in
    that category: the share holding a product the household bought in its
    previous purchase week of the category, and the share holding a product
    it bought in any earlier week of the category. NaN when no household
    buys a category twice.
    """
    prev_pw, prev_cw = _previous_purchase_weeks(prep)
    eligible = prev_cw >= 0
    if not eligible.any():
        return float("nan"), float("nan")
    any_earlier = _weeks_holding(prep, prev_pw >= 0)
    in_last = _weeks_holding(prep, _in_previous_week(prep, prev_pw, prev_cw))
    return float(in_last[eligible].mean()), float(any_earlier[eligible].mean())


def category_count_dispersion(prep: Prepared, *, min_weeks: int = 2) -> float:
    """Sd of categories per single-trip visit relative to the household's mean over its single-trip visits.

    Only visits with exactly one trip (basket) count, and only households
    with at least ``min_weeks`` of them; each visit's distinct-category count
    is divided by its household's mean, and the sd is taken over all those
    visits. 0 when every household buys the same number of categories each
    week; NaN when no household qualifies.
    """
    one = prep.visit_trips == 1
    household = prep.visit_household[one]
    count = prep.visit_categories[one].astype(np.float64)
    n = np.bincount(household, minlength=prep.n_households)
    mean = np.bincount(household, weights=count, minlength=prep.n_households) / np.maximum(n, 1)
    keep = n[household] >= min_weeks
    if not keep.any():
        return float("nan")
    return float(np.std(count[keep] / mean[household[keep]]))


def discount_share_spread(prep: Prepared, *, min_lines: int = 20) -> tuple[float, float]:
    """Between-household sd of the discounted-line share, and the visits' overdispersion around it.

    ``p_h`` is household h's share of lines with ``retail_disc > 0`` over its
    visits. The first number is the (population) sd of ``p_h`` over households
    with at least ``min_lines`` lines (fewer make ``p_h`` mostly binomial
    noise). The second is the Pearson dispersion of the visits' discounted-line
    counts ``x_v`` out of ``n_v`` lines around their household's share,
    ``sum (x_v - n_v p_h)^2 / sum n_v p_h (1 - p_h)`` over the same
    households: 1 when a visit's lines are discounted independently with the
    household's probability, above 1 when whole visits lean toward or away
    from deals. NaN when no household qualifies (or every qualifying share is
    0 or 1, for the dispersion).
    """
    household = prep.visit_household
    lines = np.bincount(household, weights=prep.visit_lines, minlength=prep.n_households)
    discounted = np.bincount(household, weights=prep.visit_promo_lines, minlength=prep.n_households)
    keep = lines >= max(min_lines, 1)
    if not keep.any():
        return float("nan"), float("nan")
    share = discounted / np.maximum(lines, 1)
    spread = float(np.std(share[keep]))
    visit = keep[household]
    n, x, p = prep.visit_lines[visit], prep.visit_promo_lines[visit], share[household[visit]]
    variance = float(np.sum(n * p * (1 - p)))
    dispersion = float(np.sum((x - n * p) ** 2) / variance) if variance > 0 else float("nan")
    return spread, dispersion


def discount_week_dispersion(prep: Prepared, *, min_lines: int = 20, iterations: int = 30) -> float:
    """Overdispersion of household-weeks' discounted lines around a household + category-week logit.

    Over households with at least ``min_lines`` lines, each line is discounted
    with probability ``logistic(a_h + b_cw)`` (household h, the line's
    category-week cw), fitted to the same lines by ``iterations`` alternating
    Newton steps on the two sets of effects (binomial counts per
    household-product-week). Returns the Pearson dispersion of the
    household-weeks' discounted-line counts around it,
    ``sum_hw (x_hw - sum p)^2 / sum_hw sum p (1 - p)``: below 1 by the
    in-sample fit when lines follow the baseline independently (~0.9 on a
    replay of the embedded data without week-level deal hunting), above when
    a household's whole week leans toward or away from deals beyond which
    categories had deals that week. NaN when no household qualifies or all
    their lines are alike (all discounted or none).
    """
    lines = np.bincount(prep.hpw_household, weights=prep.hpw_lines, minlength=prep.n_households)
    keep = (lines >= max(min_lines, 1))[prep.hpw_household]
    if not keep.any():
        return float("nan")
    n, x = prep.hpw_lines[keep], prep.hpw_promo_lines[keep]
    if x.sum() == 0 or x.sum() == n.sum():  # every line alike: no effect is finite, no variance is left
        return float("nan")
    household = np.unique(prep.hpw_household[keep], return_inverse=True)[1]
    week = prep.hpw_week[keep]
    category_week = np.unique(prep.product_category[prep.hpw_product[keep]] * prep.n_weeks + week,
                              return_inverse=True)[1]
    eta = np.zeros(n.size)
    for _ in range(iterations):
        for group in (household, category_week):
            p = 1.0 / (1.0 + np.exp(-eta))
            gradient = np.bincount(group, weights=x - n * p)
            curvature = np.bincount(group, weights=n * p * (1.0 - p))
            # a group with every line discounted (or none) has no finite effect: a bounded step
            eta = np.clip(eta + (gradient / (curvature + 1e-3))[group], -30.0, 30.0)
    p = 1.0 / (1.0 + np.exp(-eta))
    household_week = np.unique(household * prep.n_weeks + week, return_inverse=True)[1]
    residual = np.bincount(household_week, weights=x - n * p)
    variance = float(np.sum(n * p * (1.0 - p)))
    return float(np.sum(residual**2) / variance) if variance > 1e-9 else float("nan")


def interval_coverage(real: np.ndarray, replicates: np.ndarray, prob: float) -> float:
    """Share of units whose central ``prob`` predictive interval (over the replicates' draws) holds the real value.

    ``replicates`` is ``(draws, units)``; interval ends are the draws'
    ``(1 - prob) / 2`` and ``(1 + prob) / 2`` quantiles, both inclusive, so
    a discrete outcome is covered a little more often than ``prob`` even
    under a calibrated model (Poisson counts with rates 1-10: 0.94 at 0.9).
    """
    lo, hi = np.quantile(replicates, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return float(np.mean((real >= lo) & (real <= hi)))


def mid_pit(real: np.ndarray, replicates: np.ndarray) -> np.ndarray:
    """Mid-distribution PIT of each unit: ``P(rep < real) + P(rep = real) / 2`` over the replicates' draws.

    For discrete outcomes (visits) the mid-PIT is what is uniform on average
    under a calibrated model; for continuous ones it is the usual PIT.
    """
    below = (replicates < real[None, :]).mean(axis=0)
    tied = (replicates == real[None, :]).mean(axis=0)
    return below + tied / 2
