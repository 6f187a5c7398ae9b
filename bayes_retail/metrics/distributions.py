"""The distributions the metric suite compares: one 1-D array of values per metric.

:func:`prepare` computes once, for one side of a comparison, the groupings every
metric reads (visits, purchased lines, category purchases, the product-week units
grid); each metric is then a small function ``(Prepared) -> np.ndarray`` that
returns its "one value per ..." array (docs/metrics.md defines each one).
:data:`METRICS` lists them in the order of the table in DESIGN §5.

Everything works on integer codes (household, product, category, week index) so
the groupings are sorts and ``np.bincount`` calls, never Python loops over entities.
Value arrays come in a fixed order (documented per metric) so they can be compared
element by element in tests; the KS statistic does not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_retail.errors import DataError
from bayes_retail.metrics.tables import MetricTables

__all__ = [
    "METRICS",
    "MetricSpec",
    "Prepared",
    "prepare",
    "evaluate",
    "visit_probability",
    "basket_size",
    "quantity",
    "revenue",
    "category_purchase",
    "recency",
    "sales_volume",
    "price_distribution",
    "product_purchase",
    "category_penetration",
    "category_size",
    "marketing_signal",
    "promo_response",
    "loyalty",
    "brand_switching",
    "trips_per_visit",
    "left_out",
    "category_purchase_by_category",
    "category_size_by_category",
    "price_by_product",
    "product_purchase_by_product",
    "promo_response_by_category",
]


@dataclass(eq=False)
class Prepared:
    """The shared groupings of one side, computed once by :func:`prepare`.

    Codes index the sorted id arrays: household code ``h`` is
    ``household_ids[h]``, product code ``p`` is ``product_ids[p]`` (products bought
    at least once on this side), category code ``c`` is ``category_names[c]``
    (categories bought at least once) and week index ``w`` is ``weeks[w]``.

    Attributes
    ----------
    name
        The side's label.
    weeks
        Sorted scoring weeks.
    household_ids, product_ids, category_names
        Sorted ids behind the codes.
    product_category
        Category code of every product code.
    product_sales, product_quantity
        Total sales_value and units of every product.
    category_sales
        Total sales_value of every category.
    visit_household, visit_week
        One entry per visit (household-week with >= 1 line), sorted by household
        then week.
    visit_quantity, visit_sales, visit_trips, visit_lines, visit_promo_lines, visit_categories
        Per visit: units, spend, distinct baskets, lines, lines with
        ``retail_disc > 0``, distinct categories.
    hpw_household, hpw_product, hpw_week, hpw_quantity, hpw_hcw
        One entry per purchased line (household-product-week), sorted by
        household, product, week; ``hpw_hcw`` is the index of its
        household-category-week.
    hpw_lines, hpw_promo_lines
        Per household-product-week: its transaction lines, and those with
        ``retail_disc > 0``.
    hcw_household, hcw_category, hcw_week
        One entry per household-category-week purchase, sorted by household,
        category, week.
    units
        ``(n_products, n_weeks)`` units sold of each product in each week.
    promoted
        ``(n_products, n_weeks)`` booleans: product-week on display or in the
        mailer; ``None`` when the side has no promotion calendar.
    """

    name: str
    weeks: np.ndarray
    household_ids: np.ndarray
    product_ids: np.ndarray
    category_names: np.ndarray
    product_category: np.ndarray
    product_sales: np.ndarray
    product_quantity: np.ndarray
    category_sales: np.ndarray
    visit_household: np.ndarray
    visit_week: np.ndarray
    visit_quantity: np.ndarray
    visit_sales: np.ndarray
    visit_trips: np.ndarray
    visit_lines: np.ndarray
    visit_promo_lines: np.ndarray
    visit_categories: np.ndarray
    hpw_household: np.ndarray
    hpw_product: np.ndarray
    hpw_week: np.ndarray
    hpw_quantity: np.ndarray
    hpw_hcw: np.ndarray
    hpw_lines: np.ndarray
    hpw_promo_lines: np.ndarray
    hcw_household: np.ndarray
    hcw_category: np.ndarray
    hcw_week: np.ndarray
    units: np.ndarray
    promoted: np.ndarray | None

    @property
    def n_households(self) -> int:
        return int(self.household_ids.size)

    @property
    def n_weeks(self) -> int:
        return int(self.weeks.size)

    @property
    def n_products(self) -> int:
        return int(self.product_ids.size)

    @property
    def n_categories(self) -> int:
        return int(self.category_names.size)

    @property
    def n_visits(self) -> int:
        return int(self.visit_household.size)


# --------------------------------------------------------------------------- prepare


def prepare(tables: MetricTables, weeks: np.ndarray | list[int] | None = None) -> Prepared:
    """Compute the shared groupings of one side.

    Parameters
    ----------
    tables
        One side, already cleaned (see :func:`bayes_retail.metrics.suite.put_on_same_footing`).
    weeks
        The scoring weeks. Lines of other weeks are ignored. ``None``: the weeks
        present in the lines.

    Returns
    -------
    Prepared

    Raises
    ------
    DataError
        If no line is left, or a line names a product missing from the product
        table or without a category.
    """
    tx = tables.transactions
    if weeks is None:
        weeks = np.unique(tx["week"].to_numpy())
    weeks = np.unique(np.asarray(weeks, dtype=np.int64))
    in_weeks = np.isin(tx["week"].to_numpy(), weeks)
    if not in_weeks.all():
        tx = tx.loc[in_weeks]
    if len(tx) == 0:
        raise DataError("no line left in the scoring weeks", file=f"{tables.name} transactions")

    w = np.searchsorted(weeks, tx["week"].to_numpy()).astype(np.int64)
    household_ids, h = np.unique(tx["household_id"].to_numpy(), return_inverse=True)
    h = h.astype(np.int64)
    catalogue = _product_codes(tables, tx)
    p = catalogue.pop("line_product")
    line = {
        "quantity": tx["quantity"].to_numpy().astype(np.float64),
        "sales": tx["sales_value"].to_numpy().astype(np.float64),
        "promo": (tx["retail_disc"].to_numpy() > 0).astype(np.float64),
        "basket": np.unique(tx["basket_id"].to_numpy(), return_inverse=True)[1].astype(np.int64),
    }
    n_p, n_c, n_w = catalogue["product_ids"].size, catalogue["category_names"].size, weeks.size
    fields = {
        "name": tables.name,
        "weeks": weeks,
        "household_ids": household_ids,
        **catalogue,
        "product_sales": np.bincount(p, weights=line["sales"], minlength=n_p),
        "product_quantity": np.bincount(p, weights=line["quantity"], minlength=n_p),
        "category_sales": np.bincount(catalogue["product_category"][p], weights=line["sales"], minlength=n_c),
        "units": np.bincount(p * n_w + w, weights=line["quantity"], minlength=n_p * n_w).reshape(n_p, n_w),
        "promoted": _promoted_grid(tables.promo_weeks, catalogue["product_ids"], weeks),
    }
    visit_key, visits = _visits(h * n_w + w, line, n_w)
    fields.update(visits)
    fields.update(_purchases(h, p, w, line["quantity"], catalogue["product_category"], n_p, n_c, n_w,
                             promo=line["promo"]))
    # Distinct categories per visit = household-category-weeks per household-week.
    hw_of_hcw = fields["hcw_household"] * n_w + fields["hcw_week"]
    fields["visit_categories"] = np.bincount(
        np.searchsorted(visit_key, hw_of_hcw), minlength=visit_key.size
    ).astype(np.float64)
    return Prepared(**fields)


def _product_codes(tables: MetricTables, tx: pd.DataFrame) -> dict[str, np.ndarray]:
    """Product codes over the products bought on this side, their category codes
    (over the categories bought, in sorted-name order) and each line's product code."""
    products = tables.products.drop_duplicates("product_id", keep="first")
    row = pd.Index(products["product_id"].to_numpy()).get_indexer(tx["product_id"].to_numpy())
    if (row < 0).any():
        raise DataError(
            f"{int((row < 0).sum())} lines name products missing from the product table "
            "(put_on_same_footing removes them)",
            file=f"{tables.name} transactions",
            column="product_id",
        )
    cat_codes, cat_uniques = pd.factorize(products["product_category"], use_na_sentinel=True)
    if (cat_codes[row] < 0).any():
        raise DataError(
            "lines name products without a product_category (put_on_same_footing removes them)",
            file=f"{tables.name} products",
            column="product_category",
        )
    bought_rows, line_product = np.unique(row, return_inverse=True)
    names_of_bought = np.asarray(cat_uniques)[cat_codes[bought_rows]].astype(object)
    category_names, product_category = np.unique(names_of_bought, return_inverse=True)
    return {
        "product_ids": products["product_id"].to_numpy()[bought_rows],
        "category_names": category_names,
        "product_category": product_category.astype(np.int64),
        "line_product": line_product.astype(np.int64),
    }


def _visits(hw: np.ndarray, line: dict[str, np.ndarray], n_w: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Group lines into visits (household-weeks); ``hw`` = household code * n_weeks + week index."""
    visit_key, v = np.unique(hw, return_inverse=True)
    n_v = visit_key.size
    n_b = int(line["basket"].max()) + 1
    # Distinct (visit, basket) pairs: the trips of each visit.
    visit_basket = np.unique(v.astype(np.int64) * n_b + line["basket"])
    return visit_key, {
        "visit_household": visit_key // n_w,
        "visit_week": visit_key % n_w,
        "visit_quantity": np.bincount(v, weights=line["quantity"], minlength=n_v),
        "visit_sales": np.bincount(v, weights=line["sales"], minlength=n_v),
        "visit_trips": np.bincount(visit_basket // n_b, minlength=n_v).astype(np.float64),
        "visit_lines": np.bincount(v, minlength=n_v).astype(np.float64),
        "visit_promo_lines": np.bincount(v, weights=line["promo"], minlength=n_v),
    }


def _purchases(h, p, w, qty, product_category, n_p: int, n_c: int, n_w: int, *,
               promo: np.ndarray) -> dict[str, np.ndarray]:
    """Purchased lines (household-product-weeks) and household-category-weeks, each
    sorted by its key; integer keys keep the grouping a single sort. ``promo``: each
    line's 1.0 / 0.0 discount flag."""
    hpw_key, hpw_of_line = np.unique((h * n_p + p) * n_w + w, return_inverse=True)
    hpw_week, hpw_hp = hpw_key % n_w, hpw_key // n_w
    hpw_product, hpw_household = hpw_hp % n_p, hpw_hp // n_p
    hcw_key, hpw_hcw = np.unique(
        (hpw_household * n_c + product_category[hpw_product]) * n_w + hpw_week, return_inverse=True
    )
    hcw_hc = hcw_key // n_w
    return {
        "hpw_household": hpw_household,
        "hpw_product": hpw_product,
        "hpw_week": hpw_week,
        "hpw_quantity": np.bincount(hpw_of_line, weights=qty, minlength=hpw_key.size),
        "hpw_hcw": hpw_hcw,
        "hpw_lines": np.bincount(hpw_of_line, minlength=hpw_key.size).astype(np.float64),
        "hpw_promo_lines": np.bincount(hpw_of_line, weights=promo, minlength=hpw_key.size),
        "hcw_household": hcw_hc // n_c,
        "hcw_category": hcw_hc % n_c,
        "hcw_week": hcw_key % n_w,
    }


def _promoted_grid(promo_weeks: pd.DataFrame | None, product_ids: np.ndarray, weeks: np.ndarray) -> np.ndarray | None:
    """Boolean (product, week) grid: listed in the calendar with display or mailer True."""
    if promo_weeks is None:
        return None
    grid = np.zeros((product_ids.size, weeks.size), dtype=bool)
    # Missing flags count as "not promoted".
    on = promo_weeks["display"].fillna(False).to_numpy(dtype=bool) | promo_weeks["mailer"].fillna(
        False
    ).to_numpy(dtype=bool)
    pid = promo_weeks["product_id"].to_numpy()[on]
    wk = promo_weeks["week"].to_numpy()[on]
    p = np.searchsorted(product_ids, pid).clip(max=max(product_ids.size - 1, 0))
    w = np.searchsorted(weeks, wk).clip(max=max(weeks.size - 1, 0))
    # Calendar rows for products not bought on this side or weeks outside the scoring weeks are ignored.
    hit = (product_ids[p] == pid) & (weeks[w] == wk)
    grid[p[hit], w[hit]] = True
    return grid


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """Boolean mask of rows that start a new group in arrays sorted by ``keys``."""
    n = keys[0].size
    start = np.ones(n, dtype=bool)
    if n > 1:
        same = np.ones(n - 1, dtype=bool)
        for key in keys:
            same &= key[1:] == key[:-1]
        start[1:] = ~same
    return start


# --------------------------------------------------------------------------- tier 1


def visit_probability(prep: Prepared) -> np.ndarray:
    """Per household (sorted by id): visited weeks / weeks in its window.

    The window runs from the household's first week with a line to the last
    scoring week, counting scoring weeks only.
    """
    n_visits = np.bincount(prep.visit_household, minlength=prep.n_households)
    # Visits are sorted by (household, week): a household's first visit starts its group.
    first_week = prep.visit_week[_group_starts(prep.visit_household)]
    return n_visits / (prep.n_weeks - first_week)


def basket_size(prep: Prepared) -> np.ndarray:
    """Per visit (sorted by household, week): units bought (sum of quantity)."""
    return prep.visit_quantity.copy()


def quantity(prep: Prepared) -> np.ndarray:
    """Per purchased line (household-product-week, sorted by household, product, week): units."""
    return prep.hpw_quantity.copy()


def revenue(prep: Prepared) -> np.ndarray:
    """Per visit (sorted by household, week): spend (sum of sales_value)."""
    return prep.visit_sales.copy()


def trips_per_visit(prep: Prepared) -> np.ndarray:
    """Per visit (sorted by household, week): distinct baskets (reported beside the suite)."""
    return prep.visit_trips.copy()


# --------------------------------------------------------------------------- tier 2


def category_purchase_by_category(prep: Prepared) -> pd.Series:
    """Per category bought on this side: share of visits that buy it."""
    visits_buying = np.bincount(prep.hcw_category, minlength=prep.n_categories)
    return pd.Series(visits_buying / prep.n_visits, index=pd.Index(prep.category_names, name="category"))


def category_purchase(prep: Prepared) -> np.ndarray:
    """Per category (sorted by name): share of visits that buy it."""
    return category_purchase_by_category(prep).to_numpy()


def recency(prep: Prepared) -> np.ndarray:
    """Per visit after the household's first (sorted by household, week): weeks since the previous visit.

    Weeks are calendar week numbers, so a scoring-week gap counts as elapsed time.
    """
    later = ~_group_starts(prep.visit_household)
    week = prep.weeks[prep.visit_week]
    gap = np.empty(week.size, dtype=np.float64)
    gap[0:1] = np.nan
    gap[1:] = week[1:] - week[:-1]
    return gap[later]


def sales_volume(prep: Prepared) -> np.ndarray:
    """Per product-week (products sorted by id, then weeks): units, zeros included."""
    return prep.units.ravel().astype(np.float64)


def price_by_product(prep: Prepared) -> pd.Series:
    """Per product bought on this side: mean paid unit price, sum(sales_value) / sum(quantity)."""
    return pd.Series(
        prep.product_sales / prep.product_quantity, index=pd.Index(prep.product_ids, name="product_id")
    )


def price_distribution(prep: Prepared) -> np.ndarray:
    """Per product (sorted by id): mean paid unit price."""
    return price_by_product(prep).to_numpy()


# --------------------------------------------------------------------------- tier 3


def product_purchase_by_product(prep: Prepared) -> pd.Series:
    """Per product: its purchased lines / its category's purchased lines (household-product-weeks)."""
    lines = np.bincount(prep.hpw_product, minlength=prep.n_products).astype(np.float64)
    cat_lines = np.bincount(prep.product_category, weights=lines, minlength=prep.n_categories)
    return pd.Series(
        lines / cat_lines[prep.product_category], index=pd.Index(prep.product_ids, name="product_id")
    )


def product_purchase(prep: Prepared) -> np.ndarray:
    """Per product (sorted by id): share of its category's purchased lines."""
    return product_purchase_by_product(prep).to_numpy()


def category_penetration(prep: Prepared) -> np.ndarray:
    """Per visit (sorted by household, week): distinct categories bought."""
    return prep.visit_categories.copy()


def category_size_by_category(prep: Prepared) -> pd.Series:
    """Per category bought on this side: distinct products bought."""
    size = np.bincount(prep.product_category, minlength=prep.n_categories).astype(np.float64)
    return pd.Series(size, index=pd.Index(prep.category_names, name="category"))


def category_size(prep: Prepared) -> np.ndarray:
    """Per category (sorted by name): distinct products bought."""
    return category_size_by_category(prep).to_numpy()


def marketing_signal(prep: Prepared) -> np.ndarray:
    """Per visit (sorted by household, week): share of its lines with retail_disc > 0."""
    return prep.visit_promo_lines / prep.visit_lines


def promo_response_by_category(prep: Prepared) -> pd.Series:
    """Per category: log(mean units per promoted / per non-promoted product-week); NaN where undefined.

    The product-weeks are the sales_volume grid (products of the category bought
    at least once x scoring weeks). Undefined: no promoted or no non-promoted
    product-week, or zero units on either side of the ratio.

    Raises
    ------
    ValueError
        If the side has no promotion calendar.
    """
    if prep.promoted is None:
        raise ValueError(f"{prep.name}: no promotion calendar, promo_response is undefined")
    # Per product first (row sums of the grid), then per category: no mask over the grid's cells.
    promoted = prep.promoted
    n_c = prep.n_categories
    cat = prep.product_category
    on_cells = promoted.sum(axis=1).astype(np.float64)
    on_units = np.where(promoted, prep.units, 0.0).sum(axis=1)
    n_on = np.bincount(cat, weights=on_cells, minlength=n_c)
    n_off = np.bincount(cat, weights=prep.n_weeks - on_cells, minlength=n_c)
    u_on = np.bincount(cat, weights=on_units, minlength=n_c)
    u_off = np.bincount(cat, weights=prep.units.sum(axis=1) - on_units, minlength=n_c)
    ok = (n_on > 0) & (n_off > 0) & (u_on > 0) & (u_off > 0)
    value = np.full(n_c, np.nan)
    value[ok] = np.log((u_on[ok] / n_on[ok]) / (u_off[ok] / n_off[ok]))
    return pd.Series(value, index=pd.Index(prep.category_names, name="category"))


def promo_response(prep: Prepared) -> np.ndarray:
    """Per category where defined (sorted by name): log promoted / non-promoted mean units."""
    values = promo_response_by_category(prep).to_numpy()
    return values[~np.isnan(values)]


def _previous_purchase_weeks(prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Previous week the household bought the same product (per purchased line) and
    the same category (per household-category-week); -1 when there is none."""
    prev_pw = np.full(prep.hpw_week.size, -1, dtype=np.int64)
    start = _group_starts(prep.hpw_household, prep.hpw_product)
    prev_pw[1:] = prep.hpw_week[:-1]
    prev_pw[start] = -1
    prev_cw = np.full(prep.hcw_week.size, -1, dtype=np.int64)
    start_c = _group_starts(prep.hcw_household, prep.hcw_category)
    prev_cw[1:] = prep.hcw_week[:-1]
    prev_cw[start_c] = -1
    return prev_pw, prev_cw


def _in_previous_week(prep: Prepared, prev_pw: np.ndarray, prev_cw: np.ndarray) -> np.ndarray:
    """Per purchased line: whether its product was bought in the household's previous purchase week of the category.

    A product's own previous week cannot be later than the category's, so it
    was in that week exactly when the two are equal.
    """
    return (prev_pw >= 0) & (prev_pw == prev_cw[prep.hpw_hcw])


def _weeks_holding(prep: Prepared, lines: np.ndarray) -> np.ndarray:
    """Per household-category-week: whether any of its purchased lines is flagged in ``lines`` (one per line).

    With ``lines = prev_pw >= 0`` (the product was bought in an earlier week), only
    non-first weeks of a category can hold one.
    """
    return np.bincount(prep.hpw_hcw, weights=lines, minlength=prep.hcw_week.size) > 0


def loyalty(prep: Prepared) -> np.ndarray:
    """Per household with a repeat category week (sorted by id): share of its
    category purchase weeks, after its first in that category, that contain a
    product it bought in an earlier week in that category.
    """
    prev_pw, prev_cw = _previous_purchase_weeks(prep)
    has_repeat = _weeks_holding(prep, prev_pw >= 0)
    eligible = prev_cw >= 0
    n_elig = np.bincount(prep.hcw_household, weights=eligible, minlength=prep.n_households)
    n_rep = np.bincount(prep.hcw_household, weights=has_repeat & eligible, minlength=prep.n_households)
    keep = n_elig > 0
    return n_rep[keep] / n_elig[keep]


def brand_switching(prep: Prepared) -> np.ndarray:
    """Per household-category with >= 2 purchase weeks (sorted by household, category):
    share of consecutive purchase-week pairs whose product set differs from the
    previous purchase week's.
    """
    prev_pw, prev_cw = _previous_purchase_weeks(prep)
    n_hcw = prep.hcw_week.size
    # Equal sizes + every product of week k found in week k-1  <=>  equal sets.
    in_prev = _in_previous_week(prep, prev_pw, prev_cw)
    n_found = np.bincount(prep.hpw_hcw, weights=in_prev, minlength=n_hcw)
    n_prod = np.bincount(prep.hpw_hcw, minlength=n_hcw).astype(np.float64)
    n_prod_prev = np.empty_like(n_prod)
    n_prod_prev[0:1] = -1
    n_prod_prev[1:] = n_prod[:-1]
    eligible = prev_cw >= 0
    same = eligible & (n_found == n_prod) & (n_prod == n_prod_prev)
    switch = eligible & ~same
    group = np.cumsum(_group_starts(prep.hcw_household, prep.hcw_category)) - 1
    n_groups = int(group[-1]) + 1 if group.size else 0
    n_pairs = np.bincount(group, weights=eligible, minlength=n_groups)
    n_switch = np.bincount(group, weights=switch, minlength=n_groups)
    keep = n_pairs > 0
    return n_switch[keep] / n_pairs[keep]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the suite.

    Attributes
    ----------
    name
        Metric name (the key in ``metrics.json``).
    tier
        1, 2 or 3.
    unit
        What one value is ("one value per ...").
    function
        ``(Prepared) -> np.ndarray`` of values.
    needs_promo
        True when the metric needs a promotion calendar on both sides.
    """

    name: str
    tier: int
    unit: str
    function: Callable[[Prepared], np.ndarray]
    needs_promo: bool = False


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("visit_probability", 1, "household: share of its window's weeks with a visit", visit_probability),
        MetricSpec("basket_size", 1, "visit: units (sum of quantity)", basket_size),
        MetricSpec("quantity", 1, "purchased line (household-product-week): units", quantity),
        MetricSpec("revenue", 1, "visit: spend (sum of sales_value)", revenue),
        MetricSpec("category_purchase", 2, "category: share of visits that buy it", category_purchase),
        MetricSpec("recency", 2, "visit after the household's first: weeks since its previous visit", recency),
        MetricSpec("sales_volume", 2, "product-week of each product bought at least once: units", sales_volume),
        MetricSpec("price_distribution", 2, "product: mean paid unit price", price_distribution),
        MetricSpec("product_purchase", 3, "product: share of its category's purchased lines", product_purchase),
        MetricSpec("category_penetration", 3, "visit: distinct categories bought", category_penetration),
        MetricSpec("category_size", 3, "category: distinct products bought", category_size),
        MetricSpec("marketing_signal", 3, "visit: share of its lines with retail_disc > 0", marketing_signal),
        MetricSpec(
            "promo_response",
            3,
            "category: log(mean units per promoted / non-promoted product-week)",
            promo_response,
            needs_promo=True,
        ),
        MetricSpec("loyalty", 3, "household: share of repeat category weeks that rebuy a known product", loyalty),
        MetricSpec(
            "brand_switching",
            3,
            "household-category with >= 2 purchase weeks: share of purchase weeks whose product set changed",
            brand_switching,
        ),
    )
}


def evaluate(prep: Prepared, *, metrics: dict[str, MetricSpec] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Compute every metric's values on one side.

    Parameters
    ----------
    prep
        The side's groupings.
    metrics
        Which metrics (default: :data:`METRICS`).

    Returns
    -------
    values, skipped
        ``values[name]`` is the metric's value array; ``skipped[name]`` says why a
        metric could not be computed (no promotion calendar).
    """
    metrics = METRICS if metrics is None else metrics
    values: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for name, spec in metrics.items():
        if spec.needs_promo and prep.promoted is None:
            skipped[name] = f"{prep.name} side has no promotion calendar"
            continue
        values[name] = spec.function(prep)
    return values, skipped


def left_out(prep: Prepared, values: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Entities that some metrics leave out on this side, with what they are.

    Parameters
    ----------
    prep
        The side's groupings.
    values
        Already computed value arrays (from :func:`evaluate`), reused when given.

    Returns
    -------
    dict
        ``promo_response`` (categories where the log ratio is undefined; absent
        without a calendar), ``loyalty`` (households without a category purchase
        week after their first in that category) and ``brand_switching``
        (household-categories with a single purchase week): ``{"count", "of", "what"}``.
    """
    values = values or {}
    out: dict[str, dict] = {}
    if prep.promoted is not None:
        undefined = int(np.isnan(promo_response_by_category(prep).to_numpy()).sum())
        out["promo_response"] = {
            "count": undefined,
            "of": prep.n_categories,
            "what": "categories with no promoted or no non-promoted product-week, or zero units on either side",
        }
    out["loyalty"] = {
        "count": prep.n_households - int(values["loyalty"].size if "loyalty" in values else loyalty(prep).size),
        "of": prep.n_households,
        "what": "households without a category purchase week after their first in that category",
    }
    n_hc = int(_group_starts(prep.hcw_household, prep.hcw_category).sum())
    out["brand_switching"] = {
        "count": n_hc - int(
            values["brand_switching"].size if "brand_switching" in values else brand_switching(prep).size
        ),
        "of": n_hc,
        "what": "household-categories with a single purchase week",
    }
    return out
