"""Derived panels of the tiny data, checked against hand-derived values (tests/tiny_data.py).

After cleaning: 27 lines in weeks 2-6; categories in alphabetical order, so
BREAD = category 0 (products 201, 202) and MILK = category 1 (101-104).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tiny_data import write_internal

from bayes_retail.data import load_data, panels

BREAD, MILK = 0, 1
WEEKS = [2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("panels")
    return load_data(write_internal(root / "src"), cache_dir=root / "cache")


@pytest.fixture(scope="module")
def pw(data):
    return data.product_weeks.set_index(["product_id", "week"])


# --------------------------------------------------------------------------- households and visits


def test_households_entry_windows(data):
    hh = data.households.set_index("household_id").sort_index()
    # 1, 2, 3 first buy (after week 1 is dropped) in week 2; 4 in week 4; the panel ends in week 6
    assert hh["first_week"].tolist() == [2, 2, 2, 4]
    assert hh["last_week"].tolist() == [6, 6, 6, 6]
    assert hh["window_weeks"].tolist() == [5, 5, 5, 3]
    # household 1 visits in weeks 2, 3, 4, 5 with baskets 2, 5, 8, 11, 12
    assert (hh.loc[1, "visits"], hh.loc[1, "baskets"]) == (4, 5)


def test_visits_is_a_dense_grid_over_each_window(data):
    v = data.visits
    hh = data.households.set_index("household_id")
    # 5 + 5 + 5 + 3 household-weeks, one row each
    assert len(v) == 18
    assert not v.duplicated(["household_id", "week"]).any()
    for hh_id, rows in v.groupby("household_id"):
        assert rows["week"].tolist() == list(range(hh.loc[hh_id, "first_week"], 7))
    # nothing before household 4's first week
    assert v.loc[v["household_id"] == 4, "week"].min() == 4


def test_visits_trips_items_and_spend(data):
    v = data.visits.set_index(["household_id", "week"])
    # household 1, week 5: baskets 11 (101, 102) and 12 (201 x 2): 2 trips, 4 items, 2.0 + 1.5 + 6.0
    assert v.loc[(1, 5), ["trips", "items", "lines"]].tolist() == [2, 4, 3]
    assert v.loc[(1, 5), "spend"] == pytest.approx(9.5)
    # household 1 makes no trip in week 6
    assert v.loc[(1, 6), ["trips", "items", "lines"]].tolist() == [0, 0, 0]
    assert v.loc[(1, 6), "spend"] == 0.0
    # household 3's only week-4 line (quantity 0) is cleaned away: an unvisited week
    assert v.loc[(3, 4), "trips"] == 0
    # 14 visited household-weeks, 15 baskets
    assert (v["trips"] > 0).sum() == 14
    assert v["trips"].sum() == 15


# --------------------------------------------------------------------------- categories and choice sets


def test_categories_table(data):
    cats = data.categories.set_index("product_category")
    assert cats.loc["BREAD", "category_id"] == BREAD
    assert cats.loc["MILK", "category_id"] == MILK
    # BREAD: 201 x 7 lines (24.00) + 202 x 1 (2.00); MILK: 19 lines over 4 products
    assert cats.loc["BREAD", ["lines", "products"]].tolist() == [8, 2]
    assert cats.loc["BREAD", "sales_value"] == pytest.approx(26.0)
    assert cats.loc["MILK", ["lines", "products"]].tolist() == [19, 4]
    assert set(cats.index) == {"BREAD", "MILK"}  # FUEL and the uncategorised 901 are cleaned away


def test_choice_sets_milk(data):
    cs = data.choice_sets.set_index("product_id")
    # lines 101: 10, 102: 7, 103: 1, 104: 1 -> two items, "other" = item 2
    assert cs.loc[101, ["item", "is_other", "n_items"]].tolist() == [0, False, 2]
    assert cs.loc[102, ["item", "is_other", "n_items"]].tolist() == [1, False, 2]
    for pid in (103, 104):
        assert cs.loc[pid, ["item", "is_other", "n_items"]].tolist() == [2, True, 2]
        assert cs.loc[pid, "tail_share"] == pytest.approx(0.5)
    assert cs.loc[[101, 102, 103, 104], "lines"].tolist() == [10, 7, 1, 1]
    # 104 (1.20) ranks before 103 (1.00) on sales value
    milk = data.choice_sets[data.choice_sets["category_id"] == MILK]
    assert milk["product_id"].tolist() == [101, 102, 104, 103]
    assert np.isnan(cs.loc[101, "tail_share"])


def test_choice_sets_bread(data):
    cs = data.choice_sets.set_index("product_id")
    # 201: 7 lines, 202: 1 -> one item; "other" = item 1 = {202}
    assert cs.loc[201, ["item", "is_other", "n_items"]].tolist() == [0, False, 1]
    assert cs.loc[202, ["item", "is_other", "n_items"]].tolist() == [1, True, 1]
    assert cs.loc[202, "tail_share"] == pytest.approx(1.0)


def test_choice_set_lines_match_the_cleaned_transactions(data):
    counts = data.transactions["product_id"].value_counts()
    cs = data.choice_sets.set_index("product_id")
    assert cs["lines"].sort_index().tolist() == counts.sort_index().tolist()


def test_other_is_under_20_percent_and_one_item_fewer_would_not_be(data):
    for cat_id, rows in data.choice_sets.groupby("category_id"):
        total = rows["lines"].sum()
        n = rows["n_items"].iloc[0]
        by_rank = rows.sort_values("item")["lines"].to_numpy()  # top items first, then the tail
        other_share = by_rank[n:].sum() / total
        fewer_share = by_rank[n - 1 :].sum() / total
        assert other_share < 0.2, cat_id
        assert fewer_share >= 0.2, cat_id
        # tail shares add up to 1 over the "other" products
        tail = rows.loc[rows["is_other"], "tail_share"]
        if len(tail):
            assert tail.sum() == pytest.approx(1.0)


def test_choice_set_with_a_single_product_has_one_item_and_no_tail():
    lines = pd.DataFrame({"product_id": [1, 1, 1], "week": [2, 3, 4], "sales_value": [1.0, 1.0, 1.0]})
    products = pd.DataFrame({"product_id": [1], "product_category": ["EGGS"]})
    cats = panels.categories(lines, products)
    sets = panels.choice_sets(lines, products, cats)
    assert sets[["product_id", "item", "is_other", "n_items"]].values.tolist() == [[1, 0, False, 1]]


# --------------------------------------------------------------------------- offered prices


def test_offered_price_week_3_mode_and_depth(pw):
    # 101 week 3: unit shelf prices 2.00 (disc 0.50 -> depth 0.25), 2.00 (depth 0), 2.50 (qty 2)
    # -> shelf 2.00; depths at 2.00 tie 0.25 / 0.00 -> the deeper 0.25
    row = pw.loc[(101, 3)]
    assert row["shelf_price"] == pytest.approx(2.0)
    assert row["depth"] == pytest.approx(0.25)
    assert bool(row["shelf_observed"]) is True
    assert (row["units"], row["lines"]) == (4, 3)


def test_week_without_purchase_carries_the_shelf_price_and_leaves_depth_missing(pw):
    row = pw.loc[(101, 4)]  # nobody buys 101 in week 4
    assert row["shelf_price"] == pytest.approx(2.0)  # carried forward from week 3
    assert bool(row["shelf_observed"]) is False
    assert np.isnan(row["depth"])
    assert (row["units"], row["lines"]) == (0, 0)


def test_coupon_match_is_part_of_the_shelf_price(pw):
    # 101 week 6: 1.80 paid + 0.20 coupon match = 2.00, 2.00, 2.20 -> 2.00, no store discount
    row = pw.loc[(101, 6)]
    assert row["shelf_price"] == pytest.approx(2.0)
    assert row["depth"] == pytest.approx(0.0)


def test_multi_buy_line_gives_the_unit_shelf_price(pw):
    # 201 week 5: one line, quantity 2, sales 6.00 -> 3.00 a unit
    row = pw.loc[(201, 5)]
    assert row["shelf_price"] == pytest.approx(3.0)
    assert (row["units"], row["lines"]) == (2, 1)


def test_only_one_week_of_choice_set_products_is_unobserved(data):
    # 101 week 4 is the only week without a purchase among 101, 102, 201 (15 product-weeks)
    assert data.product_weeks["depth"].isna().sum() == 1
    assert data.summary()["product_weeks_depth_missing"] == pytest.approx(1 / 15)


def test_shelf_price_is_carried_backward_before_the_first_purchase(data):
    # drop 102's purchases in weeks 2 and 3: its first price (1.50, week 4) fills them
    lines = data.transactions
    lines = lines[~((lines["product_id"] == 102) & lines["week"].isin([2, 3]))]
    panel = panels.product_weeks(lines, data.choice_sets, data.promo_weeks, np.array(WEEKS)).set_index(
        ["product_id", "week"]
    )
    for week in (2, 3):
        row = panel.loc[(102, week)]
        assert row["shelf_price"] == pytest.approx(1.5)
        assert bool(row["shelf_observed"]) is False
        assert np.isnan(row["depth"])


def test_offered_depth_is_capped():
    # shelf 1.00 and 0.99 discount -> depth 0.99, capped at 0.95
    lines = pd.DataFrame(
        {
            "product_id": [1], "week": [2], "quantity": [1],
            "sales_value": [0.01], "retail_disc": [0.99], "coupon_match_disc": [0.0],
        }
    )
    out = panels.offered_prices(lines)
    assert out.loc[0, "shelf_price"] == pytest.approx(1.0)
    assert out.loc[0, "depth"] == pytest.approx(panels.MAX_DEPTH)


def test_product_weeks_holds_choice_set_products_in_every_week(data):
    pwk = data.product_weeks
    # non-"other" products: 101, 102 (MILK), 201 (BREAD); 3 x 5 weeks
    assert sorted(pwk["product_id"].unique()) == [101, 102, 201]
    assert len(pwk) == 15
    for _, rows in pwk.groupby("product_id"):
        assert rows["week"].tolist() == WEEKS
    assert pwk.loc[pwk["product_id"] == 102, "item"].unique().tolist() == [1]


# --------------------------------------------------------------------------- display and mailer


def test_display_and_mailer_flags_and_shares(pw):
    # 2 stores; 101 week 3: display at store 10, mailer at store 11
    row = pw.loc[(101, 3)]
    assert bool(row["display"]) and bool(row["mailer"])
    assert (row["display_share"], row["mailer_share"]) == (0.5, 0.5)
    # 201 week 4: mailer at store 10 only
    row = pw.loc[(201, 4)]
    assert (bool(row["display"]), bool(row["mailer"])) == (False, True)
    assert (row["display_share"], row["mailer_share"]) == (0.0, 0.5)
    # 102 week 5: display at store 11 only
    row = pw.loc[(102, 5)]
    assert (bool(row["display"]), bool(row["mailer"])) == (True, False)
    # any other product-week has no placement
    assert int(pw["display"].sum()) == 2 and int(pw["mailer"].sum()) == 2


def test_promotion_calendar_drops_the_partial_week(data):
    cal = data.promo_weeks
    # the 101 week-1 placement goes with week 1; 3 product-weeks remain
    assert 1 not in cal["week"].tolist()
    assert sorted(zip(cal["product_id"], cal["week"])) == [(101, 3), (102, 5), (201, 4)]


def test_promo_weeks_skips_rows_without_placement():
    promotions = pa.table(
        {
            "product_id": [1, 1, 2],
            "store_id": [10, 11, 10],
            "display_location": ["0", "0", "0"],
            "mailer_location": ["0", "A", "0"],
            "week": [2, 2, 3],
        }
    )
    cal = panels.promo_weeks(promotions)
    # product 2 week 3 has "0" / "0" everywhere: no placement, no row
    assert cal[["product_id", "week"]].values.tolist() == [[1, 2]]
    assert cal.loc[0, "mailer_share"] == 0.5 and not cal.loc[0, "display"]


# --------------------------------------------------------------------------- household-category-week and choices


def test_category_weeks_cells(data):
    cw = data.category_weeks.set_index(["household_id", "category_id", "week"])
    # household 1, MILK, week 3: 101 (1 unit, 1.50) and 103 (1 unit, 1.00)
    assert cw.loc[(1, MILK, 3), ["units", "products", "lines"]].tolist() == [2, 2, 2]
    assert cw.loc[(1, MILK, 3), "spend"] == pytest.approx(2.5)
    # household 3, MILK, week 3: 101 x 2 (5.00) and 102 (1.50)
    assert cw.loc[(3, MILK, 3), ["units", "products", "lines"]].tolist() == [3, 2, 2]
    assert cw.loc[(3, MILK, 3), "spend"] == pytest.approx(6.5)
    # household 1, BREAD, week 5: one line of 201 x 2
    assert cw.loc[(1, BREAD, 5), ["units", "products", "lines"]].tolist() == [2, 1, 1]
    # only purchased cells: household 1 buys no bread in week 3
    assert (1, BREAD, 3) not in cw.index
    assert cw["lines"].sum() == 27


def test_choices_units_and_items(data):
    ch = data.choices.set_index(["household_id", "week", "product_id"])
    # household 3, week 3: 101 x 2 -> item 0, 2 units
    assert ch.loc[(3, 3, 101), ["item", "units", "lines"]].tolist() == [0, 2, 1]
    # household 1, week 3: 101 with its 0.50 discount
    assert ch.loc[(1, 3, 101), "retail_disc"] == pytest.approx(0.5)
    # household 4, week 4: 104 and 202 are "other": item = n_items (2 for MILK, 1 for BREAD)
    assert ch.loc[(4, 4, 104), "item"] == 2
    assert ch.loc[(4, 4, 202), "item"] == 1
    assert len(ch) == 27  # every cleaned line is its own household-week-product here


def test_choices_item_of_every_other_product_is_n_items(data):
    sets = data.choice_sets.set_index("product_id")
    ch = data.choices.join(sets[["is_other", "n_items"]], on="product_id")
    other = ch[ch["is_other"]]
    assert len(other) == 3  # 103, 104, 202: one line each
    assert (other["item"] == other["n_items"]).all()
    assert (ch.loc[~ch["is_other"], "item"] < ch.loc[~ch["is_other"], "n_items"]).all()


# --------------------------------------------------------------------------- summary


def test_summary(data):
    s = data.summary()
    assert s["lines"] == 27
    assert s["households"] == 4
    assert s["baskets"] == 15  # baskets 2-16 (basket 1 is week 1, 17 held only the quantity-0 line)
    assert s["weeks"] == WEEKS
    assert s["household_weeks"] == 18
    assert s["visit_rate"] == pytest.approx(14 / 18)
    assert s["trips_per_visit"] == pytest.approx(15 / 14)
    assert s["choice_set_products"] == 3
    assert s["choice_set_size_max"] == 2
    assert s["median_first_week"] == 2.0
    assert data.weeks.tolist() == WEEKS
