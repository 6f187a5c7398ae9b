"""Benchmark: cost of one product-stage log-density-and-gradient on the embedded data.

    python bench/bench_product_gradient.py [--classes 8] [--households N] [--state last|ever|both] [--json OUT]

Builds the stage's data from the cached panels and the first imputed depth
panel of the shipped pricing model, compiles the PyMC model's log-density and
gradient with numba (what nutpie runs: the fused choice kernel) and times it
(``bench/_gradient.py``: median of 5 at a jittered initial point). The
baseline in the same run is the stage's own numpy log-likelihood (value only,
no gradient), so the ratio says what the compiled value-and-gradient costs
relative to one plain vectorised evaluation. Decides whether a full-data NUTS fit is affordable (it needs a
few hundred thousand gradients).

A second baseline times the fused kernel alone twice: on the data as they
are, and with every item-week's price nudged by 1e-12 x week so that no
covariates repeat from one week to the next (what the kernel cost before it
copied repeated weeks' utilities). ``--households N`` keeps N households drawn
with seed 0 (the product fits use 300). A third times it on the same data
with a fourth core coefficient (the ``"both"`` memory's previous-occasion
pull, 0.5): what the second state term costs on that memory's state pairs.
"""

from __future__ import annotations

import argparse
import time
import warnings

import _gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--households", type=int, default=0, help="0: every household")
    parser.add_argument("--models", default="models")
    parser.add_argument("--state", default="last", choices=("last", "ever", "both"))
    parser.add_argument("--json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np

    from bayes_retail.data import load_data
    from bayes_retail.models import product
    from bayes_retail.pricing.artifacts import load_imputations
    from bayes_retail.pricing.model import PricingPanel

    data = load_data()
    panel = PricingPanel.from_product_weeks(data.product_weeks)
    depth = load_imputations(f"{args.models}/pricing", panel)[0]
    config = product.ProductConfig(n_classes=args.classes, state=args.state)
    t0 = time.perf_counter()
    chosen = _gradient.random_households(data, args.households) if args.households else None
    pdata = product.build_product_data(data, depth, config, households=chosen)
    build = time.perf_counter() - t0
    model = product.build_model(pdata, config)
    timed = _gradient.time_logp_dlogp(model, repeats=5)
    rng = np.random.default_rng(0)
    params = product.draw_parameters(pdata, rng, n_classes=args.classes,
                                     mu=(-2.0, 2.0, 0.0, 0.5) if args.state == "both" else (-2.0, 2.0, 0.0))
    value = []
    for _ in range(3):
        t0 = time.perf_counter()
        product.total_loglik(params, pdata)
        value.append(time.perf_counter() - t0)
    kernel_ms, distinct_ms, previous_ms = _kernel_timings(pdata, params)
    out = {
        "households": int(pdata.households.size),
        "items": int(pdata.item_category.size),
        "occasions": pdata.n_occasions,
        "scored_occasions": int(pdata.occasion_scored.sum()),
        "chosen_items": int(pdata.chosen_item.size),
        "state_pairs": int(pdata.last_item.size),
        "free_parameters": int(sum(v.size for v in model.initial_point().values())),
        "classes": args.classes,
        "data_build_s": round(build, 1),
        "compile_and_first_call_s": timed["compile_s"],
        "gradient_ms": timed["grad_ms"],
        "numpy_value_ms": round(1000 * float(np.median(value)), 1),
        "ratio_gradient_to_value": round(timed["grad_ms"] / (1000 * float(np.median(value))), 2),
        "kernel_ms": kernel_ms,
        "kernel_ms_no_repeated_weeks": distinct_ms,
        "ratio_kernel_to_no_repeats": round(kernel_ms / distinct_ms, 3),
        "state": args.state,
        "kernel_ms_three_core": previous_ms[0],
        "kernel_ms_four_core": previous_ms[1],
        "ratio_four_to_three_core": round(previous_ms[1] / previous_ms[0], 3),
    }
    _gradient.report(out, args.json)


def _kernel_timings(pdata, params) -> tuple[float, float, tuple[float, float]]:
    """The fused kernel's time (ms, median of 7) on the data, with no week's covariates repeating the last's, and
    on the data with three and with four core coefficients (no previous-occasion term and one)."""
    import numpy as np

    from bayes_retail.models import product
    from bayes_retail.models._choice_kernel import choice_loglik

    inputs = product.kernel_inputs(pdata)
    price = inputs[1]  # (W, G)
    distinct = (inputs[0], price + 1e-12 * np.arange(price.shape[0])[:, None], *inputs[2:])
    theta = params["theta"]
    n_attr = pdata.attributes.shape[1]
    three = np.delete(theta, 3, axis=1) if theta.shape[1] - n_attr == 4 else theta
    four = np.insert(three, 3, 0.5, axis=1)
    times = []
    for data, coefficients in ((inputs, theta), (distinct, theta), (inputs, three), (inputs, four)):
        args = (params["t"], coefficients, *product.promo_coefficients(params), *data)
        choice_loglik(*args)
        times.append(round(1000 * _gradient.median_seconds(lambda: choice_loglik(*args), 7), 1))
    return times[0], times[1], (times[2], times[3])


if __name__ == "__main__":
    main()
