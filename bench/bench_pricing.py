"""Benchmark: pricing HMM fit time and price-path sampling throughput on the embedded data.

    python bench/bench_pricing.py [--model models/] [--config default] [--repeat 5] [--json OUT]

With ``--model DIR`` the fitted model in DIR is loaded instead of fitted (the
fit is the slow part: minutes). Sampling is timed for the full catalogue x 53
weeks. The baseline, measured in the same run, is hmmlearn's own ``sample``
(a Python loop over weeks, one product at a time) on the same HMMs for a random
subset of products, scaled to product-weeks per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from bayes_retail.config import load_config, stage_config
from bayes_retail.data import load_data
from bayes_retail.pricing import PricingConfig, fit_pricing, load_pricing

WEEKS = np.arange(1, 54)


def time_fit(data, config_name: str) -> tuple[object, float]:
    config = stage_config(load_config(config_name), "pricing", PricingConfig)
    t0 = time.perf_counter()
    model = fit_pricing(data.product_weeks, config=config, rng=np.random.default_rng(1))
    return model, time.perf_counter() - t0


def time_vectorised(model, repeat: int) -> float:
    runs = []
    for seed in range(repeat):
        t0 = time.perf_counter()
        model.simulate(WEEKS, np.random.default_rng(seed))
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def time_hmmlearn(model, n_products: int) -> float:
    """Seconds per product for hmmlearn's sample() of both HMMs over 53 weeks."""
    rng = np.random.default_rng(0)
    rows = rng.choice(len(model.catalogue), size=n_products, replace=False)
    cats = model.catalogue["category_id"].to_numpy()[rows]
    hmms = {c: (model.category_hmm("base_price", c), model.category_hmm("promotion", c)) for c in np.unique(cats)}
    t0 = time.perf_counter()
    for i, c in enumerate(cats):
        base, promo = hmms[c]
        base.sample(WEEKS.size, random_state=i)
        promo.sample(WEEKS.size, random_state=i)
    return (time.perf_counter() - t0) / n_products


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="load a fitted pricing model instead of fitting")
    parser.add_argument("--config", default="default")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-products", type=int, default=300)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    data = load_data()
    if args.model:
        model, fit_s = load_pricing(args.model), None
    else:
        model, fit_s = time_fit(data, args.config)
    n_products = len(model.catalogue)
    cells = n_products * WEEKS.size
    ours = time_vectorised(model, args.repeat)
    per_product = time_hmmlearn(model, args.baseline_products)
    baseline = per_product * n_products
    result = {
        "fit_seconds": fit_s,
        "config": args.config if fit_s is not None else f"loaded {args.model}",
        "catalogue_products": n_products,
        "weeks": int(WEEKS.size),
        "vectorised_seconds": ours,
        "vectorised_product_weeks_per_s": cells / ours,
        "hmmlearn_seconds_extrapolated": baseline,
        "hmmlearn_product_weeks_per_s": cells / baseline,
        "speedup": baseline / ours,
    }
    if fit_s is not None:
        print(f"fit ({args.config}): {fit_s:.1f} s")
    print(f"sample {n_products} products x {WEEKS.size} weeks: {ours:.3f} s ({cells / ours:,.0f} product-weeks/s)")
    print(f"hmmlearn sample() loop, same HMMs: {baseline:.1f} s extrapolated from {args.baseline_products} products")
    print(f"speed-up: {baseline / ours:.0f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
