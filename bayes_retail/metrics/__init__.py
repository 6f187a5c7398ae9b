"""The tiered KS metric suite (DESIGN §5, docs/metrics.md).

Layers: :mod:`~bayes_retail.metrics.distributions` (one value array per metric),
:mod:`~bayes_retail.metrics.scoring` (KS, TV, balanced scores),
:mod:`~bayes_retail.metrics.entity` (entity-matched checks),
:mod:`~bayes_retail.metrics.pricing` (price-panel components) and
:mod:`~bayes_retail.metrics.suite` (footing, comparison, :class:`SuiteResult`).
"""

from bayes_retail.metrics.distributions import METRICS, MetricSpec, prepare
from bayes_retail.metrics.entity import EntityMatch, entity_match, entity_values
from bayes_retail.metrics.pricing import PricingResult, pricing_metrics
from bayes_retail.metrics.scoring import TIER_WEIGHTS, balanced_score, ks_statistic, overall_score, tv_distance
from bayes_retail.metrics.suite import (
    MetricResult,
    SuiteResult,
    compute_suite,
    floor_suite,
    put_on_same_footing,
    real_vs_real_floor,
    split_halves,
)
from bayes_retail.metrics.tables import MetricTables

__all__ = [
    "METRICS",
    "TIER_WEIGHTS",
    "EntityMatch",
    "MetricResult",
    "MetricSpec",
    "MetricTables",
    "PricingResult",
    "SuiteResult",
    "balanced_score",
    "compute_suite",
    "entity_match",
    "floor_suite",
    "entity_values",
    "ks_statistic",
    "overall_score",
    "prepare",
    "pricing_metrics",
    "put_on_same_footing",
    "real_vs_real_floor",
    "split_halves",
    "tv_distance",
]
