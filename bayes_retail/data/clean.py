"""Line-level cleaning rules (docs/data.md lists them with their counts on the embedded data).

Each rule is a small pure function ``(lines, ...) -> (kept_lines, RuleResult)`` so it
can be tested alone and reported with the number of lines it removes. The metric
suite applies the same row rules to both sides of a comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

#: Departments that are not grocery shopping: fuel, services and accounting lines.
NON_GROCERY_DEPARTMENTS: frozenset[str] = frozenset(
    {
        "FUEL",
        "KIOSK-GAS",
        "MISCELLANEOUS",
        "MISC SALES TRAN",
        "MISC. TRANS.",
        "COUPON",
        "POSTAL CENTER",
        "CNTRL/STORE SUP",
        "PROD-WHS SALES",
        "GM MERCH EXP",
        "CHARITABLE CONT",
    }
)

#: Categories that are accounting lines wherever their department puts them.
NON_GROCERY_CATEGORIES: frozenset[str] = frozenset(
    {"COUPON", "COUPON/MISC ITEMS", "COUPONS/STORE & MFG", "FUEL", "BOTTLE DEPOSITS", "GASOLINE-REG UNLEADED"}
)

#: A week with fewer lines than this share of the median week is partial.
PARTIAL_WEEK_SHARE = 0.5


@dataclass
class RuleResult:
    """What one cleaning rule did."""

    rule: str
    description: str
    rows_removed: int
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def drop_unknown_products(lines: pd.DataFrame, products: pd.DataFrame) -> tuple[pd.DataFrame, RuleResult]:
    """Drop lines whose product is missing from the product table."""
    known = lines["product_id"].isin(products["product_id"])
    return _keep(lines, known, "unknown_product", "product missing from the product table")


def drop_non_grocery(
    lines: pd.DataFrame,
    products: pd.DataFrame,
    *,
    departments: frozenset[str] = NON_GROCERY_DEPARTMENTS,
    categories: frozenset[str] = NON_GROCERY_CATEGORIES,
) -> tuple[pd.DataFrame, RuleResult]:
    """Drop lines of departments / categories that are not grocery shopping (fuel, coupons, services)."""
    info = products.set_index("product_id")
    dept = lines["product_id"].map(info["department"]) if "department" in info else None
    cat = lines["product_id"].map(info["product_category"])
    bad = cat.isin(categories)
    if dept is not None:
        bad |= dept.isin(departments)
    removed_by = lines.loc[bad, "product_id"].map(info["department"]) if dept is not None else cat[bad]
    detail = {"by_department": {str(k): int(v) for k, v in removed_by.value_counts().items()}}
    return _keep(lines, ~bad, "non_grocery", "department or category is not grocery shopping", detail)


def drop_uncategorised(lines: pd.DataFrame, products: pd.DataFrame) -> tuple[pd.DataFrame, RuleResult]:
    """Drop lines whose product has no ``product_category`` (it cannot enter a choice set)."""
    cat = lines["product_id"].map(products.set_index("product_id")["product_category"])
    blank = cat.isna() | (cat.astype("string").str.strip() == "")
    return _keep(lines, ~blank.to_numpy(), "uncategorised", "product has no product_category")


def drop_non_positive(lines: pd.DataFrame) -> tuple[pd.DataFrame, RuleResult]:
    """Drop lines with quantity <= 0 or sales_value <= 0 (returns, voids, free items)."""
    ok = (lines["quantity"] > 0) & (lines["sales_value"] > 0)
    detail = {
        "quantity_le_0": int((lines["quantity"] <= 0).sum()),
        "sales_value_le_0": int((lines["sales_value"] <= 0).sum()),
    }
    return _keep(lines, ok, "non_positive", "quantity <= 0 or sales_value <= 0", detail)


def partial_weeks(lines: pd.DataFrame, *, min_share: float = PARTIAL_WEEK_SHARE) -> list[int]:
    """Weeks at either end of the panel with fewer lines than ``min_share`` x the median week.

    Only leading and trailing weeks are tested: a quiet week inside the panel is data,
    a short week at an edge is a truncated observation window (week 1 of the
    embedded data covers about one day).
    """
    counts = lines["week"].value_counts().sort_index()
    if counts.empty:
        return []
    threshold = min_share * float(np.median(counts.to_numpy()))
    short = counts < threshold
    weeks: list[int] = []
    for order in (counts.index, counts.index[::-1]):
        for week in order:
            if not short[week]:
                break
            weeks.append(int(week))
    return sorted(set(weeks))


def drop_partial_weeks(
    lines: pd.DataFrame, *, min_share: float = PARTIAL_WEEK_SHARE
) -> tuple[pd.DataFrame, RuleResult]:
    """Drop the partial weeks found by :func:`partial_weeks`."""
    weeks = partial_weeks(lines, min_share=min_share)
    keep = ~lines["week"].isin(weeks)
    return _keep(
        lines,
        keep,
        "partial_week",
        f"edge weeks with < {min_share:g} x the median week's lines",
        {"weeks": weeks},
    )


def clean_lines(
    lines: pd.DataFrame,
    products: pd.DataFrame,
    *,
    drop_partial: bool = True,
    min_week_share: float = PARTIAL_WEEK_SHARE,
) -> tuple[pd.DataFrame, list[RuleResult]]:
    """Apply every line rule in order; return the kept lines and one result per rule.

    Discounts are expected as magnitudes already (the loaders map the original
    download's negative discounts with ``abs``).
    """
    results: list[RuleResult] = []
    lines, res = drop_unknown_products(lines, products)
    results.append(res)
    lines, res = drop_non_grocery(lines, products)
    results.append(res)
    lines, res = drop_uncategorised(lines, products)
    results.append(res)
    lines, res = drop_non_positive(lines)
    results.append(res)
    if drop_partial:
        lines, res = drop_partial_weeks(lines, min_share=min_week_share)
        results.append(res)
    return lines.reset_index(drop=True), results


def _keep(
    lines: pd.DataFrame, keep, rule: str, description: str, detail: dict | None = None
) -> tuple[pd.DataFrame, RuleResult]:
    keep = np.asarray(keep, dtype=bool)
    removed = int((~keep).sum())
    kept = lines.loc[keep] if removed else lines
    return kept, RuleResult(rule, description, removed, detail or {})
