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
    depth = np.linspace(-0.5, 0.5, params["display"].size)  # a per-category depth response: its gradient is checked too
    shared = {name: pytensor.shared(np.asarray(value, dtype=np.float64))
              for name, value in (("t", params["t"]), ("theta", theta_value),
                                  ("display", params["display"]), ("mailer", params["mailer"]), ("depth", depth))}
    value = loglik(*shared.values())
    return pytensor.function([], [value, *pytensor.grad(value, list(shared.values()))], mode=mode)()


@pytest.mark.parametrize("form", ["class", "household"])
def test_the_jax_choice_op_equals_the_numba_kernel(form):
    register_jax()
    pdata, params, classes = _study()
    if form == "class":
        theta = params["theta"]
        inputs = product.kernel_inputs(pdata)

        def loglik(t, th, d, m, depth):
            return choice_loglik_op(t, th, d, m, depth, inputs)
    else:
        theta = params["theta"][classes]
        inputs = product.household_kernel_inputs(pdata)

        def loglik(t, th, d, m, depth):
            return household_choice_loglik_op(t, th, d, m, depth, inputs)
    want = _value_and_gradients(loglik, params, theta, "FAST_RUN")
    got = _value_and_gradients(loglik, params, theta, "JAX")
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10)


def test_the_numpyro_method_samples_a_conjugate_posterior_on_the_models_dims():
    import pymc as pm

    from bayes_retail.models.sampling import SamplerConfig, sample_posterior

    rng = np.random.default_rng(3)
    y = rng.normal([1.0, -2.0], 1.0, size=(200, 2))
    with pm.Model(coords={"group": ["a", "b"]}) as model:
        mu = pm.Normal("mu", 0.0, 10.0, dims="group")
        pm.Normal("y", mu, 1.0, observed=y)
    config = SamplerConfig(method="numpyro", chains=2, tune=300, draws=300)
    first = sample_posterior(model, config=config, seed=4)
    again = sample_posterior(model, config=config, seed=4)
    posterior = first.posterior
    assert posterior["mu"].dims == ("chain", "draw", "group") and posterior["group"].values.tolist() == ["a", "b"]
    assert first.attrs["method"] == "numpyro" and not first.attrs["approximate"]
    # conjugate: mean ybar * n / (n + 1/100), sd 1 / sqrt(n + 1/100)
    n = y.shape[0]
    exact_mean, exact_sd = y.mean(axis=0) * n / (n + 0.01), 1.0 / np.sqrt(n + 0.01)
    draws = posterior["mu"].values.reshape(-1, 2)
    assert np.all(np.abs(draws.mean(axis=0) - exact_mean) < 4 * exact_sd / np.sqrt(150))
    assert np.all(np.abs(draws.std(axis=0) / exact_sd - 1.0) < 0.15)
    np.testing.assert_array_equal(again.posterior["mu"].values, posterior["mu"].values)  # one seed, same draws
