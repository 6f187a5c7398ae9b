"""Benchmark: a product-stage NUTS fit on a random subset of the embedded data's households.

    python bench/bench_product_fit.py [--households 300] [--chains 2] [--draws 200] [--tune 200]
                                      [--max-minutes 60] [--low-rank] [--json OUT]

Fits the latent-class product stage (default config, first imputed depth
panel) with nutpie on ``--households`` households drawn with seed 0 and
reports what decides the cost of a full fit: the value-and-gradient time,
leapfrog steps per draw, wall time, and the convergence verdict (max R-hat,
min bulk / tail ESS over every scalar and over the hyperparameters,
divergences). The baseline in the same run is the gradient time on all
households, so the ratio says how the cost scales with the households kept.
Progress (draws done, mean leapfrog steps in warmup and after) is printed
every two minutes; past ``--max-minutes`` sampling stops and the report
covers the draws made so far. ``--low-rank`` uses nutpie's low-rank
modified mass matrix (for correlated posteriors) instead of the diagonal one.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import _gradient

HYPERPARAMETERS = ["mu", "sigma", "sigma_item", "mu_display", "tau_display", "mu_mailer", "tau_mailer",
                   "mu_log_extra_rate", "tau_log_extra_rate"]


def _steps(idata) -> dict:
    """Draws made and mean leapfrog steps per draw, in warmup and after."""
    out = {}
    for group in ("warmup_sample_stats", "sample_stats"):
        if group in idata.groups() and "n_steps" in idata[group]:
            steps = idata[group]["n_steps"].values
            out[f"{group}_draws"] = int(steps.shape[1])
            out[f"{group}_mean_steps"] = round(float(steps.mean()), 1) if steps.size else None
    return out


def _finished(sampler) -> bool:
    try:
        return bool(sampler.is_finished)
    except TimeoutError:  # nutpie's answer while the chains are still running
        return False


def _progress(idata, seconds: float) -> None:
    print(json.dumps({"minutes": round(seconds / 60, 1), **_steps(idata)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--low-rank", action="store_true")
    parser.add_argument("--models", default="models")
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import arviz as az
    import numpy as np
    import nutpie

    from bayes_retail.data import load_data
    from bayes_retail.models import product
    from bayes_retail.models.diagnostics import convergence
    from bayes_retail.pricing.artifacts import load_imputations
    from bayes_retail.pricing.model import PricingPanel

    data = load_data()
    depth = load_imputations(f"{args.models}/pricing", PricingPanel.from_product_weeks(data.product_weeks))[0]
    config = product.ProductConfig()
    full_ms = _gradient.time_logp_dlogp(product.build_model(product.build_product_data(data, depth, config), config))["grad_ms"]
    pdata = product.build_product_data(data, depth, config, households=_gradient.random_households(data, args.households))
    model = product.build_model(pdata, config)
    subset_ms = _gradient.time_logp_dlogp(model)["grad_ms"]
    print(json.dumps({"gradient_ms_all_households": round(full_ms, 1), "gradient_ms_subset": round(subset_ms, 1),
                      "households": int(pdata.households.size)}), flush=True)
    t0 = time.perf_counter()
    sampler = nutpie.sample(
        nutpie.compile_pymc_model(model), chains=args.chains, draws=args.draws, tune=args.tune, seed=1,
        save_warmup=True, progress_bar=False, blocking=False, low_rank_modified_mass_matrix=args.low_rank,
    )
    while not _finished(sampler) and time.perf_counter() - t0 < 60 * args.max_minutes:
        time.sleep(120)
        _progress(sampler.inspect(), time.perf_counter() - t0)
    finished = _finished(sampler)
    idata = sampler.wait() if finished else sampler.abort()
    wall = time.perf_counter() - t0
    steps = _steps(idata)
    posterior = idata.posterior
    if posterior.sizes.get("draw", 0) >= 4:
        hyper = az.summary(idata, var_names=HYPERPARAMETERS, kind="diagnostics")
        verdict = convergence(idata).format()
    else:
        hyper, verdict = None, "too few draws for a verdict"
    out = {
        "households": int(pdata.households.size),
        "scored_occasions": int(product.scored_occasions(pdata).size),
        "free_parameters": int(sum(v.size for v in model.initial_point().values())),
        "gradient_ms_all_households": round(full_ms, 1),
        "gradient_ms_subset": round(subset_ms, 1),
        "ratio_subset_to_all": round(subset_ms / full_ms, 3),
        "chains": args.chains, "draws": args.draws, "tune": args.tune, "low_rank": args.low_rank,
        "finished": finished,
        "wall_s": round(wall, 1),
        **steps,
        "verdict": verdict,
    }
    if hyper is not None:
        out |= {
            "hyper_max_rhat": round(float(hyper["r_hat"].max()), 4),
            "hyper_min_ess_bulk": int(hyper["ess_bulk"].min()),
            "hyper_min_ess_tail": int(hyper["ess_tail"].min()),
            "posterior_mu": dict(zip(["price", "discount", "state"],
                                     np.round(posterior["mu"].mean(("chain", "draw")).values, 3).tolist())),
            "posterior_sigma": np.round(posterior["sigma"].mean(("chain", "draw")).values, 3).tolist(),
        }
    _gradient.report(out, args.json)


if __name__ == "__main__":
    main()
