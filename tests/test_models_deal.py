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


def _study(deal_sd: float, seed: int, n_households: int = 240, week_sd: float = 0.0):
    """Choices of households whose discount coefficient is their class's plus N(0, deal_sd) (continuous), and in
    each household-week plus N(0, week_sd) more (continuous)."""
    rng = np.random.default_rng(seed)
    design = product.synthetic_design(rng, n_households=n_households, n_categories=3, items_per_category=8,
                                      n_weeks=30, occasion_rate=0.6, burn_in_weeks=2)
    params = product.draw_parameters(design, rng, n_classes=2, log_extra_rate=-1.0, mu=(-2.0, -2.0, 0.5),
                                     sigma=(0.3, 0.0, 0.2, 0.5, 0.5))
    classes = rng.integers(0, 2, n_households)
    household_theta = params["theta"][classes].copy()
    household_theta[:, deal.DISCOUNT_COLUMN] += deal_sd * rng.standard_normal(n_households)
    weeks = week_sd * rng.standard_normal((n_households, design.price.shape[1])) if week_sd else None
    pdata = product.simulate_occasions({**params, "theta": household_theta}, design, np.arange(n_households), rng,
                                       week_discount=weeks)
    return params, pdata


def test_sd_zero_is_the_classes_alone():
    params, pdata = _study(0.0, seed=3, n_households=40)
    inputs = product.kernel_inputs(pdata)
    per_class = household_class_loglik(params["t"], params["theta"], *product.promo_coefficients(params), *inputs)
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


def test_household_week_inputs_relabel_the_occasions_by_household_and_week():
    _, pdata = _study(0.0, seed=5, n_households=12)
    inputs = product.kernel_inputs(pdata)
    relabelled, week_household = deal.household_week_inputs(inputs)
    household, week = inputs[7], inputs[9]
    label = relabelled[7]
    # one label per distinct (household, week), numbered household-major, and each label's household
    pairs = sorted(set(zip(household.tolist(), week.tolist())))
    assert label.max() + 1 == len(pairs) == week_household.size
    np.testing.assert_array_equal([pairs.index(p) for p in zip(household.tolist(), week.tolist())], label)
    np.testing.assert_array_equal(week_household, [h for h, _ in pairs])
    for position, (a, b) in enumerate(zip(inputs, relabelled)):
        if position != 7:
            assert a is b


def test_week_marginal_matches_a_sum_over_the_week_points_written_out():
    params, pdata = _study(0.5, seed=6, n_households=30, week_sd=1.0)
    inputs = product.kernel_inputs(pdata)
    theta = deal.expand_classes(params["theta"], 0.4, deal.grid_locations(3))
    args = (params["t"], theta, *product.promo_coefficients(params))
    np.testing.assert_array_equal(deal.household_logliks(*args, inputs, week_sd=0.0, week_points=3),
                                  household_class_loglik(*args, *inputs))
    got = deal.household_logliks(*args, inputs, week_sd=0.7, week_points=3)
    relabelled, week_household = deal.household_week_inputs(inputs)
    per_point = []
    for eta in deal.grid_locations(3):  # each week point's classes on their own
        shifted = theta.copy()
        shifted[:, deal.DISCOUNT_COLUMN] += 0.7 * eta
        per_point.append(household_class_loglik(params["t"], shifted, *product.promo_coefficients(params), *relabelled))
    per_week = logsumexp(np.stack(per_point), axis=0) - np.log(3)
    want = np.stack([per_week[week_household == h].sum(axis=0) for h in range(got.shape[0])])
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert got.shape == (30, theta.shape[0])


def test_classes_split_over_threads_give_the_same_log_likelihoods_bit_for_bit():
    params, pdata = _study(0.5, seed=6, n_households=30, week_sd=1.0)
    inputs = product.kernel_inputs(pdata)
    theta = deal.expand_classes(params["theta"], 0.4, deal.grid_locations(3))  # 6 effective classes
    args = (params["t"], theta, *product.promo_coefficients(params))
    for week_sd in (0.0, 0.7):
        one = deal.household_logliks(*args, inputs, week_sd=week_sd, week_points=3)
        for threads in (2, 4, 50):  # more threads than classes: one class each
            np.testing.assert_array_equal(
                deal.household_logliks(*args, inputs, week_sd=week_sd, week_points=3, threads=threads), one)


def test_class_chunks_bound_the_utilities_of_each_call_and_keep_every_class_in_order():
    per_class = 8 * 10 * 100  # bytes of one class's (W, G) utilities
    chunks = deal.class_chunks(23, 10, 100, 2, chunk_bytes=5 * per_class)
    assert np.array_equal(np.concatenate(chunks), np.arange(23))
    assert max(c.size for c in chunks) <= 5 and len(chunks) == 5
    assert len(deal.class_chunks(23, 10, 100, 8, chunk_bytes=10**9)) == 8  # one call per thread at least
    assert len(deal.class_chunks(3, 10, 100, 1, chunk_bytes=1)) == 3  # a class too big alone is still one call


def test_classes_in_small_chunks_give_the_same_log_likelihoods_bit_for_bit(monkeypatch):
    params, pdata = _study(0.5, seed=6, n_households=30, week_sd=1.0)
    inputs = product.kernel_inputs(pdata)
    theta = deal.expand_classes(params["theta"], 0.4, deal.grid_locations(3))
    args = (params["t"], theta, *product.promo_coefficients(params))
    whole = deal.household_logliks(*args, inputs, week_sd=0.7, week_points=3)
    n_weeks, n_items = pdata.price.shape[1], pdata.price.shape[0]
    monkeypatch.setattr(deal, "CLASS_CHUNK_BYTES", 8 * n_weeks * n_items * 2)  # two classes per call
    assert len(deal.class_chunks(theta.shape[0] * 3, n_weeks, n_items, 1)) == theta.shape[0] * 3 // 2
    for threads in (1, 2):
        np.testing.assert_array_equal(
            deal.household_logliks(*args, inputs, week_sd=0.7, week_points=3, threads=threads), whole)


@pytest.mark.parametrize("truth", [1.0, 2.0])
def test_plug_in_week_sd_recovers_a_household_week_spread(truth):
    params, pdata = _study(1.0, seed=11, week_sd=truth)
    deal_sd, week_sd, gain = deal.estimate_sds(params, product.kernel_inputs(pdata), n_points=7, week_points=3)
    assert abs(week_sd - truth) < 0.25 * truth
    assert abs(deal_sd - 1.0) < 0.35
    assert gain > 20.0


def test_without_a_week_spread_the_week_sd_stays_small():
    params, pdata = _study(1.0, seed=11)
    inputs = product.kernel_inputs(pdata)
    deal_sd, week_sd, gain = deal.estimate_sds(params, inputs, n_points=7, week_points=3)
    assert week_sd < 0.6
    _, household_gain = deal.estimate_sd(params, inputs, n_points=7)
    assert gain - household_gain < 3.0  # the week deviation adds next to nothing


def test_config_checks_the_points():
    assert product.ProductConfig(deal_points=7).deal_points == 7
    for bad in (1, -1):
        with pytest.raises(ValueError, match="deal_points"):
            product.ProductConfig(deal_points=bad)
    with pytest.raises(ValueError, match="deal_points"):
        product.ProductConfig(deal_points=3, coefficients="household")
    assert product.ProductConfig(deal_points=7, deal_week_points=3).deal_week_points == 3
    for bad in ({"deal_points": 7, "deal_week_points": 1}, {"deal_points": 0, "deal_week_points": 3}):
        with pytest.raises(ValueError, match="deal_week_points"):
            product.ProductConfig(**bad)


def test_a_fitted_trace_carries_the_sd_and_every_reader_sees_the_crossed_classes(tiny_fitted, tmp_path):
    from conftest import refit_tiny_product

    from bayes_retail.data import load_data
    from bayes_retail.models.artifacts import load_posterior
    from bayes_retail.simulate.population import Posteriors, stage_draw
    from bayes_retail.simulate.world import catalogue_from_data

    tmp, src = tiny_fitted
    models = refit_tiny_product(tiny_fitted, tmp_path, "deal_points = 3\ndeal_week_points = 2")
    posterior = load_posterior(models, "product").posterior
    sd, week_sd = posterior[deal.VARIABLE], posterior[deal.WEEK_VARIABLE]
    assert sd.dims == week_sd.dims == ("chain", "draw")
    assert int(sd.attrs["points"]) == 3 and int(week_sd.attrs["points"]) == 2
    assert (sd.values >= 0).all() and (week_sd.values >= 0).all()
    k = posterior.sizes["class"]
    membership = pd.read_csv(models / "product" / "class_membership.csv")
    assert membership.shape[1] == 1 + 3 * k
    np.testing.assert_allclose(membership.drop(columns="household_id").sum(axis=1), 1.0, rtol=1e-6)
    hyper = pd.read_csv(models / "product" / "hyperpriors.csv")
    rows = hyper[hyper["variable"].isin([deal.VARIABLE, deal.WEEK_VARIABLE])]
    assert len(rows) == 2 and rows["r_hat"].isna().all()  # plug-ins: no sampler diagnostics

    data = load_data(src, cache_dir=tmp / "cache")
    posteriors = Posteriors.load(models, data_hash=data.data_hash)
    draw = stage_draw(posteriors, catalogue_from_data(data), 0)
    theta = posterior["theta"].values.reshape(-1, k, posterior.sizes["coefficient"])[0]
    want = deal.expand_classes(theta, float(sd.values.reshape(-1)[0]), deal.grid_locations(3))
    np.testing.assert_allclose(draw.class_coefficients, want, rtol=1e-6)
    assert draw.deal_week_points == 2
    assert draw.deal_week_sd == pytest.approx(float(week_sd.values.reshape(-1)[0]))


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
    summary = add_deal_proneness(data, out=models, config=load_config("default"), n_points=5, week_points=0)
    after = load_posterior(models, "product")
    assert after.posterior.attrs["fit_id"] == before.posterior.attrs["fit_id"]
    np.testing.assert_array_equal(after.posterior["theta"].values, before.posterior["theta"].values)
    assert int(after.posterior[deal.VARIABLE].attrs["points"]) == 5
    assert json.loads(after.posterior.attrs["stage_config"])["deal_points"] == 5
    assert summary["deal_points"] == 5 and summary["deal_sd_median"] >= 0
    membership = pd.read_csv(models / "product" / "class_membership.csv")
    assert membership.shape[1] == 1 + 5 * after.posterior.sizes["class"]
    assert deal.WEEK_VARIABLE not in after.posterior

    summary = add_deal_proneness(data, out=models, config=load_config("default"), n_points=3, week_points=2)
    again = load_posterior(models, "product").posterior
    assert int(again[deal.WEEK_VARIABLE].attrs["points"]) == 2 and summary["deal_week_sd_median"] >= 0
    assert json.loads(again.attrs["stage_config"])["deal_week_points"] == 2
    summary = add_deal_proneness(data, out=models, config=load_config("default"), n_points=3, week_points=0)
    assert deal.WEEK_VARIABLE not in load_posterior(models, "product").posterior  # a rerun drops it


def test_adding_deal_proneness_without_points_is_a_clear_error(tiny_fitted, tmp_path):
    from bayes_retail.config import ConfigError, load_config
    from bayes_retail.data import load_data
    from bayes_retail.models.stage import add_deal_proneness

    tmp, src = tiny_fitted
    config = load_config("default")
    config["sections"]["product"] = {**config["sections"]["product"], "deal_points": 0}
    with pytest.raises(ConfigError, match="deal_points"):
        add_deal_proneness(load_data(src, cache_dir=tmp / "cache"), out=tmp / "models", config=config)


def test_the_plug_in_does_not_depend_on_how_many_threads_estimate_it(tiny_fitted, tmp_path, monkeypatch):
    import os

    from bayes_retail.config import load_config
    from bayes_retail.data import load_data
    from bayes_retail.models.artifacts import load_posterior
    from bayes_retail.models.stage import add_deal_proneness

    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    values = []
    for cores in (1, 3):
        models = tmp_path / f"models-{cores}"
        shutil.copytree(tmp / "models", models)
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        add_deal_proneness(data, out=models, config=load_config("default"), n_points=3, week_points=2)
        posterior = load_posterior(models, "product").posterior
        values.append([posterior[name].values for name in deal.PLUG_IN_VARIABLES])
    for one, three in zip(*values):
        np.testing.assert_array_equal(one, three)
