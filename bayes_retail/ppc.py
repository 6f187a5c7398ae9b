"""Posterior predictive checks with the metric suite over posterior draws (DESIGN.md §5).

For S posterior draws, the simulator writes a synthetic panel (``replay``:
the fitted households with the data's prices and promotions; or ``new``
customers); each draw's panel is scored against the real data with the
tiered KS suite. The result per metric is the median and 90% interval of the
score over draws beside the real-vs-real floor (computed once), and Bayesian
p-values of summary statistics: the share of draws whose statistic is at or
below the real one.
"""

from __future__ import annotations

import os
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


def summary_statistics(lines: pd.DataFrame, n_weeks: int) -> dict[str, float]:
    """Mean basket size (units per visited household-week), visit rate, units per product-week, promo line share."""
    return {
        "mean_basket_size": _mean_basket_size(lines),
        "visit_rate": _visit_rate(lines, n_weeks),
        "units_per_product_week": _units_per_product_week(lines),
        "promo_share": _promo_share(lines),
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
) -> dict[str, pd.DataFrame]:
    """Simulate ``draws`` posterior draws into ``out`` and score each against the real data.

    ``replay`` compares with the real lines of the replayed households;
    ``new`` customers (as many as real households unless ``customers``) with all of them.
    Returns ``scores`` (per metric, over draws), ``per_draw`` and ``p_values``.
    """
    from bayes_retail.data import load_side
    from bayes_retail.metrics import compute_suite
    from bayes_retail.metrics.suite import real_vs_real_floor
    from bayes_retail.simulate.population import Posteriors, template_ids
    from bayes_retail.simulate.run import simulate_from_folder

    real = data.metric_tables("real")
    if mode == "replay":
        households = template_ids(Posteriors.load(posterior, data_hash=data.data_hash))
        real = real.subset_households(households)
        customers = households.size
    customers = customers or len(data.households)
    manifest = simulate_from_folder(posterior, data, out, customers=customers, draws=draws, mode=mode,
                                    prices=prices, seed=seed)
    floor = real_vs_real_floor(real, seed=seed)
    n_weeks = len(data.weeks)
    observed = summary_statistics(real.transactions, n_weeks)
    rows, stats = [], []
    for d in manifest["spec"]["draws"]:
        side = load_side(Path(out), name="synthetic", reference=data, cache_dir=cache_dir, draw=d)
        result = compute_suite(real, side, seed=seed, floor=floor)
        rows += [{"draw": d, "metric": name, "tier": m.tier, "ks": m.ks, "score": 1.0 - m.ks}
                 for name, m in result.metrics.items()]
        stats.append({"draw": d, **summary_statistics(side.transactions, n_weeks)})
    per_draw = pd.DataFrame(rows)
    return {
        "scores": summarise_draws(per_draw, floor),
        "per_draw": per_draw,
        "p_values": bayesian_p_values(pd.DataFrame(stats), observed),
    }


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
