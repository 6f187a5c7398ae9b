"""Benchmark: the product stage's hierarchical vectors centred vs partially centred, same data, same seed.

    python bench/bench_product_centring.py [--block extra|model|intercepts] [--categories 40] [--least 100]
                                           [--intercept-least 8] [--intercept-centre category]
                                           [--chains 4] [--tune 200] [--draws 300] [--json OUT]

The data are the shipped fit's: its 300 households (drawn with seed 1, as
``fit --stage product`` does) and the first imputed depth panel in
``models/pricing``. Two fits with nutpie, one after the other:

- ``promo_centred_min_occasions = 0`` (baseline): ``display``, ``mailer`` and
  ``log_extra_rate`` non-centred in every category, the form the shipped trace
  was fitted with;
- ``promo_centred_min_occasions = --least``: centred in the categories with
  at least that many informative occasions (``product.informative_occasions``).

``--block extra`` fits only the extra-item rate (its Poisson likelihood is a
separate factor of the stage's posterior, so this isolates that block on all
categories in seconds); ``--block model`` fits the whole stage on
``--categories`` categories drawn with seed 0 (``ProductData.for_categories``).
``--block intercepts`` fits the whole stage the same way, both variants with
``promo_centred_min_occasions = --least`` and ``intercept_centre =
--intercept-centre``, and compares ``intercept_centred_min_purchases = 0``
(every free item intercept centred: the shipped form) with
``--intercept-least`` (rarely bought items non-centred).
Reported per variant: wall time, gradients, leapfrog steps per draw, step size
per chain, the hyperparameters' max R-hat and min bulk / tail ESS, ESS per
1,000 gradients of each category sd ``tau``, and the verdict over every scalar.
"""

from __future__ import annotations

import argparse
import time
import warnings

import _gradient

HYPERPARAMETERS = ["mu", "sigma", "sigma_item", "item_centre", "mu_item_centre", "tau_item_centre", "mu_display",
                   "tau_display", "mu_mailer", "tau_mailer", "mu_log_extra_rate", "tau_log_extra_rate"]


def _extra_rate_model(pdata, least: int):
    """The extra-item rate block alone: its pooled vector and its Poisson factor."""
    import pymc as pm

    from bayes_retail.models import product

    rich = product.centred_categories(pdata, least)["log_extra_rate"]
    with pm.Model(coords=product.coords(pdata, 2)) as model:
        rate = product._pooled("log_extra_rate", pdata, product.ProductConfig().extra_sigma, rich, mean=-1.0)
        pm.Potential("extra_items_loglik", product.extra_items_loglik(rate, pdata))
    return model


def _fit(model, args) -> dict:
    import arviz as az
    import numpy as np
    import nutpie

    from bayes_retail.models.diagnostics import convergence

    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    t1 = time.perf_counter()
    idata = nutpie.sample(compiled, chains=args.chains, draws=args.draws, tune=args.tune, seed=1,
                          save_warmup=True, progress_bar=False)
    wall = time.perf_counter() - t1
    stats, warmup = idata.sample_stats, idata.warmup_sample_stats
    gradients = int(warmup.n_steps.sum() + stats.n_steps.sum())
    hyper = [name for name in HYPERPARAMETERS if name in idata.posterior]
    summary = az.summary(idata, var_names=hyper, kind="diagnostics")
    taus = [name for name in hyper if name.startswith("tau_")]
    ess = az.ess(idata, var_names=taus)
    return {
        "compile_s": round(t1 - t0, 1), "sampling_s": round(wall, 1), "gradients": gradients,
        "warmup_steps_per_draw": round(float(warmup.n_steps.mean()), 1),
        "steps_per_draw": round(float(stats.n_steps.mean()), 1),
        "step_size_by_chain": np.round(stats.step_size.mean("draw").values, 4).tolist(),
        "hyper_max_rhat": round(float(summary.r_hat.max()), 3),
        "hyper_min_ess_bulk": int(summary.ess_bulk.min()), "hyper_min_ess_tail": int(summary.ess_tail.min()),
        "tau_ess_per_1000_gradients": {name: round(1000 * float(ess[name]) / gradients, 2) for name in taus},
        "verdict": convergence(idata).format().splitlines(),
    }


def product_centres() -> tuple[str, ...]:
    from bayes_retail.models.product import INTERCEPT_CENTRES

    return INTERCEPT_CENTRES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", choices=("extra", "model", "intercepts"), default="model")
    parser.add_argument("--categories", type=int, default=40)
    parser.add_argument("--least", type=int, default=100)
    parser.add_argument("--intercept-least", type=int, default=8)
    parser.add_argument("--intercept-centre", choices=product_centres(), default="category")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--models", default="models")
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np

    from bayes_retail.data import load_data
    from bayes_retail.models import product
    from bayes_retail.models.stage import household_subset, product_depth_panel

    data = load_data()
    config = product.ProductConfig(households=300)
    households = household_subset(data, config.households, seed=1)
    pdata = product.build_product_data(data, product_depth_panel(data, args.models), config, households=households)
    if args.block != "extra" and args.categories < pdata.categories.size:
        chosen = np.random.default_rng(0).choice(pdata.categories.size, args.categories, replace=False)
        pdata = pdata.for_categories(np.sort(chosen))
    result = {"block": args.block, "households": int(pdata.households.size),
              "categories": int(pdata.categories.size), "items": int(pdata.item_category.size),
              "scored_occasions": int(product.scored_occasions(pdata).size)}
    if args.block == "intercepts":
        purchases = product.item_purchases(pdata)[product.free_items(pdata)]
        for least in (0, args.intercept_least):
            config = product.ProductConfig(promo_centred_min_occasions=args.least, intercept_centre=args.intercept_centre,
                                           intercept_centred_min_purchases=least)
            result[f"intercept_least_{least}"] = {"centred_items": int((purchases >= least).sum()),
                                                  **_fit(product.build_model(pdata, config), args)}
        return _gradient.report(result, args.json)
    for least in (0, args.least):
        rich = {name: int(mask.sum()) for name, mask in product.centred_categories(pdata, least).items()}
        if args.block == "extra":
            model = _extra_rate_model(pdata, least)
        else:
            model = product.build_model(pdata, product.ProductConfig(promo_centred_min_occasions=least))
        result[f"least_{least}"] = {"centred_categories": rich, **_fit(model, args)}
    _gradient.report(result, args.json)


if __name__ == "__main__":
    main()
