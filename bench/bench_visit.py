"""Benchmark: the visit stage on the embedded data, each variant in a cold process.

    python bench/bench_visit.py [--variants baseline-graph,baseline-kernel,stage] [--json OUT]

Variants (all nutpie, 4 chains, seed 1, 2 cores):

- ``baseline-graph``: the baseline visit model (centred household intercepts
  + ZeroSumNormal week effects, Bernoulli-logit on the dense grid) written as a
  plain PyMC elementwise graph: the reference approach of the issue.
- ``baseline-kernel``: the same model with the package's fused grid kernel.
- ``stage``: the full visit-and-trips stage exactly as ``fit --stage visit``
  runs it with the ``default`` configuration.

Reported per variant: process wall (import, data from cache, compile,
sampling), gradient evaluations, ms per gradient per chain, and the
convergence verdict over every scalar. Ratios are against ``baseline-graph``
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import numpy as np, pymc as pm, pytensor.tensor as pt
from bayes_retail.config import load_config, stage_config
from bayes_retail.data import load_data
from bayes_retail.models import visit
from bayes_retail.models._kernels import logit_grid_loglik_op
from bayes_retail.models.diagnostics import convergence
from bayes_retail.models.sampling import SamplerConfig, sample_posterior

variant = sys.argv[1]
config = load_config("default")
data = load_data()
vd = visit.build_visit_data(data, stage_config(config, "visit", visit.VisitConfig))
sampler = stage_config(config, "sampler", SamplerConfig)


def baseline(kernel):
    y = vd.visited * vd.scored
    mask = vd.scored.astype(float)
    with pm.Model(coords=visit.coords(vd)) as model:
        mu = pm.Normal("mu", 0.0, 1.5)
        sigma = pm.HalfNormal("sigma", 1.5)
        a = pm.Normal("a", mu, sigma, dims="household")
        s = pm.ZeroSumNormal("s", sigma=pm.HalfNormal("sigma_week", 0.5), dims="week")
        if kernel:
            zeros = np.zeros_like(mask)
            grids = [pm.Data(n, v) for n, v in (("y", y), ("mask", mask), ("x", zeros), ("lag", zeros))]
            pm.Potential("loglik", logit_grid_loglik_op(a, pt.zeros_like(a), 0.0, s, *grids))
        else:
            eta = a[:, None] + s[None, :]
            pm.Potential("loglik", (pm.Data("y", y) * eta - pm.Data("mask", mask) * pt.softplus(eta)).sum())
    return model


model = visit.build_model(vd) if variant == "stage" else baseline(variant == "baseline-kernel")
t1 = time.perf_counter()
idata = sample_posterior(model, config=sampler, seed=1)
t2 = time.perf_counter()
verdict = convergence(idata)
grads = float(idata.sample_stats["n_steps"].sum())
# warmup steps are not kept: scale by (tune + draws) / draws
grads *= (sampler.tune + sampler.draws) / sampler.draws
print(json.dumps({
    "variant": variant,
    "process_wall_s": round(time.perf_counter() - t0, 1),
    "compile_and_sample_s": round(t2 - t1, 1),
    "gradients_approx": round(grads),
    "ms_per_gradient_per_chain": round((t2 - t1) * 1000 / (grads / sampler.chains) / max(1, sampler.chains // 2), 2),
    "mean_tree_steps": round(float(idata.sample_stats["n_steps"].mean()), 1),
    "verdict": {k: verdict.to_dict()[k] for k in ("passed", "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "min_bfmi", "worst")},
}))
"""


def run(variant: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, variant], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["outer_wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="baseline-graph,baseline-kernel,stage")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = [run(v) for v in args.variants.split(",")]
    base = next((r for r in results if r["variant"] == "baseline-graph"), None)
    for r in results:
        ratio = f" ({base['outer_wall_s'] / r['outer_wall_s']:.2f}x baseline-graph)" if base else ""
        v = r["verdict"]
        print(
            f"{r['variant']:16s} wall {r['outer_wall_s']:6.1f} s{ratio}; {r['ms_per_gradient_per_chain']} ms/gradient/chain, "
            f"{r['mean_tree_steps']} steps; converged {v['passed']} (R-hat {v['max_rhat']:.3f}, "
            f"ESS bulk {v['min_ess_bulk']:.0f} / tail {v['min_ess_tail']:.0f}, div {v['divergences']})"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
