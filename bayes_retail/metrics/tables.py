"""What the metric suite reads: one side (real or synthetic) of a comparison."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_retail.errors import DataError

#: Transaction columns every metric needs.
LINE_COLUMNS: tuple[str, ...] = (
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "retail_disc",
    "week",
)


@dataclass
class MetricTables:
    """One side of a comparison, in the internal schema.

    Parameters
    ----------
    transactions
        One row per basket line: at least :data:`LINE_COLUMNS`; extra columns
        (``store_id``, ``draw``, prices, ...) are ignored.
    products
        ``product_id`` and ``product_category`` (and ``department`` when the
        cleaning rules should see it) of every product the lines name.
    promo_weeks
        The promotion calendar: one row per promoted product-week with boolean
        ``display`` and ``mailer`` columns; product-weeks not listed are not
        promoted. ``None`` when the side has no calendar (metrics that need one
        are then left out and named in the result).
    name
        A label used in messages and in ``metrics.json`` ("real", "synthetic", ...).
    """

    transactions: pd.DataFrame
    products: pd.DataFrame
    promo_weeks: pd.DataFrame | None = None
    name: str = "table"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in LINE_COLUMNS if c not in self.transactions.columns]
        if missing:
            raise DataError(f"missing columns {missing}", file=f"{self.name} transactions", column=missing[0])
        for col in ("product_id", "product_category"):
            if col not in self.products.columns:
                raise DataError("missing column", file=f"{self.name} products", column=col)
        if self.promo_weeks is not None:
            for col in ("product_id", "week", "display", "mailer"):
                if col not in self.promo_weeks.columns:
                    raise DataError("missing column", file=f"{self.name} promo_weeks", column=col)

    @property
    def households(self) -> np.ndarray:
        """Sorted ids of the households that appear in the lines."""
        return np.unique(self.transactions["household_id"].to_numpy())

    def subset_weeks(self, weeks) -> "MetricTables":
        """The same side with only the lines of ``weeks`` (week numbers; calendar and products kept)."""
        return self._lines_where(self.transactions["week"].isin(np.asarray(weeks)))

    def subset_households(self, households: np.ndarray) -> "MetricTables":
        """The same side restricted to ``households`` (calendar and products kept)."""
        return self._lines_where(self.transactions["household_id"].isin(households))

    def _lines_where(self, keep) -> "MetricTables":
        return MetricTables(
            self.transactions.loc[keep].reset_index(drop=True),
            self.products,
            self.promo_weeks,
            name=self.name,
            meta=dict(self.meta),
        )
