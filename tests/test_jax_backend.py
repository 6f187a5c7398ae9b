"""The choice Ops' JAX implementations (the numpyro method): same value and gradient as the numba kernels.

Skipped where jax is not installed (the ``gpu`` extra); CI does not install it.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

from bayes_retail.models import product  # noqa: E402
from bayes_retail.models._choice_kernel import choice_loglik_op, register_jax  # noqa: E402
from bayes_retail.models._household_choice_kernel import household_choice_loglik_op  # noqa: E402


def _study():
    rng = np.random.default_rng(5)
    design = product.synthetic_design(rng, n_households=20, n_categories=3, items_per_category=8, occasion_rate=0.6)
    params = product.draw_parameters(design, rng, n_classes=3, log_extra_rate=1.0)
    classes = rng.integers(0, 3, 20)
    return product.simulate_occasions(params, design, classes, rng), params, classes


def _value_and_gradients(loglik, params, theta_value, mode):
    shared = {name: pytensor.shared(np.asarray(value, dtype=np.float64))
              for name, value in (("t", params["t"]), ("theta", theta_value),
                                  ("display", params["display"]), ("mailer", params["mailer"]))}
    value = loglik(shared["t"], shared["theta"], shared["display"], shared["mailer"])
    return pytensor.function([], [value, *pytensor.grad(value, list(shared.values()))], mode=mode)()


@pytest.mark.parametrize("form", ["class", "household"])
def test_the_jax_choice_op_equals_the_numba_kernel(form):
    register_jax()
    pdata, params, classes = _study()
    if form == "class":
        theta = params["theta"]
        inputs = product.kernel_inputs(pdata)

        def loglik(t, th, d, m):
            return choice_loglik_op(t, th, d, m, inputs)
    else:
        theta = params["theta"][classes]
        inputs = product.household_kernel_inputs(pdata)

        def loglik(t, th, d, m):
            return household_choice_loglik_op(t, th, d, m, inputs)
    want = _value_and_gradients(loglik, params, theta, "FAST_RUN")
    got = _value_and_gradients(loglik, params, theta, "JAX")
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10)
