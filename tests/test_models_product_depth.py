"""The product stage's per-category depth response: likelihood, gradient, share responses and recovery."""

from __future__ import annotations

import numpy as np
import pytest
from model_points import evaluate, potential_sum, random_point

from bayes_retail.models import product

DEPTH = np.array([0.9, -0.9, 0.9, -0.9])  # the categories' deviations from the classes' discount coefficient


def _study(seed=0, depth=DEPTH, n_households=40, **kwargs):
    rng = np.random.default_rng(seed)
    design = product.synthetic_design(rng, n_households=n_households, n_categories=depth.size, **kwargs)
    # a discount raises utility (the discount coefficient of log(1 - depth) is negative, as fitted on real data)
    params = product.draw_parameters(design, rng, n_classes=4, mu=(-2.0, -2.0, 0.0), log_extra_rate=0.3, depth=depth)
    classes = rng.integers(0, 4, design.households.size)
    return product.simulate_occasions(params, design, classes, rng), params


def test_the_default_fits_no_depth_response_and_the_option_adds_a_pooled_one():
    assert product.ProductConfig().category_depth is False
    pdata, _ = _study(n_households=8, items_per_category=4, n_weeks=6, burn_in_weeks=1)
    plain = product.build_model(pdata, product.ProductConfig(n_classes=4, burn_in_weeks=1))
    assert "depth" not in plain.named_vars and "tau_depth" not in plain.named_vars
    model = product.build_model(pdata, product.ProductConfig(n_classes=4, burn_in_weeks=1, category_depth=True))
    assert {"tau_depth", "depth_raw"} <= {v.name for v in model.free_RVs}
    assert model.named_vars_to_dims["depth"] == ("category",)


def test_potentials_with_depth_responses_equal_the_numpy_likelihood():
    pdata, _ = _study(seed=1, n_households=10, items_per_category=5, n_weeks=6, burn_in_weeks=1)
    model = product.build_model(pdata, product.ProductConfig(n_classes=4, burn_in_weeks=1, category_depth=True))
    point = random_point(model, np.random.default_rng(2), 0.4)
    names = ("theta", "display", "mailer", "depth", "log_extra_rate")
    params = {name: evaluate(model, point, model[name]) for name in names}
    assert np.all(params["depth"] != 0.0)
    np.testing.assert_allclose(params["depth"], evaluate(model, point, model["tau_depth"])
                               * evaluate(model, point, model["depth_raw"]), rtol=1e-12)
    t = np.zeros(pdata.item_category.size)
    t[product.free_items(pdata)] = evaluate(model, point, model["t_free"])
    params["t"] = t
    assert potential_sum(model, point) == pytest.approx(product.total_loglik(params, pdata), rel=1e-10)
    # and the readable reference, occasion by occasion and order by order, sees the same depth responses
    assert product.total_loglik(params, pdata) == pytest.approx(product.brute_force_loglik(params, pdata), rel=1e-8)
    without = {k: v for k, v in params.items() if k != "depth"}
    assert product.total_loglik(without, pdata) != pytest.approx(product.total_loglik(params, pdata), rel=1e-6)


def test_a_category_with_a_larger_depth_response_gains_more_share_from_a_discount():
    pdata, params = _study(seed=2, n_households=10, items_per_category=6, n_weeks=6)
    real = np.ones(pdata.item_category.size, dtype=bool)
    real[pdata.reference_item] = False
    flat = {k: v for k, v in params.items() if k != "depth"}
    lift = product.SHARE_RESPONSES.index("discount_lift")
    base = product.share_responses(flat, pdata, real, depth=0.25)[:, lift]
    got = product.share_responses(params, pdata, real, depth=0.25)[:, lift]
    # log(1 - depth) < 0: the more negative a category's coefficient, the more a discount lifts its share
    assert np.all(got[DEPTH < 0] > base[DEPTH < 0]) and np.all(got[DEPTH > 0] < base[DEPTH > 0])
    # display and mailer lifts do not move
    others = [product.SHARE_RESPONSES.index(m) for m in ("display_lift", "mailer_lift")]
    np.testing.assert_allclose(product.share_responses(params, pdata, real)[:, others],
                               product.share_responses(flat, pdata, real)[:, others], rtol=1e-12)


@pytest.mark.slow  # ~2 min: 250 households, 2 x (300 + 250)
def test_depth_responses_are_recovered_and_move_with_the_truth():
    from bayes_retail.models.sampling import SamplerConfig, sample_posterior

    pdata, truth = _study(seed=4, n_households=250, items_per_category=6, n_weeks=20, occasion_rate=0.6,
                          burn_in_weeks=2)
    config = product.ProductConfig(n_classes=4, burn_in_weeks=2, category_depth=True)
    idata = sample_posterior(product.build_model(pdata, config), config=SamplerConfig(chains=2, draws=250, tune=300),
                             seed=1)
    depth = idata.posterior["depth"].values.reshape(-1, DEPTH.size)
    lo, hi = np.quantile(depth, [0.05, 0.95], axis=0)
    assert np.all((lo <= truth["depth"]) & (truth["depth"] <= hi)), (lo, hi)
    # the estimates move with the truth: each category with +0.9 above each with -0.9, at 90%
    for up in np.flatnonzero(DEPTH > 0):
        for down in np.flatnonzero(DEPTH < 0):
            assert np.quantile(depth[:, up] - depth[:, down], 0.05) > 0, (up, down)
    mu = idata.posterior["mu"].sel(core="discount").values.ravel()
    assert np.quantile(mu, 0.05) <= -2.0 <= np.quantile(mu, 0.95)  # the class mean is not pulled by the deviations
