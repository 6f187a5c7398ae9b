"""Posterior predictive checks with the metric suite over posterior draws (DESIGN.md §5).

For S posterior draws, the simulator writes a synthetic panel (``replay``:
the fitted households with the data's prices and promotions; or ``new``
customers); each draw's panel is scored against the real data with the
tiered KS suite. The result per metric is the median and 90% interval of the
score over draws beside the real-vs-real floor (computed once), and Bayesian
p-values of summary statistics: the share of draws whose statistic is at or
below the real one.

Beside the KS suite (:mod:`bayes_retail.metrics.joint`): joint statistics
(visits x basket size across households; co-purchase lift of frequent
category pairs) as p-values too; per entity metric, the share of categories
or products whose 90% predictive interval holds the real value; per category
the promotion lift's 90% interval and PIT (calibration of promotion lift); and, in
replay mode, where each synthetic household is a real one, the 50% / 90%
interval coverage and mid-PIT of each household's spend and visits.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd


def _mean_basket_size(lines: pd.DataFrame) -> float:
    return float(lines.groupby(["household_id", "week"])["quantity"].sum().mean())


def _visit_rate(lines: pd.DataFrame, weeks: int) -> float:
    visits = lines[["household_id", "week"]].drop_duplicates()
    return float(len(visits) / (lines["household_id"].nunique() * weeks))


def _units_per_product_week(lines: pd.DataFrame) -> float:
    return float(lines.groupby(["product_id", "week"])["quantity"].sum().mean())


def _promo_share(lines: pd.DataFrame) -> float:
    return float((lines["retail_disc"] > 0).mean())


#: Trips of at most this many units count as small (a quarter of the real trips on the embedded data).
SMALL_TRIP_UNITS = 3


def _trip_units(lines: pd.DataFrame) -> pd.Series:
    return lines.groupby("basket_id")["quantity"].sum()


def summary_statistics(lines: pd.DataFrame, n_weeks: int, *, small_trip_units: int = SMALL_TRIP_UNITS
                       ) -> dict[str, float]:
    """Mean basket size (units per visited household-week), visit rate, units per product-week, promo line share;
    and per trip (``basket_id``) the median units and the share of trips with at most ``small_trip_units`` units
    (top-ups: the metric suite scores household-weeks, these show how a week splits into trips)."""
    trip = _trip_units(lines)
    return {
        "mean_basket_size": _mean_basket_size(lines),
        "visit_rate": _visit_rate(lines, n_weeks),
        "units_per_product_week": _units_per_product_week(lines),
        "promo_share": _promo_share(lines),
        "units_per_trip_median": float(trip.median()),
        "small_trip_share": float((trip <= small_trip_units).mean()),
    }


def summarise_draws(per_draw: pd.DataFrame, floor: dict[str, float], *, prob: float = 0.9) -> pd.DataFrame:
    """Median and central ``prob`` interval of each metric's score over draws, beside the floor's score.

    ``per_draw`` has one row per (draw, metric) with a ``score`` column.
    """
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    rows = []
    for metric, g in per_draw.groupby("metric", sort=False):
        rows.append({
            "metric": metric,
            "tier": int(g["tier"].iloc[0]),
            "draws": len(g),
            "score_median": float(g["score"].median()),
            f"score_q{lo:.2f}": float(g["score"].quantile(lo)),
            f"score_q{hi:.2f}": float(g["score"].quantile(hi)),
            "floor_score": 1.0 - floor[metric] if metric in floor else np.nan,
        })
    return pd.DataFrame(rows)


def bayesian_p_values(synthetic: pd.DataFrame, observed: dict[str, float]) -> pd.DataFrame:
    """Per statistic: the real value, the draws' median and 90% interval, and P(synthetic <= real)."""
    rows = []
    for name, real in observed.items():
        values = synthetic[name].to_numpy()
        rows.append({"statistic": name, "observed": real, "median": float(np.median(values)),
                     "q0.05": float(np.quantile(values, 0.05)), "q0.95": float(np.quantile(values, 0.95)),
                     "p_value": float(np.mean(values <= real))})
    return pd.DataFrame(rows)


#: Intervals whose coverage is reported.
COVERAGE_PROBS = (0.5, 0.9)
#: Frequent categories whose pairs the co-purchase lift is computed on.
COPURCHASE_CATEGORIES = 30


def _prepared(tables, weeks):
    from bayes_retail.metrics.distributions import prepare
    from bayes_retail.metrics.suite import apply_row_rules

    return prepare(apply_row_rules(tables)[0], weeks)


def joint_statistics(prep, categories: list[str]) -> dict[str, float]:
    """Visits x basket Spearman correlation; median co-purchase lift and share of pairs above 1 (over ``categories``),
    the median lift households' differences alone make, and the mean and sd over ``categories`` of their
    correlation with the week's size;
    repeat rates of the previous / any earlier category purchase; single-trip category-count dispersion;
    between-household sd of the discounted-line share and the visits' overdispersion around it, and around a
    household + category-week baseline."""
    from bayes_retail.metrics.joint import (
        category_count_dispersion,
        copurchase_lifts,
        copurchase_lifts_between_households,
        discount_share_spread,
        discount_week_dispersion,
        repeat_rates,
        visits_basket_correlation,
        week_size_correlations,
    )

    lifts = copurchase_lifts(prep, categories).dropna()
    week_size = week_size_correlations(prep, categories).dropna()
    repeat_last, repeat_any = repeat_rates(prep)
    discount_spread, discount_dispersion = discount_share_spread(prep)
    return {
        "visits_basket_spearman": visits_basket_correlation(prep),
        "copurchase_lift_median": float(lifts.median()),
        "copurchase_share_above_1": float((lifts > 1).mean()),
        "copurchase_lift_between_households": float(copurchase_lifts_between_households(prep, categories).median()),
        "week_size_correlation_mean": float(week_size.mean()),
        "week_size_correlation_sd": float(week_size.std()),
        "repeat_previous_purchase": repeat_last,
        "repeat_any_earlier_purchase": repeat_any,
        "category_count_dispersion": category_count_dispersion(prep),
        "discount_share_household_sd": discount_spread,
        "discount_share_visit_dispersion": discount_dispersion,
        "discount_share_week_dispersion": discount_week_dispersion(prep),
    }


def column_nanquantiles(values: np.ndarray, probs) -> np.ndarray:
    """``(len(probs), N)`` quantiles of each column of ``(S, N)`` ``values`` over its non-NaN entries (NaN if none).

    ``np.nanquantile(values, probs, axis=0)`` (linear interpolation) in one
    sort: numpy's own loops over the columns when any value is NaN.
    """
    values = np.asarray(values, dtype=float)
    ordered = np.sort(values, axis=0)  # NaNs last
    count = (~np.isnan(values)).sum(axis=0)
    columns = np.arange(values.shape[1])
    out = np.full((len(probs), values.shape[1]), np.nan)
    has = count > 0
    for i, q in enumerate(probs):
        position = q * (np.maximum(count, 1) - 1)
        below = np.floor(position).astype(int)
        above = np.minimum(below + 1, np.maximum(count, 1) - 1)
        low, high = ordered[below, columns], ordered[above, columns]
        out[i, has] = (low + (high - low) * (position - below))[has]
    return out


def entity_coverage(real: dict[str, pd.DataFrame], draws: list[dict[str, pd.DataFrame]], *, prob: float = 0.9):
    """Per entity metric: the share of real entities (and of their sales) inside the draws' central ``prob`` interval.

    ``real`` and each of ``draws`` are :func:`~bayes_retail.metrics.entity.entity_values`
    tables; an entity without a value in some draw is judged on the draws that
    have one, and one without any is not covered.
    """
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    rows = []
    for metric, table in real.items():
        values = np.stack([d[metric]["value"].reindex(table.index).to_numpy() if metric in d
                           else np.full(len(table), np.nan) for d in draws])
        low, high = column_nanquantiles(values, [lo, hi])  # all-NaN entities: NaN bounds, never covered
        with np.errstate(invalid="ignore"):
            covered = (table["value"].to_numpy() >= low) & (table["value"].to_numpy() <= high)
        sales = table["sales_value"].to_numpy()
        rows.append({"metric": metric, "entities": len(table), "coverage": float(covered.mean()),
                     "sales_weighted_coverage": float(sales[covered].sum() / sales.sum()) if sales.sum() > 0 else np.nan,
                     "prob": prob})
    return pd.DataFrame(rows)


def promotion_lift_calibration(real: pd.DataFrame, draws: list[pd.DataFrame], *, prob: float = 0.9) -> pd.DataFrame:
    """Per category: the real promotion lift beside its predictive distribution over the draws.

    The lift is the promo_response entity value (log of mean units per
    promoted over per non-promoted product-week); ``real`` and each of
    ``draws`` are its :func:`~bayes_retail.metrics.entity.entity_values`
    table. Columns: ``category``, ``real``, the draws' ``q05`` / ``median`` /
    ``q95`` (of ``prob``), ``pit`` (mid-PIT), ``covered`` (inside the
    interval), ``draws`` (how many draws define the lift there) and the real
    ``sales_value``. Categories without a lift in any draw get NaN and
    ``covered = False``. Under a calibrated model the PITs are uniform.
    """
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    values = np.stack([d["value"].reindex(real.index).to_numpy() for d in draws]) if draws else np.empty((0, len(real)))
    rows = []
    for j, (category, row) in enumerate(real.iterrows()):
        rep = values[:, j][~np.isnan(values[:, j])]
        if rep.size:
            q05, median, q95 = np.quantile(rep, [lo_q, 0.5, hi_q])
            pit = float((rep < row["value"]).mean() + (rep == row["value"]).mean() / 2)
        else:
            q05 = median = q95 = pit = np.nan
        rows.append({"category": category, "real": float(row["value"]), "q05": float(q05), "median": float(median),
                     "q95": float(q95), "pit": pit, "covered": bool(q05 <= row["value"] <= q95),
                     "draws": int(rep.size), "sales_value": float(row["sales_value"])})
    return pd.DataFrame(rows, columns=["category", "real", "q05", "median", "q95", "pit", "covered", "draws",
                                       "sales_value"])


def replicate_calibration(per_draw: pd.DataFrame, pairs: pd.DataFrame, *, prob: float = 0.9) -> pd.DataFrame:
    """Per metric: KS(real, replicate) beside the spread of KS(replicate, replicate') over pairs of draws.

    A calibrated model's real data look like one more replicate: the median
    KS against the real data lies inside the replicate pairs' central ``prob``
    interval (``calibrated``). ``share_inside`` is the share of draws whose
    KS(real, replicate) is at most that interval's upper end.
    """
    hi_q = (1 + prob) / 2
    rows = []
    for metric, g in pairs.groupby("metric", sort=False):
        real_ks = per_draw.loc[per_draw["metric"] == metric, "ks"].to_numpy()
        upper = float(g["ks"].quantile(hi_q))
        rows.append({
            "metric": metric, "pairs": len(g), "ks_real_median": float(np.median(real_ks)),
            "ks_replicate_median": float(g["ks"].median()), f"ks_replicate_q{hi_q:.2f}": upper,
            "share_inside": float(np.mean(real_ks <= upper)), "calibrated": bool(np.median(real_ks) <= upper),
        })
    return pd.DataFrame(rows)


def household_calibration(real: pd.DataFrame, draws: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coverage and PIT of each household's totals (columns of :func:`~bayes_retail.metrics.joint.household_totals`).

    Returns a ``coverage`` table (per statistic: 50% / 90% coverage, mean PIT,
    KS distance of the PITs from uniform) and a ``pit`` table (share of
    households per PIT decile).
    """
    from scipy.stats import kstest

    from bayes_retail.metrics.joint import interval_coverage, mid_pit

    coverage, histogram = [], []
    for name in real.columns:
        replicates = np.stack([d[name].to_numpy() for d in draws])
        pit = mid_pit(real[name].to_numpy(), replicates)
        coverage.append({"statistic": name, "households": len(real),
                         **{f"coverage_{round(100 * p)}": interval_coverage(real[name].to_numpy(), replicates, p)
                            for p in COVERAGE_PROBS},
                         "pit_mean": float(pit.mean()), "pit_ks": float(kstest(pit, "uniform").statistic)})
        counts = np.histogram(pit, bins=10, range=(0.0, 1.0))[0]
        histogram += [{"statistic": name, "bin": b, "share": float(c / len(pit))} for b, c in enumerate(counts)]
    return pd.DataFrame(coverage), pd.DataFrame(histogram)


def validation_goals(
    tables: dict[str, pd.DataFrame],
    *,
    ks_cap: float = 0.05,
    floor_factor: float = 1.5,
    coverage_range: tuple[float, float] = (0.85, 0.95),
    prob: float = 0.9,
) -> pd.DataFrame:
    """The held-out goals of a check (DESIGN.md §5), one row per goal, from its ``scores``, ``households``, ``p_values``.

    - each metric: median KS over draws at most ``max(ks_cap, floor_factor * floor KS)``
      (the real-vs-real floor; ``ks_cap`` alone where the metric has none);
    - each household statistic (replay): the share of households inside their
      ``prob`` predictive interval within ``coverage_range``;
    - the co-purchase lift of the frequent category pairs (median over pairs):
      the real value inside the draws' 90% interval (the ``p_values`` table's).

    Columns: ``goal``, ``value`` (what was measured), ``target`` (the bound, as text)
    and ``passed``. Goals whose tables are missing are left out.
    """
    if not 0 < prob < 1 or floor_factor <= 0 or ks_cap < 0 or not 0 <= coverage_range[0] <= coverage_range[1] <= 1:
        raise ValueError("validation_goals: need 0 < prob < 1, floor_factor > 0, ks_cap >= 0 and "
                         f"0 <= low <= high <= 1 for coverage_range (got {coverage_range})")
    rows = []
    for r in tables["scores"].itertuples():
        ks, floor_ks = 1.0 - r.score_median, 1.0 - r.floor_score
        bound = ks_cap if np.isnan(floor_ks) else max(ks_cap, floor_factor * floor_ks)
        rows.append({"goal": f"{r.metric}: median KS", "value": ks,
                     "target": f"<= {bound:.4f}", "passed": bool(ks <= bound)})
    column = f"coverage_{round(100 * prob)}"
    if "households" in tables and column in tables["households"]:
        low, high = coverage_range
        for r in tables["households"].itertuples():
            value = float(getattr(r, column))
            rows.append({"goal": f"{r.statistic}: households inside their {prob:.0%} interval", "value": value,
                         "target": f"{low:.2f}-{high:.2f}", "passed": bool(low <= value <= high)})
    if "p_values" in tables:
        lift = tables["p_values"].set_index("statistic")
        if "copurchase_lift_median" in lift.index:
            r = lift.loc["copurchase_lift_median"]
            rows.append({"goal": "co-purchase lift (median over pairs): real inside the draws' 90% interval",
                         "value": float(r["observed"]), "target": f"{r['q0.05']:.3f}-{r['q0.95']:.3f}",
                         "passed": bool(r["q0.05"] <= r["observed"] <= r["q0.95"])})
    return pd.DataFrame(rows, columns=["goal", "value", "target", "passed"])


def goals_summary(goals: pd.DataFrame) -> str:
    """One line: how many of :func:`validation_goals`' goals were met, and which were missed."""
    missed = goals.loc[~goals["passed"].astype(bool), "goal"].tolist()
    if not missed:
        return f"every goal met ({len(goals)})"
    return f"missed {len(missed)} of {len(goals)} goals: {'; '.join(missed)}"


def block_kind(scored: np.ndarray, fitted: np.ndarray | None) -> str:
    """What a check of weeks ``scored`` is for a fit of weeks ``fitted`` (``None``: every week).

    ``in sample`` (every scored week fitted), ``held out`` (none, inside the
    fitted span), ``seasonal extrapolation`` (none, all after the last fitted
    week: seasons the fit never saw) or ``partly held out``.
    """
    if fitted is None:
        return "in sample"
    seen = np.isin(scored, fitted)
    if seen.all():
        return "in sample"
    if seen.any():
        return "partly held out"
    return "seasonal extrapolation" if scored.min() > np.max(fitted) else "held out"


def scored_block(posterior: str | os.PathLike, data, weeks: np.ndarray) -> pd.DataFrame:
    """Per shopper stage: the weeks it fitted, the share of the scored ``weeks`` among them and :func:`block_kind`."""
    from bayes_retail.config import parse_weeks
    from bayes_retail.models.artifacts import load_posterior

    weeks = np.asarray(weeks)
    rows = []
    for stage in ("visit", "category", "product", "quantity"):
        spec = load_posterior(posterior, stage, data_hash=data.data_hash).attrs.get("weeks", "all")
        fitted = parse_weeks(spec)
        fitted = None if fitted is None else np.asarray(fitted)
        seen = 1.0 if fitted is None else float(np.isin(weeks, fitted).mean())
        rows.append({"stage": stage, "fitted_weeks": spec, "scored_weeks": f"{weeks.min()}-{weeks.max()}",
                     "scored_share_fitted": seen, "kind": block_kind(weeks, fitted)})
    return pd.DataFrame(rows)


def held_out_households(posterior: str | os.PathLike, data) -> np.ndarray:
    """Ids of the households the fits in ``posterior`` left out (their ``fit_share`` and ``split_seed``; every stage alike)."""
    from bayes_retail.config import DataSelection
    from bayes_retail.models.artifacts import load_posterior

    splits = set()
    for stage in ("visit", "category", "product", "quantity"):
        attrs = load_posterior(posterior, stage, data_hash=data.data_hash).attrs
        splits.add((float(attrs.get("fit_share", 1.0)), int(attrs.get("split_seed", 0))))
    if len(splits) > 1:
        raise ValueError(f"the stages were fitted on different household splits {sorted(splits)}: refit them alike")
    share, seed = splits.pop()
    if share >= 1:
        raise ValueError("these fits used every household (fit_share = 1): nothing is held out")
    return DataSelection(fit_share=share, split_seed=seed).household_split(data.households["household_id"])[1]


class _Stopped(Exception):
    """Raised in the simulating thread when the consumer of its draws has stopped."""


class _SimulatedDraws:
    """Run ``simulate(on_draw=...)`` in a thread from the start; iterating yields each draw as its files are written.

    The simulator's kernels release the GIL, so the next draw is simulated
    while the caller scores this one (on two cores, about the time of the
    longer of the two instead of their sum), and the first draw while the
    caller prepares. An error in the thread is raised to the iterating caller.
    Leaving the ``with`` block (normally or not) stops the thread after its
    current draw and waits for it.
    """

    def __init__(self, simulate: Callable[..., dict]):
        self._finished: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(simulate,), name="simulate-draws", daemon=True)
        self._thread.start()

    def _on_draw(self, d: int) -> None:
        if self._stop.is_set():
            raise _Stopped
        self._finished.put(("draw", d))

    def _run(self, simulate: Callable[..., dict]) -> None:
        try:
            simulate(on_draw=self._on_draw)
            self._finished.put(("done", None))
        except BaseException as exc:  # handed to the consumer
            self._finished.put(("error", exc))

    def __iter__(self) -> Iterator[int]:
        while True:
            kind, value = self._finished.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value

    def __enter__(self) -> _SimulatedDraws:
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def posterior_predictive_suite(
    posterior: str | os.PathLike,
    data,
    out: str | os.PathLike,
    *,
    draws: int = 20,
    mode: str = "replay",
    prices: str = "observed",
    customers: int | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    weeks: str | None = None,
    held_out: bool = False,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Simulate ``draws`` posterior draws into ``out`` and score each against the real data.

    ``replay`` compares with the real lines of the replayed households;
    ``new`` customers (as many as real households unless ``customers``) with all of them.
    ``weeks`` (a spec like ``"27-36"``) scores only those weeks on both sides:
    the held-out block of a ``holdout`` fit (the simulation still runs every
    week, so the held-out weeks start from simulated history). ``held_out``
    (new customers only) compares with the households a ``fit_share < 1`` fit
    left out, as many new customers as there are of them: the
    out-of-household check.
    Returns ``scores`` (per metric, over draws), ``per_draw``, ``p_values``
    (summary and joint statistics), ``entities``, ``promo_lift``
    (:func:`promotion_lift_calibration`) and, in replay mode,
    ``households`` and ``pit`` (see the module docstring), ``replicates``
    (:func:`replicate_calibration`, from disjoint pairs of draws), and with
    ``weeks`` in replay mode ``elpd``: every stage's exact log predictive
    density of those weeks (per household-week; the product stage per household);
    ``spec``: what was checked (posterior, mode, prices, draws, weeks, held_out, seed);
    with ``weeks``, ``block``: what the scored weeks were to each stage's fit
    (:func:`scored_block`: in sample, held out, seasonal extrapolation);
    ``goals``: :func:`validation_goals` with its default thresholds.
    ``progress`` shows a bar over the draws as they are scored.
    """
    from tqdm import tqdm

    from bayes_retail.config import parse_weeks
    from bayes_retail.data import load_side
    from bayes_retail.metrics import compute_suite
    from bayes_retail.metrics.entity import entity_values
    from bayes_retail.metrics.joint import frequent_categories, household_totals
    from bayes_retail.metrics.suite import real_vs_real_floor
    from bayes_retail.simulate.population import Posteriors, template_ids
    from bayes_retail.simulate.run import simulate_from_folder

    scored = parse_weeks(weeks)
    weeks = np.asarray(data.weeks) if scored is None else np.intersect1d(data.weeks, scored)
    if weeks.size == 0:
        raise ValueError(f"none of the weeks {scored[0]}-{scored[-1]} is in the data")
    real = data.metric_tables("real")
    if held_out:
        if mode == "replay":
            raise ValueError("the held-out households were not fitted: compare them with new customers (mode new)")
        households = held_out_households(posterior, data)
        real = real.subset_households(households)
        customers = households.size
    if mode == "replay":
        households = template_ids(Posteriors.load(posterior, data_hash=data.data_hash))
        real = real.subset_households(households)
        customers = households.size
    customers = customers or len(data.households)
    with _SimulatedDraws(functools.partial(
            simulate_from_folder, posterior, data, out, customers=customers, draws=draws, mode=mode, prices=prices,
            seed=seed)) as simulated:
        real = real.subset_weeks(weeks)
        floor = real_vs_real_floor(real, seed=seed)
        n_weeks = len(weeks)
        real_prep = _prepared(real, weeks)
        categories = frequent_categories(real_prep, COPURCHASE_CATEGORIES)
        observed = {**summary_statistics(real.transactions, n_weeks), **joint_statistics(real_prep, categories)}
        rows, stats, entities, totals, replicate_rows = [], [], [], [], []
        previous = None
        bar = tqdm(total=draws if isinstance(draws, (int, np.integer)) else len(draws), disable=not progress, unit="draw",
                   desc="check")
        for i, d in enumerate(simulated):  # each draw scored while the next is simulated
            side = load_side(Path(out), name="synthetic", reference=data, cache_dir=cache_dir, draw=d).subset_weeks(weeks)
            result = compute_suite(real, side, seed=seed, floor=floor)
            rows += [{"draw": d, "metric": name, "tier": m.tier, "ks": m.ks, "score": 1.0 - m.ks}
                     for name, m in result.metrics.items()]
            if i % 2 == 1:  # disjoint pairs of draws: how far one replicate lies from another
                pair = compute_suite(previous, side, seed=seed)
                replicate_rows += [{"pair": i // 2, "metric": name, "ks": m.ks} for name, m in pair.metrics.items()]
            previous = side
            prep = _prepared(side, weeks)
            stats.append({"draw": d, **summary_statistics(side.transactions, n_weeks), **joint_statistics(prep, categories)})
            entities.append(entity_values(prep))
            if mode == "replay":  # every replayed household, those without a visit in the scored weeks included
                totals.append(household_totals(prep, households))
            bar.update(1)
        bar.close()
    per_draw = pd.DataFrame(rows)
    real_entities = entity_values(real_prep)
    tables = {
        "scores": summarise_draws(per_draw, floor),
        "per_draw": per_draw,
        "p_values": bayesian_p_values(pd.DataFrame(stats), observed),
        "entities": entity_coverage(real_entities, entities),
    }
    if "promo_response" in real_entities:
        tables["promo_lift"] = promotion_lift_calibration(
            real_entities["promo_response"], [e["promo_response"] for e in entities if "promo_response" in e])
    if replicate_rows:
        tables["replicates"] = replicate_calibration(per_draw, pd.DataFrame(replicate_rows))
    if mode == "replay":
        tables["households"], tables["pit"] = household_calibration(household_totals(real_prep, households), totals)
    if scored is not None and mode == "replay":
        span = f"{weeks[0]}-{weeks[-1]}"
        tables["elpd"] = pd.DataFrame([{"stage": "visit", "weeks": span, **visit_elpd(posterior, data, weeks)},
                                       {"stage": "category", "weeks": span, **category_elpd(posterior, data, weeks)},
                                       {"stage": "product", "weeks": span, **product_elpd(posterior, data, weeks)},
                                       {"stage": "quantity", "weeks": span, **quantity_elpd(posterior, data, weeks)}])
    tables["spec"] = pd.DataFrame([{"posterior": str(posterior), "mode": mode, "prices": prices, "draws": draws,
                                    "weeks": "all" if scored is None else f"{weeks[0]}-{weeks[-1]}",
                                    "held_out": bool(held_out), "seed": seed}])
    if scored is not None:
        tables["block"] = scored_block(posterior, data, weeks)
    tables["goals"] = validation_goals(tables)
    return tables


def _fitted_visit(posterior: str | os.PathLike, data):
    """The visit stage's trace in ``posterior`` and its data built with the settings it was fitted with."""
    import json

    from bayes_retail.models import visit
    from bayes_retail.models.artifacts import load_posterior

    idata = load_posterior(posterior, "visit", data_hash=data.data_hash)
    return idata, visit.build_visit_data(data, visit.VisitConfig(**json.loads(idata.attrs["stage_config"])))


def visit_elpd(posterior: str | os.PathLike, data, weeks) -> dict:
    """The visit stage's log predictive density of the household-weeks of ``weeks`` (exact; for weeks the fit left out)."""
    from bayes_retail.models import visit
    from bayes_retail.models.elpd import heldout_elpd

    idata, vd = _fitted_visit(posterior, data)
    vd = vd.subset_households(idata.posterior["household"].values)
    # the cells a fit scores (in the household's window, after its entry week) in the asked weeks
    cells = vd.scored & np.isin(vd.weeks, weeks)[None, :]
    return heldout_elpd(visit.cell_loglik_draws(vd, idata.posterior, draws=100, cells=cells))


def category_elpd(posterior: str | os.PathLike, data, weeks) -> dict:
    """The category stage's log predictive density of the visited household-weeks of ``weeks`` (exact).

    The fitted households' trips of those weeks, all categories of a
    household-week jointly (a shock integrated out); a fit with category
    values gets the same product draw and classes its fit used (from its seed
    and the product trace beside it).
    """
    import json

    from bayes_retail.models import category
    from bayes_retail.models.artifacts import load_posterior
    from bayes_retail.models.elpd import heldout_elpd
    from bayes_retail.models.imputation import pooled_draws
    from bayes_retail.models.stage import linked_category_values

    idata = load_posterior(posterior, "category", data_hash=data.data_hash)
    _, vd = _fitted_visit(posterior, data)
    rows = pd.Index(vd.households).get_indexer(idata.posterior["household"].values)
    cd = category.build_category_data(data, vd.trips[rows], vd.households[rows], vd.weeks).restricted_to(weeks)
    cds = [cd]
    if "k" in idata.posterior:
        stored = json.loads(idata.attrs["category_value_linkage"])
        product_attrs = load_posterior(posterior, "product", data_hash=data.data_hash).attrs
        config = {"name": idata.attrs.get("config_name"), "path": str(posterior),
                  "sections": {"product": json.loads(product_attrs["stage_config"])}}
        wanted = stored.get("draws", [stored])  # one dict per chain group (older fits: the one draw at the top)
        cds = []
        for g, draw in enumerate(wanted):
            linked, linkage = linked_category_values(data, cd, posterior, config, seed=int(idata.attrs["seed"]), group=g)
            if (linkage["product_chain"], linkage["product_draw"]) != (draw["product_chain"], draw["product_draw"]):
                raise ValueError("the category fit's category values cannot be rebuilt: refit the category stage")
            cds.append(linked)
    return heldout_elpd(pooled_draws(category.household_week_loglik_draws, cds, idata.posterior, draws=100))


def product_elpd(posterior: str | os.PathLike, data, weeks) -> dict:
    """The product stage's log predictive density of the choices in ``weeks``, per fitted household (exact).

    The unit is the household (its occasions share its class); earlier
    occasions still set the states, with the depth panel its fit used (a fit
    pooled over panels: each chain group's draws on its own panel).
    """
    from bayes_retail.models import product
    from bayes_retail.models.artifacts import load_posterior
    from bayes_retail.models.elpd import heldout_elpd
    from bayes_retail.models.imputation import chain_groups, pooled_draws
    from bayes_retail.models.stage import CLASS_MEMBERSHIP_FILENAME, product_depth_panels
    from bayes_retail.simulate.population import fitted_product_data

    post = load_posterior(posterior, "product", data_hash=data.data_hash).posterior
    membership = pd.read_csv(Path(posterior) / "product" / CLASS_MEMBERSHIP_FILENAME)
    groups = chain_groups(post)
    panels = product_depth_panels(data, posterior, 1 if groups is None else int(groups.max()) + 1)
    pdatas = [fitted_product_data(post, membership, data, depth).restricted_to(weeks) for depth in panels]
    return heldout_elpd(pooled_draws(product.household_loglik_draws, pdatas, post, draws=100))


def quantity_elpd(posterior: str | os.PathLike, data, weeks) -> dict:
    """The quantity stage's log predictive density of the purchase quantities of ``weeks``, per household-week (exact).

    ``lines_left_out``: lines of households the fit does not hold (no basket
    propensity to predict them with).
    """
    from bayes_retail.models import quantity
    from bayes_retail.models.artifacts import load_posterior
    from bayes_retail.models.elpd import heldout_elpd

    idata = load_posterior(posterior, "quantity", data_hash=data.data_hash)
    loglik, left_out = quantity.household_week_loglik_draws(data, idata.posterior, weeks=weeks, draws=100)
    return {**heldout_elpd(loglik), "lines_left_out": left_out}


PPC_FILENAME = "ppc.json"


def write_ppc(result: dict[str, pd.DataFrame], path: str | os.PathLike) -> Path:
    """Write the check's tables as one JSON document (records per table), atomically."""
    from bayes_retail._io import write_json

    path = Path(path)
    write_json({name: table.to_dict(orient="records") for name, table in result.items()}, path)
    return path


def read_ppc(path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The tables written by :func:`write_ppc`."""
    import json

    return {name: pd.DataFrame(records) for name, records in json.loads(Path(path).read_text()).items()}
