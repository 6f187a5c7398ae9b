"""Promotion policies: overrides, validation, and the what-if comparison."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from bayes_retail.errors import DataError
from bayes_retail.simulate.policy import apply_policy, compare_totals, read_policy
from bayes_retail.simulate.run import SimulationSpec, draw_world, simulate_customers, what_if, with_prices
from bayes_retail.simulate.synthetic import synthetic_catalogue, synthetic_draw, synthetic_prices, synthetic_templates

N_WEEKS = 10
WEEKS = np.arange(N_WEEKS) + 2


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(21)
    catalogue = synthetic_catalogue(rng, n_categories=3, items=5, tail=2)
    prices = synthetic_prices(rng, catalogue, N_WEEKS)
    prices = dataclasses.replace(prices, depth=np.where(np.arange(prices.depth.shape[0])[:, None] == 0, 0.0, prices.depth))
    draw = synthetic_draw(rng, catalogue, N_WEEKS, n_classes=2, state=0.0)
    # one price-sensitive class structure for everyone, one item per occasion, no stockpiling response
    theta = np.tile([[-1.0, -2.0, 0.0, 0.1, 0.0, -0.1]], (2, 1))
    draw = dataclasses.replace(draw, class_coefficients=theta, log_extra_rate=np.full(3, -30.0), kappa=np.zeros(3),
                               category_intercept=np.full(3, -0.5))
    templates = synthetic_templates(rng, 50, catalogue.n_categories, N_WEEKS, n_classes=2)

    def worlds(d, stockpiling=0.0):
        d_draw = dataclasses.replace(draw, kappa=np.full(3, stockpiling))
        return draw_world(d, d_draw, templates, prices, catalogue, signal_sd=1.0, entry_weeks=np.zeros(3, np.int64),
                          week_numbers=WEEKS)

    return catalogue, prices, worlds


def test_a_policy_overrides_only_its_product_weeks(setting):
    catalogue, prices, _ = setting
    policy = pd.DataFrame({"product_id": catalogue.product_ids[[0, 1]], "week": [3, 5],
                           "depth": [0.3, np.nan], "display": [1, 0]})
    out = apply_policy(prices, catalogue, WEEKS, policy)
    assert out.depth[0, 1] == 0.3 and out.display[0, 1] == 1 and out.display[1, 3] == 0
    assert out.depth[1, 3] == prices.depth[1, 3]  # a missing value keeps the baseline's
    changed = (out.depth != prices.depth) | (out.display != prices.display) | (out.mailer != prices.mailer)
    assert set(zip(*np.nonzero(changed))) <= {(0, 1), (1, 3)}
    np.testing.assert_array_equal(out.shelf, prices.shelf)

    rows = catalogue.item_product[(catalogue.item_category == 0) & (catalogue.item_product >= 0)]

    def half_off_category_0(table):
        return table.loc[table["product_id"].isin(catalogue.product_ids[rows])].assign(depth=0.5)[["product_id", "week", "depth"]]

    out = apply_policy(prices, catalogue, WEEKS, half_off_category_0)
    assert np.all(out.depth[rows] == 0.5)
    others = np.setdiff1d(np.arange(prices.depth.shape[0]), rows)
    np.testing.assert_array_equal(out.depth[others], prices.depth[others])


@pytest.mark.parametrize(("table", "message"), [
    ({"product_id": [123456789], "week": [3], "depth": [0.2]}, "unknown product_id 123456789"),
    ({"product_id": [1000], "week": [99], "depth": [0.2]}, "week 99, outside the simulated weeks 2-11"),
    ({"product_id": [1000], "week": [3], "depth": [1.5]}, "depth 1.5 outside"),
    ({"product_id": [1000, 1000], "week": [3, 3], "depth": [0.1, 0.2]}, "appears twice"),
    ({"product_id": [1000], "depth": [0.2]}, "missing \\['week'\\]"),
    ({"product_id": [1000], "week": [3]}, "at least one of"),
    ({"product_id": [1000], "week": [3], "depth": [0.1], "colour": ["red"]}, "unknown policy column"),
    ({"product_id": [1000], "week": [3], "display": [2]}, "display must be 0/1"),
])
def test_bad_policies_are_named(setting, table, message):
    catalogue, prices, _ = setting
    with pytest.raises(ValueError, match=message):
        apply_policy(prices, catalogue, WEEKS, pd.DataFrame(table))


def test_policy_files_are_read_and_bad_ones_named(tmp_path):
    path = tmp_path / "policy.csv"
    pd.DataFrame({"product_id": [1000], "week": [3], "depth": [0.25]}).to_csv(path, index=False)
    assert read_policy(path)["depth"].tolist() == [0.25]
    bad = tmp_path / "bad.csv"
    bad.write_text("product,week\n1,2\n")
    with pytest.raises(DataError, match="bad.csv"):
        read_policy(bad)
    with pytest.raises(DataError, match="no such policy file"):
        read_policy(tmp_path / "missing.csv")


def test_a_deeper_discount_raises_the_promoted_products_units_by_the_logit_share_ratio(setting):
    catalogue, prices, worlds = setting
    spec = SimulationSpec(customers=3000, draws=(0,), seed=5, batch_size=3000)
    policy = pd.DataFrame({"product_id": catalogue.product_ids[0], "week": WEEKS, "depth": 0.5})
    base = worlds(0)
    alt = with_prices(base, apply_policy(base.prices, catalogue, WEEKS, policy), catalogue)
    lines = {arm: simulate_customers(w, catalogue, np.arange(spec.customers), spec) for arm, w in (("b", base), ("p", alt))}
    target = catalogue.product_ids[0]
    units = {arm: t.loc[t["product_id"] == target, "quantity"].sum() for arm, t in lines.items()}
    # occasions do not depend on depth here: expected lines of the product follow its logit share per week
    occasions = lines["b"].assign(c=catalogue.item_category[catalogue.product_item()[
        pd.Index(catalogue.product_ids).get_indexer(lines["b"]["product_id"])]])
    per_week = occasions.loc[occasions["c"] == 0].groupby("week")[["customer"]].nunique()["customer"]
    share = {arm: w.tables[0][per_week.index.to_numpy() - 2, 0, 0] for arm, w in (("b", base), ("p", alt))}
    expected = (per_week.to_numpy() * share["p"]).sum() / (per_week.to_numpy() * share["b"]).sum()
    n_lines = {arm: (t["product_id"] == target).sum() for arm, t in lines.items()}
    assert expected > 1.5  # -2 x log(1 - 0.5) = +1.39 in utility: a sizeable share gain
    assert abs(n_lines["p"] / n_lines["b"] - expected) < 0.12 * expected
    assert units["p"] > units["b"]


def test_what_if_with_an_empty_change_gives_zero_difference_and_a_real_one_a_positive_lift(setting):
    catalogue, _, worlds = setting
    spec = SimulationSpec(customers=400, draws=(0, 1, 2), seed=2, batch_size=150)
    same = pd.DataFrame({"product_id": [catalogue.product_ids[3]], "week": [4], "mailer": [np.nan]})
    summary, per_draw = what_if(worlds, catalogue, spec, same)
    assert list(summary["metric"]) == ["revenue", "units", "visits"]
    assert (per_draw["baseline"] == per_draw["policy"]).all() and (summary["difference_median"] == 0).all()
    # with a stockpiling response, deeper discounts raise units (quantity per line), not only shares
    deep = pd.DataFrame({"product_id": catalogue.product_ids[:4], "week": 5, "depth": 0.6})
    summary, per_draw = what_if(lambda d: worlds(d, stockpiling=2.0), catalogue, spec, deep)
    units = summary.set_index("metric").loc["units"]
    assert units["draws"] == 3 and units["difference_q0.05"] >= 0 and units["lift_median"] > 0
    assert {"baseline_median", "policy_q0.95", "lift_q0.05"} <= set(summary.columns)
    # batches one at a time or three side by side: the same totals, exactly
    for threads in (1, 3):
        _, again = what_if(lambda d: worlds(d, stockpiling=2.0), catalogue, spec, deep, threads=threads)
        pd.testing.assert_frame_equal(again, per_draw, check_exact=True)


def test_compare_totals_summarises_draws():
    per_draw = pd.DataFrame({"draw": [0, 1, 2, 3], "metric": "units", "baseline": [10.0, 10, 10, 10],
                             "policy": [11.0, 12, 13, 14]})
    row = compare_totals(per_draw, prob=0.5).iloc[0]
    assert row["difference_median"] == 2.5 and row["lift_median"] == pytest.approx(0.25)
    assert row["difference_q0.25"] == pytest.approx(1.75) and row["difference_q0.75"] == pytest.approx(3.25)
