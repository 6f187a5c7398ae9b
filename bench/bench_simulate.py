"""Simulator throughput at the full catalogue's size (synthetic parameters, real dimensions).

Usage: python bench/bench_simulate.py [--customers 10000] [--batch-size 1000] [--out DIR] [--scheduler local]

Dimensions of the embedded data: 297 categories, 21,959 choice-set items
(items per category as in the data are approximated by equal sizes), 67,671
products, 52 weeks, 8 latent classes. Reports wall seconds for building the
draw's shared tables, the batches (engine + parquet), customer-weeks per
second and peak RSS. A baseline measured in the same run: the numpy forward
samplers of the visit and category stages alone over the same customers
(``visit.simulate`` + ``category.simulate`` on dense grids), which the engine
replaces.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from bayes_retail.models import category as category_stage
from bayes_retail.models import visit as visit_stage
from bayes_retail.simulate.run import SimulationSpec, draw_world, run_simulation
from bayes_retail.simulate.synthetic import synthetic_catalogue, synthetic_draw, synthetic_prices, synthetic_templates

N_CATEGORIES, ITEMS, TAIL, N_WEEKS, N_CLASSES = 297, 74, 155, 52, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--out", default=None)
    parser.add_argument("--scheduler", default=None,
                        help="also run the same customers on Dask ('local': one worker per core) and compare throughput per core")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    catalogue = synthetic_catalogue(rng, n_categories=N_CATEGORIES, items=ITEMS, tail=TAIL)
    prices = synthetic_prices(rng, catalogue, N_WEEKS)
    draw = synthetic_draw(rng, catalogue, N_WEEKS, n_classes=N_CLASSES)
    # about 9 categories per visited week, as in the data
    draw = type(draw)(**{**draw.__dict__, "category_intercept": rng.normal(-4.2, 1.0, N_CATEGORIES)})
    templates = synthetic_templates(rng, 300, N_CATEGORIES, N_WEEKS, n_classes=N_CLASSES)
    print(f"catalogue: {catalogue.item_category.size} items, {catalogue.product_ids.size} products, {N_WEEKS} weeks")

    t0 = time.perf_counter()
    world = draw_world(0, draw, templates, prices, catalogue, signal_sd=1.0, entry_weeks=np.zeros(10, np.int64),
                       week_numbers=np.arange(N_WEEKS) + 2)
    shared = time.perf_counter() - t0
    spec = SimulationSpec(customers=args.customers, draws=(0,), seed=1, batch_size=args.batch_size)
    # compile outside the timing
    with tempfile.TemporaryDirectory() as warm:
        run_simulation(lambda d: world, catalogue, SimulationSpec(customers=20, draws=(0,)), Path(warm) / "w")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "sim"
        t0 = time.perf_counter()
        manifest = run_simulation(lambda d: world, catalogue, spec, out)
        wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cw = args.customers * N_WEEKS
    if args.scheduler:
        import os

        workers = os.cpu_count() or 1
        with tempfile.TemporaryDirectory() as tmp:
            # the cluster's start-up and the broadcast of the draw's tables are inside the timing
            t0 = time.perf_counter()
            run_simulation(lambda d: world, catalogue, spec, Path(tmp) / "dask", scheduler=args.scheduler)
            dask_wall = time.perf_counter() - t0
        print(f"Dask ({args.scheduler}, {workers} workers): {dask_wall:.1f} s wall, {cw / dask_wall:,.0f} customer-weeks/s; "
              f"per core {cw / dask_wall / workers:,.0f} vs in-process {cw / wall:,.0f} "
              f"(ratio {(cw / dask_wall / workers) / (cw / wall):.2f})")
    print(f"shared tables (choice probabilities, intensity): {shared:.1f} s")
    print(f"{args.customers} customers x {N_WEEKS} weeks: {wall:.1f} s wall, {manifest['lines']} lines, "
          f"{cw / wall:,.0f} customer-weeks/s, peak RSS {rss:,.0f} MB")

    t0 = time.perf_counter()
    n = min(args.customers, 2000)
    theta = np.column_stack([rng.normal(0.5, 1, n), rng.normal(0.2, 0.1, n), rng.normal(0, 0.5, n)])
    trips = visit_stage.simulate(theta, draw.rho, draw.visit_week, rng.standard_normal((n, N_WEEKS)), rng)
    params = {"b": draw.category_intercept, "u": rng.normal(0, 0.5, n), "f": np.zeros((n, 0)),
              "loadings": np.zeros((N_CATEGORIES, 0)), "s": draw.category_week, "d": draw.category_season}
    category_stage.simulate(params, trips, rng)
    base = time.perf_counter() - t0
    print(f"baseline, stage samplers (visit + category only, dense numpy) on {n} customers: {base:.1f} s "
          f"({n * N_WEEKS / base:,.0f} customer-weeks/s); engine, all four stages + parquet: ratio "
          f"{(cw / wall) / (n * N_WEEKS / base):.2f}x the baseline's throughput")


if __name__ == "__main__":
    main()
