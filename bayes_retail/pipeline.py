"""The whole pipeline on the embedded data (``bayes-retail run``, ``make run``).

data -> fit (or reuse the artifacts in ``models/`` when they were fitted on
these data with this configuration) -> simulate -> metric suite beside the
real-vs-real floor -> posterior predictive check over draws (replay of the
fitted households) -> the HTML report (built by the CLI from what this writes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

import pandas as pd
import xarray as xr

from bayes_retail.errors import ArtifactError

#: Fitting order: pricing first (the product stage reads its imputed depths).
PIPELINE_STAGES = ("pricing", "visit", "product", "category", "quantity")  # product first: the category value needs it


def stage_is_current(models: str | Path, stage: str, data, config: dict) -> tuple[bool, str]:
    """Whether ``models/<stage>`` was fitted on ``data`` with ``config``'s name and stage settings; and why not."""
    from bayes_retail.models.artifacts import load_posterior

    folder = Path(models) / stage
    if not folder.exists():
        return False, "not fitted"
    try:
        if stage == "pricing":
            with xr.open_dataset(folder / "pricing.nc", engine="h5netcdf") as ds:
                provenance = json.loads(ds.attrs.get("provenance", "{}"))
                attrs = {"data_hash": provenance.get("data_hash"), "config_name": provenance.get("config_name"),
                         "stage_config": ds.attrs.get("config")}
        else:
            attrs = load_posterior(models, stage, data_hash=data.data_hash).attrs
    except (ArtifactError, OSError, ValueError) as exc:
        return False, str(exc)
    if attrs.get("data_hash") != data.data_hash:
        return False, "fitted on other data"
    if attrs.get("config_name") != config["name"]:
        return False, f"fitted with configuration {attrs.get('config_name')!r}, not {config['name']!r}"
    wanted = json.loads(json.dumps(config["sections"].get(stage, {})))
    fitted = json.loads(attrs.get("stage_config") or "{}")
    # a key the fitted settings lack is an option added since: the fit had its default behaviour
    defaults = json.loads(json.dumps(config_class(stage)().to_dict()))
    differing = sorted(k for k, v in wanted.items() if fitted.get(k, defaults.get(k)) != v)
    if differing:
        return False, f"fitted with other [{stage}] settings ({', '.join(differing)})"
    if stage != "pricing":  # the households and weeks the stage fitted ([data]; older traces: every one)
        from bayes_retail.models.stage import data_selection

        def households(share, split_seed):  # the split seed means nothing when every household is fitted
            return (float(share), int(split_seed) if float(share) < 1 else 0)

        selection = data_selection(config)
        fitted_data = (attrs.get("weeks", "all"), *households(attrs.get("fit_share", 1.0), attrs.get("split_seed", 0)))
        if fitted_data != (selection.weeks or "all", *households(selection.fit_share, selection.split_seed)):
            return False, "fitted on other weeks or households ([data])"
    linked = json.loads(attrs.get("category_value_linkage") or "{}").get("product_fit_id")
    if linked is not None:
        product_attrs = load_posterior(models, "product", data_hash=data.data_hash).attrs
        if product_attrs.get("fit_id") != linked:
            return False, "its category values came from another product fit"
    return True, "current"


def config_class(stage: str):
    """The dataclass of a stage's configuration section."""
    from bayes_retail.models.category import CategoryConfig
    from bayes_retail.models.product import ProductConfig
    from bayes_retail.models.quantity import QuantityConfig
    from bayes_retail.models.visit import VisitConfig
    from bayes_retail.pricing import PricingConfig

    return {"pricing": PricingConfig, "visit": VisitConfig, "category": CategoryConfig, "product": ProductConfig,
            "quantity": QuantityConfig}[stage]


def fit_stage(
    stage: str, data, config: dict, *, models: str | Path, seed: int, progress: Callable[[str], None],
    method: str | None = None, weeks: str | None = None,
) -> dict:
    """Fit one stage with ``config`` into ``models``; returns its summary.

    ``method`` and ``weeks`` override the configuration's for the shopper
    stages (the pricing HMMs have neither).
    """
    from bayes_retail.config import stage_config
    from bayes_retail.models import stage as runners
    from bayes_retail.pricing.stage import run_pricing_stage

    if stage == "pricing":
        return run_pricing_stage(data, config=stage_config(config, "pricing", config_class("pricing")), seed=seed,
                                 out=models, config_name=config["name"], progress=progress)
    runner = getattr(runners, f"run_{stage}_stage")
    return runner(data, config=config, seed=seed, out=models, method=method, weeks=weeks, progress=progress)


class PipelineOutcome(NamedTuple):
    """What :func:`run_pipeline` produced: the suite's result, its ``metrics.json``, and the check's tables."""

    result: object
    metrics_path: Path
    ppc: dict[str, pd.DataFrame] | None


def _replacing_stale(out: Path, simulate: Callable, progress: Callable[[str], None]):
    """``simulate()``; when ``out`` holds a run of other artifacts, remove it and simulate again."""
    from bayes_retail.simulate.run import MANIFEST_FILENAME

    try:
        return simulate()
    except ArtifactError as exc:
        if not (out / MANIFEST_FILENAME).exists():
            raise
        progress(f"replacing the pipeline's previous synthetic panel in {out} ({exc})")
        shutil.rmtree(out)
        return simulate()


def run_pipeline(
    *,
    source: str | Path | None = None,
    models: str | Path = "models",
    synthetic: str | Path = "synthetic",
    reports: str | Path = "reports",
    config_name: str = "default",
    fit_seed: int = 1,
    seed: int = 0,
    customers: int | None = None,
    cache_dir: str | None = None,
    ppc_draws: int = 0,
    progress: Callable[[str], None] = lambda _m: None,
) -> PipelineOutcome:
    """Run data, fit-or-reuse, simulate and check.

    ``source`` is the data (default: the embedded data) and ``config_name`` the
    configuration fitted when an artifact is missing or stale. ``customers``
    defaults to the number of real households, so size-dependent metrics
    compare like with like. The synthetic panel is one posterior draw
    of new customers with HMM prices, in ``synthetic/run``. With
    ``ppc_draws > 0`` the posterior predictive check replays the fitted
    households over that many draws (``synthetic/ppc-replay``) and writes
    ``ppc.json`` beside ``metrics.json``.
    """
    if ppc_draws < 0:
        raise ValueError(f"ppc_draws must be >= 0, got {ppc_draws}")
    from bayes_retail.config import load_config
    from bayes_retail.data import load_data, load_side
    from bayes_retail.metrics import compute_suite
    from bayes_retail.simulate.run import simulate_from_folder

    data = load_data(source, cache_dir=cache_dir, progress=progress)
    config = load_config(config_name)
    for stage in PIPELINE_STAGES:
        current, why = stage_is_current(models, stage, data, config)
        if current:
            progress(f"{stage}: reusing {Path(models) / stage}")
            continue
        progress(f"{stage}: fitting ({why}); see docs/models.md for how long each stage takes")
        fit_stage(stage, data, config, models=models, seed=fit_seed, progress=progress)
    out = Path(synthetic) / "run"
    n = customers or len(data.households)
    manifest = _replacing_stale(
        out, lambda: simulate_from_folder(models, data, out, customers=n, draws=1, seed=seed, progress=True), progress)
    draw = manifest["spec"]["draws"][0]
    progress(f"metric suite: {n} synthetic customers (posterior draw {draw}) against the real data, with the floor")
    real = data.metric_tables("real")
    side = load_side(out, name="synthetic", reference=data, cache_dir=cache_dir, draw=draw)
    result = compute_suite(real, side, seed=seed, floor=True)
    path = Path(reports) / "metrics.json"
    result.to_json(path)
    tables = None
    if ppc_draws:
        from bayes_retail.ppc import PPC_FILENAME, posterior_predictive_suite, write_ppc

        replay = Path(synthetic) / "ppc-replay"
        progress(f"posterior predictive check: the fitted households replayed over {ppc_draws} draws")
        tables = _replacing_stale(replay, lambda: posterior_predictive_suite(
            models, data, replay, draws=ppc_draws, seed=seed, cache_dir=cache_dir, progress=True), progress)
        write_ppc(tables, Path(reports) / PPC_FILENAME)
    return PipelineOutcome(result, path, tables)
