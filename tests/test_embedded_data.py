"""The embedded Complete Journey data: the counts docs/data.md reports (slow: builds every panel)."""

import numpy as np
import pytest

from bayes_retail.data import load_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    return load_data(cache_dir=tmp_path_factory.mktemp("cache"))


def test_rule_counts_match_the_documented_ones(embedded):
    removed = {r["rule"]: r["rows_removed"] for r in embedded.report["rules"]}
    # DESIGN.md §1: 4,836 lines name a product missing from the product table.
    assert removed["unknown_product"] == 4836
    assert removed == {
        "unknown_product": 4836,
        "non_grocery": 19148,
        "uncategorised": 802,
        "non_positive": 6164,
        "partial_week": 3674,
    }
    assert embedded.report["lines_read"] - sum(removed.values()) == len(embedded.transactions) == 1434683


def test_week_one_is_the_only_partial_week(embedded):
    assert embedded.weeks.tolist() == list(range(2, 54))


def test_every_category_keeps_other_under_a_fifth(embedded):
    sets = embedded.choice_sets
    other = sets["lines"].where(sets["is_other"], 0).groupby(sets["category_id"]).sum()
    total = sets.groupby("category_id")["lines"].sum()
    assert (other / total < 0.2).all()
    # and one item fewer would not do: the last item's lines plus "other" reach a fifth
    last_item = sets.loc[sets["item"] == sets["n_items"] - 1].set_index("category_id")["lines"]
    assert (((other + last_item.reindex(total.index)) / total) >= 0.2).all()


def test_depth_is_missing_exactly_where_nobody_bought(embedded):
    pw = embedded.product_weeks
    assert pw["depth"].isna().equals(pw["units"] == 0)
    assert pw["shelf_price"].notna().all()
    assert np.isclose(pw["depth"].isna().mean(), embedded.summary()["product_weeks_depth_missing"])
