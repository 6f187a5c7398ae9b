"""Benchmark: one quantity-stage log-density-and-gradient on the embedded data, fused kernel vs PyTensor graph.

    python bench/bench_quantity.py [--json OUT]

Builds the stage's sufficient statistics (one row per distinct (household,
item, depth) pattern) from the cached panels, then compiles with numba (what
nutpie runs) the log-density and gradient of

- the baseline: the same model with its pattern sum written as a PyTensor
  elementwise graph (gathers, ``logaddexp`` and scatter-adds per parameter
  vector), and
- the stage's model, whose pattern sum is one fused numba kernel,

and times each (median of 7 after a warm-up call) at the same point. Both
must give the same log-density (checked).
"""

from __future__ import annotations

import argparse
import time
import warnings

import _gradient


def _graph_patterns(l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra):
    import pytensor.tensor as pt

    c = item_category[item]
    la = log_alpha[c]
    eta = l[item] + kappa[c] * depth + basket[household]
    return (lines * pt.exp(la) * la + extra * eta - (lines * pt.exp(la) + extra) * pt.logaddexp(la, eta)).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from bayes_retail.data import load_data
    from bayes_retail.models import quantity

    data = load_data()
    t0 = time.perf_counter()
    qd, _, _ = quantity.build_quantity_data(data)
    build = time.perf_counter() - t0
    config = quantity.QuantityConfig()
    fused_op = quantity.negbin_pattern_loglik_op
    quantity.negbin_pattern_loglik_op = _graph_patterns
    try:
        baseline = _gradient.time_logp_dlogp(quantity.build_model(qd, config))
    finally:
        quantity.negbin_pattern_loglik_op = fused_op
    fused = _gradient.time_logp_dlogp(quantity.build_model(qd, config))
    sizes = {
        "lines": qd.n_lines,
        "patterns": int(qd.pattern_lines.size),
        "items": int(qd.items.size),
        "households": int(qd.households.size),
        "categories": int(qd.categories.size),
        "build_s": round(build, 2),
    }
    _gradient.compare(baseline, fused, sizes, args.json)

if __name__ == "__main__":
    main()
