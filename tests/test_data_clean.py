"""Cleaning rules (bayes_retail/data/clean.py), each alone on a small frame, then all on the tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_data import tiny_tables

from bayes_retail.data import clean
from bayes_retail.data.clean import (
    clean_lines,
    drop_non_grocery,
    drop_non_positive,
    drop_partial_weeks,
    drop_uncategorised,
    drop_unknown_products,
    partial_weeks,
)


def _lines(product_ids, *, quantity=None, sales=None, week=None) -> pd.DataFrame:
    n = len(product_ids)
    return pd.DataFrame(
        {
            "line": np.arange(n),  # a tag to check which lines are kept
            "product_id": product_ids,
            "quantity": quantity if quantity is not None else [1] * n,
            "sales_value": sales if sales is not None else [1.0] * n,
            "week": week if week is not None else [2] * n,
        }
    )


def _products(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["product_id", "department", "product_category"])


def _week_lines(counts: dict[int, int]) -> pd.DataFrame:
    """``counts[w]`` lines in week ``w``."""
    weeks = np.repeat(list(counts), list(counts.values()))
    return _lines([1] * len(weeks), week=weeks)


# --------------------------------------------------------------------------- unknown products


def test_drop_unknown_products():
    products = _products([(1, "GROCERY", "MILK"), (2, "GROCERY", "BREAD")])
    lines = _lines([1, 3, 2, 3, 4])  # 3 and 4 are not in the product table
    kept, res = drop_unknown_products(lines, products)
    assert res.rule == "unknown_product"
    assert res.rows_removed == 3
    assert kept["line"].tolist() == [0, 2]


def test_drop_unknown_products_keeps_everything_when_all_known():
    products = _products([(1, "GROCERY", "MILK")])
    kept, res = drop_unknown_products(_lines([1, 1]), products)
    assert res.rows_removed == 0
    assert len(kept) == 2


# --------------------------------------------------------------------------- non-grocery


@pytest.mark.parametrize(
    "department", ["FUEL", "KIOSK-GAS", "MISCELLANEOUS", "COUPON", "POSTAL CENTER", "MISC SALES TRAN"]
)
def test_drop_non_grocery_departments(department):
    products = _products([(1, "GROCERY", "MILK"), (2, department, "SOMETHING")])
    kept, res = drop_non_grocery(_lines([1, 2, 1, 2, 2]), products)
    assert res.rows_removed == 3
    assert kept["line"].tolist() == [0, 2]
    assert res.detail == {"by_department": {department: 3}}


@pytest.mark.parametrize("category", ["COUPON/MISC ITEMS", "COUPON", "BOTTLE DEPOSITS"])
def test_drop_non_grocery_categories_in_a_grocery_department(category):
    # the department looks fine; the category alone marks the line as accounting
    products = _products([(1, "GROCERY", "MILK"), (2, "GROCERY", category)])
    kept, res = drop_non_grocery(_lines([2, 1, 2]), products)
    assert res.rows_removed == 2
    assert kept["line"].tolist() == [1]
    assert res.detail == {"by_department": {"GROCERY": 2}}


def test_drop_non_grocery_keeps_grocery_departments():
    products = _products([(1, "GROCERY", "MILK"), (2, "PRODUCE", "APPLES"), (3, "MEAT", "BEEF")])
    kept, res = drop_non_grocery(_lines([1, 2, 3]), products)
    assert res.rows_removed == 0
    assert kept["line"].tolist() == [0, 1, 2]


def test_non_grocery_lists_hold_the_design_departments():
    # DESIGN.md §1 names these departments
    assert {"FUEL", "KIOSK-GAS", "MISCELLANEOUS", "COUPON", "POSTAL CENTER"} <= clean.NON_GROCERY_DEPARTMENTS
    assert "COUPON/MISC ITEMS" in clean.NON_GROCERY_CATEGORIES


# --------------------------------------------------------------------------- uncategorised


def test_drop_uncategorised_nan_and_blank():
    products = _products(
        [(1, "GROCERY", "MILK"), (2, "GROCERY", None), (3, "GROCERY", ""), (4, "GROCERY", "   ")]
    )
    kept, res = drop_uncategorised(_lines([1, 2, 3, 4, 1]), products)
    # 2 (missing), 3 (empty) and 4 (blank) have no category -> 3 lines removed
    assert res.rule == "uncategorised"
    assert res.rows_removed == 3
    assert kept["line"].tolist() == [0, 4]


def test_drop_uncategorised_with_string_dtype():
    products = _products([(1, "GROCERY", "MILK"), (2, "GROCERY", None)]).astype({"product_category": "string"})
    kept, res = drop_uncategorised(_lines([2, 1]), products)
    assert res.rows_removed == 1
    assert kept["line"].tolist() == [1]


# --------------------------------------------------------------------------- non-positive


def test_drop_non_positive():
    lines = _lines(
        [1] * 6,
        quantity=[1, 0, 1, -1, 2, 0],
        sales=[1.0, 1.0, 0.0, -2.0, 0.01, 0.0],
    )
    kept, res = drop_non_positive(lines)
    # kept: line 0 (1, 1.00) and line 4 (2, 0.01); quantity <= 0: lines 1, 3, 5; sales <= 0: 2, 3, 5
    assert res.rows_removed == 4
    assert kept["line"].tolist() == [0, 4]
    assert res.detail == {"quantity_le_0": 3, "sales_value_le_0": 3}


# --------------------------------------------------------------------------- partial weeks


def test_short_week_inside_the_panel_is_kept():
    # median of (10, 10, 1, 10, 10) is 10; week 3 has 1 < 5 lines but is not at an edge
    lines = _week_lines({1: 10, 2: 10, 3: 1, 4: 10, 5: 10})
    assert partial_weeks(lines) == []
    kept, res = drop_partial_weeks(lines)
    assert res.rows_removed == 0
    assert len(kept) == 41


def test_short_leading_and_trailing_weeks_are_dropped():
    # median of (2, 10, 10, 10, 3) is 10 -> threshold 5: weeks 1 and 5 are short edges
    lines = _week_lines({1: 2, 2: 10, 3: 10, 4: 10, 5: 3})
    assert partial_weeks(lines) == [1, 5]
    kept, res = drop_partial_weeks(lines)
    assert res.rule == "partial_week"
    assert res.rows_removed == 5
    assert sorted(kept["week"].unique()) == [2, 3, 4]
    assert res.detail == {"weeks": [1, 5]}


def test_consecutive_short_edge_weeks_are_all_dropped_up_to_a_full_week():
    # median of (1, 2, 10, 10, 10, 1, 10) is 10: weeks 1-2 lead, week 6 is inside (kept)
    lines = _week_lines({1: 1, 2: 2, 3: 10, 4: 10, 5: 10, 6: 1, 7: 10})
    assert partial_weeks(lines) == [1, 2]


def test_partial_week_threshold_is_respected():
    # median of (4, 10, 10, 10) is 10: week 1 (4 lines) is short below 0.5 x 10 = 5,
    # but not below 0.3 x 10 = 3; exactly at the threshold is not short (6 vs 0.6 x 10)
    lines = _week_lines({1: 4, 2: 10, 3: 10, 4: 10})
    assert partial_weeks(lines) == [1]
    assert partial_weeks(lines, min_share=0.3) == []
    assert partial_weeks(_week_lines({1: 6, 2: 10, 3: 10, 4: 10}), min_share=0.6) == []
    kept, res = drop_partial_weeks(lines, min_share=0.3)
    assert res.rows_removed == 0


def test_partial_weeks_of_no_lines():
    assert partial_weeks(_lines([])) == []


# --------------------------------------------------------------------------- all rules on the tiny data


def test_clean_lines_on_the_tiny_data():
    t = tiny_tables()
    kept, results = clean_lines(t["transactions"], t["products"])
    # tiny_data docstring: 33 raw lines; unknown 1 (999), non-grocery 1 (FUEL 900),
    # uncategorised 1 (901), non-positive 2 (qty 0 on 102, sales 0 on 201), partial week 1 (1 line)
    assert [r.rule for r in results] == [
        "unknown_product", "non_grocery", "uncategorised", "non_positive", "partial_week",
    ]
    assert [r.rows_removed for r in results] == [1, 1, 1, 2, 1]
    assert len(t["transactions"]) == 33
    assert len(kept) == 27
    assert sorted(kept["week"].unique()) == [2, 3, 4, 5, 6]
    assert not kept["product_id"].isin([999, 900, 901]).any()
    assert (kept["quantity"] > 0).all() and (kept["sales_value"] > 0).all()
    assert kept.index.tolist() == list(range(27))
    # after the row rules weeks 1-6 hold (1, 6, 6, 5, 4, 6) lines: median 5.5, threshold 2.75
    assert results[-1].detail == {"weeks": [1]}


def test_clean_lines_without_partial_weeks_keeps_week_1():
    t = tiny_tables()
    kept, results = clean_lines(t["transactions"], t["products"], drop_partial=False)
    assert len(results) == 4
    assert len(kept) == 28  # the 27 plus week 1's line
    assert (kept["week"] == 1).sum() == 1


def test_rule_results_serialise():
    t = tiny_tables()
    _, results = clean_lines(t["transactions"], t["products"])
    d = results[1].to_dict()
    assert d == {
        "rule": "non_grocery",
        "description": "department or category is not grocery shopping",
        "rows_removed": 1,
        "detail": {"by_department": {"FUEL": 1}},
    }
