"""Benchmark: coverage of the product stage's 90% intervals over many simulated data sets.

    python bench/bench_product_recovery.py [--seeds 20] [--households 150] [--categories 6] [--items 8] [--weeks 24] [--json OUT]

Each seed draws item intercepts and assigns every household one of the 8
fixed latent classes at known population means and scales, simulates the
occasions with the stage's own forward sampler (`product.simulate_occasions`:
prices, discounts, display and mailer from `product.synthetic_design`, state
from the simulated purchases), fits the stage (nutpie, 4 chains x 500 draws by
default, `intercept_centre = "reference"`: the truth's intercepts are centred
on the reference item) and records whether each hyperparameter's 90% interval
covers the truth. Display and mailer are the same in every category, so only
their means are scored (their category sd's truth, 0, is on the boundary).
"""

from __future__ import annotations

import _coverage
import numpy as np

from bayes_retail.models import product

N_CLASSES = 8
MU = {"price": -2.0, "discount": 2.0, "state": 0.5}
SIGMA = {"price": 0.3, "discount": 0.3, "state": 0.3, "national_brand": 1.0, "pack_size": 1.0}
TRUTH = {
    **{f"mu[{k}]": v for k, v in MU.items()},
    **{f"sigma[{k}]": v for k, v in SIGMA.items()},
    "sigma_item": 1.0,
    "mu_display": 0.5,
    "mu_mailer": 0.3,
    "mu_log_extra_rate": -1.2,
}
BURN_IN_WEEKS = 4


def simulate(seed: int, households: int, categories: int, items: int, weeks: int) -> product.ProductData:
    rng = np.random.default_rng(seed)
    design = product.synthetic_design(rng, n_households=households, n_categories=categories,
                                      items_per_category=items, n_weeks=weeks, occasion_rate=0.6,
                                      burn_in_weeks=BURN_IN_WEEKS)
    truth = product.draw_parameters(design, rng, n_classes=N_CLASSES, mu=tuple(MU.values()),
                                    sigma=tuple(SIGMA.values()), intercept_sd=TRUTH["sigma_item"],
                                    display=TRUTH["mu_display"], mailer=TRUTH["mu_mailer"],
                                    log_extra_rate=TRUTH["mu_log_extra_rate"])
    return product.simulate_occasions(truth, design, rng.integers(0, N_CLASSES, households), rng)


def draws_of(post, name: str) -> np.ndarray:
    if "[" in name:
        var, label = name[:-1].split("[")
        return post[var].sel({"core" if var == "mu" else "coefficient": label}).values.ravel()
    return post[name].values.ravel()


def main() -> None:
    args = _coverage.parser(__doc__, households=150, categories=6, items=8, weeks=24).parse_args()
    config = product.ProductConfig(n_classes=N_CLASSES, burn_in_weeks=BURN_IN_WEEKS)
    _coverage.run(
        args,
        TRUTH,
        lambda seed: product.build_model(simulate(seed, args.households, args.categories, args.items, args.weeks),
                                         config),
        draws_of,
    )


if __name__ == "__main__":
    main()
