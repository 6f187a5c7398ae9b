"""Shared loop of the recovery-coverage benchmarks: simulate, fit, check each 90% interval against the truth."""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Callable

import numpy as np

from bayes_retail.models.diagnostics import convergence
from bayes_retail.models.sampling import SamplerConfig, sample_posterior


def parser(doc: str, **defaults) -> argparse.ArgumentParser:
    """Common options: seeds, chains, draws, json; stage-specific sizes come as ``name=default`` ints."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--json", default=None)
    for name, value in defaults.items():
        p.add_argument(f"--{name}", type=int, default=value)
    return p


def run(args, truth: dict, fit_model: Callable[[int], object], draws_of: Callable[[object, str], np.ndarray]) -> dict:
    """For each seed: ``fit_model(seed)`` (a PyMC model of simulated data), sample, record interval coverage.

    With 20 seeds a well-calibrated 90% interval covers 18 +- 1.3 times
    (binomial sd); prints the count per parameter and overall.
    """
    warnings.filterwarnings("ignore")
    sampler = SamplerConfig(chains=args.chains, draws=args.draws, tune=args.draws)
    covered = {name: [] for name in truth}
    converged, hyper_converged, verdicts = [], [], []
    scored_vars = sorted({name.split("[")[0] for name in truth})
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        idata = sample_posterior(fit_model(seed), config=sampler, seed=seed + 1)
        full, hyper = convergence(idata), convergence(idata, var_names=scored_vars)
        converged.append(full.passed)
        hyper_converged.append(hyper.passed)
        verdicts.append({"full": _brief(full), "scored": _brief(hyper)})
        for name, value in truth.items():
            lo, hi = np.quantile(draws_of(idata.posterior, name), [0.05, 0.95])
            covered[name].append(bool(lo <= value <= hi))
        print(f"seed {seed}: {sum(c[-1] for c in covered.values())}/{len(truth)} covered; "
              f"full {verdicts[-1]['full']}; scored {verdicts[-1]['scored']}", flush=True)
    rates = {name: float(np.mean(c)) for name, c in covered.items()}
    overall = float(np.mean([v for c in covered.values() for v in c]))
    for name, rate in rates.items():
        print(f"{name:18s} 90% interval coverage {rate:.2f} ({sum(covered[name])}/{args.seeds})")
    print(f"overall {overall:.3f} over {args.seeds * len(truth)} intervals; "
          f"{sum(converged)}/{args.seeds} fits passed the full verdict (every scalar), "
          f"{sum(hyper_converged)}/{args.seeds} on the scored parameters; "
          f"{time.perf_counter() - t0:.0f} s")
    result = {"seeds": args.seeds, "coverage": rates, "overall": overall, "converged": converged,
              "scored_converged": hyper_converged, "verdicts": verdicts}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


def _brief(verdict) -> dict:
    """The verdict's numbers, small enough to print per seed and keep in the JSON."""
    return {"passed": verdict.passed, "max_rhat": round(float(verdict.max_rhat), 4),
            "min_ess_bulk": round(float(verdict.min_ess_bulk)), "min_ess_tail": round(float(verdict.min_ess_tail)),
            "divergences": int(verdict.divergences)}
