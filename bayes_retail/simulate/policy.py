"""Promotion policies (what-if scenarios) and their effect on revenue, units and visits.

A policy overrides the promotions of chosen product-weeks: a table with
``product_id`` and ``week`` and any of ``depth``, ``display``, ``mailer``
(a missing column, or a missing value, keeps the baseline's), or a Python
callable that receives the baseline's product-week table (``product_id``,
``week``, ``base_price``, ``depth``, ``display``, ``mailer``) and returns the
rows it changes in the same form. Shelf prices are the baseline's.

:func:`what_if` simulates the same customers under the baseline and under the
policy with the same random streams (common random numbers: the difference
is then mostly the policy's effect, not simulation noise) for several
posterior draws, and reports the posterior distribution of the totals and of
their differences. The identifying assumption of the model applies: promotion
effects are learnt from promotions the chain planned in advance, so a policy
far outside the observed promotions extrapolates.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pandas as pd

from bayes_retail.simulate.inputs import Catalogue, PriceGrid

PROMOTION_COLUMNS = ("depth", "display", "mailer")
Policy = pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame]


def read_policy(path) -> pd.DataFrame:
    """A policy table from a CSV or parquet file (errors name the file)."""
    from pathlib import Path

    from bayes_retail.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError("no such policy file", file=str(path))
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # pandas / pyarrow raise many types for a damaged file
        raise DataError(f"cannot read the policy ({type(exc).__name__}: {exc})", file=str(path)) from exc
    try:
        return validate_policy_columns(table)
    except ValueError as exc:
        raise DataError(str(exc), file=str(path)) from exc


def validate_policy_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Check a policy table's columns and values (not yet its products and weeks)."""
    missing = [c for c in ("product_id", "week") if c not in table.columns]
    if missing:
        raise ValueError(f"a policy needs columns product_id and week; missing {missing}")
    present = [c for c in PROMOTION_COLUMNS if c in table.columns]
    if not present:
        raise ValueError(f"a policy sets at least one of {list(PROMOTION_COLUMNS)}")
    unknown = sorted(set(table.columns) - {"product_id", "week", *PROMOTION_COLUMNS})
    if unknown:
        raise ValueError(f"unknown policy column(s) {unknown}")
    if table.duplicated(["product_id", "week"]).any():
        first = table.loc[table.duplicated(["product_id", "week"]), ["product_id", "week"]].iloc[0].tolist()
        raise ValueError(f"product-week {first} appears twice in the policy")
    if "depth" in table and not table["depth"].dropna().between(0.0, 0.99).all():
        bad = table.loc[~table["depth"].between(0.0, 0.99) & table["depth"].notna(), "depth"].iloc[0]
        raise ValueError(f"policy depth {bad} outside [0, 0.99]")
    for flag in ("display", "mailer"):
        if flag in table and not table[flag].dropna().isin([0, 1, True, False]).all():
            raise ValueError(f"policy column {flag} must be 0/1")
    return table


def baseline_table(prices: PriceGrid, catalogue: Catalogue, week_numbers: np.ndarray) -> pd.DataFrame:
    """The baseline's product-week table a policy callable receives."""
    n_p, n_w = prices.shelf.shape
    return pd.DataFrame({
        "product_id": np.repeat(catalogue.product_ids, n_w),
        "week": np.tile(np.asarray(week_numbers), n_p),
        "base_price": prices.shelf.ravel(),
        "depth": prices.depth.ravel(),
        "display": prices.display.ravel() > 0,
        "mailer": prices.mailer.ravel() > 0,
    })


def apply_policy(
    prices: PriceGrid, catalogue: Catalogue, week_numbers: np.ndarray, policy: Policy
) -> PriceGrid:
    """``prices`` with the policy's product-weeks overridden.

    Raises
    ------
    ValueError
        Naming the first unknown product or week, or a bad column or value.
    """
    table = policy(baseline_table(prices, catalogue, week_numbers)) if callable(policy) else policy
    table = validate_policy_columns(pd.DataFrame(table).drop(columns=["base_price"], errors="ignore"))
    rows = pd.Index(catalogue.product_ids).get_indexer(table["product_id"].to_numpy())
    if np.any(rows < 0):
        raise ValueError(f"policy names unknown product_id {table['product_id'].to_numpy()[rows < 0][0]}")
    cols = pd.Index(np.asarray(week_numbers)).get_indexer(table["week"].to_numpy())
    if np.any(cols < 0):
        raise ValueError(
            f"policy names week {table['week'].to_numpy()[cols < 0][0]}, outside the simulated weeks "
            f"{int(week_numbers[0])}-{int(week_numbers[-1])}"
        )
    grids = {name: getattr(prices, name).copy() for name in PROMOTION_COLUMNS}
    for name in PROMOTION_COLUMNS:
        if name in table:
            values = table[name].to_numpy(dtype=float)
            keep = ~np.isnan(values)
            grids[name][rows[keep], cols[keep]] = values[keep]
    return dataclasses.replace(prices, **grids)


def summarise_totals(lines) -> dict[str, float]:
    """Revenue (sales value), units and visits (customer-weeks with a purchase) of a transactions table.

    ``lines``: a pandas DataFrame or an Arrow table with the simulator's columns.
    """
    customer = np.asarray(lines["customer"], dtype=np.int64)
    week = np.asarray(lines["week"], dtype=np.int64)
    return {
        "revenue": float(np.asarray(lines["sales_value"]).sum()),
        "units": float(np.asarray(lines["quantity"]).sum()),
        "visits": float(np.unique(customer * 1024 + week).size),
    }


def compare_totals(per_draw: pd.DataFrame, *, prob: float = 0.9) -> pd.DataFrame:
    """Posterior summary of baseline, policy and their difference per metric, from one row per (draw, metric).

    ``per_draw`` has columns ``draw``, ``metric``, ``baseline``, ``policy``.
    Returns median and the central ``prob`` interval of each, and of the
    relative lift ``policy / baseline - 1``.
    """
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    frame = per_draw.assign(difference=per_draw["policy"] - per_draw["baseline"],
                            lift=per_draw["policy"] / per_draw["baseline"] - 1.0)
    rows = []
    for metric, group in frame.groupby("metric", sort=False):
        row = {"metric": metric, "draws": len(group)}
        for col in ("baseline", "policy", "difference", "lift"):
            row[f"{col}_median"] = float(group[col].median())
            row[f"{col}_q{lo:.2f}"] = float(group[col].quantile(lo))
            row[f"{col}_q{hi:.2f}"] = float(group[col].quantile(hi))
        rows.append(row)
    return pd.DataFrame(rows)
