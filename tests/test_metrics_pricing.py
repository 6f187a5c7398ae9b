"""Pricing components on hand-built product-week price panels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bayes_retail.errors import DataError
from bayes_retail.metrics import pricing_metrics
from bayes_retail.metrics.pricing import PricingResult

NAN = np.nan


def panel(shelf: dict[int, list[float]], depth: dict[int, list[float]]) -> pd.DataFrame:
    rows = []
    for pid in shelf:
        for i, (s, d) in enumerate(zip(shelf[pid], depth[pid])):
            rows.append({"product_id": pid, "week": i + 1, "shelf_price": s, "depth": d, "display": d > 0, "mailer": False})
    return pd.DataFrame(rows)


# real: product 1's median shelf price is 2, product 2's is 10 (week 4 unknown)
REAL = panel({1: [2, 2, 2, 1.5], 2: [10, 10, 12, NAN]}, {1: [0, NAN, 0.25, NAN], 2: [NAN, 0.1, 0, 0]})
# synthetic: constant prices, product 2 twice as dear as in the real panel
SYN = panel({1: [2, 2, 2, 2], 2: [20, 20, 20, 20]}, {1: [0.25, 0.25, 0, NAN], 2: [0, 0, 0, 0.1]})


def test_pricing_by_hand():
    res = pricing_metrics(REAL, SYN)
    # relative prices: real [0,0,0,log .75, 0,0,log 1.2], synthetic eight zeros.
    # ECDF at log .75: 1/7 vs 0; at 0: 6/7 vs 1 -> KS 1/7
    assert res.base_price_ks == pytest.approx(1 / 7)
    assert res.base_price_score == pytest.approx(6 / 7)
    # raw: real [1.5,2,2,2,10,10,12], synthetic [2,2,2,2,20,20,20,20]; at 12: 1 vs 1/2 -> 0.5:
    # the catalogue mix (product 2's level) dominates the raw comparison
    assert res.raw_shelf_price_ks == pytest.approx(0.5)
    # observed depths: real [0, .25, .1, 0, 0] -> 2 of 5 discounted; synthetic
    # [.25, .25, 0, 0, 0, 0, .1] -> 3 of 7
    assert res.promo_frequency_real == pytest.approx(0.4)
    assert res.promo_frequency_synthetic == pytest.approx(3 / 7)
    assert res.promo_frequency_diff == pytest.approx(3 / 7 - 0.4)
    assert res.promo_frequency_abs_diff == pytest.approx(1 / 35)
    # depth > 0: real [.1, .25], synthetic [.1, .25, .25]; at .1: 1/2 vs 1/3 -> 1/6
    assert res.promo_discount_ks == pytest.approx(1 / 6)
    assert res.promo_discount_score == pytest.approx(5 / 6)
    assert res.n_real == {"shelf": 7, "depth_observed": 5, "discounted": 2}
    assert res.n_synthetic == {"shelf": 8, "depth_observed": 7, "discounted": 3}


def test_signed_difference_flips_with_the_sides():
    assert pricing_metrics(SYN, REAL).promo_frequency_diff == pytest.approx(-(3 / 7 - 0.4))


def test_identical_panels_score_one():
    res = pricing_metrics(REAL, REAL.copy())
    assert res.base_price_ks == 0 and res.promo_discount_ks == 0 and res.promo_frequency_diff == 0


def test_weeks_restrict_both_panels():
    res = pricing_metrics(REAL, SYN, weeks=[1, 2])
    # real weeks 1-2: product 1 [2, 2], product 2 [10, 10] -> all relative prices 0
    assert res.base_price_ks == 0.0
    # real depths in weeks 1-2: [0, .1] -> 1/2; synthetic [.25, .25, 0, 0] -> 1/2
    assert res.promo_frequency_diff == pytest.approx(0.0)


def test_no_discount_on_a_side_gives_none():
    flat = REAL.assign(depth=0.0)
    res = pricing_metrics(flat, SYN)
    assert res.promo_discount_ks is None and res.promo_discount_score is None
    assert res.promo_frequency_real == 0.0


def test_round_trip():
    res = pricing_metrics(REAL, SYN)
    assert PricingResult.from_dict(res.to_dict()) == res


@pytest.mark.parametrize(
    "change, column",
    [
        (lambda p: p.drop(columns="mailer"), "mailer"),
        (lambda p: p.assign(depth=1.0), "depth"),
        (lambda p: p.assign(shelf_price=0.0), "shelf_price"),
    ],
)
def test_bad_panels_raise_data_error(change, column):
    with pytest.raises(DataError) as err:
        pricing_metrics(REAL, change(SYN))
    assert err.value.column == column and "synthetic" in str(err.value)


def test_log_relative_price_is_scale_free():
    # multiplying every synthetic price by a constant leaves the relative-price KS unchanged
    scaled = SYN.assign(shelf_price=SYN["shelf_price"] * math.pi)
    assert pricing_metrics(REAL, scaled).base_price_ks == pytest.approx(pricing_metrics(REAL, SYN).base_price_ks)
