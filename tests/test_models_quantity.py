"""The quantity stage: exact NB aggregation, forward sampler, recovery, input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytest
from model_points import evaluate, potential_sum, random_point
from scipy.stats import nbinom
from tiny_data import write_internal

from bayes_retail.data import load_data
from bayes_retail.models import quantity
from bayes_retail.models._kernels import negbin_pattern_loglik, negbin_pattern_loglik_op
from bayes_retail.models.sampling import SamplerConfig, sample_posterior


def _lines(seed=0, n_h=40, n_c=4, per_cat=5, n_lines=600, kappa=None, alpha=1.5, basket_sd=0.4):
    rng = np.random.default_rng(seed)
    n_j = n_c * per_cat
    item_category = np.repeat(np.arange(n_c), per_cat)
    l = rng.normal(-1.2, 0.5, n_j)
    kappa = rng.normal(1.0, 0.3, n_c) if kappa is None else np.asarray(kappa, dtype=float)
    basket = rng.normal(0, basket_sd, n_h)
    h = rng.integers(0, n_h, n_lines)
    j = rng.integers(0, n_j, n_lines)
    depth = np.where(rng.random(n_lines) < 0.5, 0.0, rng.choice([0.1, 0.2, 0.3, 0.5], n_lines))
    log_mu = l[j] + kappa[item_category[j]] * depth + basket[h]
    q = quantity.simulate(log_mu, alpha, rng)
    lines = pd.DataFrame({"household": h, "item": j, "category": item_category[j], "depth": depth, "quantity": q})
    return lines, {"l": l, "kappa": kappa, "basket": basket, "alpha": alpha, "item_category": item_category}


def test_aggregated_likelihood_equals_the_row_level_negative_binomial():
    lines, _ = _lines()
    qd = quantity.quantity_data_from_lines(lines)
    assert qd.n_lines == len(lines) and qd.pattern_lines.sum() == len(lines)
    config = quantity.QuantityConfig(centred_min_lines=int(np.median(qd.item_lines)), kappa_centred_min_lines=1)
    model = quantity.build_model(qd, config)
    point = random_point(model, np.random.default_rng(1), 0.5)
    potential = potential_sum(model, point)
    tau = np.exp(point["tau_item_log__"])
    centred = quantity.centred_items(qd, config.centred_min_lines)
    assert 0 < centred.sum() < centred.size  # both parametrisations are exercised
    kappa = evaluate(model, point, model["kappa"])
    # centred intercepts are sampled at the item's mean depth
    l = np.empty(centred.size)
    l[centred] = point["l_centred"] - (kappa[qd.item_category] * quantity.item_mean_depth(qd))[centred]
    l[~centred] = point["m"][qd.item_category[~centred]] + tau * point["z_l"]
    np.testing.assert_allclose(evaluate(model, point, model["l"]), l)
    alpha = np.exp(point["log_alpha"])
    mu = np.exp(l[lines["item"]] + kappa[lines["category"]] * lines["depth"] + point["basket"][lines["household"]])
    rows = nbinom.logpmf(lines["quantity"] - 1, alpha, alpha / (alpha + mu))
    assert potential + quantity.data_constant(qd) == pytest.approx(rows.sum(), rel=1e-10)


def test_patterns_are_the_distinct_household_item_depth_triples():
    lines = pd.DataFrame(
        {"household": [0, 0, 0, 1], "item": [2, 2, 2, 0], "category": [1, 1, 1, 0],
         "depth": [0.0, 0.0, 0.25, 0.0], "quantity": [1, 3, 2, 1]}
    )
    qd = quantity.quantity_data_from_lines(lines)
    assert qd.pattern_lines.tolist() == [2.0, 1.0, 1.0]
    assert qd.pattern_extra.tolist() == [2.0, 1.0, 0.0]
    assert qd.pattern_household.tolist() == [0, 0, 1] and qd.pattern_depth.tolist() == [0.0, 0.25, 0.0]
    assert dict(zip(qd.extra_values, qd.extra_counts)) == {0.0: 2.0, 1.0: 1.0, 2.0: 1.0}
    assert qd.item_category.tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quantity": [0, 1]}, "quantity must be >= 1"),
        ({"depth": [0.0, 1.0]}, "depth must be in"),
        ({"category": [0, 1]}, "appears in more than one category"),
    ],
)
def test_bad_lines_are_refused_with_the_reason(change, message):
    lines = pd.DataFrame({"household": [0, 1], "item": [0, 0], "category": [0, 0], "depth": [0.0, 0.1], "quantity": [1, 2]})
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


def _kernel_inputs(seed=4, n_h=6, n_j=5, n_c=2, n_p=40):
    rng = np.random.default_rng(seed)
    item_category = np.array([0, 0, 1, 1, 1])[:n_j]
    args = dict(
        l=rng.normal(-1, 1, n_j), kappa=rng.normal(1, 0.5, n_c), basket=rng.normal(0, 0.5, n_h), log_alpha=rng.normal(0.3, 0.5, n_c),
        item=rng.integers(0, n_j, n_p), item_category=item_category, household=rng.integers(0, n_h, n_p),
        depth=rng.choice([0.0, 0.2, 0.4], n_p), lines=rng.integers(1, 4, n_p).astype(float),
    )
    args["extra"] = rng.integers(0, 3, n_p) * args["lines"]
    return args


def _pattern_loglik(args):
    c = args["item_category"][args["item"]]
    eta = args["l"][args["item"]] + args["kappa"][c] * args["depth"] + args["basket"][args["household"]]
    a, la = np.exp(args["log_alpha"][c]), args["log_alpha"][c]
    return float(np.sum(args["lines"] * a * la + args["extra"] * eta - (args["lines"] * a + args["extra"]) * np.logaddexp(la, eta)))


def test_negbin_kernel_value_and_gradient_match_the_formula_and_finite_differences():
    args = _kernel_inputs()
    total, d_l, d_kappa, d_basket, d_log_alpha = negbin_pattern_loglik(*args.values())
    assert total == pytest.approx(_pattern_loglik(args), rel=1e-12)
    params = ["l", "kappa", "basket", "log_alpha"]
    for name, grad in zip(params, (d_l, d_kappa, d_basket, d_log_alpha)):
        numeric = np.zeros_like(args[name])
        for i in range(numeric.size):
            up, down = ({**args, name: args[name] + step * (np.arange(numeric.size) == i)} for step in (1e-6, -1e-6))
            numeric[i] = (_pattern_loglik(up) - _pattern_loglik(down)) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_negbin_kernel_is_finite_for_extreme_means():
    args = _kernel_inputs(seed=5)
    args["l"] = np.where(np.arange(args["l"].size) % 2 == 0, 700.0, -700.0)
    total, *grads = negbin_pattern_loglik(*args.values())
    assert np.isfinite(total) and all(np.all(np.isfinite(g)) for g in grads)
    assert total == pytest.approx(_pattern_loglik(args), rel=1e-12)


def test_negbin_op_gradient_matches_finite_differences():
    args = _kernel_inputs(seed=6)
    data = [args[k] for k in ("item", "item_category", "household", "depth", "lines", "extra")]
    pytensor.gradient.verify_grad(
        lambda l, kappa, basket, la: negbin_pattern_loglik_op(l, kappa, basket, la, *data),
        [args["l"], args["kappa"], args["basket"], args["log_alpha"]],
        rng=np.random.default_rng(0),
    )


def test_build_quantity_data_maps_lines_to_choice_set_items(tmp_path):
    data = load_data(write_internal(tmp_path / "src"), cache_dir=tmp_path / "cache")
    qd, items, households = quantity.build_quantity_data(data)
    ch = data.choices
    assert qd.n_lines == len(ch) and qd.pattern_lines.sum() == len(ch)
    assert list(items.columns) == ["category_id", "item", "product_id"]
    assert qd.items.size == len(items) and qd.item_category.size == len(items)
    # each pattern's item is the line's (category, item) pair; the "other" item has no product id
    ids = items.iloc[qd.pattern_item]
    assert set(zip(ids["category_id"], ids["item"])) == set(zip(ch["category_id"], ch["item"]))
    assert items["product_id"].isna().sum() == data.choice_sets.loc[data.choice_sets["is_other"], "category_id"].nunique()
    assert qd.extra_counts.sum() == len(ch) and (qd.extra_values * qd.extra_counts).sum() == (ch["units"] - 1).sum()
    assert list(households) == sorted(ch["household_id"].unique())
    one, _, hh = quantity.build_quantity_data(data, households=households[:1])
    assert list(hh) == [households[0]] and one.n_lines == int((ch["household_id"] == households[0]).sum())
    assert one.items.size == qd.items.size
    with pytest.raises(ValueError, match="no purchase lines"):
        quantity.build_quantity_data(data, households=[-1])


def test_per_category_dispersion_likelihood_equals_the_row_level_negative_binomial():
    lines, _ = _lines(seed=2)
    qd = quantity.quantity_data_from_lines(lines)
    # the per-category histogram adds up to the global one
    assert qd.value_count.sum() == qd.n_lines
    for value, count in zip(qd.extra_values, qd.extra_counts):
        assert qd.value_count[qd.value_extra == value].sum() == count
    config = quantity.QuantityConfig(dispersion="category", kappa_centred_min_lines=160)
    model = quantity.build_model(qd, config)
    assert {"mu_log_alpha", "sigma_log_alpha"} <= set(model.named_vars) and "log_alpha" in model.named_vars
    point = random_point(model, np.random.default_rng(3), 0.5)
    alpha = evaluate(model, point, model["alpha"])
    assert alpha.shape == (qd.categories.size,) and np.ptp(alpha) > 0
    l, kappa = evaluate(model, point, model["l"]), evaluate(model, point, model["kappa"])
    c = lines["category"].to_numpy()
    mu = np.exp(l[lines["item"]] + kappa[c] * lines["depth"] + point["basket"][lines["household"]])
    rows = nbinom.logpmf(lines["quantity"] - 1, alpha[c], alpha[c] / (alpha[c] + mu))
    assert potential_sum(model, point) + quantity.data_constant(qd) == pytest.approx(rows.sum(), rel=1e-10)


def test_per_category_dispersion_reaches_the_forward_sampler():
    lines, _ = _lines(seed=3)
    qd = quantity.quantity_data_from_lines(lines)
    alpha = np.linspace(0.5, 3.0, qd.categories.size)
    per_pattern = quantity.pattern_dispersion(alpha, qd)
    np.testing.assert_array_equal(per_pattern, alpha[qd.item_category[qd.pattern_item]])
    assert (quantity.pattern_dispersion(1.3, qd) == 1.3).all()
    with pytest.raises(ValueError, match="dispersion must be one of"):
        quantity.QuantityConfig(dispersion="item")
