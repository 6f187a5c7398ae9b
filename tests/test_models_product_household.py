"""The product stage's household-coefficient kernel (the `full` configuration's likelihood)."""

from __future__ import annotations

import numpy as np
import pytensor
import pytest

from bayes_retail.models import product
from bayes_retail.models._choice_kernel import household_class_loglik
from bayes_retail.models._household_choice_kernel import (
    household_choice_loglik,
    household_choice_loglik_op,
    household_choice_pass,
)


def _study(state="last"):
    """Sets of 1 to 10 items (the exact recursion and the quadrature), states, 4 classes over 30 households."""
    rng = np.random.default_rng(21)
    design = product.synthetic_design(rng, n_households=30, n_categories=3, items_per_category=10, occasion_rate=0.6)
    params = product.draw_parameters(design, rng, n_classes=4, log_extra_rate=1.3)
    classes = rng.integers(0, 4, 30)
    pdata = product.simulate_occasions(params, design, classes, rng, state=state)
    size = pdata.set_size
    assert (size == 1).any() and (size >= 9).any() and pdata.last_item.size > 0
    return pdata, params, classes


def _household(values, pdata):
    return household_choice_loglik(values["t"], values["theta"], values["display"], values["mailer"],
                                   *product.household_kernel_inputs(pdata))


@pytest.mark.parametrize("state", product.STATE_MEMORIES)
def test_households_at_class_coefficients_score_as_that_class(state):
    pdata, params, classes = _study(state)
    per_class = household_class_loglik(params["t"], params["theta"], params["display"], params["mailer"],
                                       *product.kernel_inputs(pdata))
    theta_h = params["theta"][classes]
    per_household, *_ = household_choice_pass(params["t"], theta_h, params["display"], params["mailer"],
                                              *product.household_kernel_inputs(pdata))
    rows = np.arange(per_class.shape[0])
    np.testing.assert_allclose(per_household[rows], per_class[rows, classes[rows]], rtol=1e-10)
    assert np.all(per_household[per_class.shape[0]:] == 0.0)  # households without a scored occasion


def test_household_kernel_gradient_equals_finite_differences():
    pdata, params, classes = _study()
    rng = np.random.default_rng(3)
    theta_h = params["theta"][classes] + rng.normal(0, 0.2, (classes.size, params["theta"].shape[1]))
    values = {"t": params["t"], "theta": theta_h, "display": params["display"], "mailer": params["mailer"]}
    _, *grads = _household(values, pdata)
    for name, grad in zip(values, grads):
        flat = np.asarray(values[name], float).ravel()
        for idx in rng.choice(flat.size, min(flat.size, 15), replace=False):
            step = np.zeros_like(flat)
            step[idx] = 1e-6
            up = _household(values | {name: (flat + step).reshape(np.shape(values[name]))}, pdata)[0]
            down = _household(values | {name: (flat - step).reshape(np.shape(values[name]))}, pdata)[0]
            assert grad.ravel()[idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-5), (name, idx)


def test_household_op_value_and_gradient_match_the_kernel():
    pdata, params, classes = _study()
    theta_h = params["theta"][classes]
    t = pytensor.shared(params["t"])
    theta = pytensor.shared(theta_h)
    value = household_choice_loglik_op(t, theta, params["display"], params["mailer"],
                                       product.household_kernel_inputs(pdata))
    f = pytensor.function([], [value, pytensor.grad(value, theta)])
    got, d_theta = f()
    want, _, want_theta, _, _ = _household({**params, "theta": theta_h}, pdata)
    assert float(got) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(d_theta, want_theta, rtol=1e-10)
