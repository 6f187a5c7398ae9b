"""The product stage's household-coefficient kernel (the `full` configuration's likelihood)."""

from __future__ import annotations

import numpy as np
import pytensor
import pytest
from model_points import evaluate, potential_sum, random_point

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
    mu = (-2.0, 2.0, 0.5, 0.8) if state == "both" else (-2.0, 2.0, 0.0)
    params = product.draw_parameters(design, rng, n_classes=4, log_extra_rate=1.3, mu=mu)
    classes = rng.integers(0, 4, 30)
    pdata = product.simulate_occasions(params, design, classes, rng, state=state)
    size = pdata.set_size
    assert (size == 1).any() and (size >= 9).any() and pdata.last_item.size > 0
    return pdata, params, classes


def _household(values, pdata):
    return household_choice_loglik(values["t"], values["theta"], *product.promo_coefficients(values),
                                   *product.household_kernel_inputs(pdata))


@pytest.mark.parametrize("state", product.STATE_MEMORIES)
def test_households_at_class_coefficients_score_as_that_class(state):
    pdata, params, classes = _study(state)
    per_class = household_class_loglik(params["t"], params["theta"], *product.promo_coefficients(params),
                                       *product.kernel_inputs(pdata))
    theta_h = params["theta"][classes]
    per_household, *_ = household_choice_pass(params["t"], theta_h, *product.promo_coefficients(params),
                                              *product.household_kernel_inputs(pdata))
    rows = np.arange(per_class.shape[0])
    np.testing.assert_allclose(per_household[rows], per_class[rows, classes[rows]], rtol=1e-10)
    assert np.all(per_household[per_class.shape[0]:] == 0.0)  # households without a scored occasion


@pytest.mark.parametrize("state", ["last", "both"])
def test_household_kernel_gradient_equals_finite_differences(state):
    pdata, params, classes = _study(state)
    rng = np.random.default_rng(3)
    theta_h = params["theta"][classes] + rng.normal(0, 0.2, (classes.size, params["theta"].shape[1]))
    values = {"t": params["t"], "theta": theta_h, "display": params["display"], "mailer": params["mailer"],
              "depth": rng.normal(0, 0.3, params["display"].size)}
    _, *grads = _household(values, pdata)
    for name, grad in zip(values, grads):
        flat = np.asarray(values[name], float).ravel()
        for idx in rng.choice(flat.size, min(flat.size, 15), replace=False):
            step = np.zeros_like(flat)
            step[idx] = 1e-6
            up = _household(values | {name: (flat + step).reshape(np.shape(values[name]))}, pdata)[0]
            down = _household(values | {name: (flat - step).reshape(np.shape(values[name]))}, pdata)[0]
            assert grad.ravel()[idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-5), (name, idx)
    if state == "both":  # the previous-occasion coefficient of the households that have scored occasions
        column = grads[1][:, 3]
        assert np.count_nonzero(column) > 0
        for h in np.flatnonzero(column)[:5]:
            step = np.zeros_like(theta_h)
            step[h, 3] = 1e-6
            up = _household(values | {"theta": theta_h + step}, pdata)[0]
            down = _household(values | {"theta": theta_h - step}, pdata)[0]
            assert column[h] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-5), h


def test_household_op_value_and_gradient_match_the_kernel():
    pdata, params, classes = _study()
    theta_h = params["theta"][classes]
    t = pytensor.shared(params["t"])
    theta = pytensor.shared(theta_h)
    value = household_choice_loglik_op(t, theta, *product.promo_coefficients(params),
                                       product.household_kernel_inputs(pdata))
    f = pytensor.function([], [value, pytensor.grad(value, theta)])
    got, d_theta = f()
    want, _, want_theta, *_ = _household({**params, "theta": theta_h}, pdata)
    assert float(got) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(d_theta, want_theta, rtol=1e-10)


MU = np.array([-2.0, 2.0, 0.5])
SD = np.array([0.8, 0.6, 0.4, 1.0, 0.7])
RHO_ATTRIBUTES = -0.6  # national brand x pack size weights: well identified (price sds are not, at this size)


@pytest.fixture(scope="module")
def household_fit():
    """Households with their own correlated coefficients; the `household` form fitted with nutpie."""
    from bayes_retail.models.sampling import SamplerConfig, sample_posterior

    rng = np.random.default_rng(8)
    n_h = 150
    design = product.synthetic_design(rng, n_households=n_h, n_categories=3, items_per_category=8, n_weeks=24,
                                      occasion_rate=0.7, burn_in_weeks=4)
    truth = product.draw_parameters(design, rng, n_classes=2, mu=tuple(MU))
    corr = np.eye(5)
    corr[3, 4] = corr[4, 3] = RHO_ATTRIBUTES
    cov = corr * np.outer(SD, SD)
    theta_h = np.concatenate([MU, np.zeros(2)]) + rng.multivariate_normal(np.zeros(5), cov, n_h)
    pdata = product.simulate_occasions({**truth, "theta": theta_h}, design, np.arange(n_h), rng)
    config = product.ProductConfig(burn_in_weeks=4, coefficients="household")
    idata = sample_posterior(product.build_model(pdata, config), config=SamplerConfig(chains=2, draws=300, tune=300),
                             seed=3)
    return theta_h, idata


@pytest.mark.slow
def test_household_coefficients_recover_means_sds_and_a_correlation(household_fit):
    theta_h, idata = household_fit
    post = idata.posterior
    lo, hi = np.quantile(post["mu"].values.reshape(-1, 3), [0.05, 0.95], axis=0)
    assert np.all((lo <= MU) & (MU <= hi)), (lo, hi)
    lo, hi = np.quantile(post["sigma"].values.reshape(-1, 5), [0.005, 0.995], axis=0)
    assert np.all((lo <= SD) & (SD <= hi)), (lo, hi)
    rho = post["correlation"].sel(coefficient="national_brand", coefficient_other="pack_size").values.ravel()
    lo, hi = np.quantile(rho, [0.05, 0.95])
    assert hi < 0 and lo < RHO_ATTRIBUTES < hi, (lo, hi)
    # each household's own attribute weights are found: posterior means track the truth
    means = post["theta_household"].mean(("chain", "draw")).values
    assert np.corrcoef(means[:, 3], theta_h[:, 3])[0, 1] > 0.5
    assert post["theta_household"].dims[2:] == ("household", "coefficient")


def test_household_form_needs_heterogeneity_and_a_known_name():
    with pytest.raises(ValueError, match="needs heterogeneity = true"):
        product.ProductConfig(coefficients="household", heterogeneity=False)
    with pytest.raises(ValueError, match="coefficients must be one of"):
        product.ProductConfig(coefficients="continuous")


def test_household_form_builds_with_named_dims_and_scores_the_kernels_likelihood():
    pdata, _, _ = _study()
    model = product.build_model(pdata, product.ProductConfig(burn_in_weeks=4, coefficients="household"))
    assert model.named_vars_to_dims["theta_household"] == ("household", "coefficient")
    assert model.named_vars_to_dims["correlation"] == ("coefficient", "coefficient_other")
    assert "theta" not in model.named_vars and "z_household" in model.named_vars
    point = random_point(model, np.random.default_rng(2), 0.3)
    theta_h = evaluate(model, point, model["theta_household"])
    t = evaluate(model, point, model["t_free"])
    full_t = np.zeros(pdata.item_category.size)
    full_t[product.free_items(pdata)] = t
    display, mailer = (evaluate(model, point, model[name]) for name in ("display", "mailer"))
    choice = _household({"t": full_t, "theta": theta_h, "display": display, "mailer": mailer}, pdata)[0]
    extra = product.extra_items_loglik(evaluate(model, point, model["log_extra_rate"]), pdata)
    assert potential_sum(model, point) == pytest.approx(choice + extra, rel=1e-10)
