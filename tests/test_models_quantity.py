"""The quantity stage: exact NB aggregation, forward sampler, recovery, input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_points import potential_sum, random_point
from scipy.stats import nbinom

from bayes_retail.models import quantity
from bayes_retail.models.sampling import SamplerConfig, sample_posterior


def _lines(seed=0, n_h=40, n_c=4, per_cat=5, n_lines=600, kappa=None, alpha=1.5, basket_sd=0.4):
    rng = np.random.default_rng(seed)
    n_j = n_c * per_cat
    product_category = np.repeat(np.arange(n_c), per_cat)
    l = rng.normal(-1.2, 0.5, n_j)
    kappa = rng.normal(1.0, 0.3, n_c) if kappa is None else np.asarray(kappa, dtype=float)
    basket = rng.normal(0, basket_sd, n_h)
    h = rng.integers(0, n_h, n_lines)
    j = rng.integers(0, n_j, n_lines)
    depth = np.where(rng.random(n_lines) < 0.5, 0.0, rng.choice([0.1, 0.2, 0.3, 0.5], n_lines))
    log_mu = l[j] + kappa[product_category[j]] * depth + basket[h]
    q = quantity.simulate(log_mu, alpha, rng)
    lines = pd.DataFrame({"household": h, "product": j, "category": product_category[j], "depth": depth, "quantity": q})
    return lines, {"l": l, "kappa": kappa, "basket": basket, "alpha": alpha, "product_category": product_category}


def test_aggregated_likelihood_equals_the_row_level_negative_binomial():
    lines, _ = _lines()
    qd = quantity.quantity_data_from_lines(lines)
    assert qd.n_lines == len(lines) and qd.pattern_lines.sum() == len(lines)
    model = quantity.build_model(qd)
    point = random_point(model, np.random.default_rng(1), 0.5)
    potential = potential_sum(model, point)
    tau = np.exp(point["tau_product_log__"])
    l = point["m"][qd.product_category] + tau * point["z_product"]
    kappa = point["mu_kappa"] + np.exp(point["sigma_kappa_log__"]) * point["z_kappa"]
    alpha = np.exp(point["log_alpha"])
    mu = np.exp(l[lines["product"]] + kappa[lines["category"]] * lines["depth"] + point["basket"][lines["household"]])
    rows = nbinom.logpmf(lines["quantity"] - 1, alpha, alpha / (alpha + mu))
    assert potential + quantity.data_constant(qd) == pytest.approx(rows.sum(), rel=1e-10)


def test_patterns_are_the_distinct_household_product_depth_triples():
    lines = pd.DataFrame(
        {"household": [0, 0, 0, 1], "product": [2, 2, 2, 0], "category": [1, 1, 1, 0],
         "depth": [0.0, 0.0, 0.25, 0.0], "quantity": [1, 3, 2, 1]}
    )
    qd = quantity.quantity_data_from_lines(lines)
    assert qd.pattern_lines.tolist() == [2.0, 1.0, 1.0]
    assert qd.pattern_extra.tolist() == [2.0, 1.0, 0.0]
    assert qd.pattern_household.tolist() == [0, 0, 1] and qd.pattern_depth.tolist() == [0.0, 0.25, 0.0]
    assert dict(zip(qd.extra_values, qd.extra_counts)) == {0.0: 2.0, 1.0: 1.0, 2.0: 1.0}
    assert qd.product_category.tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quantity": [0, 1]}, "quantity must be >= 1"),
        ({"depth": [0.0, 1.0]}, "depth must be in"),
        ({"category": [0, 1]}, "appears in more than one category"),
    ],
)
def test_bad_lines_are_refused_with_the_reason(change, message):
    lines = pd.DataFrame({"household": [0, 1], "product": [0, 0], "category": [0, 0], "depth": [0.0, 0.1], "quantity": [1, 2]})
    with pytest.raises(ValueError, match=message):
        quantity.quantity_data_from_lines(lines.assign(**change))
    with pytest.raises(ValueError, match="lack column"):
        quantity.quantity_data_from_lines(lines.drop(columns="depth"))


def test_simulate_has_the_negative_binomial_moments():
    rng = np.random.default_rng(3)
    q = quantity.simulate(np.full(400_000, np.log(0.8)), 2.0, rng)
    extra = q - 1
    assert q.min() >= 1
    assert extra.mean() == pytest.approx(0.8, rel=0.01)
    assert extra.var() == pytest.approx(0.8 + 0.8**2 / 2.0, rel=0.02)


@pytest.fixture(scope="module")
def recovery():
    lines, truth = _lines(seed=7, n_h=200, n_c=6, per_cat=8, n_lines=6000, kappa=[1.5] * 6, alpha=1.2, basket_sd=0.5)
    qd = quantity.quantity_data_from_lines(lines)
    idata = sample_posterior(quantity.build_model(qd), config=SamplerConfig(chains=2, draws=300, tune=400), seed=3)
    return truth, idata


def test_recovery_of_stockpiling_dispersion_and_basket_scale(recovery):
    truth, idata = recovery
    post = idata.posterior
    checks = {
        "mu_kappa": (post["mu_kappa"].values, 1.5),
        "alpha": (np.exp(post["log_alpha"].values), truth["alpha"]),
        "sigma_basket": (post["sigma_basket"].values, 0.5),
    }
    for name, (draws, value) in checks.items():
        lo, hi = np.quantile(draws.ravel(), [0.005, 0.995])
        assert lo <= value <= hi, f"{name}: {value} outside [{lo:.3f}, {hi:.3f}]"
    basket = post["basket"].values.reshape(-1, truth["basket"].size).mean(axis=0)
    assert np.corrcoef(basket, truth["basket"])[0, 1] > 0.6


def test_prior_predictive_quantity_summaries_cover_simulated_data():
    lines, _ = _lines(seed=9)
    qd = quantity.quantity_data_from_lines(lines)
    checks = quantity.prior_predictive(qd, draws=60, seed=2)
    assert list(checks.columns) == ["share_of_ones", "mean_quantity"] and len(checks) == 60
    assert checks["share_of_ones"].between(0, 1).all() and (checks["mean_quantity"] >= 1).all()
    observed = quantity.summary_statistics(qd.extra_values, qd.extra_counts)
    for name, value in observed.items():
        assert 0.01 < (checks[name] < value).mean() < 0.99
    assert quantity.prior_predictive(qd, draws=60, seed=2).equals(checks)


def test_quantity_summaries_on_a_hand_computed_histogram():
    out = quantity.summary_statistics(np.array([0.0, 1.0, 3.0]), np.array([6.0, 3.0, 1.0]))
    assert out == {"share_of_ones": 0.6, "mean_quantity": pytest.approx(1.6)}
