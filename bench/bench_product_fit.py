"""Benchmark: a product-stage NUTS fit on a random subset of the embedded data's households.

    python bench/bench_product_fit.py [--households 300] [--chains 2] [--draws 200] [--tune 200] [--json OUT]

Fits the latent-class product stage (default config, first imputed depth
panel) with nutpie on ``--households`` households drawn with seed 0 and
reports what decides the cost of a full fit: the value-and-gradient time,
leapfrog steps per draw, wall time, and the convergence verdict (max R-hat,
min bulk / tail ESS over every scalar and over the hyperparameters,
divergences). The baseline in the same run is the gradient time on all
households, so the ratio says how the cost scales with the households kept.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

HYPERPARAMETERS = ["mu", "sigma", "sigma_item", "mu_display", "tau_display", "mu_mailer", "tau_mailer",
                   "mu_log_extra_rate", "tau_log_extra_rate"]


def _gradient_ms(model, repeats: int = 5) -> float:
    import numpy as np

    fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")._pytensor_function
    x = np.concatenate([v.ravel() for v in model.initial_point().values()])
    fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--models", default="models")
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import arviz as az
    import numpy as np

    from bayes_retail.data import load_data
    from bayes_retail.models import product
    from bayes_retail.models.diagnostics import convergence
    from bayes_retail.models.sampling import SamplerConfig, sample_posterior
    from bayes_retail.pricing.artifacts import load_imputations
    from bayes_retail.pricing.model import PricingPanel

    data = load_data()
    depth = load_imputations(f"{args.models}/pricing", PricingPanel.from_product_weeks(data.product_weeks))[0]
    config = product.ProductConfig()
    full_ms = _gradient_ms(product.build_model(product.build_product_data(data, depth, config), config))
    ids = data.households["household_id"].to_numpy()
    chosen = np.random.default_rng(0).choice(ids, size=min(args.households, ids.size), replace=False)
    pdata = product.build_product_data(data, depth, config, households=chosen)
    model = product.build_model(pdata, config)
    subset_ms = _gradient_ms(model)
    sampler = SamplerConfig(chains=args.chains, draws=args.draws, tune=args.tune)
    t0 = time.perf_counter()
    idata = sample_posterior(model, config=sampler, seed=1)
    wall = time.perf_counter() - t0
    verdict = convergence(idata)
    hyper = az.summary(idata, var_names=HYPERPARAMETERS, kind="diagnostics")
    steps = idata.sample_stats["n_steps"].values if "n_steps" in idata.sample_stats else None
    out = {
        "households": int(pdata.households.size),
        "scored_occasions": int(product.scored_occasions(pdata).size),
        "free_parameters": int(sum(v.size for v in model.initial_point().values())),
        "gradient_ms_all_households": round(full_ms, 1),
        "gradient_ms_subset": round(subset_ms, 1),
        "ratio_subset_to_all": round(subset_ms / full_ms, 3),
        "chains": args.chains, "draws": args.draws, "tune": args.tune,
        "wall_s": round(wall, 1),
        "mean_leapfrog_steps": None if steps is None else round(float(steps.mean()), 1),
        "verdict": verdict.format(),
        "hyper_max_rhat": round(float(hyper["r_hat"].max()), 4),
        "hyper_min_ess_bulk": int(hyper["ess_bulk"].min()),
        "hyper_min_ess_tail": int(hyper["ess_tail"].min()),
        "posterior_mu": {k: round(float(v), 3) for k, v in zip(
            ["price", "discount", "state"], idata.posterior["mu"].mean(("chain", "draw")).values)},
        "posterior_sigma": [round(float(v), 3) for v in idata.posterior["sigma"].mean(("chain", "draw")).values],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
