"""Benchmark: the category stage's log-density-and-gradient with the shared household-week shock and with a loading
per category (``[category] shock_loadings``), on the embedded data as ``default`` fits it.

    python bench/bench_category_shock_loadings.py [--models models] [--seed 1] [--groups 4] [--skip-per-category]
        [--json OUT]

Builds the stage's data the way ``bayes-retail fit --stage category --config
default --seed SEED`` does (its 300 households, category values linked from
the product stage in ``--models``), then compiles both models with numba (what
nutpie runs) and times one call at a jittered initial point (median of 7).
With loadings the dense sum over visited cells is an ``(H, C, W)`` tensor per
product class instead of one matrix product; this is its cost. ``--groups G``
also times the grouped form (``shock_loading_groups = G``: G matrix products
per class); ``--skip-per-category`` leaves the tensor form out (its numba
compile alone takes minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import _gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--groups", type=int, default=0, help="also time G grouped loadings (0: not)")
    parser.add_argument("--skip-per-category", action="store_true", help="do not time a loading per category")
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import pandas as pd

    from bayes_retail.config import load_config, stage_config
    from bayes_retail.data import load_data
    from bayes_retail.models import category, visit
    from bayes_retail.models.stage import (
        data_selection,
        fitted_households,
        household_subset,
        linked_category_values,
    )

    data = load_data()
    config = load_config("default")
    shared = stage_config(config, "category", category.CategoryConfig)
    t0 = time.perf_counter()
    vd = visit.build_visit_data(data, stage_config(config, "visit", visit.VisitConfig))
    selection = data_selection(config, weeks=None)
    subset = household_subset(data, shared.households, seed=args.seed, pool=fitted_households(data, selection))
    rows = pd.Index(vd.households).get_indexer(subset)
    cd = category.build_category_data(data, vd.trips[rows], vd.households[rows], vd.weeks)
    cd, _ = linked_category_values(data, cd, args.models, config, seed=args.seed)
    build = time.perf_counter() - t0
    baseline = _gradient.time_logp_dlogp(category.build_model(cd, shared))
    result = {
        "households": int(cd.households.size), "categories": int(cd.categories.size), "weeks": int(cd.weeks.size),
        "classes": int(cd.value.shape[0]), "purchased_cells": cd.n_cells, "build_s": round(build, 1),
        "shared_shock": baseline,
    }
    forms = {} if args.skip_per_category else {"shock_loadings": {}}
    if args.groups:
        forms[f"shock_loading_groups_{args.groups}"] = {"shock_loading_groups": args.groups}
    for name, extra in forms.items():
        timing = _gradient.time_logp_dlogp(category.build_model(
            cd, dataclasses.replace(shared, shock_loadings=True, **extra)))
        result[name] = timing
        result[f"{name}_cost_ratio"] = round(timing["grad_ms"] / baseline["grad_ms"], 2)
    _gradient.report(result, args.json)


if __name__ == "__main__":
    main()
