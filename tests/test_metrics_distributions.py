"""Every metric of the suite on a tiny hand-built table (the worked example of docs/metrics.md),
and the vectorised groupings against naive per-definition references on a random table."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from bayes_retail.errors import DataError
from bayes_retail.metrics import METRICS, MetricTables, ks_statistic, prepare
from bayes_retail.metrics import distributions as dist

from metric_example import LINE_COLS, TINY_LINES
WEEKS = [1, 2, 3, 4]


def tiny_tables(lines=TINY_LINES, *, promo=True, name="tiny") -> MetricTables:
    """Products 1, 2 in category A, 3 in B, 4 in C (never bought).

    Calendar: product 1 on display in week 2, product 3 in the mailer in week 1;
    product 2 is listed in week 1 with neither flag (so it is not promoted).
    """
    products = pd.DataFrame(
        {"product_id": [1, 2, 3, 4], "product_category": ["A", "A", "B", "C"], "department": "GROCERY"}
    )
    calendar = pd.DataFrame(
        {"product_id": [1, 3, 2], "week": [2, 1, 1], "display": [True, False, False], "mailer": [False, True, False]}
    )
    return MetricTables(
        pd.DataFrame(lines, columns=LINE_COLS), products, calendar if promo else None, name=name
    )


@pytest.fixture(scope="module")
def tiny() -> dist.Prepared:
    return prepare(tiny_tables(), WEEKS)


# Visits (household, week), in order: (10,1) (10,3) (20,2) (20,3) (20,4).
# Purchased lines (household, product, week), in order:
# (10,1,1) (10,2,3) (10,3,1) (20,1,2) (20,1,3) (20,1,4) (20,2,3) (20,2,4) (20,3,4).
EXPECTED = {
    # h10: first week 1 -> window {1,2,3,4}, visits in 1, 3 -> 2/4; h20: window {2,3,4}, 3 visits -> 3/3
    "visit_probability": [0.5, 1.0],
    # (10,1): 1+2+1; (10,3): 1; (20,2): 3; (20,3): 1+1; (20,4): 1+1+1
    "basket_size": [4, 1, 3, 2, 3],
    # (10,1,1): two trips x 1 unit = 2; (10,3,1): 2; (20,1,2): 3; the rest 1
    "quantity": [2, 1, 2, 3, 1, 1, 1, 1, 1],
    # (10,1): 2+3+2; (10,3): 1.5; (20,2): 6; (20,3): 2+1.5; (20,4): 1+2+1.5
    "revenue": [7.0, 1.5, 6.0, 3.5, 4.5],
    # A is bought in all 5 visits; B in (10,1) and (20,4): 2/5
    "category_purchase": [1.0, 0.4],
    # h10: 3-1; h20: 3-2, 4-3
    "recency": [2, 1, 1],
    # product 1 weeks 1..4: 2, 3, 1, 1; product 2: 0, 0, 1+1, 1; product 3: 2, 0, 0, 1
    "sales_volume": [2, 3, 1, 1, 0, 0, 2, 1, 2, 0, 0, 1],
    # product 1: 14 / 7; product 2: 4.5 / 3; product 3: 4 / 3
    "price_distribution": [2.0, 1.5, 4 / 3],
    # A has 7 purchased lines: product 1 in 4, product 2 in 3; B has 2, all product 3
    "product_purchase": [4 / 7, 3 / 7, 1.0],
    # (10,1): A and B; (20,4): A and B; others only A
    "category_penetration": [2, 1, 1, 1, 2],
    # A: products 1, 2; B: product 3 (C never bought: not a value)
    "category_size": [2, 1],
    # (10,1): 1 of 3 lines discounted; (10,3): 1/1; (20,2): 1/1; (20,3): 0/2; (20,4): 1/3
    "marketing_signal": [1 / 3, 1.0, 1.0, 0.0, 1 / 3],
    # A: promoted cell (1, w2) = 3 units -> mean 3; the 7 other cells hold 2+1+1+0+0+2+1 = 7 -> mean 1
    # B: promoted cell (3, w1) = 2 -> mean 2; other cells 0+0+1 over 3 -> 1/3; ratio 6
    "promo_response": [math.log(3.0), math.log(6.0)],
    # h10: its only non-first category week (A, w3) buys product 2, new to it -> 0/1
    # h20: (A, w3) and (A, w4) both rebuy product 1 -> 2/2; (B, w4) is B's first week
    "loyalty": [0.0, 1.0],
    # (10, A): {1} -> {2} changed: 1/1; (20, A): {1} -> {1,2} changed, {1,2} -> {1,2} same: 1/2
    "brand_switching": [1.0, 0.5],
}


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_on_tiny_table(tiny, name):
    values = METRICS[name].function(tiny)
    assert values.dtype == np.float64 and values.ndim == 1
    np.testing.assert_allclose(values, EXPECTED[name], rtol=0, atol=1e-12)


def test_registry_order_tiers_and_expected_cover_every_metric():
    assert list(METRICS) == list(EXPECTED)
    tiers = [spec.tier for spec in METRICS.values()]
    assert tiers == [1] * 4 + [2] * 4 + [3] * 7
    assert [n for n, s in METRICS.items() if s.needs_promo] == ["promo_response"]


def test_trips_per_visit(tiny):
    # (10,1) has baskets 100 and 101
    np.testing.assert_array_equal(dist.trips_per_visit(tiny), [2, 1, 1, 1, 1])


def test_entity_series_are_labelled(tiny):
    assert list(dist.category_purchase_by_category(tiny).index) == ["A", "B"]
    assert list(dist.price_by_product(tiny).index) == [1, 2, 3]
    assert dist.promo_response_by_category(tiny)["B"] == pytest.approx(math.log(6.0))


def test_hand_ks_between_two_tiny_tables(tiny):
    # The second table lacks household 20's week-4 basket (202); scoring weeks stay 1..4.
    other = prepare(tiny_tables([line for line in TINY_LINES if line[1] != 202]), WEEKS)
    # basket_size: [4,1,3,2,3] vs [4,1,3,2]; ECDFs at 1,2,3,4: .2/.25, .4/.5, .8/.75, 1/1 -> 0.1
    assert ks_statistic(dist.basket_size(tiny), dist.basket_size(other)) == pytest.approx(0.1)
    # visit_probability: [0.5, 1] vs [0.5, 2/3] (h20 now visits 2 of its 3 weeks); at 2/3: .5 vs 1 -> 0.5
    np.testing.assert_allclose(dist.visit_probability(other), [0.5, 2 / 3])
    assert ks_statistic(dist.visit_probability(tiny), dist.visit_probability(other)) == pytest.approx(0.5)
    # recency: [2,1,1] vs [2,1]; at 1: 2/3 vs 1/2 -> 1/6
    assert ks_statistic(dist.recency(tiny), dist.recency(other)) == pytest.approx(1 / 6)
    # brand_switching: [1, 0.5] vs [1, 1] (h20 keeps only {1} -> {1,2}); at 0.5: 1/2 vs 0 -> 0.5
    np.testing.assert_allclose(dist.brand_switching(other), [1.0, 1.0])
    assert ks_statistic(dist.brand_switching(tiny), dist.brand_switching(other)) == pytest.approx(0.5)


def test_lines_outside_the_scoring_weeks_are_ignored():
    prep = prepare(tiny_tables(), [1, 2, 3])
    # week 4 gone: h20 visits 2, 3; window {2,3}
    np.testing.assert_allclose(dist.visit_probability(prep), [2 / 3, 1.0])
    assert prep.units.shape == (3, 3)


def test_promo_response_undefined_categories_are_left_out():
    tables = tiny_tables()
    tables.promo_weeks = tables.promo_weeks[tables.promo_weeks["product_id"] != 3]
    prep = prepare(tables, WEEKS)
    # B has no promoted product-week any more: undefined, left out and counted
    by_cat = dist.promo_response_by_category(prep)
    assert np.isnan(by_cat["B"])
    np.testing.assert_allclose(dist.promo_response(prep), [math.log(3.0)])
    assert dist.left_out(prep)["promo_response"]["count"] == 1


def test_promo_response_zero_promoted_units_is_undefined():
    tables = tiny_tables()
    # A's only promoted cell is (product 2, week 1), when nobody bought it: zero promoted units,
    # so A is undefined; B's promoted cell (3, w1) still holds 2 units -> log 6.
    tables.promo_weeks = pd.DataFrame({"product_id": [2, 3], "week": [1, 1], "display": [True, True], "mailer": False})
    np.testing.assert_allclose(dist.promo_response(prepare(tables, WEEKS)), [math.log(6.0)])


def test_promo_response_needs_a_calendar():
    prep = prepare(tiny_tables(promo=False), WEEKS)
    assert prep.promoted is None
    with pytest.raises(ValueError, match="no promotion calendar"):
        dist.promo_response(prep)
    values, skipped = dist.evaluate(prep)
    assert "promo_response" in skipped and "promo_response" not in values
    assert len(values) == len(METRICS) - 1


def test_left_out_counts(tiny):
    out = dist.left_out(tiny)
    assert out["promo_response"]["count"] == 0
    assert out["loyalty"]["count"] == 0  # both households have a repeat category week
    # household-categories: (10,A) (10,B) (20,A) (20,B); B has one purchase week for both
    assert (out["brand_switching"]["count"], out["brand_switching"]["of"]) == (2, 4)


def test_unknown_product_raises():
    tables = tiny_tables(TINY_LINES + [(10, 103, 99, 1, 1.0, 0.0, 2)])
    with pytest.raises(DataError, match="missing from the product table"):
        prepare(tables, WEEKS)


# ----------------------------------------------------------------- naive references


def random_lines(seed: int, n_households=40, n_products=15, n_weeks=9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    return pd.DataFrame(
        {
            "household_id": rng.integers(0, n_households, n) * 7 + 3,
            "basket_id": rng.integers(0, 60, n),
            "product_id": rng.integers(0, n_products, n) + 100,
            "quantity": rng.integers(1, 4, n),
            "sales_value": rng.uniform(0.5, 5, n).round(2),
            "retail_disc": np.where(rng.random(n) < 0.4, 0.3, 0.0),
            "week": rng.integers(0, n_weeks, n) * 2 + 5,  # weeks 5, 7, ..., gaps of 2
        }
    )


def random_tables(seed: int) -> MetricTables:
    lines = random_lines(seed)
    products = pd.DataFrame({"product_id": np.arange(100, 115), "product_category": list("ABCDE") * 3})
    return MetricTables(lines, products, name="random")


def naive_metrics(lines: pd.DataFrame, products: pd.DataFrame, weeks: list[int]) -> dict[str, list[float]]:
    """Straight from the definitions, with Python sets and dicts."""
    cat = dict(zip(products["product_id"], products["product_category"]))
    visits = defaultdict(list)
    basket = defaultdict(set)  # (h, c, w) -> products
    for row in lines.itertuples():
        visits[(row.household_id, row.week)].append(row)
        basket[(row.household_id, cat[row.product_id], row.week)].add(row.product_id)
    out: dict[str, list[float]] = defaultdict(list)
    households = sorted({h for h, _ in visits})
    for h in households:
        own = sorted(w for hh, w in visits if hh == h)
        window = [w for w in weeks if w >= own[0]]
        out["visit_probability"].append(len(own) / len(window))
        out["recency"] += [b - a for a, b in zip(own, own[1:])]
        for w in own:
            rows = visits[(h, w)]
            out["category_penetration"].append(len({cat[r.product_id] for r in rows}))
            out["marketing_signal"].append(sum(r.retail_disc > 0 for r in rows) / len(rows))
        repeat_weeks = repeats = 0
        for c in sorted({c for hh, c, _ in basket if hh == h}):
            cweeks = sorted(w for hh, cc, w in basket if hh == h and cc == c)
            seen = set(basket[(h, c, cweeks[0])])
            for w in cweeks[1:]:
                repeat_weeks += 1
                repeats += bool(basket[(h, c, w)] & seen)
                seen |= basket[(h, c, w)]
            if len(cweeks) >= 2:
                sets = [basket[(h, c, w)] for w in cweeks]
                out["brand_switching"].append(sum(a != b for a, b in zip(sets, sets[1:])) / (len(sets) - 1))
        if repeat_weeks:
            out["loyalty"].append(repeats / repeat_weeks)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_metrics_match_naive_definitions(seed):
    tables = random_tables(seed)
    weeks = list(range(5, 23, 2))
    prep = prepare(tables, weeks)
    naive = naive_metrics(tables.transactions, tables.products, weeks)
    for name in ("visit_probability", "recency", "category_penetration", "marketing_signal", "loyalty", "brand_switching"):
        np.testing.assert_allclose(METRICS[name].function(prep), naive[name], err_msg=name)
