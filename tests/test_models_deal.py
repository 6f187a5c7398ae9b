"""Deal proneness: the discount coefficient's household spread beyond the product classes (a plug-in sd)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

from bayes_retail.models import deal, product
from bayes_retail.models._choice_kernel import household_class_loglik


def test_grid_locations_are_standardised_symmetric_and_equal_weight():
    for n in (2, 3, 7):
        eta = deal.grid_locations(n)
        assert eta.size == n
        np.testing.assert_allclose(eta.mean(), 0.0, atol=1e-12)
        np.testing.assert_allclose(np.mean(eta**2), 1.0)
        np.testing.assert_allclose(eta, -eta[::-1])
    np.testing.assert_allclose(deal.grid_locations(2), [-1.0, 1.0])
    np.testing.assert_array_equal(deal.grid_locations(1), [0.0])
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            deal.grid_locations(bad)


def test_expanded_classes_by_hand():
    theta = np.array([[1.0, -1.0, 0.5], [2.0, 0.0, 0.1]])
    out = deal.expand_classes(theta, 0.5, np.array([-1.0, 1.0]))
    want = np.array([[1.0, -1.5, 0.5], [1.0, -0.5, 0.5], [2.0, -0.5, 0.1], [2.0, 0.5, 0.1]])
    np.testing.assert_allclose(out, want)
    np.testing.assert_allclose(deal.class_coefficients(theta, None, None), theta)
    np.testing.assert_allclose(deal.class_coefficients(theta, 0.5, 2), want)


def _study(deal_sd: float, seed: int, n_households: int = 240):
    """Choices of households whose discount coefficient is their class's plus N(0, deal_sd) (continuous)."""
    rng = np.random.default_rng(seed)
    design = product.synthetic_design(rng, n_households=n_households, n_categories=3, items_per_category=8,
                                      n_weeks=30, occasion_rate=0.6, burn_in_weeks=2)
    params = product.draw_parameters(design, rng, n_classes=2, log_extra_rate=-1.0, mu=(-2.0, -2.0, 0.5),
                                     sigma=(0.3, 0.0, 0.2, 0.5, 0.5))
    classes = rng.integers(0, 2, n_households)
    household_theta = params["theta"][classes].copy()
    household_theta[:, deal.DISCOUNT_COLUMN] += deal_sd * rng.standard_normal(n_households)
    pdata = product.simulate_occasions({**params, "theta": household_theta}, design, np.arange(n_households), rng)
    return params, pdata


def test_sd_zero_is_the_classes_alone():
    params, pdata = _study(0.0, seed=3, n_households=40)
    inputs = product.kernel_inputs(pdata)
    per_class = household_class_loglik(params["t"], params["theta"], params["display"], params["mailer"], *inputs)
    want = float((logsumexp(per_class, axis=1) - np.log(per_class.shape[1])).sum())
    for n in (1, 3, 5):
        assert deal.marginal_loglik(params, inputs, 0.0, deal.grid_locations(n)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("truth", [1.0, 2.0])
def test_plug_in_sd_recovers_a_household_spread_in_the_discount_coefficient(truth):
    params, pdata = _study(truth, seed=11)
    sd, gain = deal.estimate_sd(params, product.kernel_inputs(pdata), n_points=7)
    assert abs(sd - truth) < 0.35 * truth
    assert gain > 5.0  # the spread is supported: the log likelihood rises well above the classes alone


def test_without_a_spread_the_plug_in_sd_stays_near_zero():
    params, pdata = _study(0.0, seed=11)
    sd, gain = deal.estimate_sd(params, product.kernel_inputs(pdata), n_points=7)
    assert sd < 0.4
    assert gain < 3.0


def test_plug_in_sd_moves_with_the_truth():
    estimates = [deal.estimate_sd(*(lambda p, d: (p, product.kernel_inputs(d)))(*_study(truth, seed=13)))[0]
                 for truth in (0.5, 1.5, 2.5)]
    assert estimates[0] < estimates[1] < estimates[2]


def test_config_checks_the_points():
    assert product.ProductConfig(deal_points=7).deal_points == 7
    for bad in (1, -1):
        with pytest.raises(ValueError, match="deal_points"):
            product.ProductConfig(deal_points=bad)
    with pytest.raises(ValueError, match="deal_points"):
        product.ProductConfig(deal_points=3, coefficients="household")


def test_a_fitted_trace_carries_the_sd_and_every_reader_sees_the_crossed_classes(tiny_fitted, tmp_path):
    from conftest import refit_tiny_product

    from bayes_retail.data import load_data
    from bayes_retail.models.artifacts import load_posterior
    from bayes_retail.simulate.population import Posteriors, stage_draw
    from bayes_retail.simulate.world import catalogue_from_data

    tmp, src = tiny_fitted
    models = refit_tiny_product(tiny_fitted, tmp_path, "deal_points = 3")
    posterior = load_posterior(models, "product").posterior
    sd = posterior[deal.VARIABLE]
    assert sd.dims == ("chain", "draw") and int(sd.attrs["points"]) == 3
    assert (sd.values >= 0).all()
    k = posterior.sizes["class"]
    membership = pd.read_csv(models / "product" / "class_membership.csv")
    assert membership.shape[1] == 1 + 3 * k
    np.testing.assert_allclose(membership.drop(columns="household_id").sum(axis=1), 1.0, rtol=1e-6)
    hyper = pd.read_csv(models / "product" / "hyperpriors.csv")
    row = hyper[hyper["variable"] == deal.VARIABLE]
    assert len(row) == 1 and row["r_hat"].isna().all()  # a plug-in: no sampler diagnostics

    data = load_data(src, cache_dir=tmp / "cache")
    posteriors = Posteriors.load(models, data_hash=data.data_hash)
    draw = stage_draw(posteriors, catalogue_from_data(data), 0)
    theta = posterior["theta"].values.reshape(-1, k, posterior.sizes["coefficient"])[0]
    want = deal.expand_classes(theta, float(sd.values.reshape(-1)[0]), deal.grid_locations(3))
    np.testing.assert_allclose(draw.class_coefficients, want, rtol=1e-6)


def test_adding_deal_proneness_to_a_fit_keeps_its_draws_and_its_fit_id(tiny_fitted, tmp_path):
    from bayes_retail.config import load_config
    from bayes_retail.data import load_data
    from bayes_retail.models.artifacts import load_posterior
    from bayes_retail.models.stage import add_deal_proneness

    tmp, src = tiny_fitted
    models = tmp_path / "models"
    shutil.copytree(tmp / "models", models)
    before = load_posterior(models, "product")
    data = load_data(src, cache_dir=tmp / "cache")
    summary = add_deal_proneness(data, out=models, config=load_config("default"), n_points=5)
    after = load_posterior(models, "product")
    assert after.posterior.attrs["fit_id"] == before.posterior.attrs["fit_id"]
    np.testing.assert_array_equal(after.posterior["theta"].values, before.posterior["theta"].values)
    assert int(after.posterior[deal.VARIABLE].attrs["points"]) == 5
    assert json.loads(after.posterior.attrs["stage_config"])["deal_points"] == 5
    assert summary["deal_points"] == 5 and summary["deal_sd_median"] >= 0
    membership = pd.read_csv(models / "product" / "class_membership.csv")
    assert membership.shape[1] == 1 + 5 * after.posterior.sizes["class"]


def test_adding_deal_proneness_without_points_is_a_clear_error(tiny_fitted, tmp_path):
    from bayes_retail.config import ConfigError, load_config
    from bayes_retail.data import load_data
    from bayes_retail.models.stage import add_deal_proneness

    tmp, src = tiny_fitted
    config = load_config("default")
    config["sections"]["product"] = {**config["sections"]["product"], "deal_points": 0}
    with pytest.raises(ConfigError, match="deal_points"):
        add_deal_proneness(load_data(src, cache_dir=tmp / "cache"), out=tmp / "models", config=config)
