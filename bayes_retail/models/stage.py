"""Fitting a shopper-model stage end to end: data, model, posterior, verdict, tables, artifact.

What ``bayes-retail fit --stage visit`` runs. Each stage writes its own folder
``out/<stage>/`` (moved into place whole): ``trace.nc`` (ArviZ InferenceData with
provenance and the convergence verdict in its attributes) and
``hyperpriors.csv`` (the population-level parameters with 90% intervals).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from bayes_retail._io import atomic_dir, write_json
from bayes_retail.config import ConfigError, DataSelection, stage_config
from bayes_retail.models import visit
from bayes_retail.models.artifacts import save_stage
from bayes_retail.models.diagnostics import announce, convergence
from bayes_retail.models.sampling import SamplerConfig, sample_posterior
from bayes_retail.models.tables import posterior_table

HYPERPRIORS_FILENAME = "hyperpriors.csv"
SUMMARY_FILENAME = "fit_summary.json"
PRIOR_CHECK_FILENAME = "prior_predictive.json"
SEASONAL_FILENAME = "seasonal_indices.csv"

#: Population-level variables of the visit stage (the hyperpriors table).
VISIT_HYPERPRIORS = ["mu", "sigma", "corr_visit_trips", "rho", "sigma_week"]


def sampler_config(config: dict, *, method: str | None = None) -> SamplerConfig:
    """The ``[sampler]`` section, with the method overridden when given."""
    base = stage_config(config, "sampler", SamplerConfig)
    if method is None:
        return base
    try:
        return SamplerConfig(**{**base.to_dict(), "method": method})
    except ValueError as exc:
        raise ConfigError(f"--method: {exc}") from exc


def data_selection(config: dict, *, weeks: str | None = None) -> DataSelection:
    """The ``[data]`` section, with ``--weeks`` overriding its weeks when given."""
    if weeks is None:
        return stage_config(config, "data", DataSelection)
    return DataSelection(weeks=weeks)


def visit_prior_check(vd, config, *, seed: int, draws: int = 200) -> dict:
    """The observed summary statistics beside the 5/50/95% quantiles of their prior predictive distribution."""
    simulated = visit.prior_predictive(vd, config, draws=draws, seed=seed)
    observed = visit.summary_statistics(vd.trips, vd.scored)
    return {
        "draws": draws,
        "statistics": {
            name: {
                "observed": observed[name],
                "prior_q05": float(simulated[name].quantile(0.05)),
                "prior_median": float(simulated[name].median()),
                "prior_q95": float(simulated[name].quantile(0.95)),
                "observed_prior_quantile": float((simulated[name] < observed[name]).mean()),
            }
            for name in observed
        },
    }


def visit_posterior_check(vd, posterior, *, seed: int, draws: int = 20) -> dict:
    """KS between the data and grids replayed from posterior draws: household visit shares, trips per visited week.

    Median and 90% interval over ``draws`` replays (the suite's real-vs-real
    floor for visit_probability on the embedded data is 0.022).
    """
    import numpy as np

    from bayes_retail.metrics.scoring import ks_statistic

    grids = visit.posterior_predictive(vd, posterior, draws=draws, rng=np.random.default_rng(seed))
    keep = vd.scored.any(axis=1)
    observed_share = visit.household_visit_share(vd.trips, vd.scored)[keep]
    observed_trips = vd.trips[(vd.trips > 0) & vd.scored]
    ks = {
        "household_visit_share": [ks_statistic(observed_share, visit.household_visit_share(g, vd.scored)[keep]) for g in grids],
        "trips_per_visited_week": [ks_statistic(observed_trips, g[(g > 0) & vd.scored]) for g in grids],
    }
    return {
        "draws": len(grids),
        "ks": {
            name: {"median": float(np.median(v)), "q05": float(np.quantile(v, 0.05)), "q95": float(np.quantile(v, 0.95))}
            for name, v in ks.items()
        },
    }


def run_visit_stage(
    data,
    *,
    config: dict,
    seed: int,
    out: str | os.PathLike,
    method: str | None = None,
    weeks: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fit the visit stage on ``data`` and write ``out/visit/``; returns the fit summary.

    ``weeks`` (e.g. ``"2-26,37-53"``) overrides the configuration's ``[data] weeks``:
    only those weeks are scored.
    """
    say = progress or (lambda _m: None)
    visit_config = stage_config(config, "visit", visit.VisitConfig)
    sampler = sampler_config(config, method=method)
    selection = data_selection(config, weeks=weeks)
    t0 = time.perf_counter()
    vd = visit.build_visit_data(data, visit_config).restricted_to(selection.week_numbers)
    model = visit.build_model(vd, visit_config)
    say(
        f"visit: {vd.households.size} households x {vd.weeks.size} weeks, {int(vd.scored.sum())} scored cells; "
        f"sampling with {sampler.method} ({sampler.chains} chains x {sampler.draws} draws)"
    )
    prior_check = visit_prior_check(vd, visit_config, seed=seed)
    t1 = time.perf_counter()
    idata = sample_posterior(model, config=sampler, seed=seed)
    sampling = time.perf_counter() - t1
    verdict = convergence(idata)
    announce(verdict, stage=visit.STAGE)
    table = posterior_table(idata, VISIT_HYPERPRIORS)
    seasonal = visit.seasonal_indices(vd, idata.posterior)
    posterior_check = visit_posterior_check(vd, idata.posterior, seed=seed)
    summary = {
        "stage": visit.STAGE,
        "config": config["name"],
        "seed": seed,
        "method": sampler.method,
        "approximate": sampler.approximate,
        "data_hash": data.data_hash,
        "weeks": selection.weeks or "all",
        "households": int(vd.households.size),
        "scored_cells": int(vd.scored.sum()),
        "seconds": {"sampling": round(sampling, 1), "total": round(time.perf_counter() - t0, 1)},
        "convergence": verdict.to_dict(),
        "posterior_predictive": posterior_check,
    }
    target = Path(out) / visit.STAGE
    with atomic_dir(target) as tmp:
        save_stage(
            idata,
            tmp,
            stage=visit.STAGE,
            model_version=visit.MODEL_VERSION,
            attrs={
                "config_name": config["name"],
                "stage_config": visit_config.to_dict(),
                "sampler": sampler.to_dict(),
                "data_hash": data.data_hash,
                "seed": seed,
                "weeks": selection.weeks or "all",
                "method": sampler.method,
                "approximate": int(sampler.approximate),
                "convergence": verdict.to_dict(),
                "hyperpriors": table.to_dict(orient="records"),
            },
            keep_draws=sampler.keep_draws or None,
        )
        table.to_csv(tmp / HYPERPRIORS_FILENAME, index=False)
        seasonal.to_csv(tmp / SEASONAL_FILENAME, index=False)
        write_json(summary, tmp / SUMMARY_FILENAME)
        write_json(prior_check, tmp / PRIOR_CHECK_FILENAME)
    say(f"visit stage written to {target}")
    return summary
