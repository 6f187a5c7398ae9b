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
import json
import time
import warnings


def _graph_cells(b, u, pref, s, d, household, category, week, trips):
    import pytensor.tensor as pt

    rate = trips * pt.exp(b[category] + u[household] + pref[household, category] + s[week] + d[category, week])
    return (pt.log1mexp(-rate) + rate).sum()


def _time(model, repeats=7):
    import numpy as np

    t0 = time.perf_counter()
    fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")._pytensor_function
    x = np.concatenate([v.ravel() for v in model.initial_point().values()])
    x = x + np.random.default_rng(0).normal(0, 0.1, x.size)
    value = float(fn(x)[0])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return {"compile_s": round(compile_s, 1), "grad_ms": round(1000 * float(np.median(times)), 1), "logp": value}


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
        baseline = _time(category.build_model(cd, config))
    finally:
        category.cloglog_cells_loglik_op = fused_op
    fused = _time(category.build_model(cd, config))
    if abs(baseline["logp"] - fused["logp"]) > 1e-6 * abs(baseline["logp"]):
        raise SystemExit(f"log-densities differ: {baseline['logp']} vs {fused['logp']}")
    result = {
        "households": int(cd.households.size),
        "categories": int(cd.categories.size),
        "weeks": int(cd.weeks.size),
        "purchased_cells": cd.n_cells,
        "build_s": round(build, 2),
        "baseline_graph": baseline,
        "fused_kernel": fused,
        "speedup": round(baseline["grad_ms"] / fused["grad_ms"], 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
