"""Entity-matched checks: what a per-entity KS cannot see.

A KS statistic over "one value per category" compares two bags of numbers and
forgets which number belongs to which category: a synthetic table whose category
labels were shuffled keeps a perfect score. The checks here match entities by
name (category) or id (product) and measure how far each entity's value moved:
the sales-weighted mean of ``|log(synthetic / real)|`` (for promo_response, itself
a log, ``|synthetic - real|``), weighted by the entity's real sales_value.

:func:`entity_values` returns the per-entity tables of one side so a posterior
predictive check can compute interval coverage over many synthetic draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from bayes_retail.metrics import distributions as dist
from bayes_retail.metrics.distributions import Prepared

__all__ = ["ENTITY_METRICS", "EntityMatch", "entity_values", "entity_match"]

#: Metric -> (entity kind, per-entity function, compared on the log scale already).
ENTITY_METRICS: dict[str, tuple[str, Callable[[Prepared], pd.Series], bool]] = {
    "category_purchase": ("category", dist.category_purchase_by_category, False),
    "category_size": ("category", dist.category_size_by_category, False),
    "price_distribution": ("product", dist.price_by_product, False),
    "product_purchase": ("product", dist.product_purchase_by_product, False),
    "promo_response": ("category", dist.promo_response_by_category, True),
}


@dataclass
class EntityMatch:
    """Entity-matched comparison of one metric.

    Attributes
    ----------
    metric, entity
        Metric name and entity kind ("category" or "product").
    mean_abs_log_ratio
        Real-sales-weighted mean of ``|log(synthetic / real)|`` over matched
        entities (``|synthetic - real|`` for promo_response); ``None`` when no
        entity matched.
    n_entities_real, n_entities_synthetic
        Entities with a value on each side.
    n_matched
        Entities with a usable value on both sides.
    missing_sales_share
        Share of the real sales_value (over entities with a real value) in
        entities that have no usable value on the synthetic side.
    """

    metric: str
    entity: str
    mean_abs_log_ratio: float | None
    n_entities_real: int
    n_entities_synthetic: int
    n_matched: int
    missing_sales_share: float

    def to_dict(self) -> dict:
        return asdict(self)


def entity_values(prep: Prepared, *, metrics: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Per-entity values of one side.

    Parameters
    ----------
    prep
        The side's groupings.
    metrics
        Which entity metrics (default: all of :data:`ENTITY_METRICS`);
        promo_response is left out when the side has no promotion calendar.

    Returns
    -------
    dict
        Metric -> DataFrame indexed by entity (category name or product id) with
        columns ``value`` and ``sales_value`` (the entity's sales on this side).
        Entities where the value is undefined (promo_response) are dropped.
    """
    names = list(ENTITY_METRICS) if metrics is None else list(metrics)
    cat_sales = pd.Series(prep.category_sales, index=pd.Index(prep.category_names, name="category"))
    prod_sales = pd.Series(prep.product_sales, index=pd.Index(prep.product_ids, name="product_id"))
    out: dict[str, pd.DataFrame] = {}
    for name in names:
        kind, function, _ = ENTITY_METRICS[name]
        if name == "promo_response" and prep.promoted is None:
            continue
        value = function(prep).dropna()
        sales = (cat_sales if kind == "category" else prod_sales).reindex(value.index)
        out[name] = pd.DataFrame({"value": value, "sales_value": sales})
    return out


def _match_one(name: str, real: pd.DataFrame, synthetic: pd.DataFrame) -> EntityMatch:
    kind, _, is_log = ENTITY_METRICS[name]
    if not is_log:
        # log ratios need positive values; every defined value is positive in
        # practice (shares of bought entities, counts >= 1, prices > 0).
        real = real[real["value"] > 0]
        synthetic = synthetic[synthetic["value"] > 0]
    syn_value = synthetic["value"].reindex(real.index)
    matched = syn_value.notna().to_numpy()
    r = real["value"].to_numpy()[matched]
    s = syn_value.to_numpy()[matched]
    weight = real["sales_value"].to_numpy()
    total = float(weight.sum())
    missing = float(weight[~matched].sum()) / total if total > 0 else 0.0
    distance = np.abs(s - r) if is_log else np.abs(np.log(s / r))
    w = weight[matched]
    mean = float(np.sum(w * distance) / w.sum()) if matched.any() and w.sum() > 0 else None
    return EntityMatch(
        metric=name,
        entity=kind,
        mean_abs_log_ratio=mean,
        n_entities_real=int(len(real)),
        n_entities_synthetic=int(len(synthetic)),
        n_matched=int(matched.sum()),
        missing_sales_share=missing,
    )


def entity_match(
    real: Mapping[str, pd.DataFrame], synthetic: Mapping[str, pd.DataFrame]
) -> dict[str, EntityMatch]:
    """Compare the per-entity tables of two sides (from :func:`entity_values`).

    Parameters
    ----------
    real, synthetic
        Metric -> per-entity table; only metrics present on both sides are compared.

    Returns
    -------
    dict
        Metric -> :class:`EntityMatch`, in :data:`ENTITY_METRICS` order.
    """
    both = [name for name in ENTITY_METRICS if name in real and name in synthetic]
    return {name: _match_one(name, real[name], synthetic[name]) for name in both}
