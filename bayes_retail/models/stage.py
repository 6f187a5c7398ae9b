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
from bayes_retail.config import ConfigError, stage_config
from bayes_retail.models import visit
from bayes_retail.models.artifacts import save_stage
from bayes_retail.models.diagnostics import announce, convergence
from bayes_retail.models.sampling import SamplerConfig, sample_posterior
from bayes_retail.models.tables import posterior_table

HYPERPRIORS_FILENAME = "hyperpriors.csv"
SUMMARY_FILENAME = "fit_summary.json"

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


def run_visit_stage(
    data,
    *,
    config: dict,
    seed: int,
    out: str | os.PathLike,
    method: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fit the visit stage on ``data`` and write ``out/visit/``; returns the fit summary."""
    say = progress or (lambda _m: None)
    visit_config = stage_config(config, "visit", visit.VisitConfig)
    sampler = sampler_config(config, method=method)
    t0 = time.perf_counter()
    vd = visit.build_visit_data(data, visit_config)
    model = visit.build_model(vd, visit_config)
    say(
        f"visit: {vd.households.size} households x {vd.weeks.size} weeks, {int(vd.scored.sum())} scored cells; "
        f"sampling with {sampler.method} ({sampler.chains} chains x {sampler.draws} draws)"
    )
    t1 = time.perf_counter()
    idata = sample_posterior(model, config=sampler, seed=seed)
    sampling = time.perf_counter() - t1
    verdict = convergence(idata)
    announce(verdict, stage=visit.STAGE)
    table = posterior_table(idata, VISIT_HYPERPRIORS)
    summary = {
        "stage": visit.STAGE,
        "config": config["name"],
        "seed": seed,
        "method": sampler.method,
        "approximate": sampler.approximate,
        "data_hash": data.data_hash,
        "households": int(vd.households.size),
        "scored_cells": int(vd.scored.sum()),
        "seconds": {"sampling": round(sampling, 1), "total": round(time.perf_counter() - t0, 1)},
        "convergence": verdict.to_dict(),
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
                "method": sampler.method,
                "approximate": int(sampler.approximate),
                "convergence": verdict.to_dict(),
                "hyperpriors": table.to_dict(orient="records"),
            },
            keep_draws=sampler.keep_draws or None,
        )
        table.to_csv(tmp / HYPERPRIORS_FILENAME, index=False)
        write_json(summary, tmp / SUMMARY_FILENAME)
    say(f"visit stage written to {target}")
    return summary
