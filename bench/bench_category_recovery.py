"""Benchmark: coverage of the category stage's 90% intervals over many simulated data sets.

    python bench/bench_category_recovery.py [--seeds 20] [--households 150] [--categories 10] [--weeks 16] [--json OUT]

Each seed draws household propensities, rank-2 preference factors, week and
category-week effects from known scales, simulates purchases on random trips
with the stage's own forward sampler, fits the stage (nutpie, 4 chains x 500
draws by default) and records whether the 90% intervals of the scales cover
the truth.
"""

from __future__ import annotations

import _coverage
import numpy as np

from bayes_retail.models import category

TRUTH = {"sigma_household": 0.6, "sigma_week": 0.2, "sigma_season": 0.25}


def simulate(seed: int, households: int, categories: int, weeks: int) -> category.CategoryData:
    rng = np.random.default_rng(seed)
    params = category.draw_parameters(
        households, categories, weeks, rng, household_sd=TRUTH["sigma_household"],
        week_sd=TRUTH["sigma_week"], season_sd=TRUTH["sigma_season"],
    )
    trips = rng.poisson(1.0, (households, weeks)) * (rng.random((households, weeks)) < 0.7)
    return category.category_data_from_arrays(category.simulate(params, trips, rng), trips)


def main() -> None:
    args = _coverage.parser(__doc__, households=150, categories=10, weeks=16).parse_args()
    _coverage.run(
        args,
        TRUTH,
        lambda seed: category.build_model(simulate(seed, args.households, args.categories, args.weeks)),
        lambda post, name: post[name].values.ravel(),
    )


if __name__ == "__main__":
    main()
