"""Shared part of the gradient benchmarks: time a model's compiled log-density-and-gradient, compare two models."""

from __future__ import annotations

import json
import time

import numpy as np


def time_logp_dlogp(model, repeats: int = 7) -> dict:
    """Compile with numba (what nutpie runs) and time one call at a jittered initial point (median of ``repeats``)."""
    t0 = time.perf_counter()
    fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")._pytensor_function
    x = np.concatenate([v.ravel() for v in model.initial_point().values()])
    x = x + np.random.default_rng(0).normal(0, 0.1, x.size)
    value = float(fn(x)[0])
    compile_s = time.perf_counter() - t0
    return {"compile_s": round(compile_s, 1), "grad_ms": round(1000 * median_seconds(lambda: fn(x), repeats), 2),
            "logp": value}


def random_households(data, n: int) -> np.ndarray:
    """``n`` household ids drawn without replacement with seed 0 (every household when ``n`` is at least their number)."""
    ids = data.households["household_id"].to_numpy()
    return np.random.default_rng(0).choice(ids, size=min(n, ids.size), replace=False)


def median_seconds(call, repeats: int) -> float:
    """Median wall time of ``repeats`` calls (warm ``call`` up first: compilation is not timed here)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def report(result: dict, json_path: str | None) -> dict:
    """Print ``result`` as JSON and, when ``json_path`` is given, write it there."""
    print(json.dumps(result, indent=2))
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


def compare(baseline: dict, fused: dict, sizes: dict, json_path: str | None) -> dict:
    """Check both log-densities agree, then print (and write) sizes, both timings and the speed-up."""
    if abs(baseline["logp"] - fused["logp"]) > 1e-6 * abs(baseline["logp"]):
        raise SystemExit(f"log-densities differ: {baseline['logp']} vs {fused['logp']}")
    result = {**sizes, "baseline_graph": baseline, "fused_kernel": fused,
              "speedup": round(baseline["grad_ms"] / fused["grad_ms"], 2)}
    return report(result, json_path)
