"""Derived panels (DESIGN.md §1): what the shopper models and the pricing HMMs read.

All builders are pure functions of the cleaned lines, the product table and the
promotion calendar. Categories are the products' ``product_category``; ids are
small integers (``category_id``) in alphabetical order of the names.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bayes_retail.data.schema import NO_PLACEMENT

#: "other" may hold at most this share of a category's lines.
MAX_OTHER_SHARE = 0.2

#: Offered depths are capped here: a line paid at (almost) zero is a giveaway, not a price.
MAX_DEPTH = 0.95


def promo_weeks(promotions: pa.Table) -> pd.DataFrame:
    """Product-week promotion calendar from the product-store-week promotions table.

    Returns one row per product-week with any placement: ``display`` / ``mailer``
    (any store), and ``display_share`` / ``mailer_share`` (share of the stores that
    appear in the promotions table that have the placement that week).
    """
    n_stores = len(pc.unique(promotions["store_id"]))
    flags = pa.table(
        {
            "product_id": promotions["product_id"],
            "week": promotions["week"],
            "d": pc.cast(pc.not_equal(promotions["display_location"], NO_PLACEMENT), pa.int32()),
            "m": pc.cast(pc.not_equal(promotions["mailer_location"], NO_PLACEMENT), pa.int32()),
        }
    )
    agg = flags.group_by(["product_id", "week"]).aggregate([("d", "sum"), ("m", "sum")]).to_pandas()
    out = pd.DataFrame(
        {
            "product_id": agg["product_id"].to_numpy(np.int64),
            "week": agg["week"].to_numpy(np.int64),
            "display": agg["d_sum"].to_numpy() > 0,
            "mailer": agg["m_sum"].to_numpy() > 0,
            "display_share": agg["d_sum"].to_numpy() / n_stores,
            "mailer_share": agg["m_sum"].to_numpy() / n_stores,
        }
    )
    out = out[out["display"] | out["mailer"]]
    return out.sort_values(["product_id", "week"], ignore_index=True)


def households(lines: pd.DataFrame, weeks: np.ndarray) -> pd.DataFrame:
    """One row per household: its entry window (first observed week to the panel's last week)."""
    g = lines.groupby("household_id")
    out = pd.DataFrame(
        {
            "first_week": g["week"].min(),
            "last_week": int(weeks.max()),
            "visits": g["week"].nunique(),
            "baskets": g["basket_id"].nunique(),
        }
    )
    out["window_weeks"] = np.searchsorted(weeks, out["last_week"], side="right") - np.searchsorted(
        weeks, out["first_week"]
    )
    return out.reset_index()


def visits(lines: pd.DataFrame, hh: pd.DataFrame, weeks: np.ndarray) -> pd.DataFrame:
    """Dense household-week panel over each household's window: trips (0 = no visit), items, spend."""
    g = lines.groupby(["household_id", "week"])
    seen = pd.DataFrame(
        {
            "trips": g["basket_id"].nunique(),
            "items": g["quantity"].sum(),
            "spend": g["sales_value"].sum(),
            "lines": g.size(),
        }
    )
    first = hh["first_week"].to_numpy()
    start = np.searchsorted(weeks, first)
    counts = len(weeks) - start
    hh_ids = np.repeat(hh["household_id"].to_numpy(), counts)
    wk = np.concatenate([weeks[s:] for s in start]) if len(start) else np.array([], dtype=np.int64)
    grid = pd.MultiIndex.from_arrays([hh_ids, wk], names=["household_id", "week"])
    out = seen.reindex(grid, fill_value=0)
    out["trips"] = out["trips"].astype(np.int64)
    out["items"] = out["items"].astype(np.int64)
    out["lines"] = out["lines"].astype(np.int64)
    return out.reset_index()


def categories(lines: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """Category table: id, name, lines, distinct products bought."""
    cat = lines["product_id"].map(products.set_index("product_id")["product_category"])
    names = np.sort(cat.unique())
    stats = lines.assign(product_category=cat).groupby("product_category").agg(
        lines=("product_id", "size"), products=("product_id", "nunique"), sales_value=("sales_value", "sum")
    )
    stats = stats.reindex(names)
    stats.insert(0, "category_id", np.arange(len(names), dtype=np.int64))
    return stats.reset_index()


def choice_sets(
    lines: pd.DataFrame, products: pd.DataFrame, cats: pd.DataFrame, *, max_other_share: float = MAX_OTHER_SHARE
) -> pd.DataFrame:
    """Every bought product with its choice-set item within its category.

    Products are ranked within their category by lines (then sales value, then
    id). The top ``n_items`` products are items ``0 .. n_items - 1``, where
    ``n_items`` is the smallest number that leaves "other" under
    ``max_other_share`` of the category's lines; every remaining product maps to
    the "other" item ``n_items`` and carries ``tail_share``, its share of the
    other item's lines (how the simulator expands "other" into real products).
    """
    cat_of = products.set_index("product_id")["product_category"]
    per = lines.groupby("product_id").agg(lines=("week", "size"), sales_value=("sales_value", "sum")).reset_index()
    per["product_category"] = per["product_id"].map(cat_of)
    per = per.merge(cats[["product_category", "category_id"]], on="product_category")
    per = per.sort_values(
        ["category_id", "lines", "sales_value", "product_id"], ascending=[True, False, False, True], ignore_index=True
    )
    per["rank"] = per.groupby("category_id").cumcount()
    total = per.groupby("category_id")["lines"].transform("sum")
    after = (total - per.groupby("category_id")["lines"].cumsum()) / total
    # smallest n such that the lines left after the top n are < max_other_share
    n_items = per.loc[after < max_other_share].groupby("category_id")["rank"].min() + 1
    per["n_items"] = per["category_id"].map(n_items).astype(np.int64)
    per["is_other"] = per["rank"] >= per["n_items"]
    per["item"] = np.where(per["is_other"], per["n_items"], per["rank"]).astype(np.int64)
    other_lines = per["lines"].where(per["is_other"], 0)
    other_total = other_lines.groupby(per["category_id"]).transform("sum")
    per["tail_share"] = np.where(per["is_other"], other_lines / other_total.where(other_total > 0, 1), np.nan)
    cols = ["category_id", "product_category", "product_id", "item", "is_other", "n_items", "lines", "sales_value", "tail_share"]
    return per[cols]


def category_weeks(lines: pd.DataFrame, sets: pd.DataFrame) -> pd.DataFrame:
    """Household-category-week purchases (only purchased cells): units, spend, distinct products."""
    tagged = _tag(lines, sets)
    g = tagged.groupby(["household_id", "category_id", "week"])
    out = g.agg(
        units=("quantity", "sum"),
        spend=("sales_value", "sum"),
        products=("product_id", "nunique"),
        lines=("quantity", "size"),
    )
    return out.reset_index()


def choices(lines: pd.DataFrame, sets: pd.DataFrame) -> pd.DataFrame:
    """Product choice events given a category purchase: one row per household-week-product.

    ``item`` is the product's choice-set item ("other" products share the item
    ``n_items``); ``units`` makes this the purchase-quantity panel as well.
    """
    tagged = _tag(lines, sets)
    g = tagged.groupby(["household_id", "category_id", "week", "product_id"])
    out = g.agg(
        item=("item", "first"),
        units=("quantity", "sum"),
        spend=("sales_value", "sum"),
        retail_disc=("retail_disc", "sum"),
        lines=("quantity", "size"),
    )
    return out.reset_index()


def _tag(lines: pd.DataFrame, sets: pd.DataFrame) -> pd.DataFrame:
    info = sets.set_index("product_id")
    return lines.assign(
        category_id=lines["product_id"].map(info["category_id"]).to_numpy(np.int64),
        item=lines["product_id"].map(info["item"]).to_numpy(np.int64),
    )


def offered_prices(lines: pd.DataFrame) -> pd.DataFrame:
    """Offered shelf price and depth of each product-week with a purchase.

    A line's unit shelf price is (sales_value + retail_disc + coupon_match_disc) /
    quantity: what the shelf asked before the store's discounts (a manufacturer
    coupon is already inside sales_value). The product-week's offered shelf price
    is the modal unit shelf price over its lines (cents, ties to the higher
    price); its depth is the modal line depth retail_disc / shelf total among the
    lines at that shelf price (hundredths, ties to the deeper discount). A line's
    own paid price is never used: multi-buy deals make it depend on quantity.
    """
    shelf_total = lines["sales_value"] + lines["retail_disc"] + lines["coupon_match_disc"]
    frame = pd.DataFrame(
        {
            "product_id": lines["product_id"].to_numpy(),
            "week": lines["week"].to_numpy(),
            "shelf_cents": np.rint(100 * shelf_total / lines["quantity"]).astype(np.int64),
            "depth_pct": np.rint(100 * np.clip(lines["retail_disc"] / shelf_total, 0, MAX_DEPTH)).astype(np.int64),
            "units": lines["quantity"].to_numpy(),
        }
    )
    keys = ["product_id", "week"]
    shelf = _mode(frame, keys, "shelf_cents")
    at_shelf = frame.merge(shelf, on=[*keys, "shelf_cents"])
    depth = _mode(at_shelf, keys, "depth_pct")
    totals = frame.groupby(keys).agg(units=("units", "sum"), lines=("units", "size")).reset_index()
    out = totals.merge(shelf, on=keys).merge(depth, on=keys)
    out["shelf_price"] = out.pop("shelf_cents") / 100.0
    out["depth"] = out.pop("depth_pct") / 100.0
    return out


def _mode(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    counts = frame.groupby([*keys, value]).size().rename("n").reset_index()
    counts = counts.sort_values([*keys, "n", value], ascending=[True] * len(keys) + [False, False])
    return counts.drop_duplicates(keys)[[*keys, value]]


def product_weeks(
    lines: pd.DataFrame, sets: pd.DataFrame, calendar: pd.DataFrame, weeks: np.ndarray
) -> pd.DataFrame:
    """Dense product-week panel for the choice-set products (not the "other" tail).

    Shelf price: observed in weeks with a purchase, carried forward then backward
    otherwise (``shelf_observed`` says which). Depth: observed in weeks with a
    purchase, MISSING (NaN) otherwise: a discount is only seen when someone buys,
    so it is left for the promotion HMM to impute, never carried over. Display and
    mailer come from the promotion calendar and are always observed.
    """
    top = sets.loc[~sets["is_other"], ["product_id", "category_id", "item"]].sort_values("product_id")
    grid = pd.MultiIndex.from_product([top["product_id"].to_numpy(), weeks], names=["product_id", "week"])
    in_top = lines["product_id"].isin(top["product_id"])
    seen = offered_prices(lines.loc[in_top]).set_index(["product_id", "week"])
    panel = seen.reindex(grid)
    panel["shelf_observed"] = panel["shelf_price"].notna()
    by_product = panel.groupby(level="product_id")["shelf_price"]
    panel["shelf_price"] = by_product.ffill().fillna(by_product.bfill())
    panel["units"] = panel["units"].fillna(0).astype(np.int64)
    panel["lines"] = panel["lines"].fillna(0).astype(np.int64)
    cal = calendar.set_index(["product_id", "week"])[["display", "mailer", "display_share", "mailer_share"]]
    panel = panel.join(cal)
    panel[["display", "mailer"]] = panel[["display", "mailer"]].fillna(False).astype(bool)
    panel[["display_share", "mailer_share"]] = panel[["display_share", "mailer_share"]].fillna(0.0)
    panel = panel.reset_index().merge(top, on="product_id")
    cols = [
        "product_id", "category_id", "item", "week", "shelf_price", "shelf_observed", "depth",
        "display", "mailer", "display_share", "mailer_share", "units", "lines",
    ]
    return panel[cols].sort_values(["category_id", "item", "week"], ignore_index=True)
