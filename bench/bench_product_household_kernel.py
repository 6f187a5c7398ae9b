"""Benchmark: one value-and-gradient of the household-coefficient choice kernel against the class kernel.

    python bench/bench_product_household_kernel.py [--households 300] [--classes 8] [--json OUT]

Both kernels score the same occasions of a random subset of households of
the embedded data (first imputed depth panel of the shipped pricing model):
the class kernel (the `default` configuration's K latent classes) is the
baseline measured in the same run, and the ratio says what the `full`
configuration's household coefficients cost per gradient. Median of 5 calls
after a warm-up call (numba compilation excluded).
"""

from __future__ import annotations

import argparse

import _gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=300)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--models", default="models")
    parser.add_argument("--json")
    args = parser.parse_args()
    import numpy as np

    from bayes_retail.data import load_data
    from bayes_retail.models import product
    from bayes_retail.models._choice_kernel import choice_loglik
    from bayes_retail.models._household_choice_kernel import household_choice_loglik
    from bayes_retail.models.stage import household_subset, product_depth_panel

    data = load_data()
    config = product.ProductConfig(n_classes=args.classes, households=args.households)
    households = household_subset(data, args.households, seed=1)
    pdata = product.build_product_data(data, product_depth_panel(data, args.models), config, households=households)
    rng = np.random.default_rng(0)
    params = product.draw_parameters(pdata, rng, n_classes=args.classes)
    theta_h = params["theta"][rng.integers(0, args.classes, pdata.households.size)]
    classes = product.kernel_inputs(pdata)
    per_household = product.household_kernel_inputs(pdata)
    common = product.promo_coefficients(params)
    timed = {}
    for name, call in (("class", lambda: choice_loglik(params["t"], params["theta"], *common, *classes)),
                       ("household", lambda: household_choice_loglik(params["t"], theta_h, *common, *per_household))):
        call()  # numba compilation
        timed[name] = _gradient.median_seconds(call, 5)
    class_s, household_s = timed["class"], timed["household"]
    out = {"households": int(pdata.households.size), "scored_occasions": int(product.scored_occasions(pdata).size),
           "items": int(pdata.item_category.size), "classes": args.classes,
           "class_kernel_s": class_s, "household_kernel_s": household_s, "ratio": household_s / class_s}
    _gradient.report(out, args.json)


if __name__ == "__main__":
    main()
