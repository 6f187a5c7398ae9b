"""Beyond-KS checks on hand-computed tables: household totals, joint statistics, coverage and PIT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metric_example import LINE_COLS

from bayes_retail.metrics.distributions import prepare
from bayes_retail.metrics.joint import (
    category_count_dispersion,
    copurchase_lifts,
    copurchase_lifts_between_households,
    discount_share_spread,
    discount_week_dispersion,
    frequent_categories,
    household_totals,
    interval_coverage,
    mid_pit,
    repeat_rates,
    visits_basket_correlation,
    week_size_correlations,
    week_size_moments,
)
from bayes_retail.metrics.tables import MetricTables

PRODUCTS = pd.DataFrame({"product_id": [1, 2, 3, 4], "product_category": ["A", "A", "B", "C"],
                         "department": "GROCERY"})
# household, basket, product, quantity, sales_value, retail_disc, week
# visits: (1,1) A+B, (1,2) A+B, (2,1) A, (2,3) C, (3,2) A
LINES = [
    (1, 1, 1, 1, 2.0, 0.0, 1), (1, 1, 3, 2, 3.0, 0.0, 1),
    (1, 2, 2, 1, 1.5, 0.0, 2), (1, 2, 3, 1, 1.0, 0.0, 2),
    (2, 3, 1, 4, 8.0, 0.0, 1),
    (2, 4, 4, 1, 3.0, 0.0, 3),
    (3, 5, 1, 1, 2.0, 0.0, 2),
]


def _prep(lines=LINES):
    return prepare(MetricTables(pd.DataFrame(lines, columns=LINE_COLS), PRODUCTS, name="t"), [1, 2, 3])


def test_household_totals_count_spend_and_visits_with_zeros_for_absent_households():
    totals = household_totals(_prep(), np.array([3, 1, 99, 2]))
    assert list(totals.index) == [3, 1, 99, 2]
    assert totals["spend"].tolist() == [2.0, 7.5, 0.0, 11.0]
    assert totals["visits"].tolist() == [1.0, 2.0, 0.0, 2.0]


def test_copurchase_lift_by_hand():
    prep = _prep()
    assert frequent_categories(prep, 2) == ["A", "B"]
    lifts = copurchase_lifts(prep, ["A", "B", "C", "Z"])
    # 5 visits: A in 4, B in 2, C in 1, A and B together in 2
    assert lifts["A | B"] == pytest.approx(2 * 5 / (4 * 2))
    assert lifts["A | C"] == 0.0 and lifts["B | C"] == 0.0
    assert np.isnan(lifts["A | Z"]) and len(lifts) == 6


def test_between_household_lift_is_the_mean_of_shuffling_each_households_weeks():
    prep = _prep()
    between = copurchase_lifts_between_households(prep, ["A", "B", "C", "Z"])
    # A | B: household 1 buys both in both its visits (2 x 2 / 2 = 2 expected together), nobody else buys B
    assert between["A | B"] == pytest.approx(2 * 5 / (4 * 2))
    # A | C: never together, but household 2 buys each in one of its 2 visits: 1 x 1 / 2 expected together
    assert between["A | C"] == pytest.approx(0.5 * 5 / (4 * 1)) and copurchase_lifts(prep, ["A", "C"])["A | C"] == 0
    assert between["B | C"] == 0.0 and np.isnan(between["A | Z"])
    # the expectation, checked against shuffles of every household's visits
    rng = np.random.default_rng(0)
    x = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]], dtype=float)  # visits x (A, B, C)
    household = np.array([1, 1, 2, 2, 3])
    together = []
    for _ in range(4000):
        y = x.copy()
        for h in (1, 2, 3):
            rows = np.flatnonzero(household == h)
            for j in range(3):
                y[rows, j] = x[rng.permutation(rows), j]
        together.append(y[:, 0] @ y[:, 2])
    assert np.mean(together) * 5 / (4 * 1) == pytest.approx(between["A | C"], abs=0.03)


def test_week_size_correlation_by_hand():
    corr = week_size_correlations(_prep(), ["A", "B", "C", "Z"])
    # A: household 2 buys it in its 1-category week and not in the other (also 1 category): within-household,
    # buying A goes with 0 other categories and not buying it with 1; households 1 and 3 do not vary
    assert corr["A"] == pytest.approx(-1.0)
    assert corr["C"] == pytest.approx(-1.0)
    # B: its visits always hold one other category (A) and so do the visits without it: no variation
    assert np.isnan(corr["B"]) and np.isnan(corr["Z"])
    # a household whose big weeks hold the category
    lines = [(9, 10 + w, p, 1, 1.0, 0.0, w) for w in (1, 2) for p in (1, 3, 4)] + [(9, 20, 3, 1, 1.0, 0.0, 3)]
    assert week_size_correlations(_prep(LINES + lines), ["A"])["A"] > 0


def test_week_size_moments_equal_the_dense_centred_sums():
    rng = np.random.default_rng(7)
    n_h, n_c = 12, 5
    household = np.sort(rng.integers(0, n_h - 1, 80))  # the last household has no visits
    incidence = (rng.random((household.size, n_c)) < 0.4).astype(float)
    incidence[:, 3] = 1.0  # bought on every visit: no variation
    total = incidence.sum(axis=1) + rng.integers(0, 3, household.size)  # other categories outside the columns
    visit, column = np.nonzero(incidence)
    cross, own, others = week_size_moments(visit, column, total, household, n_h, n_c)
    frame = pd.DataFrame(incidence).assign(h=household)
    own_c = (frame.drop(columns="h") - frame.groupby("h").transform("mean")).to_numpy()
    others_raw = total[:, None] - incidence
    others_c = others_raw - pd.DataFrame(others_raw).groupby(household).transform("mean").to_numpy()
    np.testing.assert_allclose(cross, (own_c * others_c).sum(axis=0), atol=1e-10)
    np.testing.assert_allclose(own, (own_c**2).sum(axis=0), atol=1e-10)
    np.testing.assert_allclose(others, (others_c**2).sum(axis=0), atol=1e-10)
    assert own[3] == 0.0 and cross[3] == 0.0 and own.min() == 0.0 and np.all(own[[0, 1, 2, 4]] > 0.5)


def test_visits_basket_correlation_needs_three_households_and_ranks_them():
    assert np.isnan(visits_basket_correlation(_prep()))  # only households 1 and 2 have >= 2 visits
    # household h visits h + 1 weeks buying h + 1 units each time: perfectly rank-correlated
    lines = [(h, 10 * h + w, 1, h + 1, 1.0, 0.0, w) for h in (1, 2, 3) for w in range(1, h + 2)]
    prep = prepare(MetricTables(pd.DataFrame(lines, columns=LINE_COLS), PRODUCTS, name="t"), [1, 2, 3, 4])
    assert visits_basket_correlation(prep) == pytest.approx(1.0)
    reversed_lines = [(h, 10 * h + w, 1, 5 - h, 1.0, 0.0, w) for h in (1, 2, 3) for w in range(1, h + 2)]
    prep = prepare(MetricTables(pd.DataFrame(reversed_lines, columns=LINE_COLS), PRODUCTS, name="t"), [1, 2, 3, 4])
    assert visits_basket_correlation(prep) == pytest.approx(-1.0)


# household 1 buys A: {1}, {2}, {1} in weeks 1-3, one trip each; household 2: A+B {1, 3} in
# one basket, then A {1}; household 3: A and B in two baskets of week 1, then A alone.
REPEATS = [
    (1, 1, 1, 1, 1.0, 0.0, 1), (1, 2, 2, 1, 1.0, 0.0, 2), (1, 3, 1, 1, 1.0, 0.0, 3),
    (2, 4, 1, 1, 1.0, 0.0, 1), (2, 4, 3, 1, 1.0, 0.0, 1), (2, 5, 1, 1, 1.0, 0.0, 2),
    (3, 6, 1, 1, 1.0, 0.0, 1), (3, 7, 3, 1, 1.0, 0.0, 1), (3, 8, 2, 1, 1.0, 0.0, 3),
]


def test_repeat_rates_by_hand():
    # repeat category weeks: h1 A w2 (previous {1}: neither), h1 A w3 (previous {2}: not it,
    # earlier {1, 2}: yes), h2 A w2 (previous {1}: both), h3 A w3 (previous {1}: neither)
    last, any_earlier = repeat_rates(_prep(REPEATS))
    assert last == pytest.approx(1 / 4) and any_earlier == pytest.approx(2 / 4)
    # no household buys a category twice
    assert all(np.isnan(repeat_rates(_prep([(1, 1, 1, 1, 1.0, 0.0, 1), (2, 2, 3, 1, 1.0, 0.0, 1)]))))


def test_category_count_dispersion_by_hand():
    # single-trip visits: h1 1, 1, 1 categories (mean 1); h2 2, 1 (mean 1.5); h3 has one
    # (its week 1 had two trips) so it is left out
    expected = np.std([1.0, 1.0, 1.0, 2 / 1.5, 1 / 1.5])
    assert category_count_dispersion(_prep(REPEATS)) == pytest.approx(expected)
    assert category_count_dispersion(_prep(REPEATS), min_weeks=3) == pytest.approx(0.0)  # h1 only
    assert np.isnan(category_count_dispersion(_prep(REPEATS), min_weeks=4))


# household, basket, product, quantity, sales_value, retail_disc, week
# h1: week 1 two lines, both discounted; week 2 two lines, neither (share 1/2, visits all-or-nothing)
# h2: week 1 lines discounted / not, week 2 the same (share 1/2, visits exactly at it)
# h3: one discounted line (below min_lines = 2)
DEALS = [
    (1, 1, 1, 1, 1.0, 0.5, 1), (1, 1, 2, 1, 1.0, 0.5, 1), (1, 2, 1, 1, 1.0, 0.0, 2), (1, 2, 3, 1, 1.0, 0.0, 2),
    (2, 3, 1, 1, 1.0, 0.5, 1), (2, 3, 2, 1, 1.0, 0.0, 1), (2, 4, 1, 1, 1.0, 0.2, 2), (2, 4, 3, 1, 1.0, 0.0, 2),
    (3, 5, 1, 1, 1.0, 0.5, 3),
]


def test_discount_share_spread_by_hand():
    spread, dispersion = discount_share_spread(_prep(DEALS), min_lines=2)
    assert spread == pytest.approx(0.0)  # h1 and h2 both at 1/2
    # h1: (2 - 1)^2 + (0 - 1)^2 = 2; h2: 0; each visit's binomial variance 2 * 1/2 * 1/2
    assert dispersion == pytest.approx(2 / (4 * 0.5))
    spread, _ = discount_share_spread(_prep(DEALS), min_lines=1)  # h3 (share 1) joins
    assert spread == pytest.approx(np.std([0.5, 0.5, 1.0]))
    assert all(np.isnan(discount_share_spread(_prep(DEALS), min_lines=5)))
    undiscounted = [line[:5] + (0.0,) + line[6:] for line in DEALS]
    spread, dispersion = discount_share_spread(_prep(undiscounted), min_lines=2)
    assert spread == 0.0 and np.isnan(dispersion)  # no variance to compare with


def test_discount_week_dispersion_leaves_nothing_when_the_baseline_is_saturated():
    # one household: its category-week effects fit every category-week's share exactly, so each
    # household-week's count equals its expectation, while lines inside a category-week still vary
    lines = [(1, 1, 1, 1, 1.0, 0.5, 1), (1, 1, 2, 1, 1.0, 0.0, 1), (1, 2, 1, 1, 1.0, 0.0, 2), (1, 2, 3, 1, 1.0, 0.3, 2),
             (1, 2, 2, 1, 1.0, 0.0, 2)]
    assert discount_week_dispersion(_prep(lines), min_lines=2) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(discount_week_dispersion(_prep(lines), min_lines=6))  # no household qualifies
    undiscounted = [line[:5] + (0.0,) + line[6:] for line in lines]
    assert np.isnan(discount_week_dispersion(_prep(undiscounted), min_lines=2))  # no variance to compare with


def _deal_weeks(lean_sd: float, seed: int = 0) -> pd.DataFrame:
    """Lines of 300 households x 8 weeks x 4 categories (4 products each, 3 lines per category-week), discounted
    with probability logistic(a_h + b_cw + e_hw), e_hw ~ N(0, lean_sd) shared by the household-week's categories."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 0.7, 300), rng.normal(0, 1.0, (4, 8))
    e = rng.normal(0, lean_sd, (300, 8)) if lean_sd else np.zeros((300, 8))
    h, c, w, k = np.meshgrid(np.arange(300), np.arange(4), np.arange(8), np.arange(3), indexing="ij")
    h, c, w, k = h.ravel(), c.ravel(), w.ravel(), k.ravel()
    p = 1 / (1 + np.exp(-(a[h] + b[c, w] + e[h, w])))
    discounted = rng.random(h.size) < p
    return pd.DataFrame({"household_id": h + 1, "basket_id": h * 8 + w + 1, "product_id": c * 4 + k + 1,
                         "quantity": 1, "sales_value": 1.0, "retail_disc": np.where(discounted, 0.4, 0.0),
                         "week": w + 1})[LINE_COLS]


def test_discount_week_dispersion_is_near_one_without_a_week_lean_and_grows_with_it():
    products = pd.DataFrame({"product_id": np.arange(1, 17), "product_category": np.repeat(list("ABCD"), 4),
                             "department": "GROCERY"})

    def measure(lean_sd):
        prep = prepare(MetricTables(_deal_weeks(lean_sd), products, name="t"), list(range(1, 9)))
        return discount_week_dispersion(prep)

    null, small, large = measure(0.0), measure(0.5), measure(1.0)
    assert 0.75 < null < 1.05  # binomial noise, a little below 1 from the in-sample fit
    assert small > null + 0.3 and large > small + 0.5


def test_interval_coverage_and_mid_pit_by_hand():
    replicates = np.array([[0.0, 10.0], [1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])
    # 50% interval of unit 0: quantiles 0.25 / 0.75 of 0..3 = 0.75 / 2.25
    assert interval_coverage(np.array([1.5, 10.0]), replicates, 0.5) == 1.0
    assert interval_coverage(np.array([2.5, 10.0]), replicates, 0.5) == 0.5
    assert interval_coverage(np.array([2.5, 11.0]), replicates, 0.9) == 0.5
    np.testing.assert_allclose(mid_pit(np.array([1.5, 10.0]), replicates), [0.5, 0.5])
    np.testing.assert_allclose(mid_pit(np.array([1.0, 12.0]), replicates), [0.25 + 0.125, 1.0])


def test_mid_pit_of_a_calibrated_discrete_model_is_uniform_on_average():
    rng = np.random.default_rng(0)
    rate = rng.uniform(1, 10, 4000)
    real = rng.poisson(rate)
    replicates = rng.poisson(rate, (400, rate.size))
    pit = mid_pit(real, replicates)
    assert pit.mean() == pytest.approx(0.5, abs=0.01)
    # inclusive ends over-cover a discrete outcome a little (ties at the ends); a continuous one is nominal
    assert 0.9 <= interval_coverage(real, replicates, 0.9) <= 0.96
    smooth = rng.gamma(rate, 1.0)
    assert interval_coverage(smooth, rng.gamma(rate, 1.0, (400, rate.size)), 0.9) == pytest.approx(0.9, abs=0.015)
    # an overdispersed truth is not covered as often, and its PITs pile up at the ends
    wide = rng.poisson(rate * rng.gamma(2.0, 0.5, rate.size))
    assert interval_coverage(wide, replicates, 0.9) < 0.8
    assert np.mean((mid_pit(wide, replicates) < 0.05) | (mid_pit(wide, replicates) > 0.95)) > 0.2
