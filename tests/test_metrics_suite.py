"""The suite end to end: footing, scores, entity-matched checks, floor, serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bayes_retail.errors import DataError
from bayes_retail.metrics import (
    METRICS,
    MetricTables,
    SuiteResult,
    compute_suite,
    put_on_same_footing,
    real_vs_real_floor,
)

from metric_example import LINE_COLS, TINY_LINES
N_CATEGORIES = 6
N_PRODUCTS = 30


def make_products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": np.arange(1000, 1000 + N_PRODUCTS),
            # uneven category sizes (2 .. 9 products), so category values differ between categories
            "product_category": np.repeat([f"CAT{i}" for i in range(N_CATEGORIES)], [2, 3, 4, 5, 7, 9]),
            "department": "GROCERY",
        }
    )


def make_lines(seed: int, *, n_households=40, weeks=range(1, 11), first_household=1) -> pd.DataFrame:
    """Households with their own visit rate, category tastes and product shares."""
    rng = np.random.default_rng(seed)
    weeks = list(weeks)
    popularity = rng.dirichlet(np.full(N_PRODUCTS, 0.7))
    price = rng.uniform(0.8, 6.0, N_PRODUCTS)
    rows, basket = [], first_household * 10_000
    for h in range(first_household, first_household + n_households):
        rate = rng.uniform(0.3, 0.9)
        start = rng.integers(0, len(weeks) // 2)
        for w in weeks[start:]:
            if rng.random() > rate:
                continue
            for _ in range(rng.integers(1, 3)):
                basket += 1
                for p in rng.choice(N_PRODUCTS, size=rng.integers(1, 6), p=popularity):
                    q = int(rng.integers(1, 4))
                    disc = float(rng.random() < 0.3) * 0.2 * price[p]
                    rows.append((h, basket, 1000 + p, q, round(q * price[p] - disc, 2), round(disc, 2), w))
    return pd.DataFrame(rows, columns=LINE_COLS)


def make_calendar(seed: int, weeks=range(1, 11)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grid = pd.MultiIndex.from_product([np.arange(1000, 1000 + N_PRODUCTS), list(weeks)], names=["product_id", "week"])
    cal = grid.to_frame(index=False)
    cal["display"] = rng.random(len(cal)) < 0.2
    cal["mailer"] = rng.random(len(cal)) < 0.15
    return cal


def make_tables(seed: int, *, name="real", promo=True, **kwargs) -> MetricTables:
    return MetricTables(make_lines(seed, **kwargs), make_products(), make_calendar(seed) if promo else None, name=name)


@pytest.fixture(scope="module")
def real() -> MetricTables:
    return make_tables(0)


@pytest.fixture(scope="module")
def identical(real) -> SuiteResult:
    syn = MetricTables(real.transactions.copy(), real.products, real.promo_weeks, name="synthetic")
    return compute_suite(real, syn, seed=0)


# ----------------------------------------------------------------- identical input


def test_identical_input_scores_one_everywhere(identical):
    assert list(identical.metrics) == list(METRICS)
    for m in identical.metrics.values():
        assert (m.ks, m.score) == (0.0, 1.0), m.name
        assert m.n_real == m.n_synthetic and m.median_real == m.median_synthetic
    assert identical.tier_scores == {1: 1.0, 2: 1.0, 3: 1.0}
    assert identical.overall == 1.0
    for check in identical.complements["entity_matched"].values():
        assert check["mean_abs_log_ratio"] == 0.0 and check["missing_sales_share"] == 0.0
    assert identical.complements["tv"] == {"quantity": 0.0, "sales_volume": 0.0}
    assert identical.skipped["metrics"] == {}


def test_different_tables_score_below_one(real):
    res = compute_suite(real, make_tables(1, name="synthetic"), seed=0)
    assert all(0 <= m.ks <= 1 and m.score == pytest.approx(1 - m.ks) for m in res.metrics.values())
    assert any(m.ks > 0 for m in res.metrics.values())
    assert 0 <= res.overall < 1
    assert res.overall == pytest.approx(sum(w * res.tier_scores[t] for t, w in res.tier_weights.items()))


# ----------------------------------------------------------------- shuffled categories


def test_shuffled_category_labels_keep_ks_but_fail_entity_check(real):
    # a bijection of category names: CATi -> CAT(i+1 mod 6)
    relabel = {f"CAT{i}": f"CAT{(i + 1) % N_CATEGORIES}" for i in range(N_CATEGORIES)}
    products = real.products.assign(product_category=real.products["product_category"].map(relabel))
    syn = MetricTables(real.transactions.copy(), products, real.promo_weeks, name="synthetic")
    res = compute_suite(real, syn, seed=0)
    for name in ("category_purchase", "category_size", "promo_response"):
        assert res.metrics[name].ks == 0.0, name
        check = res.complements["entity_matched"][name]
        assert check["n_matched"] == N_CATEGORIES
        assert check["mean_abs_log_ratio"] > 0.1, name
    # products keep their own values: the product-level checks still match exactly
    assert res.complements["entity_matched"]["product_purchase"]["mean_abs_log_ratio"] == 0.0
    assert res.complements["entity_matched"]["price_distribution"]["mean_abs_log_ratio"] == 0.0


def _two_category_tables(lines, category_of_3="B", name="t") -> MetricTables:
    products = pd.DataFrame(
        {"product_id": [1, 2, 3], "product_category": ["A", "A", category_of_3], "department": "GROCERY"}
    )
    return MetricTables(pd.DataFrame(lines, columns=LINE_COLS), products, name=name)


TINY = TINY_LINES


def test_entity_check_by_hand():
    # category_purchase: real A = 5/5 visits, B = 2/5. Swap the labels on the synthetic
    # side: A = 2/5, B = 1. Both entities move by |log 2.5|, whatever the weights.
    real = _two_category_tables(TINY, name="real")
    swapped = MetricTables(
        real.transactions.copy(),
        real.products.assign(product_category=["B", "B", "A"]),
        name="synthetic",
    )
    res = compute_suite(real, swapped)
    assert res.metrics["category_purchase"].ks == 0.0
    check = res.complements["entity_matched"]["category_purchase"]
    assert check["mean_abs_log_ratio"] == pytest.approx(math.log(2.5))
    # category_size: real A = 2, B = 1; swapped A = 1, B = 2 -> |log 2| each
    assert res.complements["entity_matched"]["category_size"]["mean_abs_log_ratio"] == pytest.approx(math.log(2))


def test_missing_entities_share_of_real_sales():
    real = _two_category_tables(TINY, name="real")
    # the synthetic side never buys product 3 (category B): B's real sales are 3 + 1 of 22.5
    syn = _two_category_tables([line for line in TINY if line[2] != 3], name="synthetic")
    check = compute_suite(real, syn).complements["entity_matched"]["category_size"]
    assert (check["n_entities_real"], check["n_matched"]) == (2, 1)
    assert check["missing_sales_share"] == pytest.approx(4 / 22.5)
    # A: 2 products on both sides -> matched with ratio 1
    assert check["mean_abs_log_ratio"] == 0.0


# ----------------------------------------------------------------- footing


def test_footing_equalises_households_and_is_seeded(real):
    small = make_tables(1, name="synthetic", n_households=25, first_household=500)
    r1, s1, info = put_on_same_footing(real, small, seed=3)
    r2, _, _ = put_on_same_footing(real, small, seed=3)
    r3, _, _ = put_on_same_footing(real, small, seed=4)
    assert r1.households.size == s1.households.size == info["households"]["real"]["used"]
    assert info["households"]["real"]["clean"] == real.households.size > 25
    assert info["households"]["synthetic"]["used"] == small.households.size == 25
    np.testing.assert_array_equal(r1.households, r2.households)
    assert not np.array_equal(r1.households, r3.households)
    # exactly numpy's choice on the sorted ids
    expected = np.sort(np.random.default_rng(3).choice(real.households, size=25, replace=False))
    np.testing.assert_array_equal(r1.households, expected)
    assert info["rows_removed"]["real"]["subsampled_households"] == len(real.transactions) - len(r1.transactions)
    np.testing.assert_array_equal(s1.households, small.households)  # the smaller side is untouched


def test_footing_keeps_common_weeks_only(real):
    later = make_tables(1, name="synthetic", weeks=range(5, 15))
    r, s, info = put_on_same_footing(real, later)
    assert info["weeks"] == [5, 6, 7, 8, 9, 10]
    assert set(r.transactions["week"]) <= set(range(5, 11)) and set(s.transactions["week"]) <= set(range(5, 11))
    assert info["rows_removed"]["synthetic"]["outside_common_weeks"] == int((later.transactions["week"] > 10).sum())
    res = compute_suite(real, later)
    # the product-week grid spans the 6 common weeks
    assert res.metrics["sales_volume"].n_real % 6 == 0
    with pytest.raises(DataError, match="no week in common"):
        put_on_same_footing(real, make_tables(1, weeks=range(20, 25)))


def test_footing_applies_the_row_rules_to_the_synthetic_side(real):
    syn_lines = real.transactions.copy()
    extra = pd.DataFrame(
        [
            (1, 1, 1000, 0, 1.0, 0.0, 3),  # quantity 0
            (1, 1, 1000, 1, -1.0, 0.0, 3),  # negative sales
            (1, 1, 9999, 1, 1.0, 0.0, 3),  # unknown product
            (1, 1, 2000, 1, 5.0, 0.0, 3),  # fuel
        ],
        columns=LINE_COLS,
    )
    products = pd.concat(
        [real.products, pd.DataFrame({"product_id": [2000], "product_category": ["GAS"], "department": ["FUEL"]})]
    )
    syn = MetricTables(pd.concat([syn_lines, extra], ignore_index=True), products, real.promo_weeks, name="synthetic")
    r, s, info = put_on_same_footing(real, syn)
    removed = info["rows_removed"]["synthetic"]
    assert (removed["non_positive"], removed["unknown_product"], removed["non_grocery"]) == (2, 1, 1)
    assert info["rows_removed"]["real"]["non_positive"] == 0
    pd.testing.assert_frame_equal(s.transactions, r.transactions)
    # the cleaned synthetic side equals the real one: every metric scores 1
    assert compute_suite(real, syn).overall == 1.0


def test_seed_must_be_an_integer(real):
    with pytest.raises(ValueError, match="seed"):
        compute_suite(real, real, seed=1.5)


# ----------------------------------------------------------------- promo calendar


def test_missing_promo_calendar_skips_promo_response_only(real):
    syn = make_tables(1, name="synthetic", promo=False)
    res = compute_suite(real, syn)
    assert "promo_response" not in res.metrics
    assert "no promotion calendar" in res.skipped["metrics"]["promo_response"]
    assert set(res.metrics) == set(METRICS) - {"promo_response"}
    assert "promo_response" not in res.complements["entity_matched"]
    assert len(res.tier_scores) == 3 and res.overall is not None
    assert "promo_response" in res.format_table() and "skipped" in res.format_table()


def test_left_out_counts_are_reported(real):
    res = compute_suite(real, make_tables(1, name="synthetic"))
    left = res.skipped["left_out"]
    assert set(left) == {"promo_response", "loyalty", "brand_switching"}
    for name in left:
        assert left[name]["real"] + res.metrics[name].n_real == left[name]["real_of"]
        assert left[name]["synthetic"] + res.metrics[name].n_synthetic == left[name]["synthetic_of"]


# ----------------------------------------------------------------- floor


def test_real_vs_real_floor(real):
    floor = real_vs_real_floor(real, seed=0)
    assert list(floor) == list(METRICS)
    assert all(0 <= ks <= 1 for ks in floor.values())
    assert floor == real_vs_real_floor(real, seed=0)
    assert floor != real_vs_real_floor(real, seed=1)
    res = compute_suite(real, make_tables(1, name="synthetic"), floor=True)
    assert {m.name: m.floor_ks for m in res.metrics.values()} == floor
    given = compute_suite(real, make_tables(1, name="synthetic"), floor={"basket_size": 0.01})
    assert given.metrics["basket_size"].floor_ks == 0.01 and given.metrics["revenue"].floor_ks is None


# ----------------------------------------------------------------- serialisation and display


def test_round_trip_through_json(tmp_path, real):
    res = compute_suite(real, make_tables(1, name="synthetic"), floor=True)
    path = tmp_path / "metrics.json"
    res.to_json(path)
    data = json.loads(path.read_text())
    assert SuiteResult.from_dict(data) == res
    assert set(data["metrics"]) == set(METRICS)
    for name, entry in data["metrics"].items():
        for key in ("ks", "score", "tier", "n_real", "n_synthetic", "median_real", "median_synthetic", "floor_ks"):
            assert key in entry, (name, key)
        assert entry["tier"] == METRICS[name].tier
    assert set(data["tier_scores"]) == {"1", "2", "3"}
    assert not list(tmp_path.glob("*.tmp"))


def test_each_side_is_summarised_by_its_quantiles(real):
    from bayes_retail.metrics.distributions import evaluate, prepare
    from bayes_retail.metrics.suite import QUANTILE_PROBS, put_on_same_footing

    other = make_tables(1, name="synthetic")
    res = compute_suite(real, other, seed=0)
    real_f, syn_f, footing = put_on_same_footing(real, other, seed=0)
    weeks = np.asarray(footing["weeks"])
    values = evaluate(prepare(syn_f, weeks))[0]
    assert QUANTILE_PROBS[0] == 0.0 and QUANTILE_PROBS[-1] == 1.0 and len(QUANTILE_PROBS) == 41
    for name, m in res.metrics.items():
        np.testing.assert_allclose(m.quantiles_synthetic, np.quantile(values[name], QUANTILE_PROBS))
        assert m.quantiles_real[0] <= m.median_real <= m.quantiles_real[-1]
    assert SuiteResult.from_dict({**res.to_dict()}).metrics["basket_size"].quantiles_real == \
        res.metrics["basket_size"].quantiles_real
    older = res.to_dict()  # a metrics.json written before the quantiles were stored still reads
    for entry in older["metrics"].values():
        del entry["quantiles_real"], entry["quantiles_synthetic"]
    assert SuiteResult.from_dict(older).metrics["basket_size"].quantiles_real == []


def test_frame_and_table(identical):
    frame = identical.to_frame()
    assert list(frame.columns) == [
        "name", "tier", "ks", "score", "floor_ks", "n_real", "n_synthetic", "median_real", "median_synthetic"
    ]
    assert list(frame["name"]) == list(METRICS) and (frame["score"] == 1.0).all()
    text = identical.format_table()
    for name in METRICS:
        assert name in text
    assert text.splitlines()[-1].split() == ["overall", "1.0000"]


def test_pricing_plugs_into_the_suite(real, tmp_path):
    panel = pd.DataFrame(
        {"product_id": [1000, 1000, 1001], "week": [1, 2, 1], "shelf_price": [2.0, 2.5, 3.0],
         "depth": [0.0, 0.2, np.nan], "display": [False, True, False], "mailer": False}
    )
    res = compute_suite(real, real, real_prices=panel, synthetic_prices=panel)
    assert res.pricing is not None and res.pricing.base_price_ks == 0.0
    res.to_json(tmp_path / "m.json")
    assert SuiteResult.from_dict(json.loads((tmp_path / "m.json").read_text())) == res
    one_sided = compute_suite(real, real, real_prices=panel)
    assert one_sided.pricing is None and "price panel" in one_sided.skipped["metrics"]["pricing"]


# ----------------------------------------------------------------- full data (slow)


@pytest.mark.slow
def test_real_vs_real_floor_on_the_embedded_data(tmp_path):
    from bayes_retail.data import load_data

    real = load_data(cache_dir=tmp_path).metric_tables("real")
    floor = real_vs_real_floor(real, seed=0)
    assert list(floor) == list(METRICS)
    for name, ks in floor.items():
        assert 0 <= ks <= 0.15, (name, ks)
