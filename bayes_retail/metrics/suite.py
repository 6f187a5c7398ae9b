"""The tiered KS metric suite: put two sides on the same footing, compare, score, report.

docs/metrics.md describes every metric, the footing rules and the scores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from bayes_retail._io import write_json
from bayes_retail._version import __version__
from bayes_retail.data import clean
from bayes_retail.errors import DataError
from bayes_retail.metrics.distributions import METRICS, evaluate, left_out, prepare, trips_per_visit
from bayes_retail.metrics.entity import entity_match, entity_values
from bayes_retail.metrics.pricing import PricingResult, pricing_metrics
from bayes_retail.metrics.scoring import TIER_WEIGHTS, balanced_score, ks_statistic, overall_score, tv_distance
from bayes_retail.metrics.tables import MetricTables

__all__ = [
    "ROW_RULES",
    "MetricResult",
    "SuiteResult",
    "apply_row_rules",
    "put_on_same_footing",
    "compute_suite",
    "real_vs_real_floor",
    "floor_suite",
    "split_halves",
]

#: The line rules of :mod:`bayes_retail.data.clean` applied to both sides (not the partial-week rule:
#: the week intersection decides the weeks).
ROW_RULES: tuple[str, ...] = ("unknown_product", "non_grocery", "uncategorised", "non_positive")

#: Metrics whose values are discrete and spiky: the TV distance is reported beside KS.
TV_METRICS: tuple[str, ...] = ("quantity", "sales_volume")

#: Probabilities at which each side's values are summarised (the report draws the two distributions from them).
QUANTILE_PROBS: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 41).round(3))


# --------------------------------------------------------------------------- results


@dataclass
class MetricResult:
    """One metric of a comparison.

    Attributes
    ----------
    name, tier
        The metric and its tier.
    ks
        Two-sample KS statistic between the real and synthetic value arrays.
    score
        ``1 - ks``.
    n_real, n_synthetic
        Number of values on each side.
    median_real, median_synthetic
        Medians of the value arrays.
    floor_ks
        KS between two random halves of the real households (``None`` when not computed).
    quantiles_real, quantiles_synthetic
        Each side's values at :data:`QUANTILE_PROBS` (for plotting the two distributions).
    """

    name: str
    tier: int
    ks: float
    score: float
    n_real: int
    n_synthetic: int
    median_real: float
    median_synthetic: float
    floor_ks: float | None = None
    quantiles_real: list[float] = field(default_factory=list)
    quantiles_synthetic: list[float] = field(default_factory=list)


@dataclass
class SuiteResult:
    """The metric suite of one real-vs-synthetic comparison.

    Attributes
    ----------
    metrics
        Metric name -> :class:`MetricResult`, in :data:`METRICS` order; only the
        metrics that could be computed (the others are in ``skipped``).
    tier_scores
        Tier -> balanced score of its computed metrics.
    overall
        Weighted sum of the tier scores.
    complements
        ``entity_matched`` (metric -> entity-matched check),
        ``tv`` (metric -> total variation distance) and ``trips_per_visit``.
    footing
        Weeks used, households and lines per side before and after, rows removed
        per rule per side, the seed.
    skipped
        ``metrics``: name -> why it was not computed; ``left_out``: metric -> side ->
        entities left out because the value is undefined there.
    pricing
        Pricing components when both sides carry a price panel.
    seed
        The seed of the household subsampling and of the floor's split.
    tier_weights
        The weights behind ``overall``.
    """

    metrics: dict[str, MetricResult]
    tier_scores: dict[int, float]
    overall: float | None
    complements: dict = field(default_factory=dict)
    footing: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    pricing: PricingResult | None = None
    seed: int = 0
    tier_weights: dict[int, float] = field(default_factory=lambda: dict(TIER_WEIGHTS))

    # -- serialisation

    def to_dict(self) -> dict:
        """A JSON-ready dict (the content of ``metrics.json``)."""
        return {
            "bayes_retail_version": __version__,
            "seed": self.seed,
            "overall": self.overall,
            "tier_scores": {str(t): s for t, s in self.tier_scores.items()},
            "tier_weights": {str(t): w for t, w in self.tier_weights.items()},
            "metrics": {name: asdict(m) for name, m in self.metrics.items()},
            "complements": self.complements,
            "footing": self.footing,
            "skipped": self.skipped,
            "pricing": None if self.pricing is None else self.pricing.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "SuiteResult":
        """Rebuild a result from :meth:`to_dict` output (or parsed ``metrics.json``)."""
        return cls(
            metrics={name: MetricResult(**m) for name, m in data["metrics"].items()},
            tier_scores={int(t): float(s) for t, s in data["tier_scores"].items()},
            overall=data["overall"],
            complements=dict(data.get("complements", {})),
            footing=dict(data.get("footing", {})),
            skipped=dict(data.get("skipped", {})),
            pricing=None if data.get("pricing") is None else PricingResult.from_dict(data["pricing"]),
            seed=data.get("seed", 0),
            tier_weights={int(t): float(w) for t, w in data.get("tier_weights", TIER_WEIGHTS).items()},
        )

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` to ``path`` atomically."""
        write_json(self.to_dict(), path)

    def to_frame(self) -> pd.DataFrame:
        """One row per computed metric."""
        columns = ["name", "tier", "ks", "score", "floor_ks", "n_real", "n_synthetic", "median_real", "median_synthetic"]
        rows = [{c: getattr(m, c) for c in columns} for m in self.metrics.values()]
        return pd.DataFrame(rows, columns=columns)

    def format_table(self) -> str:
        """A fixed-width text table: every metric, then the tier scores and the overall score."""
        head = f"{'metric':<22}{'tier':>4}{'ks':>8}{'score':>8}{'floor':>8}{'n_real':>11}{'n_synth':>11}{'med_real':>11}{'med_synth':>11}"
        lines = [head, "-" * len(head)]
        for m in self.metrics.values():
            floor = "-" if m.floor_ks is None else f"{m.floor_ks:.4f}"
            lines.append(
                f"{m.name:<22}{m.tier:>4}{m.ks:>8.4f}{m.score:>8.4f}{floor:>8}"
                f"{m.n_real:>11,}{m.n_synthetic:>11,}{m.median_real:>11.4g}{m.median_synthetic:>11.4g}"
            )
        for name, reason in self.skipped.get("metrics", {}).items():
            lines.append(f"{name:<22}skipped: {reason}")
        lines.append("-" * len(head))
        for tier, score in sorted(self.tier_scores.items()):
            lines.append(f"{f'tier {tier} (weight {self.tier_weights[tier]:.2f})':<30}{score:>8.4f}")
        overall = "-" if self.overall is None else f"{self.overall:.4f}"
        lines.append(f"{'overall':<30}{overall:>8}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- footing


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _with_lines(tables: MetricTables, lines: pd.DataFrame, **meta) -> MetricTables:
    return MetricTables(
        lines.reset_index(drop=True), tables.products, tables.promo_weeks, name=tables.name, meta={**tables.meta, **meta}
    )


def apply_row_rules(tables: MetricTables) -> tuple[MetricTables, dict[str, int]]:
    """Apply :data:`ROW_RULES` (the rules of :mod:`bayes_retail.data.clean`) to one side.

    Returns
    -------
    tables, removed
        The kept lines (same products and calendar) and rule -> lines removed.
    """
    products = tables.products.drop_duplicates("product_id", keep="first")
    lines = tables.transactions
    removed: dict[str, int] = {}
    for rule in (clean.drop_unknown_products, clean.drop_non_grocery, clean.drop_uncategorised):
        lines, res = rule(lines, products)
        removed[res.rule] = res.rows_removed
    lines, res = clean.drop_non_positive(lines)
    removed[res.rule] = res.rows_removed
    return _with_lines(tables, lines), removed


def _restrict_weeks(tables: MetricTables, weeks: np.ndarray) -> tuple[MetricTables, int]:
    keep = tables.transactions["week"].isin(weeks).to_numpy()
    n_out = int((~keep).sum())
    lines = tables.transactions.loc[keep] if n_out else tables.transactions
    return _with_lines(tables, lines, weeks=[int(w) for w in weeks]), n_out


def put_on_same_footing(
    real: MetricTables, synthetic: MetricTables, *, seed: int = 0
) -> tuple[MetricTables, MetricTables, dict]:
    """Same cleaning, same weeks, same number of households.

    1. Apply the line rules :data:`ROW_RULES` to each side (with its own product table).
    2. Keep the weeks present in both sides' lines.
    3. Subsample the side with more households to the other's count:
       ``numpy.random.default_rng(seed).choice(sorted_ids, n, replace=False)``.

    Parameters
    ----------
    real, synthetic
        The two sides.
    seed
        Seed of the household subsample.

    Returns
    -------
    real, synthetic, footing
        The footed sides (``meta["weeks"]`` holds the scoring weeks) and what was
        done: weeks, households and lines per side, rows removed per rule.

    Raises
    ------
    DataError
        When the sides have no week in common after cleaning.
    """
    seed = _check_seed(seed)
    sides = {"real": real, "synthetic": synthetic}
    cleaned: dict[str, MetricTables] = {}
    removed: dict[str, dict[str, int]] = {}
    households: dict[str, dict[str, int]] = {}
    lines: dict[str, dict[str, int]] = {}
    for key, side in sides.items():
        households[key] = {"input": int(side.households.size)}
        lines[key] = {"input": int(len(side.transactions))}
        cleaned[key], removed[key] = apply_row_rules(side)
    weeks = np.intersect1d(
        np.unique(cleaned["real"].transactions["week"].to_numpy()),
        np.unique(cleaned["synthetic"].transactions["week"].to_numpy()),
    )
    if weeks.size == 0:
        raise DataError("the real and synthetic lines have no week in common after cleaning")
    for key in sides:
        cleaned[key], removed[key]["outside_common_weeks"] = _restrict_weeks(cleaned[key], weeks)
        households[key]["clean"] = int(cleaned[key].households.size)

    n_use = min(households["real"]["clean"], households["synthetic"]["clean"])
    rng = np.random.default_rng(seed)
    for key in sides:
        ids = cleaned[key].households
        before = len(cleaned[key].transactions)
        if ids.size > n_use:
            chosen = np.sort(rng.choice(ids, size=n_use, replace=False))
            cleaned[key] = cleaned[key].subset_households(chosen)
        removed[key]["subsampled_households"] = before - len(cleaned[key].transactions)
        households[key]["used"] = int(cleaned[key].households.size)
        lines[key]["used"] = int(len(cleaned[key].transactions))
    footing = {
        "weeks": [int(w) for w in weeks],
        "seed": seed,
        "households": households,
        "lines": lines,
        "rows_removed": removed,
    }
    return cleaned["real"], cleaned["synthetic"], footing


# --------------------------------------------------------------------------- comparison


def _compare_values(
    values_a: dict[str, np.ndarray], values_b: dict[str, np.ndarray], labels: tuple[str, str] = ("real", "synthetic")
) -> tuple[dict[str, float], dict[str, str]]:
    """KS per metric present on both sides with values on both; reasons for the others."""
    ks: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for name in METRICS:
        if name not in values_a or name not in values_b:
            continue
        a, b = values_a[name], values_b[name]
        if a.size == 0 or b.size == 0:
            reasons[name] = f"no values on the {labels[0] if a.size == 0 else labels[1]} side"
            continue
        ks[name] = ks_statistic(a, b)
    return ks, reasons


def split_halves(real: MetricTables, *, seed: int = 0) -> tuple[MetricTables, MetricTables]:
    """Two random halves of equal size of ``real``'s households (one sits out when the count is odd).

    The households are shuffled with ``numpy.random.default_rng(seed).permutation``.
    """
    ids = real.households
    if ids.size < 2:
        raise DataError("the real-vs-real floor needs at least two households", file=f"{real.name} transactions")
    perm = np.random.default_rng(_check_seed(seed)).permutation(ids)
    half = ids.size // 2
    a = real.subset_households(np.sort(perm[:half]))
    b = real.subset_households(np.sort(perm[half : 2 * half]))
    a.name, b.name = "real half A", "real half B"
    return a, b


def _floor_from_clean(real: MetricTables, weeks: np.ndarray, seed: int) -> dict[str, float]:
    halves = split_halves(real, seed=seed)
    values = [evaluate(prepare(part, weeks))[0] for part in halves]
    ks, _ = _compare_values(values[0], values[1], ("real half A", "real half B"))
    return ks


def floor_suite(real: MetricTables, *, seed: int = 0) -> SuiteResult:
    """The whole suite between two random halves of the real households.

    What ``bayes-retail run`` reports before a model exists: every metric's KS
    here is its real-vs-real floor (``floor_ks`` = ``ks``), and the tier and
    overall scores are the best a model can expect at half the households.
    In the result, "real" is half A and "synthetic" is half B.
    """
    cleaned, _ = apply_row_rules(real)
    a, b = split_halves(cleaned, seed=seed)
    result = compute_suite(a, b, seed=seed)
    for metric in result.metrics.values():
        metric.floor_ks = metric.ks
    result.footing["comparison"] = "real half A vs real half B (split-half floor)"
    return result


def real_vs_real_floor(real: MetricTables, *, seed: int = 0, weeks=None) -> dict[str, float]:
    """KS of every metric between two random halves of the real households.

    The side is cleaned with :data:`ROW_RULES`, its households shuffled with
    ``numpy.random.default_rng(seed).permutation`` and cut into two halves of
    equal size (one household sits out when the count is odd); every metric is
    computed on each half over the same weeks and compared.

    Parameters
    ----------
    real
        The real side.
    seed
        Seed of the split.
    weeks
        Scoring weeks (default: the weeks present after cleaning).

    Returns
    -------
    dict
        Metric -> KS statistic, in :data:`METRICS` order; metrics that cannot be
        computed (no calendar, no values in a half) are absent.
    """
    seed = _check_seed(seed)
    cleaned, _ = apply_row_rules(real)
    present = np.unique(cleaned.transactions["week"].to_numpy())
    weeks = present if weeks is None else np.intersect1d(present, np.asarray(weeks))
    cleaned, _ = _restrict_weeks(cleaned, weeks)
    return _floor_from_clean(cleaned, weeks, seed)


def _resolve_floor(floor, real: MetricTables, weeks: np.ndarray, seed: int) -> dict[str, float]:
    if floor is None or floor is False:
        return {}
    if floor is True:
        return _floor_from_clean(real, weeks, seed)
    if isinstance(floor, Mapping):
        return {str(k): float(v) for k, v in floor.items()}
    raise ValueError("floor must be None, True/False or a mapping metric -> KS")


def _tier_scores(metrics: dict[str, MetricResult]) -> dict[int, float]:
    by_tier: dict[int, list[float]] = {}
    for m in metrics.values():
        by_tier.setdefault(m.tier, []).append(m.score)
    return {t: balanced_score(by_tier[t]) for t in sorted(by_tier)}


def _median(x: np.ndarray) -> float:
    return float(np.median(x))


def _quantiles(x: np.ndarray) -> list[float]:
    return np.quantile(x, QUANTILE_PROBS).tolist()


def compute_suite(
    real: MetricTables,
    synthetic: MetricTables,
    *,
    seed: int = 0,
    floor: bool | Mapping[str, float] | None = None,
    real_prices: pd.DataFrame | None = None,
    synthetic_prices: pd.DataFrame | None = None,
    tier_weights: Mapping[int, float] = TIER_WEIGHTS,
) -> SuiteResult:
    """Compare a synthetic side with the real one: every metric, tier scores, overall.

    Parameters
    ----------
    real, synthetic
        The two sides (raw or cleaned: :func:`put_on_same_footing` is applied).
    seed
        Seed of the household subsample (and of the floor's split).
    floor
        ``None``/``False``: no floor; ``True``: compute the real-vs-real floor on
        the footed real side; a mapping metric -> KS: use those values.
    real_prices, synthetic_prices
        Product-week price panels; the pricing components are computed when both
        are given.
    tier_weights
        Tier -> weight of the overall score.

    Returns
    -------
    SuiteResult
    """
    seed = _check_seed(seed)
    real_f, syn_f, footing = put_on_same_footing(real, synthetic, seed=seed)
    weeks = np.asarray(footing["weeks"], dtype=np.int64)
    prep_r, prep_s = prepare(real_f, weeks), prepare(syn_f, weeks)
    vals_r, skip_r = evaluate(prep_r)
    vals_s, skip_s = evaluate(prep_s)
    ks, reasons = _compare_values(vals_r, vals_s)
    floor_ks = _resolve_floor(floor, real_f, weeks, seed)

    metrics: dict[str, MetricResult] = {}
    skipped_metrics: dict[str, str] = {}
    for name, spec in METRICS.items():
        if name in skip_r or name in skip_s:
            skipped_metrics[name] = "; ".join(r for r in (skip_r.get(name), skip_s.get(name)) if r)
            continue
        if name in reasons:
            skipped_metrics[name] = reasons[name]
            continue
        metrics[name] = MetricResult(
            name=name,
            tier=spec.tier,
            ks=ks[name],
            score=1.0 - ks[name],
            n_real=int(vals_r[name].size),
            n_synthetic=int(vals_s[name].size),
            median_real=_median(vals_r[name]),
            median_synthetic=_median(vals_s[name]),
            floor_ks=floor_ks.get(name),
            quantiles_real=_quantiles(vals_r[name]),
            quantiles_synthetic=_quantiles(vals_s[name]),
        )

    pricing = None
    if real_prices is not None and synthetic_prices is not None:
        pricing = pricing_metrics(real_prices, synthetic_prices, weeks=weeks)
    elif real_prices is not None or synthetic_prices is not None:
        side = "synthetic" if real_prices is not None else "real"
        skipped_metrics["pricing"] = f"the {side} side has no price panel"

    tier_scores = _tier_scores(metrics)
    weights = {int(t): float(w) for t, w in tier_weights.items()}
    return SuiteResult(
        metrics=metrics,
        tier_scores=tier_scores,
        overall=overall_score(tier_scores, weights=weights) if tier_scores else None,
        complements=_complements(prep_r, prep_s, vals_r, vals_s),
        footing=footing,
        skipped={"metrics": skipped_metrics, "left_out": _left_out(prep_r, prep_s, vals_r, vals_s)},
        pricing=pricing,
        seed=seed,
        tier_weights=weights,
    )


def _complements(prep_r, prep_s, vals_r, vals_s) -> dict:
    matched = entity_match(entity_values(prep_r), entity_values(prep_s))
    trips_r, trips_s = trips_per_visit(prep_r), trips_per_visit(prep_s)
    return {
        "entity_matched": {name: m.to_dict() for name, m in matched.items()},
        "tv": {
            name: tv_distance(vals_r[name], vals_s[name])
            for name in TV_METRICS
            if vals_r[name].size and vals_s[name].size
        },
        "trips_per_visit": {
            "mean_real": float(trips_r.mean()),
            "mean_synthetic": float(trips_s.mean()),
            "ks": ks_statistic(trips_r, trips_s),
        },
    }


def _left_out(prep_r, prep_s, vals_r, vals_s) -> dict:
    real, syn = left_out(prep_r, vals_r), left_out(prep_s, vals_s)
    out: dict[str, dict] = {}
    for name in METRICS:
        if name in real or name in syn:
            what = (real.get(name) or syn.get(name))["what"]
            out[name] = {"what": what}
            for key, side in (("real", real), ("synthetic", syn)):
                if name in side:
                    out[name][key] = side[name]["count"]
                    out[name][f"{key}_of"] = side[name]["of"]
    return out
