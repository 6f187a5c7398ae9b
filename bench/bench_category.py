"""Benchmark: one category-stage log-density-and-gradient on the embedded data, fused kernel vs PyTensor graph.

    python bench/bench_category.py [--rank 2] [--json OUT]

Builds the stage's data (purchased household-category-weeks and the visit
stage's trips grid) from the cached panels, then compiles with numba (what
nutpie runs) the model's log-density and gradient twice at the same point:

- baseline: the purchased-cell sum written as a PyTensor graph (gathers,
  ``log1mexp`` and scatter-adds for each of b, u, the preference matrix, s, d),
- the stage's model, whose purchased-cell sum is one fused numba kernel.

The dense part (the (H x C) @ (C x W) products) is the same PyTensor graph in
both. Times are medians of 7 calls after a warm-up call; the log-densities
must agree.
"""

from __future__ import annotations

import argparse
import time
import warnings

import _gradient


def _graph_cells(b, u, pref, s, d, offset, household, category, week, trips):
    import pytensor.tensor as pt

    rate = trips * pt.exp(b[category] + u[household] + pref[household, category] + s[week] + d[category, week] + offset)
    return (pt.log1mexp(-rate) + rate).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from bayes_retail.data import load_data
    from bayes_retail.models import category, visit

    data = load_data()
    t0 = time.perf_counter()
    vd = visit.build_visit_data(data)
    cd = category.build_category_data(data, vd.trips, vd.households, vd.weeks)
    build = time.perf_counter() - t0
    config = category.CategoryConfig(rank=args.rank)
    fused_op = category.cloglog_cells_loglik_op
    category.cloglog_cells_loglik_op = _graph_cells
    try:
        baseline = _gradient.time_logp_dlogp(category.build_model(cd, config))
    finally:
        category.cloglog_cells_loglik_op = fused_op
    fused = _gradient.time_logp_dlogp(category.build_model(cd, config))
    sizes = {
        "households": int(cd.households.size),
        "categories": int(cd.categories.size),
        "weeks": int(cd.weeks.size),
        "purchased_cells": cd.n_cells,
        "build_s": round(build, 2),
    }
    _gradient.compare(baseline, fused, sizes, args.json)

if __name__ == "__main__":
    main()
