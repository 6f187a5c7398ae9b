"""Fitting a shopper-model stage end to end: data, model, posterior, verdict, tables, artifact.

What ``bayes-retail fit --stage visit|category|product|quantity`` runs. Each stage writes its own folder
``out/<stage>/`` (moved into place whole): ``trace.nc`` (ArviZ InferenceData with
provenance and the convergence verdict in its attributes), ``hyperpriors.csv``
(the population-level parameters with 90% intervals), ``fit_summary.json``
(timings, verdict, posterior predictive check) and ``prior_predictive.json``,
plus the stage's own tables (seasonal indices, promotion response, ...).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bayes_retail._io import atomic_dir, write_json
from bayes_retail.config import ConfigError, DataSelection, parse_weeks, stage_config
from bayes_retail.errors import ArtifactError
from bayes_retail.models import category, deal, product, quantity, visit
from bayes_retail.models.artifacts import save_stage, thinned
from bayes_retail.models.diagnostics import announce, convergence, drop_chains, stuck_chains
from bayes_retail.models.elpd import loo_summary
from bayes_retail.models.imputation import (
    chain_groups,
    group_posteriors,
    group_sampler,
    group_seed,
    imputation_summary,
    pool_chains,
    pooled_draws,
    with_chain_groups,
)
from bayes_retail.models.sampling import SamplerConfig, sample_posterior
from bayes_retail.models.tables import posterior_table

HYPERPRIORS_FILENAME = "hyperpriors.csv"
SUMMARY_FILENAME = "fit_summary.json"
PRIOR_CHECK_FILENAME = "prior_predictive.json"
SEASONAL_FILENAME = "seasonal_indices.csv"

#: Population-level variables of the visit stage (the hyperpriors table).
VISIT_HYPERPRIORS = ["mu", "sigma", "corr_visit_trips", "rho", "sigma_week"]


#: Stages whose ``[sampler.STAGE]`` table may override ``[sampler]`` keys.
SAMPLER_STAGES = ("visit", "category", "product", "quantity")


def sampler_config(config: dict, *, method: str | None = None, stage: str | None = None) -> SamplerConfig:
    """The ``[sampler]`` section, with ``[sampler.STAGE]`` overrides for ``stage`` and the method when given.

    A stage table (e.g. ``[sampler.product]`` with fewer draws) changes only
    that stage's sampler, so one named configuration can give a costly stage
    a shorter run.
    """
    section = dict(config["sections"].get("sampler", {}))
    overrides = {name: section.pop(name) for name in SAMPLER_STAGES if isinstance(section.get(name), dict)}
    section.update(overrides.get(stage, {}))
    base = stage_config({**config, "sections": {**config["sections"], "sampler": section}}, "sampler", SamplerConfig)
    if method is None:
        return base
    try:
        return SamplerConfig(**{**base.to_dict(), "method": method})
    except ValueError as exc:
        raise ConfigError(f"--method: {exc}") from exc


def data_selection(config: dict, *, weeks: str | None = None) -> DataSelection:
    """The ``[data]`` section, with ``--weeks`` overriding its weeks when given."""
    import dataclasses

    selection = stage_config(config, "data", DataSelection)
    return selection if weeks is None else dataclasses.replace(selection, weeks=weeks)


def fitted_households(data, selection: DataSelection) -> np.ndarray | None:
    """Ids of the households the shopper stages fit on (``None``: every household)."""
    if selection.fit_share >= 1:
        return None
    return selection.household_split(data.households["household_id"].to_numpy())[0]


def predictive_check(observed: dict, simulated, *, draws: int, kind: str = "prior") -> dict:
    """Observed summary statistics beside the 5/50/95% quantiles of their simulated (prior or posterior predictive) distribution.

    ``observed_{kind}_quantile`` is the share of simulated values below the
    observed one (a predictive p-value; near 0 or 1 means the data sit in a
    tail of the predictive distribution).
    """
    return {
        "draws": draws,
        "statistics": {
            name: {
                "observed": observed[name],
                f"{kind}_q05": float(simulated[name].quantile(0.05)),
                f"{kind}_median": float(simulated[name].median()),
                f"{kind}_q95": float(simulated[name].quantile(0.95)),
                f"observed_{kind}_quantile": float((simulated[name] < observed[name]).mean()),
            }
            for name in observed
        },
    }


def visit_prior_check(vd, config, *, seed: int, draws: int = 200) -> dict:
    """The visit stage's prior predictive check (:func:`predictive_check`)."""
    simulated = visit.prior_predictive(vd, config, draws=draws, seed=seed)
    return predictive_check(visit.summary_statistics(vd.trips, vd.scored), simulated, draws=draws)


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


def _sample(model, sampler: SamplerConfig, *, seed: int, stage: str, fold=None):
    """Posterior draws, seconds spent sampling, and the announced convergence verdict.

    ``fold`` maps the posterior dataset to the identified one (mirror modes
    folded) before the verdict is computed; stuck chains are dropped first
    (``[sampler] drop_stuck_chains``).
    """
    return _sample_pooled([model], sampler, seed=seed, stage=stage, fold=fold)


def _without_stuck_chains(idata, sampler: SamplerConfig):
    if sampler.drop_stuck_chains:
        stuck = stuck_chains(idata)
        if stuck and idata.posterior.sizes["chain"] - len(stuck) >= 2:
            idata = drop_chains(idata, stuck)
    return idata


def _check_chain_groups(sampler: SamplerConfig, groups: int, key: str) -> None:
    """Refuse, before any sampling, a chain count ``groups`` chain groups cannot share."""
    try:
        group_sampler(sampler, groups)
    except ValueError as exc:
        raise ConfigError(f"{key} = {groups}: {exc}") from exc


def _sample_pooled(models: list, sampler: SamplerConfig, *, seed: int, stage: str, fold=None):
    """:func:`_sample` over one model per completed input: group g samples ``models[g]`` (docs/models.md, "Imputations").

    The sampler's chains and time limit are split evenly over the groups
    (:func:`~bayes_retail.models.imputation.group_sampler`), the groups'
    chains pooled in order and the verdict judged within groups. One model is
    exactly :func:`_sample`.
    """
    t0 = time.perf_counter()
    part_sampler = group_sampler(sampler, len(models))
    parts = [_without_stuck_chains(sample_posterior(m, config=part_sampler, seed=group_seed(seed, g)), part_sampler)
             for g, m in enumerate(models)]
    idata = pool_chains(parts)
    if fold is not None:
        groups = chain_groups(idata.posterior)
        idata.posterior = fold(idata.posterior)
        if groups is not None:
            with_chain_groups(idata, groups)
    seconds = time.perf_counter() - t0
    verdict = convergence(idata)
    announce(verdict, stage=stage)
    return idata, seconds, verdict


def _provenance(
    config: dict, stage_cfg, sampler: SamplerConfig, data, *, seed: int, selection: DataSelection, verdict
) -> dict:
    """What every stage trace and summary records about how it was made."""
    return {
        "config_name": config["name"],
        "stage_config": stage_cfg.to_dict(),
        "sampler": sampler.to_dict(),
        "data_hash": data.data_hash,
        "seed": seed,
        "weeks": selection.weeks or "all",
        "fit_share": selection.fit_share,
        "split_seed": selection.split_seed,
        "method": sampler.method,
        "approximate": int(sampler.approximate),
        "convergence": verdict.to_dict(),
    }


def _summary(stage: str, provenance: dict, *, seconds: dict, **extra) -> dict:
    return {
        "stage": stage,
        "config": provenance["config_name"],
        "seed": provenance["seed"],
        "method": provenance["method"],
        "approximate": bool(provenance["approximate"]),
        "data_hash": provenance["data_hash"],
        "weeks": provenance["weeks"],
        **extra,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "convergence": provenance["convergence"],
    }


def fit_id(idata) -> str:
    """A digest of every posterior draw (before thinning): names one fit, the same on every rerun with its seed.

    A stage that conditions on another (the category value on the product
    stage) records its fit id, so a refit of the other makes it stale.
    """
    import hashlib

    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(idata.posterior.data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(idata.posterior[name].values, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _write_stage(
    idata, out, *, module, provenance: dict, hyperpriors: pd.DataFrame, keep_draws: int, tables: dict,
    documents: dict, say, fit_id_value: str | None = None, **trace_options,
) -> Path:
    """Write ``out/<stage>/`` whole (moved into place): the trace, the hyperpriors and other CSV tables, JSON documents.

    The trace's attributes are the provenance plus the hyperprior table.
    ``fit_id_value`` names the fit when ``idata`` is already thinned (its
    :func:`fit_id` taken on every draw before).
    """
    target = Path(out) / module.STAGE
    attrs = {**provenance, "fit_id": fit_id_value or fit_id(idata), "hyperpriors": hyperpriors.to_dict(orient="records")}
    with atomic_dir(target) as tmp:
        save_stage(
            idata, tmp, stage=module.STAGE, model_version=module.MODEL_VERSION, attrs=attrs,
            keep_draws=keep_draws or None, **trace_options,
        )
        for name, table in {HYPERPRIORS_FILENAME: hyperpriors, **tables}.items():
            rounded = name in SUMMARY_TABLES  # read by people; the simulator's tables keep every digit
            table.to_csv(tmp / name, index=False, float_format=SUMMARY_FLOAT_FORMAT if rounded else None)
        for name, document in documents.items():
            write_json(document, tmp / name)
    say(f"{module.STAGE} stage written to {target}")
    return target


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
    sampler = sampler_config(config, method=method, stage="visit")
    selection = data_selection(config, weeks=weeks)
    t0 = time.perf_counter()
    vd = visit.build_visit_data(data, visit_config).restricted_to(selection.week_numbers)
    pool = fitted_households(data, selection)
    if pool is not None:
        vd = vd.subset_households(pool)
    model = visit.build_model(vd, visit_config)
    say(
        f"visit: {vd.households.size} households x {vd.weeks.size} weeks, {int(vd.scored.sum())} scored cells; "
        f"sampling with {sampler.method} ({sampler.chains} chains x {sampler.draws} draws)"
    )
    prior_check = visit_prior_check(vd, visit_config, seed=seed)
    idata, sampling, verdict = _sample(model, sampler, seed=seed, stage=visit.STAGE)
    table = posterior_table(idata, VISIT_HYPERPRIORS)
    seasonal = visit.seasonal_indices(vd, idata.posterior)
    provenance = _provenance(config, visit_config, sampler, data, seed=seed, selection=selection, verdict=verdict)
    summary = _summary(
        visit.STAGE, provenance,
        seconds={"sampling": sampling, "total": time.perf_counter() - t0},
        households=int(vd.households.size),
        scored_cells=int(vd.scored.sum()),
        posterior_predictive=visit_posterior_check(vd, idata.posterior, seed=seed),
        loo=loo_summary(visit.cell_loglik_draws(vd, idata.posterior, draws=100)),
    )
    _write_stage(
        idata, out, module=visit, provenance=provenance, hyperpriors=table,
        keep_draws=sampler.keep_draws,
        tables={SEASONAL_FILENAME: seasonal},
        documents={SUMMARY_FILENAME: summary, PRIOR_CHECK_FILENAME: prior_check},
        say=say, float32=True,
    )
    return summary


#: Population-level variables of the quantity stage (the hyperpriors table).
QUANTITY_HYPERPRIORS = ["mu_item", "tau_category", "tau_item", "mu_kappa", "sigma_kappa", "sigma_basket", "alpha"]
PROMO_FILENAME = "promo_response.csv"
#: Parametrisation pieces of the quantity stage's item and category vectors (left out of the shipped trace).
QUANTITY_PIECES = ("l_centred", "z_l", "kappa_centred", "z_kappa", "log_alpha_centred", "z_log_alpha")
ITEMS_FILENAME = "items.csv"


def with_category_names(table: pd.DataFrame, categories: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the category's name (``product_category``) right after its ``category_id``."""
    names = categories.set_index("category_id")["product_category"]
    out = table.copy()
    out.insert(out.columns.get_loc("category_id") + 1, "product_category", out["category_id"].map(names))
    return out


def quantity_promo_table(idata, categories: pd.DataFrame) -> pd.DataFrame:
    """Stockpiling response ``kappa_c`` per category (log-mean change of ``q - 1`` per unit depth), 90% intervals."""
    table = posterior_table(idata, ["kappa"]).rename(columns={"category": "category_id"})
    return with_category_names(table.assign(response="stockpiling_kappa").drop(columns="variable"), categories)


def run_quantity_stage(
    data,
    *,
    config: dict,
    seed: int,
    out: str | os.PathLike,
    method: str | None = None,
    weeks: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fit the quantity stage on ``data`` and write ``out/quantity/``; returns the fit summary.

    Writes the trace, ``hyperpriors.csv``, ``promo_response.csv`` (stockpiling
    response by category), ``items.csv`` (the item index: category, item,
    product id; empty for "other"), the prior and posterior predictive checks
    and the summary (with PSIS-LOO over household-weeks). ``weeks`` restricts
    the lines to those weeks.
    """
    say = progress or (lambda _m: None)
    quantity_config = stage_config(config, "quantity", quantity.QuantityConfig)
    sampler = sampler_config(config, method=method, stage="quantity")
    selection = data_selection(config, weeks=weeks)
    t0 = time.perf_counter()
    qd, items, _ = quantity.build_quantity_data(
        data, households=fitted_households(data, selection), weeks=selection.week_numbers
    )
    model = quantity.build_model(qd, quantity_config)
    say(
        f"quantity: {qd.n_lines} lines in {qd.pattern_lines.size} (household, item, depth) patterns, "
        f"{qd.items.size} items; sampling with {sampler.method} ({sampler.chains} chains x {sampler.draws} draws)"
    )
    observed = quantity.summary_statistics(qd.extra_values, qd.extra_counts)
    prior_check = predictive_check(observed, quantity.prior_predictive(qd, quantity_config, draws=100, seed=seed), draws=100)
    idata, sampling, verdict = _sample(model, sampler, seed=seed, stage=quantity.STAGE)
    dispersion = ["alpha"] if quantity_config.dispersion == "global" else ["mu_log_alpha", "sigma_log_alpha"]
    table = posterior_table(idata, QUANTITY_HYPERPRIORS[:-1] + dispersion)
    promo = quantity_promo_table(idata, data.categories)
    replayed = quantity.posterior_predictive(qd, idata.posterior, draws=20, rng=np.random.default_rng(seed))
    loglik, _ = quantity.household_week_loglik_draws(data, idata.posterior, weeks=selection.week_numbers, draws=100)
    provenance = _provenance(config, quantity_config, sampler, data, seed=seed, selection=selection, verdict=verdict)
    summary = _summary(
        quantity.STAGE, provenance,
        seconds={"sampling": sampling, "total": time.perf_counter() - t0},
        lines=qd.n_lines,
        patterns=int(qd.pattern_lines.size),
        items=int(qd.items.size),
        posterior_predictive=predictive_check(observed, replayed, draws=len(replayed), kind="posterior"),
        loo=loo_summary(loglik),
    )
    _write_stage(
        idata, out, module=quantity, provenance=provenance, hyperpriors=table,
        keep_draws=sampler.keep_draws,
        tables={PROMO_FILENAME: promo, ITEMS_FILENAME: items},
        documents={SUMMARY_FILENAME: summary, PRIOR_CHECK_FILENAME: prior_check},
        say=say,
        # l and kappa are stored whole; their centred / non-centred pieces only parametrise them
        drop_vars=QUANTITY_PIECES,
        float32=True,
    )
    return summary


#: Draws of the category stage's PSIS-LOO over household-weeks (~0.2 s each on 300 households; x12 with shocks).
CATEGORY_LOO_DRAWS = 100
#: Population-level variables of the category stage (the hyperpriors table).
CATEGORY_HYPERPRIORS = ["sigma_household", "loading_diagonal", "sigma_week", "sigma_season", "tau_season", "mu_value",
                        "tau_value", "sigma_household_week", "tau_shock_loading", "trips_elasticity"]
CATEGORY_EFFECTS_FILENAME = "category_effects.csv"


def category_effects_table(idata, categories: pd.DataFrame) -> pd.DataFrame:
    """Per category: intercept ``b_c`` and preference loadings with 90% intervals (one row per scalar)."""
    names = [name for name in ("b", "loadings", "k", "season_scale", "shock_loading") if name in idata.posterior]
    return with_category_names(posterior_table(idata, names).rename(columns={"category": "category_id"}), categories)


def linked_category_values(data, cd, out: str | os.PathLike, config: dict, *, seed: int, group: int = 0):
    """Category values and household classes from one posterior draw of the fitted product stage (a cut posterior).

    The draw is picked with ``seed`` (and ``group``, the chain group of a
    fit pooled over ``value_draws`` draws) among the stored product draws; the
    product stage's data are rebuilt for the category stage's households with
    the depth panel the draw's chain conditioned on and the fit's product settings. Returns the
    :class:`~bayes_retail.models.category.CategoryData` with values centred over
    weeks per class and category, and the linkage (which product draw) to
    store with the category trace.
    """
    from bayes_retail.models.artifacts import load_posterior

    try:
        fitted = load_posterior(out, product.STAGE, data_hash=data.data_hash)
        posterior, attrs = fitted.posterior, fitted.attrs
    except ArtifactError as exc:
        raise ArtifactError(f"[category] category_value = true needs the product stage fitted first: {exc}") from exc
    rng = np.random.default_rng([seed, 2] if group == 0 else [seed, 2, group])
    chain, draw = (int(rng.integers(posterior.sizes[dim])) for dim in ("chain", "draw"))
    product_config = stage_config(config, "product", product.ProductConfig)
    groups = chain_groups(posterior)
    panel = 0 if groups is None else int(groups[chain])  # the depth panel the draw's chain group conditioned on
    depth = product_depth_panels(data, out, panel + 1)[panel]
    pdata = product.build_product_data(data, depth, product_config, households=cd.households)
    params = product.posterior_params(posterior, pdata, chain, draw)
    weeks = pd.Index(pdata.weeks).get_indexer(cd.weeks)
    if (weeks < 0).any():
        raise ValueError(f"weeks {cd.weeks[weeks < 0].tolist()} have no prices in the product stage")
    categories = pd.Index(pdata.categories).get_indexer(cd.categories)
    value = np.zeros((params["theta"].shape[0], cd.categories.size, cd.weeks.size))
    known = categories >= 0  # a category without a choice set keeps value 0 (k_c has nothing to act on)
    value[:, known] = product.category_values(params, pdata)[:, categories[known]][:, :, weeks]
    value -= value.mean(axis=2, keepdims=True)
    membership = product.class_membership(params, pdata)
    rows = pd.Index(pdata.households).get_indexer(cd.households)
    cumulative = membership[rows].cumsum(axis=1)
    classes = (rng.random((rows.size, 1)) > cumulative).sum(axis=1).clip(max=membership.shape[1] - 1)
    linkage = {"product_chain": chain, "product_draw": draw, "depth_panel": panel, "product_fit_id": attrs.get("fit_id"),
               "categories_without_choice_set": int((~known).sum())}
    return category.with_category_value(cd, value, classes), linkage


def pooled_linkage(linkages: list[dict]) -> dict:
    """One record of the product draws a category fit conditioned on, one per chain group.

    The first draw's ``product_chain`` / ``product_draw`` stay at the top (the
    form a one-draw fit stored); ``draws`` lists every group's.
    """
    first = linkages[0]
    draws = [{k: link[k] for k in ("product_chain", "product_draw", "depth_panel")} for link in linkages]
    return {**first, "draws": draws}


def household_subset(data, size: int, *, seed: int, pool: np.ndarray | None = None) -> np.ndarray | None:
    """Sorted ids of ``size`` households drawn at random with ``seed`` from ``pool`` (default: every household).

    ``None`` when ``size`` is 0 and there is no pool (every household); the
    pool itself when ``size`` is 0. The category and product stages draw their
    subsets here, so equal sizes and seeds give both stages the same households.
    """
    if not size:
        return None if pool is None else np.sort(np.asarray(pool))
    ids = data.households["household_id"].to_numpy() if pool is None else np.sort(np.asarray(pool))
    return np.sort(np.random.default_rng(seed).choice(ids, size=min(size, ids.size), replace=False))


def run_category_stage(
    data,
    *,
    config: dict,
    seed: int,
    out: str | os.PathLike,
    method: str | None = None,
    weeks: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fit the category stage on ``data`` and write ``out/category/``; returns the fit summary.

    The stage conditions on the observed trips grid. Writes the trace,
    ``hyperpriors.csv``, ``category_effects.csv`` (intercepts and loadings),
    ``seasonal_indices.csv`` (per category-week, posterior predictive), the
    prior and posterior predictive checks and the summary. ``weeks`` scores
    only those weeks (the others count as unvisited). ``[category]
    households`` > 0 fits a random subset of households (drawn with ``seed``).
    With ``category_value``, ``value_draws`` product draws are pooled, one
    chain group each (:func:`_sample_pooled`); the expected purchases, the
    seasonal indices and the LOO evaluate each group's draws on its own values.
    """
    say = progress or (lambda _m: None)
    category_config = stage_config(config, "category", category.CategoryConfig)
    visit_config = stage_config(config, "visit", visit.VisitConfig)
    sampler = sampler_config(config, method=method, stage="category")
    selection = data_selection(config, weeks=weeks)
    t0 = time.perf_counter()
    vd = visit.build_visit_data(data, visit_config)
    subset = household_subset(data, category_config.households, seed=seed, pool=fitted_households(data, selection))
    rows = slice(None) if subset is None else pd.Index(vd.households).get_indexer(subset)
    cd = category.build_category_data(data, vd.trips[rows], vd.households[rows], vd.weeks)
    cd = cd.restricted_to(selection.week_numbers)
    linkage, cds = None, [cd]
    if category_config.category_value:
        linked = [linked_category_values(data, cd, out, config, seed=seed, group=g)
                  for g in range(category_config.value_draws)]
        cds, linkage = [c for c, _ in linked], pooled_linkage([link for _, link in linked])
        cd = cds[0]
        say("category: category values from product draw(s) "
            + ", ".join(f"{d['product_chain']}:{d['product_draw']}" for d in linkage["draws"]))
    _check_chain_groups(sampler, len(cds), "[category] value_draws")
    say(
        f"category: {cd.households.size} households x {cd.categories.size} categories x {cd.weeks.size} weeks, "
        f"{cd.n_cells} purchased cells; sampling with {sampler.method} ({sampler.chains} chains x {sampler.draws} draws)"
    )
    observed = category.summary_statistics(cd.n_cells, cd.trips, cd.categories.size)
    prior_check = predictive_check(observed, category.prior_predictive(cd, category_config, draws=50, seed=seed), draws=50)
    fold = None
    if category_config.rank and category_config.loading_signs == "folded":
        directions = category.pilot_directions(cd, category_config.rank)
        fold = lambda posterior: category.fold_loading_signs(posterior, directions)  # noqa: E731
    models = [category.build_model(c, category_config) for c in cds]
    idata, sampling, verdict = _sample_pooled(models, sampler, seed=seed, stage=category.STAGE, fold=fold)
    del models
    hyper = [v for v in CATEGORY_HYPERPRIORS if v in idata.posterior]
    table = posterior_table(idata, hyper)
    # one set of expected-purchase grids serves the seasonal indices and the posterior check
    expected = pooled_draws(category.expected_purchase_draws, cds, idata.posterior, draws=20)
    seasonal = category.seasonal_indices(cd, expected, scored_weeks=selection.week_numbers)
    replayed = category.posterior_predictive(cd, expected)
    loo = loo_summary(pooled_draws(category.household_week_loglik_draws, cds, idata.posterior,
                                   draws=CATEGORY_LOO_DRAWS))
    provenance = _provenance(config, category_config, sampler, data, seed=seed, selection=selection, verdict=verdict)
    if linkage is not None:
        provenance["category_value_linkage"] = linkage
    summary = _summary(
        category.STAGE, provenance,
        seconds={"sampling": sampling, "total": time.perf_counter() - t0},
        households=int(cd.households.size),
        categories=int(cd.categories.size),
        purchased_cells=cd.n_cells,
        posterior_predictive=predictive_check(observed, replayed, draws=len(replayed), kind="posterior"),
        loo=loo,
        imputation=imputation_summary(idata.posterior, hyper),
    )
    _write_stage(
        idata, out, module=category, provenance=provenance, hyperpriors=table,
        keep_draws=sampler.keep_draws,
        tables={
            CATEGORY_EFFECTS_FILENAME: category_effects_table(idata, data.categories),
            SEASONAL_FILENAME: with_category_names(seasonal, data.categories),
        },
        documents={SUMMARY_FILENAME: summary, PRIOR_CHECK_FILENAME: prior_check},
        say=say,
        float32=True,
        drop_vars=("d_raw", "household_week_raw", "household_week_shock", "season_scale_raw"),  # d is stored whole; the shocks: one per visited household-week
    )
    return summary


#: Population-level variables of the product stage (the hyperpriors table).
PRODUCT_HYPERPRIORS = ["mu", "sigma", "sigma_item", "mu_display", "tau_display", "mu_mailer", "tau_mailer",
                       "mu_log_extra_rate", "tau_log_extra_rate", "mu_item_centre", "tau_item_centre", "tau_depth"]
#: Non-centred pieces of the product stage's category vectors (left out of the trace).
PRODUCT_PIECES = tuple(f"{piece}{name}{suffix}" for name in ("display", "mailer", "log_extra_rate", "item_centre")
                       for piece, suffix in (("", "_raw"), ("", "_centred"), ("z_", ""))) + ("t_centred", "z_t",
                                                                                               "depth_raw")
#: Pieces of the household-coefficient form (the trace keeps sigma, correlation and theta_household).
HOUSEHOLD_PIECES = ("z_household", "chol_household", "chol_household_corr", "chol_household_stds")
CLASS_MEMBERSHIP_FILENAME = "class_membership.csv"
#: Posterior draws the product stage's forward sampler replays for its posterior predictive check.
PRODUCT_CHECK_DRAWS = 5
#: Prior draws for its prior predictive check (each a replay of every occasion: ~3 s on 300 households).
PRODUCT_PRIOR_DRAWS = 10


def product_promo_table(idata, categories: pd.DataFrame) -> pd.DataFrame:
    """Display, mailer (and per-category depth) utility effects per category (choice-logit scale), 90% intervals.

    ``depth`` (with ``category_depth``) is the category's deviation from the
    classes' coefficient of ``log(1 - depth)``.
    """
    names = [name for name in ("display", "mailer", "depth") if name in idata.posterior]
    table = posterior_table(idata, names).rename(columns={"category": "category_id", "variable": "response"})
    return with_category_names(table, categories)


ELASTICITIES_FILENAME = "elasticities.csv"
#: Posterior summaries written with 6 significant digits (far below their Monte Carlo error), which keeps the
#: shipped folder small; tables the simulator or a later step reads (items, class membership) stay exact.
SUMMARY_TABLES = (SEASONAL_FILENAME, CATEGORY_EFFECTS_FILENAME, ELASTICITIES_FILENAME)
SUMMARY_FLOAT_FORMAT = "%.6g"


def elasticity_table(
    pdata, posterior, categories: pd.DataFrame, real: np.ndarray, *, depth: float = 0.2
) -> pd.DataFrame:
    """Share responses per category (:func:`~bayes_retail.models.product.share_responses`) over every posterior draw.

    One row per (category, measure): mean, sd, 5% / 50% / 95% quantiles;
    ``depth`` is the discount of the discount lift (recorded in a column).
    """
    chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    draws = np.stack([
        product.share_responses(product.posterior_params(posterior, pdata, c, d), pdata, real, depth=depth)
        for c in range(chains) for d in range(n_draws)
    ])  # (S, C, M)
    frames = []
    for m, measure in enumerate(product.SHARE_RESPONSES):
        values = draws[:, :, m]
        frames.append(pd.DataFrame({
            "measure": measure,
            "category_id": pdata.categories,
            "mean": values.mean(axis=0),
            "sd": values.std(axis=0, ddof=1) if len(values) > 1 else np.nan,
            "q0.05": np.quantile(values, 0.05, axis=0),
            "median": np.median(values, axis=0),
            "q0.95": np.quantile(values, 0.95, axis=0),
        }))
    table = pd.concat(frames, ignore_index=True).dropna(subset=["mean"])
    table["depth"] = depth
    return with_category_names(table, categories)


def class_membership_table(pdata, posterior, *, draws: int = 20) -> pd.DataFrame:
    """Each household's class probabilities averaged over ``draws`` evenly spaced posterior draws (one row per household)."""
    inputs = product.kernel_inputs(pdata)
    total, n = 0.0, 0
    for params in product.evenly_spaced_params(posterior, pdata, draws):  # a running sum: H x K per draw
        total, n = total + product.class_membership(params, pdata, inputs=inputs), n + 1
    membership = total / n
    table = pd.DataFrame(membership, columns=[f"class_{k}" for k in range(membership.shape[1])])
    table.insert(0, "household_id", pdata.households)
    return table


def real_items(data) -> np.ndarray:
    """``(G,)`` False for each category's "other" item (the tail products together)."""
    return product.item_table(data.choice_sets)["product_id"].notna().to_numpy()


def product_depth_panel(data, out: str | os.PathLike) -> np.ndarray:
    """The first completed depth panel of the pricing stage written under ``out`` (fit ``--stage pricing`` first)."""
    return product_depth_panels(data, out, 1)[0]


def product_depth_panels(data, out: str | os.PathLike, n: int) -> np.ndarray:
    """The first ``n`` completed depth panels ``(n, T, N)`` of the pricing stage written under ``out``."""
    from bayes_retail.pricing.artifacts import load_imputations
    from bayes_retail.pricing.model import PricingPanel

    panels = load_imputations(Path(out) / "pricing", PricingPanel.from_product_weeks(data.product_weeks))
    if n > len(panels):
        raise ConfigError(f"[product] depth_panels = {n}, but the pricing stage in {Path(out) / 'pricing'} imputed "
                          f"{len(panels)} panels: lower depth_panels or raise [pricing] n_imputations and refit pricing")
    return panels[:n]


def pooled_class_membership(pdatas: list, posterior, *, draws: int = 20) -> pd.DataFrame:
    """:func:`class_membership_table` of a fit pooled over depth panels: each chain group on its own panel's data."""
    parts = group_posteriors(posterior)
    if len(parts) == 1:
        return class_membership_table(pdatas[0], posterior, draws=draws)
    tables = [class_membership_table(pdatas[g], part, draws=max(1, draws // len(parts))) for g, part in parts]
    averaged = sum(t.drop(columns="household_id") for t in tables) / len(tables)
    averaged.insert(0, "household_id", tables[0]["household_id"])
    return averaged


def add_deal_variable(posterior, pdatas: list, n_points: int, *, week_points: int = 0, jobs: int | None = None,
                      say=None) -> None:
    """Add the plug-in deal-proneness sd of every draw of ``posterior`` (in place) as :data:`deal.VARIABLE`.

    Each chain's draws are read with its chain group's data (``pdatas`` one
    per depth panel). :func:`deal.estimate_sds` per draw; the gain in log
    likelihood over no deviation is stored beside it (``deal_loglik_gain``).
    ``week_points`` >= 2 adds the deal-hunting week sd (:data:`deal.WEEK_VARIABLE`).
    ``jobs`` threads (default: the machine's cores) estimate draws side by
    side; each draw's estimate does not depend on them.
    """
    import xarray as xr
    from concurrent.futures import ThreadPoolExecutor

    say = say or (lambda _m: None)
    groups = chain_groups(posterior)
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    sd, week_sd, gain = (np.zeros((n_chain, n_draw)) for _ in range(3))
    inputs, week_inputs = {}, {}
    sampled = posterior.drop_vars(list(deal.PLUG_IN_VARIABLES), errors="ignore")  # the K classes themselves
    t0 = time.perf_counter()

    def estimate(g: int, params: dict) -> tuple[float, float, float]:
        return deal.estimate_sds(params, inputs[g], n_points=n_points, week_points=week_points,
                                 week_inputs=week_inputs[g])

    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        futures = []
        for c in range(n_chain):
            g = 0 if groups is None else int(groups[c])
            if g not in inputs:
                inputs[g] = product.kernel_inputs(pdatas[g])
                week_inputs[g] = deal.household_week_inputs(inputs[g]) if week_points >= 2 else None
            futures.append([pool.submit(estimate, g, product.posterior_params(sampled, pdatas[g], c, d))
                            for d in range(n_draw)])
        for c, chain in enumerate(futures):
            for d, future in enumerate(chain):
                sd[c, d], week_sd[c, d], gain[c, d] = future.result()
            say(f"product: deal proneness, chain {c}: sd median {np.median(sd[c]):.3f}"
                + (f", week sd median {np.median(week_sd[c]):.3f}" if week_points >= 2 else "")
                + f" (log-likelihood gain {np.median(gain[c]):.1f}; {time.perf_counter() - t0:.0f} s)")
    for name in deal.PLUG_IN_VARIABLES:  # a rerun replaces every plug-in value, including one it no longer adds
        if name in posterior:
            del posterior[name]
    dims = ("chain", "draw")
    how = "plug-in per draw (marginal likelihood, other parameters fixed): a cut"
    posterior[deal.VARIABLE] = xr.DataArray(sd, dims=dims, attrs={"points": int(n_points), "estimate": how})
    if week_points >= 2:
        posterior[deal.WEEK_VARIABLE] = xr.DataArray(week_sd, dims=dims,
                                                     attrs={"points": int(week_points), "estimate": how})
    posterior["deal_loglik_gain"] = xr.DataArray(gain, dims=dims)


def deal_table(idata) -> pd.DataFrame:
    """The deal-proneness sds' rows of the hyperprior table: its spread over the stored draws, no sampler diagnostics.

    It is not sampled (a plug-in per draw), so R-hat and ESS would describe
    the draws it was computed from, not a chain of its own: left empty.
    """
    table = posterior_table(idata, [v for v in deal.SD_VARIABLES if v in idata.posterior])
    for column in ("r_hat", "ess_bulk", "ess_tail"):
        if column in table:
            table[column] = np.nan
    return table


def add_deal_proneness(data, *, out: str | os.PathLike, config: dict, n_points: int | None = None,
                       week_points: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Give an already fitted product stage in ``out/product/`` its deal proneness, without sampling again.

    Reads the stored (thinned) trace, adds the plug-in sd of each stored draw
    (:func:`add_deal_variable`) and rewrites the folder atomically with the
    tables that depend on the classes (``class_membership.csv``,
    ``elasticities.csv``, the sd's row in ``hyperpriors.csv``) and the trace's
    stage settings recording ``deal_points``. What :func:`run_product_stage`
    writes with ``[product] deal_points`` set, for the same stored draws; the
    fit id stays (the sampled draws are the same). ``n_points`` and
    ``week_points`` default to the configuration's ``[product] deal_points``
    and ``deal_week_points`` (0: no deal-hunting weeks).
    """
    import json

    from bayes_retail.models.artifacts import load_posterior

    say = progress or (lambda _m: None)
    folder = Path(out) / product.STAGE
    idata = load_posterior(out, product.STAGE, data_hash=data.data_hash)
    attrs = dict(idata.posterior.attrs)
    fitted_config = product.fitted_config(attrs)
    configured = stage_config(config, "product", product.ProductConfig)
    n_points = n_points or configured.deal_points
    week_points = configured.deal_week_points if week_points is None else int(week_points)
    if n_points < 2:
        raise ConfigError(f"deal proneness needs at least 2 grid points, got {n_points}: set [product] deal_points "
                          "or pass the number of points")
    try:
        fitted_config = product.ProductConfig(**{**fitted_config.to_dict(), "deal_points": int(n_points),
                                                 "deal_week_points": week_points})
    except ValueError as error:
        raise ConfigError(str(error)) from None
    households = pd.read_csv(folder / CLASS_MEMBERSHIP_FILENAME)["household_id"].to_numpy()
    groups = chain_groups(idata.posterior)
    n_panels = 1 if groups is None else int(groups.max()) + 1
    pdatas = [product.build_product_data(data, depth, fitted_config, households=households)
              .restricted_to(parse_weeks(attrs.get("weeks"))) for depth in product_depth_panels(data, out, n_panels)]
    add_deal_variable(idata.posterior, pdatas, int(n_points), week_points=week_points, say=say)
    hyper = pd.read_csv(folder / HYPERPRIORS_FILENAME)
    hyper = pd.concat([hyper[~hyper["variable"].isin(deal.PLUG_IN_VARIABLES)], deal_table(idata)],
                      ignore_index=True)
    provenance = {k: v for k, v in attrs.items() if k not in ("kind", "stage", "model_version", "bayes_retail_version",
                                                              "fit_id", "hyperpriors")}
    provenance["stage_config"] = json.dumps(fitted_config.to_dict())
    copied = {name: json.loads((folder / name).read_text())
              for name in (SUMMARY_FILENAME, PRIOR_CHECK_FILENAME) if (folder / name).exists()}
    _write_stage(
        idata, out, module=product, provenance=provenance, hyperpriors=hyper, keep_draws=0,
        fit_id_value=attrs["fit_id"],
        tables={
            PROMO_FILENAME: pd.read_csv(folder / PROMO_FILENAME),
            ITEMS_FILENAME: pd.read_csv(folder / ITEMS_FILENAME),
            CLASS_MEMBERSHIP_FILENAME: pooled_class_membership(pdatas, idata.posterior),
            ELASTICITIES_FILENAME: elasticity_table(pdatas[0], idata.posterior, data.categories, real_items(data)),
        },
        documents=copied, say=say, float32=True,
    )
    out = {"deal_points": int(n_points), "deal_week_points": week_points}
    for name in deal.SD_VARIABLES:
        if name in idata.posterior:
            values = idata.posterior[name].values
            out.update({f"{name}_median": float(np.median(values)), f"{name}_q05": float(np.quantile(values, 0.05)),
                        f"{name}_q95": float(np.quantile(values, 0.95))})
    out["loglik_gain_median"] = float(np.median(idata.posterior["deal_loglik_gain"].values))
    return out


def run_product_stage(
    data,
    *,
    config: dict,
    seed: int,
    out: str | os.PathLike,
    method: str | None = None,
    weeks: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fit the product stage on ``data`` and write ``out/product/``; returns the fit summary.

    Needs the pricing stage's imputed depths in ``out/pricing/``: the first
    ``[product] depth_panels`` completed panels, one chain group each
    (:func:`_sample_pooled`; 1, the default, is the first panel alone). The
    posterior predictive check and the elasticities read the first panel's
    data; class membership averages each group on its own panel's.
    Writes the trace, ``hyperpriors.csv``, ``promo_response.csv`` (display and
    mailer effects by category), ``items.csv``, ``class_membership.csv``
    (household class probabilities averaged over posterior draws),
    ``elasticities.csv`` (:func:`elasticity_table`), the summary (with a
    posterior predictive check) and ``prior_predictive.json``. No PSIS-LOO:
    its unit would be the household, and importance sampling fails there
    (docs/models.md).
    ``[product] households`` > 0 fits a random subset of households (drawn
    with ``seed``).
    """
    say = progress or (lambda _m: None)
    product_config = stage_config(config, "product", product.ProductConfig)
    sampler = sampler_config(config, method=method, stage="product")
    selection = data_selection(config, weeks=weeks)
    t0 = time.perf_counter()
    panels = product_depth_panels(data, out, product_config.depth_panels)
    _check_chain_groups(sampler, product_config.depth_panels, "[product] depth_panels")
    households = household_subset(data, product_config.households, seed=seed, pool=fitted_households(data, selection))
    pdatas = [product.build_product_data(data, depth, product_config, households=households)
              .restricted_to(selection.week_numbers) for depth in panels]
    pdata = pdatas[0]
    scored = int(product.scored_occasions(pdata).size)
    pooled = f", {len(panels)} depth panels pooled by chain group" if len(panels) > 1 else ""
    say(
        f"product: {pdata.households.size} households, {scored} scored occasions over {pdata.item_category.size} "
        f"items; sampling with {sampler.method} ({sampler.chains} chains x {sampler.draws} draws{pooled})"
    )
    observed = product.set_statistics(pdata)
    prior_check = predictive_check(
        observed, product.prior_predictive(pdata, product_config, draws=PRODUCT_PRIOR_DRAWS, seed=seed),
        draws=PRODUCT_PRIOR_DRAWS)
    models = [product.build_model(p, product_config) for p in pdatas]
    idata, sampling, verdict = _sample_pooled(models, sampler, seed=seed, stage=product.STAGE)
    del models
    household_form = product_config.coefficients == "household"
    hyper = [name for name in PRODUCT_HYPERPRIORS if name in idata.posterior]  # the pooled centres' only when fitted
    table = posterior_table(idata, hyper + (["correlation"] if household_form else []))
    fid, keep_draws = fit_id(idata), sampler.keep_draws
    if product_config.deal_points:  # a plug-in per stored draw: thin first, every table reads the stored draws
        idata = thinned(idata, keep_draws) if keep_draws else idata
        keep_draws = 0
        add_deal_variable(idata.posterior, pdatas, product_config.deal_points,
                          week_points=product_config.deal_week_points, say=say)
        table = pd.concat([table, deal_table(idata)], ignore_index=True)
    replayed = product.posterior_predictive(pdata, idata.posterior, draws=PRODUCT_CHECK_DRAWS,
                                            rng=np.random.default_rng(seed), state=product_config.state)
    provenance = _provenance(config, product_config, sampler, data, seed=seed, selection=selection, verdict=verdict)
    summary = _summary(
        product.STAGE, provenance,
        seconds={"sampling": sampling, "total": time.perf_counter() - t0},
        households=int(pdata.households.size),
        scored_occasions=scored,
        items=int(pdata.item_category.size),
        depth_panels=list(range(len(panels))),
        imputation=imputation_summary(idata.posterior, hyper),
        posterior_predictive=predictive_check(observed, replayed, draws=len(replayed), kind="posterior"),
    )
    _write_stage(
        idata, out, module=product, provenance=provenance, hyperpriors=table,
        keep_draws=keep_draws, fit_id_value=fid,
        tables={
            PROMO_FILENAME: product_promo_table(idata, data.categories),
            ITEMS_FILENAME: product.item_table(data.choice_sets).drop(columns="g"),
            CLASS_MEMBERSHIP_FILENAME: pooled_class_membership(pdatas, idata.posterior),
            ELASTICITIES_FILENAME: elasticity_table(pdata, idata.posterior, data.categories, real_items(data)),
        },
        documents={SUMMARY_FILENAME: summary, PRIOR_CHECK_FILENAME: prior_check},
        say=say,
        # theta_household (households x coefficients) is kept; its non-centred pieces are not
        drop_vars=PRODUCT_PIECES + (HOUSEHOLD_PIECES if household_form else ()),
        float32=True,
    )
    return summary
