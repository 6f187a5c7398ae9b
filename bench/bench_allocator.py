"""Benchmark: the choice kernels with glibc's default allocator settings against ``keep_large_buffers``.

    python bench/bench_allocator.py [--rounds 3] [--nutpie] [--json OUT]

Each round runs two fresh worker processes, one with ``BAYES_RETAIL_MALLOC=system``
(glibc's defaults: the kernels' large arrays are mapped afresh on every call)
and one with :func:`bayes_retail._allocator.keep_large_buffers` applied (the
command line's setting), in alternating order. Each worker times, on the
shipped product fit's households and first depth panel at the fit's first
posterior draw (8 classes, no deal-proneness grid):

- ``gradient_ms``: the fused value-and-gradient kernel (what NUTS calls), one thread, median of 7;
- ``membership_2_threads_ms``: the forward-only kernel (class membership) called in two threads at
  once, per pair of calls, median of 5 pairs;
- with ``--nutpie``: ``nutpie_s``, wall seconds of a short nutpie run of the product model on the
  first 40 of those households (every item: the dense arrays keep their size; 2 chains on 2 cores,
  30 tuning and 10 kept draws, after compiling; about 12 minutes per worker), its leapfrog steps
  (the same under both settings when the draws are) and whether its draws are identical under both
  settings (the allocator must not change a number).

The report gives per setting the median over rounds and the ratio default / heap.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings


def _worker(nutpie: bool) -> dict:
    import threading

    import numpy as np

    from bayes_retail._allocator import keep_large_buffers
    from bayes_retail.data import load_data
    from bayes_retail.models import _choice_kernel as ck
    from bayes_retail.models import deal, product
    from bayes_retail.models.stage import product_depth_panel
    from bayes_retail.simulate.population import Posteriors, product_stage_data

    applied = keep_large_buffers()
    data = load_data()
    posteriors = Posteriors.load("models", data_hash=data.data_hash)
    pdata = product_stage_data(posteriors, data, product_depth_panel(data, "models"))
    inputs = product.kernel_inputs(pdata)
    params = product.posterior_params(posteriors.product, pdata, 0, 0)
    theta = posteriors.product.isel(chain=0, draw=0)["theta"].values.astype(np.float64)
    args = (params["t"], theta, *deal.promo_coefficients(params), *inputs)
    ck.choice_loglik(*args)
    ck.household_class_loglik(*args)

    def once(call) -> float:
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0

    def pair() -> None:
        threads = [threading.Thread(target=ck.household_class_loglik, args=args) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    out = {
        "heap_settings_applied": applied,
        "gradient_ms": 1000 * float(np.median([once(lambda: ck.choice_loglik(*args)) for _ in range(7)])),
        "membership_2_threads_ms": 1000 * float(np.median([once(pair) for _ in range(5)])),
    }
    if nutpie:
        config = product.ProductConfig(state="both")
        few = product.build_product_data(data, product_depth_panel(data, "models"), config,
                                         households=posteriors.class_membership["household_id"].to_numpy()[:40])
        out.update(_nutpie_run(few, config))
    return out


def _nutpie_run(pdata, config) -> dict:
    import hashlib

    import nutpie
    import numpy as np

    from bayes_retail.models import product

    compiled = nutpie.compile_pymc_model(product.build_model(pdata, config))
    t0 = time.perf_counter()
    trace = nutpie.sample(compiled, chains=2, cores=2, tune=30, draws=10, seed=1, progress_bar=False)
    seconds = time.perf_counter() - t0
    steps = int(trace.sample_stats["n_steps"].sum()) + int(trace.warmup_sample_stats["n_steps"].sum())
    values = np.concatenate([trace.posterior[name].values.ravel() for name in sorted(trace.posterior.data_vars)])
    return {"nutpie_s": seconds, "nutpie_step_ms": 1000 * seconds / steps, "nutpie_steps": steps,
            "nutpie_draws_sha1": hashlib.sha1(values.tobytes()).hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nutpie", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        print(json.dumps(_worker(args.nutpie)))
        return
    runs: dict[str, list[dict]] = {"default": [], "heap": []}
    for r in range(args.rounds):
        order = ("default", "heap") if r % 2 == 0 else ("heap", "default")
        for setting in order:
            env = dict(os.environ, BAYES_RETAIL_MALLOC="system" if setting == "default" else "heap")
            command = [sys.executable, __file__, "--worker", *(["--nutpie"] if args.nutpie else [])]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            runs[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(setting, runs[setting][-1], file=sys.stderr, flush=True)
    _report(runs, args.json)


def _report(runs: dict, json_path: str | None) -> None:
    import numpy as np

    keys = [k for k in runs["default"][0] if k.endswith(("_ms", "_s"))]
    out = {"rounds": len(runs["default"])}
    for key in keys:
        default = float(np.median([r[key] for r in runs["default"]]))
        heap = float(np.median([r[key] for r in runs["heap"]]))
        out[key] = {"default": round(default, 1), "heap": round(heap, 1),
                    "ratio_default_to_heap": round(default / heap, 2)}
    if "nutpie_draws_sha1" in runs["default"][0]:
        hashes = {r["nutpie_draws_sha1"] for setting in runs.values() for r in setting}
        out["nutpie_draws_identical"] = len(hashes) == 1
    out["heap_settings_applied"] = all(r["heap_settings_applied"] for r in runs["heap"])
    text = json.dumps(out, indent=2)
    print(text)
    if json_path:
        with open(json_path, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
