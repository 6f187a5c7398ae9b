"""The pricing stage end to end: fit, impute missing depths, validate, write the artifacts.

What ``bayes-retail fit --stage pricing`` and ``inference/fit_pricing.py`` run.
One seed drives three independent streams (numpy ``SeedSequence.spawn``): the
fit, the imputations and the validation simulation, so changing how many
imputations are drawn does not change the fit.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bayes_retail._io import atomic_dir, write_json
from bayes_retail.pricing.artifacts import save_imputations, save_pricing
from bayes_retail.pricing.model import PricingConfig, PricingPanel, fit_pricing
from bayes_retail.pricing.validate import observed_panel, validate_prices

VALIDATION_FILENAME = "pricing_validation.json"
#: The stage's folder inside the artifacts folder (``models/pricing``).
STAGE_FOLDER = "pricing"


def run_pricing_stage(
    data,
    *,
    config: PricingConfig,
    seed: int,
    out: str | os.PathLike,
    config_name: str = "custom",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fit the pricing HMMs on ``data`` (a :class:`~bayes_retail.data.RetailData`) and write them to ``out``.

    Writes the folder ``out/pricing/``: ``pricing.nc`` (the HMMs),
    ``imputed_depths.parquet`` (M imputed depth panels for the cells nobody
    bought) and ``pricing_validation.json``. The folder is built aside and moved
    into place whole, so the three files always belong to one fit.

    Returns
    -------
    dict
        The validation summary (also in ``pricing_validation.json``) with the
        fit's per-category convergence counts and the seconds each step took.
    """
    say = progress or (lambda _m: None)
    fit_stream, impute_stream, check_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    t0 = time.perf_counter()
    model = fit_pricing(data.product_weeks, config=config, rng=fit_stream, progress=say)
    t_fit = time.perf_counter() - t0
    panel = PricingPanel.from_product_weeks(data.product_weeks)
    say(f"imputing {config.n_imputations} depth panels")
    depths = model.impute_depths(panel, impute_stream)
    say("simulating a year of prices and validating")
    simulated = model.simulate(panel.weeks, check_stream)
    summary = {
        "seed": seed,
        "config": config_name,
        "data_hash": data.data_hash,
        "seconds": {"fit": round(t_fit, 2), "total": None},
        "convergence": convergence_summary(model),
        "against_completed_panel": validate_prices(observed_panel(panel, depths[0]), simulated).to_dict(),
        "against_observed_cells": validate_prices(observed_panel(panel), simulated).to_dict(),
    }
    target = Path(out) / STAGE_FOLDER
    with atomic_dir(target) as tmp:
        save_pricing(model, tmp, attrs={"data_hash": data.data_hash, "seed": seed, "config_name": config_name})
        save_imputations(depths, panel, tmp)
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        write_json(summary, tmp / VALIDATION_FILENAME)
    say(f"pricing model written to {target}")
    return summary


def convergence_summary(model) -> dict:
    """Per HMM kind: categories by number of states, how many stopped on tol, iterations."""
    out = {}
    for hmm in (model.base, model.promo):
        fitted = hmm.n_states > 0
        out[hmm.kind] = {
            "categories": int(fitted.sum()),
            "by_n_states": {int(k): int((hmm.n_states == k).sum()) for k in range(1, hmm.max_states + 1)},
            "converged": int(hmm.converged[fitted].sum()),
            "max_iter_reached": int((~hmm.converged[fitted]).sum()),
            "median_iterations": float(np.median(hmm.n_iter[fitted])) if fitted.any() else 0.0,
        }
    out["calendar"] = {
        "n_states": model.calendar.n_states,
        "weeks_per_state": np.bincount(model.calendar.path, minlength=model.calendar.n_states).tolist(),
    }
    return out


def format_summary(summary: dict) -> str:
    """A short human-readable report of :func:`run_pricing_stage`'s result."""
    rows = []
    for kind in ("base_price", "promotion"):
        c = summary["convergence"][kind]
        rows.append(
            f"{kind:<11} {c['categories']} categories, states {c['by_n_states']}, "
            f"{c['converged']} converged, {c['max_iter_reached']} hit max_iter"
        )
    cal = summary["convergence"]["calendar"]
    rows.append(f"calendar    {cal['n_states']} states, weeks per state {cal['weeks_per_state']}")
    for label, key in (("vs completed panel", "against_completed_panel"), ("vs observed cells", "against_observed_cells")):
        v = summary[key]
        rows.append(
            f"{label:<19} base_price_score {_fmt(v['base_price_score'])}  promo_discount_score "
            f"{_fmt(v['promo_discount_score'])}  promo_frequency {_fmt(v['promo_frequency_observed'])} -> "
            f"{_fmt(v['promo_frequency_simulated'])}"
        )
    v = summary["against_completed_panel"]
    rows.append(
        f"promotions          share {_fmt(v['promoted_share']['observed'])} -> {_fmt(v['promoted_share']['simulated'])}, "
        f"co-promotion {_fmt(v['co_promotion']['observed'])} -> {_fmt(v['co_promotion']['simulated'])}, "
        f"mean run {_fmt(v['run_length_mean']['observed'])} -> {_fmt(v['run_length_mean']['simulated'])} weeks, "
        f"weekly mailer sd {_fmt(v['weekly_mailer_sd']['observed'])} -> {_fmt(v['weekly_mailer_sd']['simulated'])}"
    )
    rows.append(f"time                fit {summary['seconds']['fit']} s, total {summary['seconds']['total']} s")
    return "\n".join(rows)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
