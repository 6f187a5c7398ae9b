"""Pricing components of the suite: compare two product-week price panels.

A price panel has one row per product-week with ``product_id``, ``week``,
``shelf_price`` (float, NaN when unknown), ``depth`` (offered discount / shelf
price, in [0, 1); NaN when unobserved: a discount is seen only when someone
buys), ``display`` and ``mailer`` (bool).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from bayes_retail.errors import DataError
from bayes_retail.metrics.scoring import ks_statistic

__all__ = ["PRICE_PANEL_COLUMNS", "PricingResult", "pricing_metrics"]

#: Columns a price panel must have.
PRICE_PANEL_COLUMNS: tuple[str, ...] = ("product_id", "week", "shelf_price", "depth", "display", "mailer")


@dataclass
class PricingResult:
    """Pricing comparison of a real and a synthetic price panel.

    Attributes
    ----------
    base_price_ks, base_price_score
        KS statistic (and 1 - KS) of the relative shelf price
        ``log(shelf_price / product's median shelf_price)`` over product-weeks with
        a shelf price. Relative, so the catalogue mix does not dominate.
    raw_shelf_price_ks
        KS statistic of the shelf price itself.
    promo_discount_ks, promo_discount_score
        KS statistic (and 1 - KS) of the depth over product-weeks with an
        observed depth > 0.
    promo_frequency_real, promo_frequency_synthetic
        Share of the product-weeks with an observed depth that have depth > 0.
    promo_frequency_diff, promo_frequency_abs_diff
        Synthetic minus real, and its absolute value.
    n_real, n_synthetic
        Counts per side: ``shelf`` (product-weeks with a shelf price),
        ``depth_observed``, ``discounted`` (observed depth > 0).

    A field is ``None`` when a side has no product-week to compute it from.
    """

    base_price_ks: float | None
    base_price_score: float | None
    raw_shelf_price_ks: float | None
    promo_discount_ks: float | None
    promo_discount_score: float | None
    promo_frequency_real: float | None
    promo_frequency_synthetic: float | None
    promo_frequency_diff: float | None
    promo_frequency_abs_diff: float | None
    n_real: dict
    n_synthetic: dict

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PricingResult":
        return cls(**data)


def _validate(panel: pd.DataFrame, name: str) -> None:
    missing = [c for c in PRICE_PANEL_COLUMNS if c not in panel.columns]
    if missing:
        raise DataError(f"missing columns {missing}", file=f"{name} price panel", column=missing[0])
    shelf = panel["shelf_price"].to_numpy(dtype=np.float64)
    if (shelf[~np.isnan(shelf)] <= 0).any():
        raise DataError("shelf_price must be > 0 where known", file=f"{name} price panel", column="shelf_price")
    depth = panel["depth"].to_numpy(dtype=np.float64)
    seen = depth[~np.isnan(depth)]
    if ((seen < 0) | (seen >= 1)).any():
        raise DataError("depth must lie in [0, 1) where observed", file=f"{name} price panel", column="depth")


def _side(panel: pd.DataFrame, weeks) -> dict:
    if weeks is not None:
        panel = panel.loc[panel["week"].isin(np.asarray(weeks))]
    shelf = panel["shelf_price"].to_numpy(dtype=np.float64)
    has_shelf = ~np.isnan(shelf)
    priced = pd.DataFrame({"product_id": panel["product_id"].to_numpy()[has_shelf], "shelf": shelf[has_shelf]})
    median = priced.groupby("product_id")["shelf"].transform("median").to_numpy()
    depth = panel["depth"].to_numpy(dtype=np.float64)
    observed = depth[~np.isnan(depth)]
    return {
        "shelf": priced["shelf"].to_numpy(),
        "relative": np.log(priced["shelf"].to_numpy() / median),
        "discount": observed[observed > 0],
        "frequency": float(np.mean(observed > 0)) if observed.size else None,
        "n": {"shelf": int(has_shelf.sum()), "depth_observed": int(observed.size), "discounted": int((observed > 0).sum())},
    }


def _ks_or_none(a: np.ndarray, b: np.ndarray) -> float | None:
    return ks_statistic(a, b) if a.size and b.size else None


def pricing_metrics(real: pd.DataFrame, synthetic: pd.DataFrame, *, weeks=None) -> PricingResult:
    """Compare two product-week price panels.

    Parameters
    ----------
    real, synthetic
        Price panels with :data:`PRICE_PANEL_COLUMNS`.
    weeks
        Restrict both panels to these weeks (the suite passes its scoring weeks);
        ``None``: all rows.

    Returns
    -------
    PricingResult

    Raises
    ------
    DataError
        A column is missing, a shelf price is <= 0 or a depth is outside [0, 1).
    """
    _validate(real, "real")
    _validate(synthetic, "synthetic")
    r = _side(real, weeks)
    s = _side(synthetic, weeks)
    base = _ks_or_none(r["relative"], s["relative"])
    discount = _ks_or_none(r["discount"], s["discount"])
    diff = None
    if r["frequency"] is not None and s["frequency"] is not None:
        diff = s["frequency"] - r["frequency"]
    return PricingResult(
        base_price_ks=base,
        base_price_score=None if base is None else 1.0 - base,
        raw_shelf_price_ks=_ks_or_none(r["shelf"], s["shelf"]),
        promo_discount_ks=discount,
        promo_discount_score=None if discount is None else 1.0 - discount,
        promo_frequency_real=r["frequency"],
        promo_frequency_synthetic=s["frequency"],
        promo_frequency_diff=diff,
        promo_frequency_abs_diff=None if diff is None else abs(diff),
        n_real=r["n"],
        n_synthetic=s["n"],
    )
