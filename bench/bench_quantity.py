"""Benchmark: one quantity-stage log-density-and-gradient on the embedded data, fused kernel vs PyTensor graph.

    python bench/bench_quantity.py [--json OUT]

Builds the stage's sufficient statistics (one row per distinct (household,
item, depth) pattern) from the cached panels, then compiles with numba (what
nutpie runs) the log-density and gradient of

- the baseline: the same pattern sum written as a PyTensor elementwise graph
  (gathers, ``logaddexp`` and scatter-adds per parameter vector), and
- the stage's model, whose pattern sum is one fused numba kernel,

and times each (median of 7 after a warm-up call) at the same point. Both
must give the same log-density (checked).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings


def _baseline_model(qd, config):
    import pymc as pm
    import pytensor.tensor as pt

    from bayes_retail.models import quantity

    with pm.Model(coords=quantity.coords(qd)) as model:
        mu_item = pm.Normal("mu_item", -1.5, 1.5)
        tau_category = pm.HalfNormal("tau_category", config.item_sigma)
        tau_item = pm.HalfNormal("tau_item", config.item_sigma)
        m = pm.Normal("m", mu_item, tau_category, dims="category")
        z_item = pm.Normal("z_item", 0.0, 1.0, dims="item")
        l = m[qd.item_category] + tau_item * z_item
        mu_kappa = pm.Normal("mu_kappa", 0.0, config.kappa_sigma)
        sigma_kappa = pm.HalfNormal("sigma_kappa", config.kappa_sigma)
        z_kappa = pm.Normal("z_kappa", 0.0, 1.0, dims="category")
        kappa = mu_kappa + sigma_kappa * z_kappa
        sigma_basket = pm.HalfNormal("sigma_basket", config.basket_sigma)
        basket = pm.Normal("basket", 0.0, sigma_basket, dims="household")
        log_alpha = pm.Normal("log_alpha", 0.0, config.alpha_log_sigma)
        alpha = pt.exp(log_alpha)
        eta = quantity.log_mean(l, kappa, basket, qd)
        n, y = qd.pattern_lines, qd.pattern_extra
        per_pattern = n * alpha * log_alpha + y * eta - (n * alpha + y) * pt.logaddexp(log_alpha, eta)
        per_value = qd.extra_counts * (pt.gammaln(qd.extra_values + alpha) - pt.gammaln(alpha))
        pm.Potential("quantity_loglik", per_pattern.sum() + per_value.sum())
    return model


def _time(model, repeats=7):
    import numpy as np

    t0 = time.perf_counter()
    fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")._pytensor_function
    rng = np.random.default_rng(0)
    x = np.concatenate([v.ravel() for v in model.initial_point().values()])
    x = x + rng.normal(0, 0.1, x.size)
    value = float(fn(x)[0])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return {"compile_s": round(compile_s, 1), "grad_ms": round(1000 * float(np.median(times)), 2), "logp": value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from bayes_retail.data import load_data
    from bayes_retail.models import quantity

    data = load_data()
    t0 = time.perf_counter()
    qd, items, households = quantity.build_quantity_data(data)
    build = time.perf_counter() - t0
    config = quantity.QuantityConfig()
    baseline = _time(_baseline_model(qd, config))
    fused = _time(quantity.build_model(qd, config))
    if abs(baseline["logp"] - fused["logp"]) > 1e-6 * abs(baseline["logp"]):
        raise SystemExit(f"log-densities differ: {baseline['logp']} vs {fused['logp']}")
    result = {
        "lines": qd.n_lines,
        "patterns": int(qd.pattern_lines.size),
        "items": int(qd.items.size),
        "households": int(qd.households.size),
        "categories": int(qd.categories.size),
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
