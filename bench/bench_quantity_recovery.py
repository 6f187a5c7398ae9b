"""Benchmark: coverage of the quantity stage's 90% intervals over many simulated data sets.

    python bench/bench_quantity_recovery.py [--seeds 20] [--households 300] [--categories 12] [--items 10] [--lines 20000] [--json OUT]

Each seed draws item intercepts, stockpiling responses and household basket
propensities from known population parameters, simulates quantities with the
stage's own forward sampler on random (household, item, depth) lines, fits
the stage (nutpie, 4 chains x 500 draws by default) and records whether each
hyperparameter's 90% interval covers the truth.
"""

from __future__ import annotations

import _coverage
import numpy as np
import pandas as pd

from bayes_retail.models import quantity

TRUTH = {
    "mu_item": -1.2,
    "tau_category": 0.5,
    "tau_item": 0.6,
    "mu_kappa": 1.2,
    "sigma_kappa": 0.5,
    "sigma_basket": 0.4,
    "alpha": 1.3,
}


def simulate(seed: int, households: int, categories: int, items: int, lines: int) -> quantity.QuantityData:
    rng = np.random.default_rng(seed)
    item_category = np.repeat(np.arange(categories), items)
    m = rng.normal(TRUTH["mu_item"], TRUTH["tau_category"], categories)
    l = m[item_category] + rng.normal(0, TRUTH["tau_item"], item_category.size)
    kappa = rng.normal(TRUTH["mu_kappa"], TRUTH["sigma_kappa"], categories)
    basket = rng.normal(0, TRUTH["sigma_basket"], households)
    # skewed item popularity, as in grocery data: a few items carry most lines
    popularity = rng.dirichlet(np.full(item_category.size, 0.5))
    j = rng.choice(item_category.size, lines, p=popularity)
    h = rng.integers(0, households, lines)
    depth = np.where(rng.random(lines) < 0.6, 0.0, rng.choice([0.1, 0.2, 0.3, 0.4, 0.5], lines))
    q = quantity.simulate(l[j] + kappa[item_category[j]] * depth + basket[h], TRUTH["alpha"], rng)
    frame = pd.DataFrame({"household": h, "item": j, "category": item_category[j], "depth": depth, "quantity": q})
    return quantity.quantity_data_from_lines(frame)


def draws_of(post, name: str) -> np.ndarray:
    return post[name].values.ravel()


def main() -> None:
    args = _coverage.parser(__doc__, households=300, categories=12, items=10, lines=20000).parse_args()
    _coverage.run(
        args,
        TRUTH,
        lambda seed: quantity.build_model(simulate(seed, args.households, args.categories, args.items, args.lines)),
        draws_of,
    )


if __name__ == "__main__":
    main()
