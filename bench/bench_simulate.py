"""Simulator throughput at the full catalogue's size (synthetic parameters, real dimensions).

Usage: python bench/bench_simulate.py [--customers 10000] [--batch-size 1000] [--out DIR] [--scheduler local]
       [--in-process-customers N] [--arrow-threads N] [--tail-repeat R] [--tail-promotion L] [--trip-weight-sd S]
       [--deal-week-sd S]

The scale-out check (1,000,000 customers through a LocalCluster):
``--customers 1000000 --scheduler local --in-process-customers 100000`` runs the
in-process baseline on 100,000 customers (throughput per customer-week is flat
in the customer count) and reports each worker's peak RSS after the Dask run.
``--arrow-threads 1`` limits Arrow's thread pool (parquet encoding and
compression) to one thread in the in-process run and in every worker, so that
"per core" means one core on both sides of the ratio.

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
import contextlib
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from bayes_retail._allocator import keep_large_buffers
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
    parser.add_argument("--threads", type=int, default=None,
                        help="in-process batches at a time (default: one per core; 1 with --scheduler, so that the "
                             "per-core comparison has one batch thread on each side)")
    parser.add_argument("--in-process-customers", type=int, default=None,
                        help="customers of the in-process run (default: --customers)")
    parser.add_argument("--tail-repeat", type=float, default=0.34,
                        help="every category's tail repeat probability (0.34: the embedded data's median)")
    parser.add_argument("--tail-promotion", type=float, default=0.85,
                        help="log weight of a promoted tail product in every category (the embedded pooled estimate)")
    parser.add_argument("--trip-weight-sd", type=float, default=1.28,
                        help="log sd of the trips' sizes within a week (1.28: the embedded estimate; 0: alike trips)")
    parser.add_argument("--deal-week-sd", type=float, default=0.0,
                        help="sd of the deal-hunting week deviation on 3 points (0: none; the product stage's plug-in)")
    parser.add_argument("--arrow-threads", type=int, default=None,
                        help="Arrow's CPU thread pool size in the in-process run and in each Dask worker")
    args = parser.parse_args()
    keep_large_buffers()  # as the command line does (BAYES_RETAIL_MALLOC=system: glibc's defaults)
    if args.arrow_threads:
        _set_arrow_threads(args.arrow_threads)
    rng = np.random.default_rng(0)
    catalogue = synthetic_catalogue(rng, n_categories=N_CATEGORIES, items=ITEMS, tail=TAIL)
    catalogue = dataclasses.replace(catalogue, tail_repeat=np.full(N_CATEGORIES, args.tail_repeat),
                                    tail_promotion=np.full(N_CATEGORIES, args.tail_promotion))
    prices = synthetic_prices(rng, catalogue, N_WEEKS)
    draw = synthetic_draw(rng, catalogue, N_WEEKS, n_classes=N_CLASSES)
    # about 9 categories per visited week, as in the data
    draw = type(draw)(**{**draw.__dict__, "category_intercept": rng.normal(-4.2, 1.0, N_CATEGORIES),
                         "trip_weight_sd": args.trip_weight_sd, "deal_week_sd": args.deal_week_sd,
                         "deal_week_points": 3 if args.deal_week_sd else 0})
    templates = synthetic_templates(rng, 300, N_CATEGORIES, N_WEEKS, n_classes=N_CLASSES)
    print(f"catalogue: {catalogue.item_category.size} items, {catalogue.product_ids.size} products, {N_WEEKS} weeks")

    t0 = time.perf_counter()
    world = draw_world(0, draw, templates, prices, catalogue, signal_sd=1.0, entry_weeks=np.zeros(10, np.int64),
                       week_numbers=np.arange(N_WEEKS) + 2)
    shared = time.perf_counter() - t0
    in_process = args.in_process_customers or args.customers
    spec = SimulationSpec(customers=in_process, draws=(0,), seed=1, batch_size=args.batch_size)
    # compile outside the timing
    with tempfile.TemporaryDirectory() as warm:
        run_simulation(lambda d: world, catalogue, SimulationSpec(customers=20, draws=(0,)), Path(warm) / "w")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "sim"
        t0 = time.perf_counter()
        threads = args.threads if args.threads is not None else (1 if args.scheduler else None)
        manifest = run_simulation(lambda d: world, catalogue, spec, out, threads=threads)
        wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cw = in_process * N_WEEKS
    if args.scheduler:
        _dask_run(args, world, catalogue, cw / wall)
    print(f"shared tables (choice probabilities, intensity): {shared:.1f} s")
    print(f"{in_process} customers x {N_WEEKS} weeks ({threads or 'one per core'} batch thread(s)): {wall:.1f} s wall, "
          f"{manifest['lines']} lines, "
          f"{cw / wall:,.0f} customer-weeks/s, peak RSS {rss:,.0f} MB")

    t0 = time.perf_counter()
    n = min(in_process, 2000)
    theta = np.column_stack([rng.normal(0.5, 1, n), rng.normal(0.2, 0.1, n), rng.normal(0, 0.5, n)])
    trips = visit_stage.simulate(theta, draw.rho, draw.visit_week, rng.standard_normal((n, N_WEEKS)), rng)
    params = {"b": draw.category_intercept, "u": rng.normal(0, 0.5, n), "f": np.zeros((n, 0)),
              "loadings": np.zeros((N_CATEGORIES, 0)), "s": draw.category_week, "d": draw.category_season}
    category_stage.simulate(params, trips, rng)
    base = time.perf_counter() - t0
    print(f"baseline, stage samplers (visit + category only, dense numpy) on {n} customers: {base:.1f} s "
          f"({n * N_WEEKS / base:,.0f} customer-weeks/s); engine, all four stages + parquet: ratio "
          f"{(cw / wall) / (n * N_WEEKS / base):.2f}x the baseline's throughput")


def _set_arrow_threads(n: int) -> None:
    import pyarrow as pa

    pa.set_cpu_count(n)
    pa.set_io_thread_count(n)


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not carry over a forking parent's)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dask_run(args, world, catalogue, in_process_rate: float) -> None:
    """The same draw over ``args.customers`` on Dask; throughput per worker against the in-process rate, workers' peak RSS."""
    import os

    from dask.distributed import Client, LocalCluster

    spec = SimulationSpec(customers=args.customers, draws=(0,), seed=1, batch_size=args.batch_size)
    cw = args.customers * N_WEEKS
    with contextlib.ExitStack() as stack:
        if args.scheduler == "local":
            workers = os.cpu_count() or 1
            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None))
            address = cluster.scheduler_address
        else:
            address = args.scheduler
        client = stack.enter_context(Client(address))
        workers = len(client.scheduler_info()["workers"])
        if args.arrow_threads:
            client.run(_set_arrow_threads, args.arrow_threads)
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        # the broadcast of the draw's tables is inside the timing, the cluster's start-up is not
        t0 = time.perf_counter()
        run_simulation(lambda d: world, catalogue, spec, Path(tmp) / "dask", scheduler=address)
        dask_wall = time.perf_counter() - t0
        peaks = client.run(_peak_rss_mb)
    per_core = cw / dask_wall / workers
    print(f"Dask ({args.scheduler}, {workers} workers), {args.customers} customers: {dask_wall:.1f} s wall, "
          f"{cw / dask_wall:,.0f} customer-weeks/s; per worker {per_core:,.0f} vs in-process {in_process_rate:,.0f} "
          f"(ratio {per_core / in_process_rate:.2f}); workers' peak RSS "
          + ", ".join(f"{mb:,.0f} MB" for mb in peaks.values()))


if __name__ == "__main__":
    main()
