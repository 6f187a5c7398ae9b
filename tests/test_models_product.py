"""The product stage: set probabilities, aggregation, sampler, state dependence and recovery."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from model_points import evaluate, potential_sum, random_point

from bayes_retail.models import product
from bayes_retail.models._choice_kernel import choice_loglik


def _exact_set_probability(p: np.ndarray) -> float:
    total = 0.0
    for order in itertools.permutations(range(p.size)):
        prob, rest = 1.0, 1.0
        for j in order:
            prob *= p[j] / rest
            rest -= p[j]
        total += prob
    return total


def _mu(state):
    """Core coefficients of the studies: under the "both" memory a previous-occasion pull on top of the state's."""
    return (-2.0, 2.0, 0.5, 0.8) if state == "both" else (-2.0, 2.0, 0.0)


def _study(seed=0, n_classes=4, state="last", **kwargs):
    rng = np.random.default_rng(seed)
    design = product.synthetic_design(rng, **kwargs)
    params = product.draw_parameters(design, rng, n_classes=n_classes, log_extra_rate=0.3, mu=_mu(state))
    classes = rng.integers(0, n_classes, design.households.size)
    return product.simulate_occasions(params, design, classes, rng, state=state), params


def test_set_probability_of_two_items_by_hand():
    # p = (0.5, 0.25): 0.5 * 0.25 / 0.5 + 0.25 * 0.5 / 0.75 = 0.41667
    logp = np.log(np.array([0.5, 0.25]))[None, :, None]
    assert np.exp(product.set_log_probability(logp, 2))[0, 0] == pytest.approx(0.25 + 0.125 / 0.75, rel=1e-12)


def _random_sets(rng, m, n_rows=50):
    rows = []
    for _ in range(n_rows):
        w = np.exp(rng.normal(0, 1.5, 30))
        rows.append(w[rng.choice(30, m, replace=False)] / w.sum())
    return np.array(rows)


@pytest.mark.parametrize("m", [2, 3, 5, 7])
def test_subset_recursion_equals_the_sum_over_orders(m):
    p = _random_sets(np.random.default_rng(m), m, n_rows=50 if m < 7 else 5)
    got = np.exp(product.set_log_probability_exact(np.log(p)[:, :, None]))[:, 0]
    want = np.array([_exact_set_probability(r) for r in p])
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("m", [5, 8, 10])
def test_quadrature_agrees_with_the_exact_set_probability(m):
    logp = np.log(_random_sets(np.random.default_rng(m), m))[:, :, None]
    np.testing.assert_allclose(
        product.set_log_probability_quadrature(logp), product.set_log_probability_exact(logp), atol=1e-6
    )


def test_quadrature_stays_accurate_when_the_set_takes_most_of_the_mass():
    p = np.array([0.3, 0.25, 0.2, 0.15, 0.05])  # 95% of the mass in the set
    got = np.exp(product.set_log_probability_quadrature(np.log(p)[None, :, None]))[0, 0]
    assert got == pytest.approx(_exact_set_probability(p), rel=5e-4)


def _kernel_study(state="last"):
    """Occasions of 1-10 items (exact sets and quadrature), state, burn-in and whole-set occasions."""
    rng = np.random.default_rng(3)
    design = product.synthetic_design(rng, n_households=30, n_categories=3, items_per_category=10, occasion_rate=0.6)
    # half the item-weeks repeat the week before's covariates, as real shelf prices
    # do: the kernel copies their utilities instead of recomputing them
    repeat = np.random.default_rng(4).random(design.price.shape) < 0.5
    for w in range(1, design.price.shape[1]):
        for grid in (design.price, design.discount, design.display, design.mailer):
            grid[:, w] = np.where(repeat[:, w], grid[:, w - 1], grid[:, w])
    params = product.draw_parameters(design, rng, n_classes=4, log_extra_rate=1.3, mu=_mu(state))
    pdata = product.simulate_occasions(params, design, rng.integers(0, 4, 30), rng, state=state)
    size = pdata.set_size
    assert (size == 1).any() and (size == 9).any() and (size == 10).any() and pdata.last_item.size > 0
    # per-category depth responses (the choices above were simulated without them: any data will do for the kernel)
    return pdata, params | {"depth": np.array([0.4, -0.3, 0.2])}


def _kernel(params, pdata, **override):
    values = {key: params[key] for key in ("t", "theta", "display", "mailer", "depth") if key in params} | override
    return choice_loglik(values["t"], values["theta"], *product.promo_coefficients(values), *product.kernel_inputs(pdata))


@pytest.mark.parametrize("state", ["last", "both"])
def test_choice_kernel_equals_the_numpy_likelihood(state):
    pdata, params = _kernel_study(state)
    if state == "both":  # both state terms are at work: earlier items and the previous occasion's
        assert 0 < pdata.last_is_previous.mean() < 1 and np.all(params["theta"][:, 3] != 0)
    want = product.total_loglik(params, pdata) - product.extra_items_loglik(params["log_extra_rate"], pdata)
    assert _kernel(params, pdata)[0] == pytest.approx(want, rel=1e-12)


def test_choice_kernel_compiled_for_nutpie_equals_the_direct_call():
    # what nutpie runs: the Op inside a numba-compiled PyTensor graph, data as constants
    import pytensor
    import pytensor.tensor as pt

    from bayes_retail.models._choice_kernel import choice

    pdata, params = _kernel_study()
    inputs = [pt.dvector(), pt.dmatrix(), pt.dvector(), pt.dvector(), pt.dvector()]
    compiled = pytensor.function(inputs, choice(*inputs, *product.kernel_inputs(pdata)), mode="NUMBA")
    got = compiled(params["t"], params["theta"], *product.promo_coefficients(params))
    for value, want in zip(got, _kernel(params, pdata)):
        np.testing.assert_allclose(value, want, rtol=1e-12)


def test_class_membership_finds_each_households_class():
    # well-separated classes (price sd 2, attribute sds 2) and ~40 occasions per household
    rng = np.random.default_rng(5)
    design = product.synthetic_design(rng, n_households=40, n_categories=3, items_per_category=8, n_weeks=20)
    params = product.draw_parameters(design, rng, n_classes=4, sigma=(2.0, 0.3, 0.05, 2.0, 2.0))
    truth = rng.integers(0, 4, 40)
    pdata = product.simulate_occasions(params, design, truth, rng)
    membership = product.class_membership(params, pdata)
    assert membership.shape == (40, 4)
    np.testing.assert_allclose(membership.sum(axis=1), 1.0)
    assert (membership.argmax(axis=1) == truth).mean() >= 0.9
    # the same probabilities from the numpy reference likelihood
    v = product.class_utilities(params["t"], params["theta"], params["display"], params["mailer"], pdata)
    occasion_ll, order = product.occasion_class_loglik(product.occasion_log_probabilities(v, params["theta"], pdata), pdata)
    per = np.zeros((40, 4))
    np.add.at(per, pdata.occasion_household[order], occasion_ll)
    from scipy.special import softmax

    np.testing.assert_allclose(membership, softmax(per, axis=1), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("state", ["last", "both"])
def test_choice_kernel_gradient_equals_finite_differences(state):
    pdata, params = _kernel_study(state)
    _assert_kernel_gradient(params, pdata, np.random.default_rng(0), per_parameter=12)


def _assert_kernel_gradient(params, pdata, rng, *, per_parameter):
    """The kernel's gradient against central finite differences at ``per_parameter`` random coordinates of each."""
    params = {"depth": np.zeros_like(params["display"])} | params
    _, *grads = _kernel(params, pdata)
    for name, grad in zip(("t", "theta", "display", "mailer", "depth"), grads):
        flat = np.asarray(params[name], float).ravel()
        n = flat.size if name == "theta" else min(flat.size, per_parameter)  # every class coefficient
        for idx in rng.choice(flat.size, n, replace=False):
            step = np.zeros_like(flat)
            step[idx] = 1e-6
            up = _kernel(params, pdata, **{name: (flat + step).reshape(np.shape(params[name]))})[0]
            down = _kernel(params, pdata, **{name: (flat - step).reshape(np.shape(params[name]))})[0]
            assert grad.ravel()[idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-5), (name, idx)


@pytest.mark.parametrize("state", product.STATE_MEMORIES)
def test_aggregated_likelihood_equals_the_occasion_by_occasion_sum_over_orders(state):
    pdata, params = _study(n_households=12, n_categories=2, items_per_category=7, n_weeks=8, burn_in_weeks=2,
                           state=state)
    assert pdata.set_size.max() >= 4 and pdata.last_item.size > 0
    assert product.total_loglik(params, pdata) == pytest.approx(product.brute_force_loglik(params, pdata), rel=1e-8)


def test_pytensor_potentials_equal_the_numpy_likelihood():
    pdata, _ = _study(seed=1, n_households=10, n_categories=2, items_per_category=5, n_weeks=6, burn_in_weeks=1)
    model = product.build_model(pdata, product.ProductConfig(n_classes=4, burn_in_weeks=1))
    point = random_point(model, np.random.default_rng(2), 0.4)
    params = {name: evaluate(model, point, model[name]) for name in ("theta", "display", "mailer", "log_extra_rate")}
    t = np.zeros(pdata.item_category.size)
    t[product.free_items(pdata)] = evaluate(model, point, model["t_free"])
    params["t"] = t
    potential = potential_sum(model, point)
    assert potential == pytest.approx(product.total_loglik(params, pdata), rel=1e-10)


def test_class_locations_are_standardised_and_fixed():
    xi = product.class_locations(8, 6)
    np.testing.assert_allclose(xi.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(xi.std(axis=0), 1.0, atol=1e-12)
    np.testing.assert_array_equal(xi, product.class_locations(8, 6))


def test_gumbel_top_m_draws_sets_with_the_model_probability():
    # one category of 4 items, one household, many identical occasions without state
    rng = np.random.default_rng(3)
    n = 20_000
    design = product.ProductData(
        households=np.arange(n),
        categories=np.arange(1),
        weeks=np.arange(1),
        item_category=np.zeros(4, dtype=np.int64),
        price=np.zeros((4, 1)),
        discount=np.zeros((4, 1)),
        display=np.zeros((4, 1)),
        mailer=np.zeros((4, 1)),
        attributes=np.zeros((4, 0)),
        occasion_household=np.arange(n),
        occasion_category=np.zeros(n, dtype=np.int64),
        occasion_week=np.zeros(n, dtype=np.int64),
        occasion_scored=np.ones(n, dtype=bool),
        chosen_occasion=np.arange(n),
        chosen_item=np.zeros(n, dtype=np.int64),
        last_occasion=np.zeros(0, np.int64),
        last_item=np.zeros(0, np.int64),
    )
    t = np.array([1.0, 0.3, -0.5, 0.0])
    params = {
        "t": t,
        "theta": np.zeros((1, 3)),
        "display": np.zeros(1),
        "mailer": np.zeros(1),
        "log_extra_rate": np.array([np.log(0.5)]),
    }
    sim = product.simulate_occasions(params, design, np.zeros(n, dtype=np.int64), rng)
    sizes = sim.set_size
    # m - 1 ~ Poisson(0.5) capped at 4 items
    assert abs(sizes.mean() - 1 - 0.5) < 4 * np.sqrt(0.5 / n)
    p = np.exp(t) / np.exp(t).sum()
    pairs = pd.Series(sim.chosen_item).groupby(sim.chosen_occasion).apply(tuple)
    two = pairs[sizes == 2]
    for pair in [(0, 1), (2, 3)]:
        want = _exact_set_probability(p[list(pair)])
        prob_two = want / sum(_exact_set_probability(p[list(c)]) for c in itertools.combinations(range(4), 2))
        got = (two == pair).mean()
        assert abs(got - prob_two) < 4 * np.sqrt(prob_two * (1 - prob_two) / len(two))


def test_state_pairs_point_to_the_previous_occasion_in_the_category():
    # household 0: category 0 in weeks 1, 3 (items 2 then 0, 1); category 1 in week 2
    occ_h, occ_c, occ_w = np.array([0, 0, 0]), np.array([0, 1, 0]), np.array([1, 2, 3])
    chosen_occ, chosen_item = np.array([0, 1, 2, 2]), np.array([2, 7, 0, 1])
    occ, item = product.last_items_from_choices(occ_h, occ_c, occ_w, chosen_occ, chosen_item)
    np.testing.assert_array_equal(occ, [2])
    np.testing.assert_array_equal(item, [2])


def test_ever_state_pairs_hold_every_earlier_item_by_hand():
    # household 0, category 0: weeks 1..4 buy {2}, {0, 1}, {2}, {5}; category 1 in week 2 buys {7}
    occ_h, occ_c, occ_w = np.zeros(5, int), np.array([0, 1, 0, 0, 0]), np.array([1, 2, 2, 3, 4])
    chosen_occ, chosen_item = np.array([0, 1, 2, 2, 3, 4]), np.array([2, 7, 0, 1, 2, 5])
    occ, item = product.state_pairs(occ_h, occ_c, occ_w, chosen_occ, chosen_item, state="ever")
    np.testing.assert_array_equal(occ, [2, 3, 3, 3, 4, 4, 4])
    np.testing.assert_array_equal(item, [2, 0, 1, 2, 0, 1, 2])
    last = product.state_pairs(occ_h, occ_c, occ_w, chosen_occ, chosen_item, state="last")
    np.testing.assert_array_equal(last[1], [2, 0, 1, 2])
    with pytest.raises(ValueError, match="state"):
        product.state_pairs(occ_h, occ_c, occ_w, chosen_occ, chosen_item, state="always")


def test_previous_occasion_flags_of_the_ever_state_pairs_by_hand():
    # as above: occasion 2's state {2} came from occasion 0; occasion 3's {0, 1, 2}: 0 and 1 from occasion 2;
    # occasion 4's {0, 1, 2}: only 2 from occasion 3
    occ_h, occ_c, occ_w = np.zeros(5, int), np.array([0, 1, 0, 0, 0]), np.array([1, 2, 2, 3, 4])
    chosen_occ, chosen_item = np.array([0, 1, 2, 2, 3, 4]), np.array([2, 7, 0, 1, 2, 5])
    occ, item = product.state_pairs(occ_h, occ_c, occ_w, chosen_occ, chosen_item, state="both")
    previous = product.last_items_from_choices(occ_h, occ_c, occ_w, chosen_occ, chosen_item)
    np.testing.assert_array_equal(product.is_pair_in(occ, item, *previous), [1, 1, 1, 0, 0, 0, 1])
    # the chosen items: occasion 3 repeats item 2 (in its state, not from the previous occasion)
    np.testing.assert_array_equal(product.is_pair_in(chosen_occ, chosen_item, occ, item), [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(product.is_pair_in(chosen_occ, chosen_item, *previous), [0, 0, 0, 0, 0, 0])


def test_both_memory_adds_a_previous_coefficient_after_the_state():
    assert product.core_coefficients("both") == ("price", "discount", "state", "previous")
    assert product.core_coefficients("ever") == product.CORE_COEFFICIENTS
    pdata, _ = _study(n_households=6, n_categories=2, items_per_category=4, n_weeks=6, burn_in_weeks=1, state="both")
    model = product.build_model(pdata, product.ProductConfig(n_classes=3, burn_in_weeks=1, state="both"))
    assert list(model.coords["core"]) == ["price", "discount", "state", "previous"]
    assert list(model.coords["coefficient"])[:4] == ["price", "discount", "state", "previous"]
    assert model["theta"].eval().shape == (3, 4 + pdata.attributes.shape[1])
    with pytest.raises(ValueError, match="mu must hold 3 or 4"):
        product.draw_parameters(pdata, np.random.default_rng(0), mu=(1.0, 2.0))


def test_ever_state_keeps_the_most_recent_distinct_items():
    state = product.next_ever_state(None, np.array([5, 3]), max_items=3)
    np.testing.assert_array_equal(state, [3, 5])
    state = product.next_ever_state(state, np.array([9, 5]), max_items=3)
    np.testing.assert_array_equal(state, [5, 9, 3])  # this occasion's items first, then the older ones
    np.testing.assert_array_equal(product.next_ever_state(state, np.array([1, 2]), max_items=3), [1, 2, 5])


def test_ever_state_pairs_equal_the_readable_recursion_past_the_cap():
    rng = np.random.default_rng(4)
    n_occ = 400
    occ_h, occ_c = rng.integers(0, 5, n_occ), rng.integers(0, 2, n_occ)
    occ_w = rng.permutation(n_occ)  # distinct weeks: a strict order within each household-category
    sizes = rng.integers(1, 5, n_occ)
    chosen_occ = np.repeat(np.arange(n_occ), sizes)
    chosen_item = np.concatenate([rng.choice(60, k, replace=False) for k in sizes])
    occ, item = product.state_pairs(occ_h, occ_c, occ_w, chosen_occ, chosen_item, state="ever")
    want_occ, want_item, states = [], [], {}
    for o in np.lexsort((occ_w, occ_c, occ_h)):
        key = (occ_h[o], occ_c[o])
        if key in states:
            want_occ += [o] * states[key].size
            want_item += sorted(states[key])
        states[key] = product.next_ever_state(states.get(key), chosen_item[chosen_occ == o])
    order = np.lexsort((want_item, want_occ))
    np.testing.assert_array_equal(occ, np.array(want_occ)[order])
    np.testing.assert_array_equal(item, np.array(want_item)[order])
    assert max(s.size for s in states.values()) == product.EVER_STATE_ITEMS  # the cap was reached


def test_forward_sampler_records_the_states_the_pair_builder_finds():
    for state in product.STATE_MEMORIES:
        pdata, _ = _study(seed=5, n_households=20, n_categories=2, items_per_category=6, n_weeks=12, state=state)
        occ, item = product.state_pairs(pdata.occasion_household, pdata.occasion_category, pdata.occasion_week,
                                        pdata.chosen_occasion, pdata.chosen_item, state=state)
        np.testing.assert_array_equal(occ, pdata.last_occasion)
        np.testing.assert_array_equal(item, pdata.last_item)
    assert pdata.last_item.size > 2 * np.unique(pdata.last_occasion).size  # "ever" states grow past one item


def test_config_and_data_errors():
    with pytest.raises(ValueError, match="state"):
        product.ProductConfig(state="always")
    with pytest.raises(ValueError, match="n_classes"):
        product.ProductConfig(n_classes=1)
    with pytest.raises(ValueError, match="promo_sigma"):
        product.ProductConfig(promo_sigma=0.0)
    with pytest.raises(ValueError, match="intercept_centre"):
        product.ProductConfig(intercept_centre="zero")
    with pytest.raises(ValueError, match="centre_sigma"):
        product.ProductConfig(centre_sigma=-1.0)
    pdata, _ = _study(n_households=4, n_categories=2, items_per_category=3, n_weeks=3, burn_in_weeks=0)
    with pytest.raises(ValueError, match="outside the occasion's category"):
        dataclasses.replace(pdata, chosen_item=(pdata.chosen_item + 3) % 6)


def _tiny_product_data(tmp_path, **kwargs):
    from tiny_data import write_internal

    from bayes_retail.data import load_data
    from bayes_retail.pricing.model import PricingPanel

    data = load_data(write_internal(tmp_path / "src"), cache_dir=tmp_path / "cache")
    depth = np.nan_to_num(PricingPanel.from_product_weeks(data.product_weeks).depth)
    return data, product.build_product_data(data, depth, product.ProductConfig(burn_in_weeks=0), **kwargs)


def test_a_household_subset_keeps_every_item_and_only_its_occasions(tmp_path):
    data, everyone = _tiny_product_data(tmp_path)
    _, subset = _tiny_product_data(tmp_path, households=[1, 4])
    np.testing.assert_array_equal(subset.households, [1, 4])
    np.testing.assert_array_equal(subset.item_category, everyone.item_category)
    index = {h: i for i, h in enumerate(everyone.households)}
    kept = np.isin(everyone.occasion_household, [index[1], index[4]])
    assert subset.n_occasions == kept.sum() > 0
    assert subset.chosen_item.size == np.isin(everyone.chosen_occasion, np.flatnonzero(kept)).sum()
    with pytest.raises(ValueError, match="unknown household ids: \\[99\\]"):
        _tiny_product_data(tmp_path, households=[1, 99])


def test_intercept_preconditioner_by_hand():
    # one category of three items (the last is the reference); scored purchases: item 0 three times, item 1 once
    pdata = product.ProductData(
        households=np.arange(4), categories=np.arange(1), weeks=np.arange(1),
        item_category=np.zeros(3, np.int64), price=np.zeros((3, 1)), discount=np.zeros((3, 1)),
        display=np.zeros((3, 1)), mailer=np.zeros((3, 1)), attributes=np.zeros((3, 1)),
        occasion_household=np.arange(4), occasion_category=np.zeros(4, np.int64), occasion_week=np.zeros(4, np.int64),
        occasion_scored=np.ones(4, bool), chosen_occasion=np.arange(4), chosen_item=np.array([0, 0, 0, 1]),
        last_occasion=np.zeros(0, np.int64), last_item=np.zeros(0, np.int64),
    )
    shift, scale = product.intercept_preconditioner(pdata)
    np.testing.assert_allclose(shift, np.log([3.5 / 0.5, 1.5 / 0.5]))
    np.testing.assert_allclose(scale, np.sqrt([1 / 4 + 1, 1 / 2 + 1]))


def test_preconditioning_changes_the_coordinates_not_the_density():
    from scipy import stats

    pdata, _ = _study(seed=1, n_households=10, n_categories=2, items_per_category=5, n_weeks=6, burn_in_weeks=1)
    model = product.build_model(pdata, product.ProductConfig(n_classes=4, burn_in_weeks=1))
    point = random_point(model, np.random.default_rng(2), 0.4)
    t_free = evaluate(model, point, model["t_free"])
    sigma = evaluate(model, point, model["sigma_item"])
    _, scale = product.intercept_preconditioner(pdata)
    prior = model.compile_logp(vars=[model["t_free"]], jacobian=False)(point)
    assert prior == pytest.approx(stats.norm.logpdf(t_free, 0.0, sigma).sum(), rel=1e-10)
    with_jacobian = model.compile_logp(vars=[model["t_free"]], jacobian=True)(point)
    assert with_jacobian - prior == pytest.approx(np.log(scale).sum(), rel=1e-10)


def test_informative_occasions_by_hand():
    # category 0: items 0-1, item 0 on display in week 0; category 1: items 2-3, item 2 in the mailer in week 1
    flags = {name: np.zeros((4, 2)) for name in ("display", "mailer")}
    flags["display"][0, 0] = flags["mailer"][2, 1] = 1.0
    pdata = product.ProductData(
        households=np.arange(3), categories=np.arange(2), weeks=np.arange(2),
        item_category=np.array([0, 0, 1, 1]), price=np.zeros((4, 2)), discount=np.zeros((4, 2)),
        attributes=np.zeros((4, 1)), **flags,
        occasion_household=np.array([0, 1, 2, 0, 1, 2]), occasion_category=np.array([0, 0, 0, 1, 1, 1]),
        occasion_week=np.array([0, 0, 1, 1, 1, 0]), occasion_scored=np.array([True] * 5 + [False]),
        chosen_occasion=np.array([0, 1, 2, 3, 4, 4, 5]), chosen_item=np.array([0, 1, 0, 2, 2, 3, 3]),
        last_occasion=np.zeros(0, np.int64), last_item=np.zeros(0, np.int64),
    )
    got = product.informative_occasions(pdata)
    np.testing.assert_array_equal(got["display"], [2, 0])  # occasions 0 and 1 (week 0 of category 0)
    np.testing.assert_array_equal(got["mailer"], [0, 1])  # occasion 3; occasion 4 bought the whole set
    np.testing.assert_array_equal(got["log_extra_rate"], [3, 2])  # occasion 5 is burn-in
    np.testing.assert_array_equal(got["item_centre"], [3, 1])  # every choice-scored occasion of the category


def test_partially_centred_promotions_are_the_same_model_in_other_coordinates():
    pdata, _ = _study(seed=1, n_households=12, n_categories=4, items_per_category=5, n_weeks=6, burn_in_weeks=1)
    counts = product.informative_occasions(pdata)
    least = int(np.median(counts["log_extra_rate"]))
    legacy = product.build_model(pdata, product.ProductConfig(n_classes=4, burn_in_weeks=1))
    config = product.ProductConfig(n_classes=4, burn_in_weeks=1, promo_centred_min_occasions=least)
    partial = product.build_model(pdata, config)
    point = random_point(legacy, np.random.default_rng(2), 0.4)
    moved, shift = dict(point), 0.0
    split = 0
    for name in ("display", "mailer", "log_extra_rate"):
        rich = counts[name] >= least
        split += 0 < rich.sum() < rich.size
        if not rich.any():  # no centred category: the legacy form, unchanged
            continue
        raw = moved.pop(f"{name}_raw")
        moved[f"{name}_centred"] = evaluate(legacy, point, legacy[name])[rich]
        shift -= rich.sum() * np.log(evaluate(legacy, point, legacy[f"tau_{name}"]))
        if not rich.all():
            moved[f"z_{name}"] = raw[~rich]
    assert split >= 1
    assert set(moved) == {v.name for v in partial.value_vars}
    for name in ("display", "mailer", "log_extra_rate"):
        np.testing.assert_allclose(evaluate(partial, moved, partial[name]), evaluate(legacy, point, legacy[name]))
    # N(x | mu, tau) = N((x - mu) / tau | 0, 1) / tau for each centred category: the same posterior
    logp_partial = partial.compile_logp(jacobian=False)(moved)
    assert logp_partial - legacy.compile_logp(jacobian=False)(point) == pytest.approx(shift, rel=1e-10)


@pytest.mark.parametrize("centre", product.INTERCEPT_CENTRES)
def test_rarely_bought_items_non_centred_are_the_same_model_in_other_coordinates(centre):
    pdata, _ = _study(seed=1, n_households=12, n_categories=3, items_per_category=6, n_weeks=6, burn_in_weeks=1)
    least = 3
    counts = product.item_purchases(pdata)[product.free_items(pdata)]
    rich = counts >= least
    assert 0 < rich.sum() < rich.size
    config = product.ProductConfig(n_classes=4, burn_in_weeks=1, intercept_centre=centre)
    legacy = product.build_model(pdata, config)
    split = product.build_model(pdata, dataclasses.replace(config, intercept_centred_min_purchases=least))
    point = random_point(legacy, np.random.default_rng(4), 0.4)
    t = evaluate(legacy, point, legacy["t_free"])
    sigma = evaluate(legacy, point, legacy["sigma_item"])
    mean = evaluate(legacy, point, legacy["item_centre"])[pdata.item_category[product.free_items(pdata)]] \
        if centre != "reference" else np.zeros(t.size)
    moved = {k: v for k, v in point.items() if k != "t_free_preconditioned__"}
    moved["t_centred_preconditioned__"] = point["t_free_preconditioned__"][rich]
    moved["z_t"] = (t[~rich] - mean[~rich]) / sigma
    assert set(moved) == {v.name for v in split.value_vars}
    np.testing.assert_allclose(evaluate(split, moved, split["t_free"]), t, rtol=1e-12)
    # N(t | m, s) = N((t - m) / s | 0, 1) / s for each non-centred item; the preconditioner's Jacobian is left out
    difference = split.compile_logp(jacobian=False)(moved) - legacy.compile_logp(jacobian=False)(point)
    assert difference == pytest.approx((~rich).sum() * np.log(sigma), rel=1e-10)


def test_a_category_subset_keeps_its_occasions_and_their_probabilities():
    pdata, params = _study(seed=2, n_households=12, n_categories=3, items_per_category=5, n_weeks=6, burn_in_weeks=1)
    kept = [0, 2]
    sub = pdata.for_categories(kept)
    items = np.isin(pdata.item_category, kept)
    occasions = np.isin(pdata.occasion_category, kept)
    np.testing.assert_array_equal(sub.categories, pdata.categories[kept])
    np.testing.assert_array_equal(sub.occasion_household, pdata.occasion_household[occasions])
    assert sub.item_category.size == items.sum() and sub.last_item.size == occasions[pdata.last_occasion].sum()

    def logp(data, t, display, mailer):
        v = product.class_utilities(t, params["theta"], display, mailer, data)
        return product.occasion_log_probabilities(v, params["theta"], data)

    whole = logp(pdata, params["t"], params["display"], params["mailer"])
    part = logp(sub, params["t"][items], params["display"][kept], params["mailer"][kept])
    np.testing.assert_allclose(part, whole[occasions[pdata.chosen_occasion]], rtol=1e-12)


def test_pack_sizes_are_parsed_to_ounces():
    assert product.parse_pack_size("2 LB") == 32.0
    assert product.parse_pack_size("12 OZ") == 12.0
    assert np.isnan(product.parse_pack_size(None)) and np.isnan(product.parse_pack_size("BIG"))


def _state_study():
    """Strong attribute-weight heterogeneity across 8 classes, no state dependence (mu_state = 0)."""
    rng = np.random.default_rng(3)
    design = product.synthetic_design(
        rng, n_households=150, n_categories=3, items_per_category=8, n_weeks=24, occasion_rate=0.6, burn_in_weeks=4
    )
    truth = product.draw_parameters(design, rng, n_classes=8, mu=(-2.0, 2.0, 0.0), sigma=(0.3, 0.3, 0.05, 1.5, 1.5))
    return product.simulate_occasions(truth, design, rng.integers(0, 8, 150), rng), truth


def _fit(pdata, *, heterogeneity):
    from bayes_retail.models.sampling import SamplerConfig, sample_posterior

    config = product.ProductConfig(n_classes=8, burn_in_weeks=4, heterogeneity=heterogeneity)
    return sample_posterior(product.build_model(pdata, config), config=SamplerConfig(chains=2, draws=300, tune=300), seed=1)


@pytest.fixture(scope="module")
def state_fit():
    pdata, truth = _state_study()
    return pdata, truth, _fit(pdata, heterogeneity=True)


def test_recovery_of_price_discount_and_heterogeneity(state_fit):
    _, truth, idata = state_fit
    post = idata.posterior
    mu = post["mu"].values.reshape(-1, 3)
    lo, hi = np.quantile(mu, [0.05, 0.95], axis=0)
    assert np.all((lo <= truth["mu"]) & (truth["mu"] <= hi)), (lo, hi)
    sigma = post["sigma"].values.reshape(-1, 5)
    lo, hi = np.quantile(sigma, [0.005, 0.995], axis=0)
    # attribute-weight heterogeneity (sd 1.5) is found, not absorbed elsewhere
    assert np.all((lo[3:] <= 1.5) & (1.5 <= hi[3:])), (lo, hi)
    for name, value in (("mu_display", 0.5), ("mu_mailer", 0.3), ("mu_log_extra_rate", -1.2)):
        q = np.quantile(post[name].values.ravel(), [0.005, 0.995])
        assert q[0] <= value <= q[1], f"{name}: {value} outside {q}"


def test_heterogeneity_without_state_dependence_yields_no_state_effect(state_fit):
    _, _, idata = state_fit
    state = idata.posterior["mu"].sel(core="state").values.ravel()
    lo, hi = np.quantile(state, [0.05, 0.95])
    assert lo < 0.0 < hi and hi - lo < 0.3


@pytest.mark.slow
def test_without_heterogeneity_the_same_data_read_as_false_loyalty():
    """The check can fail: the model without heterogeneity finds state dependence that is not there."""
    pdata, _ = _state_study()
    state = _fit(pdata, heterogeneity=False).posterior["mu"].sel(core="state").values.ravel()
    assert np.quantile(state, 0.05) > 0.2


def _previous_study(lam_previous):
    """A ``"both"`` state: every earlier item's pull 1.0, the previous occasion's items ``lam_previous`` more."""
    rng = np.random.default_rng(7)
    design = product.synthetic_design(
        rng, n_households=150, n_categories=3, items_per_category=8, n_weeks=24, occasion_rate=0.6, burn_in_weeks=4
    )
    truth = product.draw_parameters(design, rng, n_classes=8, mu=(-2.0, 2.0, 1.0, lam_previous),
                                    sigma=(0.3, 0.3, 0.2, 0.2, 1.5, 1.5))
    return product.simulate_occasions(truth, design, rng.integers(0, 8, 150), rng, state="both"), truth


@pytest.fixture(scope="module")
def previous_fits():
    from bayes_retail.models.sampling import SamplerConfig, sample_posterior

    config = product.ProductConfig(n_classes=8, burn_in_weeks=4, state="both")
    fits = {}
    for lam_previous in (0.0, 1.0):
        pdata, truth = _previous_study(lam_previous)
        idata = sample_posterior(product.build_model(pdata, config), config=SamplerConfig(chains=2, draws=300, tune=300),
                                 seed=1)
        fits[lam_previous] = truth, idata.posterior["mu"]
    return fits


@pytest.mark.slow
def test_the_previous_occasion_pull_is_recovered_and_moves_with_the_truth(previous_fits):
    for truth, mu in previous_fits.values():
        for name, value in zip(product.core_coefficients("both"), truth["mu"]):
            lo, hi = np.quantile(mu.sel(core=name).values.ravel(), [0.05, 0.95])
            assert lo <= value <= hi, (name, value, lo, hi)
    # no previous-occasion pull in the data: none found, though every earlier item pulls
    lo, hi = np.quantile(previous_fits[0.0][1].sel(core="previous").values.ravel(), [0.05, 0.95])
    assert lo < 0.0 < hi and hi - lo < 0.6
    moved = [float(np.median(previous_fits[v][1].sel(core="previous"))) for v in (0.0, 1.0)]
    assert moved[1] - moved[0] > 0.6


def test_choice_kernel_returns_nan_not_an_exception_at_an_extreme_point():
    # utilities so low that every choice-set sum underflows to 0: the sampler must get a value it can reject
    pdata, params = _kernel_study()
    value = _kernel(params, pdata, t=np.full_like(params["t"], -800.0))[0]
    assert not np.isfinite(value)


# --------------------------------------------------------------------------- share responses (elasticities.csv)


def _reference_week_shares(params, pdata, week_grids: dict) -> np.ndarray:
    """``(G,)`` class-averaged choice shares in one week whose covariates are ``week_grids`` (via class_utilities)."""
    one_week = dataclasses.replace(pdata, occasion_week=np.zeros_like(pdata.occasion_week), available=None,
                                   **{name: grid[:, None] for name, grid in week_grids.items()})
    v = product.class_utilities(params["t"], params["theta"], params["display"], params["mailer"], one_week)[:, :, 0]
    ev = np.exp(v)
    sums = np.add.reduceat(ev, pdata.category_start, axis=1)[:, pdata.item_category]
    return (ev / sums).mean(axis=0)


def test_share_responses_match_brute_force_through_the_models_utilities():
    rng = np.random.default_rng(11)
    pdata = product.synthetic_design(rng, n_categories=3, items_per_category=5, n_weeks=2)
    params = product.draw_parameters(pdata, rng, n_classes=6, mu=(-2.5, -1.8, 0.4), sigma=(0.8, 0.6, 0.3, 0.5, 0.5))
    params["display"] = np.array([0.4, 0.9, -0.2])
    real = np.ones(pdata.item_category.size, dtype=bool)
    real[pdata.reference_item] = False
    got = product.share_responses(params, pdata, real, depth=0.25)
    g = pdata.item_category.size
    zero = {name: np.zeros(g) for name in ("price", "discount", "display", "mailer")}
    base = _reference_week_shares(params, pdata, zero)
    expected = np.zeros((3, 4))
    for c in range(3):
        items = np.flatnonzero((pdata.item_category == c) & real)
        rows = []
        for j in items:
            eps = 1e-6
            up = _reference_week_shares(params, pdata, {**zero, "price": np.eye(g)[j] * eps})
            down = _reference_week_shares(params, pdata, {**zero, "price": -np.eye(g)[j] * eps})
            elasticity = (np.log(up[j]) - np.log(down[j])) / (2 * eps)
            lifts = [
                _reference_week_shares(params, pdata, {**zero, name: np.eye(g)[j] * value})[j] / base[j] - 1
                for name, value in (("discount", np.log1p(-0.25)), ("display", 1.0), ("mailer", 1.0))
            ]
            rows.append([elasticity, *lifts])
        expected[c] = np.average(np.array(rows), axis=0, weights=base[items])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    # signs the parameters imply (gamma < 0: log(1 - depth) < 0 raises utility): price hurts, discount, display (except category 2) and mailer help
    assert (got[:, 0] < 0).all() and (got[:, 1] > 0).all() and (got[:, 3] > 0).all()
    assert got[2, 2] < 0 < got[1, 2]


def test_one_class_own_price_elasticity_is_beta_times_one_minus_share():
    rng = np.random.default_rng(3)
    pdata = product.synthetic_design(rng, n_categories=1, items_per_category=3, n_weeks=2, n_attributes=0)
    params = product.draw_parameters(pdata, rng, n_classes=2, mu=(-1.5, -1.0, 0.0), sigma=(0.0, 0.0, 0.0))
    params["t"] = np.array([np.log(2.0), 0.0, 0.0])  # shares 1/2, 1/4, 1/4 (the last is "other")
    real = np.array([True, True, False])
    got = product.share_responses(params, pdata, real, depth=0.2)
    # weighted by shares 1/2 and 1/4: (1/2 * -1.5 * 1/2 + 1/4 * -1.5 * 3/4) / (3/4)
    assert got[0, 0] == pytest.approx((0.5 * -1.5 * 0.5 + 0.25 * -1.5 * 0.75) / 0.75)
    # discount lift of the first item: e^{gamma log 0.8} / (1/2 e^{...} + 1/2) in share ratio
    boost = 0.8 ** -1.0  # gamma log(1 - depth) with gamma = -1: a discount raises utility
    lift_first = (2 * boost / (2 * boost + 2)) / 0.5 - 1
    lift_second = (boost / (boost + 3)) / 0.25 - 1
    assert got[0, 1] == pytest.approx((0.5 * lift_first + 0.25 * lift_second) / 0.75)


def test_category_values_are_the_log_sum_exp_of_each_categorys_utilities():
    rng = np.random.default_rng(5)
    pdata = product.synthetic_design(rng, n_categories=3, items_per_category=4, n_weeks=5)
    params = product.draw_parameters(pdata, rng, n_classes=4, mu=(-2.0, -1.0, 0.5))
    values = product.category_values(params, pdata)
    assert values.shape == (4, 3, 5)
    v = product.class_utilities(params["t"], params["theta"], params["display"], params["mailer"], pdata)
    for k, c, w in itertools.product(range(4), range(3), range(5)):
        items = pdata.item_category == c
        assert values[k, c, w] == pytest.approx(np.log(np.exp(v[k, items, w]).sum()), rel=1e-12)
    # a deeper discount on one product raises its category's value in that week, for a discount-loving class
    deeper = dataclasses.replace(pdata, discount=pdata.discount.copy())
    deeper.discount[0, 2] += np.log1p(-0.5)
    moved = product.category_values(params, deeper)
    responsive = params["theta"][:, 1] < 0
    assert responsive.any()
    assert (moved[responsive, 0, 2] > values[responsive, 0, 2]).all()
    np.testing.assert_array_equal(np.delete(moved, 2, axis=2), np.delete(values, 2, axis=2))


def test_forward_sampler_refuses_an_unknown_state_memory():
    with pytest.raises(ValueError, match="state must be one of"):
        _study(n_households=3, n_categories=1, items_per_category=3, n_weeks=2, state="always")


# ---------------------------------------------------------------- what the item intercepts are shrunk toward


def _reference_share_study():
    """Single-item occasions; the reference item popular, the other 49 of each category rare (t ~ N(-3.5, 1))."""
    rng = np.random.default_rng(5)
    design = product.synthetic_design(rng, n_households=120, n_categories=2, items_per_category=50, n_weeks=12,
                                      occasion_rate=0.6, burn_in_weeks=2)
    truth = product.draw_parameters(design, rng, mu=(-2.0, 2.0, 0.0), sigma=(0.0,) * 5, intercept_mean=-3.5,
                                    log_extra_rate=-20.0)
    return product.simulate_occasions(truth, design, np.zeros(120, dtype=int), rng), truth


def _reference_shares(pdata, truth, centre):
    """Observed share of the reference item over scored occasions, and the posterior draws' predicted share."""
    from bayes_retail.models.sampling import SamplerConfig, sample_posterior

    config = product.ProductConfig(burn_in_weeks=2, heterogeneity=False, intercept_centre=centre)
    idata = sample_posterior(product.build_model(pdata, config), config=SamplerConfig(chains=2, draws=200, tune=200),
                             seed=1)
    occ = product.scored_occasions(pdata)
    ref = pdata.reference_item
    observed = np.isin(pdata.chosen_item[np.isin(pdata.chosen_occasion, occ)], ref).mean()
    free = product.free_items(pdata)
    predicted = []
    for row in idata.posterior["t_free"].values.reshape(-1, free.size)[::10]:
        t = np.zeros(pdata.item_category.size)
        t[free] = row
        v = product.class_utilities(t, truth["theta"][:1], truth["display"], truth["mailer"], pdata)[0]
        p = np.exp(v[ref]) / np.add.reduceat(np.exp(v), pdata.category_start, axis=0)  # (C, W)
        predicted.append(p[pdata.occasion_category[occ], pdata.occasion_week[occ]].mean())
    return observed, np.array(predicted), idata


@pytest.mark.parametrize("centre", ["category", "pooled"])
def test_category_centred_intercepts_reproduce_the_reference_items_share(centre):
    pdata, truth = _reference_share_study()
    observed, predicted, idata = _reference_shares(pdata, truth, centre)
    lo, mid, hi = np.quantile(predicted, [0.05, 0.5, 0.95])
    assert lo <= observed <= hi and abs(mid - observed) < 0.015, (observed, lo, mid, hi)
    centres = idata.posterior["item_centre"]
    assert centres.dims[2:] == ("category",)
    assert np.all(np.abs(centres.mean(("chain", "draw")).values + 3.5) < 0.5)
    if centre == "pooled":  # the population mean of the centres covers the truth's -3.5
        lo, hi = np.quantile(idata.posterior["mu_item_centre"].values, [0.05, 0.95])
        assert lo < -3.5 < hi


@pytest.mark.slow
def test_intercepts_shrunk_toward_a_popular_reference_under_predict_it():
    """The check can fail: shrinking rare items toward the reference's 0 takes share from the reference."""
    pdata, truth = _reference_share_study()
    observed, predicted, _ = _reference_shares(pdata, truth, "reference")
    assert np.quantile(predicted, 0.95) < observed


def test_set_statistics_by_hand():
    design = product.synthetic_design(np.random.default_rng(0), n_households=2, n_categories=2, items_per_category=3,
                                      n_weeks=2, occasion_rate=1.0, burn_in_weeks=1)
    # occasions (h, c, w) in order: 000 001 010 011 100 101 110 111; references 2 and 5; week 1 scored
    sets = [[0], [2], [3], [3, 4], [2], [0, 2], [5], [4]]
    pdata = dataclasses.replace(
        design, chosen_occasion=np.repeat(np.arange(8), [len(s) for s in sets]),
        chosen_item=np.concatenate([np.array(s) for s in sets]),
    )
    # scored: [2] yes, [3, 4] no, [0, 2] yes, [4] no
    assert product.set_statistics(pdata) == {"reference_share": 0.5, "mean_items": 1.5}


def test_posterior_predictive_replays_the_reference_share_of_the_truth():
    import xarray as xr

    pdata, truth = _study(seed=4, n_households=80, n_categories=3, items_per_category=5, n_weeks=10, burn_in_weeks=2)
    free = product.free_items(pdata)
    draws = {"t_free": truth["t"][free], "theta": truth["theta"], "display": truth["display"],
             "mailer": truth["mailer"], "log_extra_rate": truth["log_extra_rate"]}
    posterior = xr.Dataset({k: (("chain", "draw", *[f"{k}_{i}" for i in range(np.ndim(v))]), np.asarray(v)[None, None])
                            for k, v in draws.items()})
    replayed = product.posterior_predictive(pdata, posterior, draws=3, rng=np.random.default_rng(1))
    assert list(replayed.columns) == ["reference_share", "mean_items"] and len(replayed) == 1  # one stored draw
    observed = product.set_statistics(pdata)
    assert abs(replayed["reference_share"].iloc[0] - observed["reference_share"]) < 0.04
    assert abs(replayed["mean_items"].iloc[0] - observed["mean_items"]) < 0.1


def test_prior_predictive_of_exchangeable_items_holds_the_reference_in_m_of_n_sets():
    # every prior scale ~0: all items alike, one extra item at rate exp(-1); so E[m] = 1 + e^-1 (the cap at 5 items
    # costs ~1e-4) and the reference is in a set of m of the 5 items with probability m / 5
    pdata, _ = _study(seed=2, n_households=80, n_categories=3, items_per_category=5, n_weeks=10, burn_in_weeks=2)
    tiny = dict(intercept_sigma=1e-4, coefficient_sigma=1e-4, scale_sigma=1e-4, promo_sigma=1e-4, extra_sigma=1e-4)
    config = product.ProductConfig(n_classes=2, burn_in_weeks=2, **tiny)
    prior = product.prior_predictive(pdata, config, draws=4, seed=3)
    assert list(prior.columns) == ["reference_share", "mean_items"] and len(prior) == 4
    n = int(pdata.occasion_scored.sum())
    expected_m = 1 + np.exp(-1.0)
    assert np.abs(prior["mean_items"] - expected_m).max() < 4 * np.sqrt(np.exp(-1.0) / n)
    assert np.abs(prior["reference_share"] - expected_m / 5).max() < 4 * np.sqrt(0.27 * 0.73 / n)
    # and the priors matter: the default scales spread the reference share across draws
    wide = product.prior_predictive(pdata, product.ProductConfig(n_classes=2, burn_in_weeks=2), draws=4, seed=3)
    assert wide["reference_share"].std() > 5 * prior["reference_share"].std()


def test_household_logliks_add_up_to_the_stage_likelihood():
    import xarray as xr

    pdata, params = _kernel_study()
    per_household = product.household_logliks(params, pdata)
    assert per_household.shape == (pdata.households.size,)
    assert per_household.sum() == pytest.approx(product.total_loglik(params, pdata), rel=1e-10)
    # each household's own term: the stage's likelihood of that household alone
    h = int(pdata.occasion_household[pdata.occasion_scored][0])
    alone = dataclasses.replace(pdata, occasion_scored=pdata.occasion_scored & (pdata.occasion_household == h))
    assert per_household[h] == pytest.approx(product.total_loglik(params, alone), rel=1e-10)
    free = product.free_items(pdata)
    draws = {"t_free": params["t"][free], "theta": params["theta"], "display": params["display"],
             "mailer": params["mailer"], "log_extra_rate": params["log_extra_rate"], "depth": params["depth"]}
    posterior = xr.Dataset({k: (("chain", "draw", *[f"{k}_{i}" for i in range(np.ndim(v))]), np.asarray(v)[None, None])
                            for k, v in draws.items()})
    scored = np.unique(pdata.occasion_household[pdata.occasion_scored])
    loglik = product.household_loglik_draws(pdata, posterior, draws=5)
    np.testing.assert_allclose(loglik, per_household[scored][None, :], rtol=1e-12)


# --------------------------------------------------------------------------- availability


def _off_shelf_study(seed=8, **kwargs):
    rng = np.random.default_rng(seed)
    design = product.synthetic_design(rng, off_shelf=0.6, **kwargs)
    params = product.draw_parameters(design, rng, n_classes=4, log_extra_rate=0.8)
    pdata = product.simulate_occasions(params, design, rng.integers(0, 4, design.households.size), rng)
    assert not design.available.all()
    return pdata, params


def test_items_off_the_shelf_are_never_simulated_and_leave_every_likelihood():
    pdata, params = _off_shelf_study(n_households=30, n_categories=3, items_per_category=10, occasion_rate=0.6)
    assert pdata.available[pdata.chosen_item, pdata.occasion_week[pdata.chosen_occasion]].all()
    assert (pdata.set_size > 1).any() and pdata.last_item.size > 0
    # an off-shelf last item is part of the state pairs: its term must vanish, not count
    assert (~pdata.available[pdata.last_item, pdata.occasion_week[pdata.last_occasion]]).any()
    want = product.total_loglik(params, pdata) - product.extra_items_loglik(params["log_extra_rate"], pdata)
    assert _kernel(params, pdata)[0] == pytest.approx(want, rel=1e-12)
    # and the availability changes it: the same choices with every item on the shelf score lower
    on_shelf = dataclasses.replace(pdata, available=None)
    assert _kernel(params, on_shelf)[0] < _kernel(params, pdata)[0] - 1.0
    _assert_kernel_gradient(params, pdata, np.random.default_rng(1), per_parameter=8)


def test_off_shelf_likelihood_equals_the_occasion_by_occasion_sum_over_orders():
    pdata, params = _off_shelf_study(seed=9, n_households=12, n_categories=2, items_per_category=7, n_weeks=8,
                                     burn_in_weeks=2)
    assert product.total_loglik(params, pdata) == pytest.approx(product.brute_force_loglik(params, pdata), rel=1e-8)


def test_household_kernel_leaves_off_shelf_items_out_like_the_class_kernel():
    from bayes_retail.models._choice_kernel import household_class_loglik
    from bayes_retail.models._household_choice_kernel import household_choice_pass

    pdata, params = _off_shelf_study(n_households=20, n_categories=3, items_per_category=8)
    classes = np.arange(20) % 4
    per_class = household_class_loglik(params["t"], params["theta"], *product.promo_coefficients(params),
                                       *product.kernel_inputs(pdata))
    per_household, *_ = household_choice_pass(params["t"], params["theta"][classes], *product.promo_coefficients(params),
                                              *product.household_kernel_inputs(pdata))
    rows = np.arange(per_class.shape[0])
    np.testing.assert_allclose(per_household[rows], per_class[rows, classes[rows]], rtol=1e-10)


def test_an_occasion_buying_every_item_on_the_shelf_is_not_scored():
    pdata, _ = _off_shelf_study(n_households=10, n_categories=2, items_per_category=4, n_weeks=6, burn_in_weeks=0)
    available = np.ones_like(pdata.available)
    available[:3, 2] = False  # week 2: category 0 holds only its reference item
    occasions = np.flatnonzero((pdata.occasion_category == 0) & (pdata.occasion_week == 2))
    keep = ~np.isin(pdata.chosen_occasion, occasions)  # those occasions now buy the reference alone
    chosen_occasion = np.concatenate([pdata.chosen_occasion[keep], occasions])
    chosen_item = np.concatenate([pdata.chosen_item[keep], np.full(occasions.size, 3)])
    order = np.argsort(chosen_occasion, kind="stable")
    one = dataclasses.replace(pdata, available=available, chosen_occasion=chosen_occasion[order],
                              chosen_item=chosen_item[order])
    assert occasions.size and np.all(one.set_size[occasions] == 1)
    assert not np.isin(occasions, product.scored_occasions(one)).any()
    assert np.isin(occasions, product.scored_occasions(dataclasses.replace(one, available=None))).all()


def test_availability_errors_name_what_is_wrong():
    pdata, _ = _off_shelf_study(n_households=6, n_categories=2, items_per_category=4, n_weeks=5, burn_in_weeks=0)
    with pytest.raises(ValueError, match="available must have shape"):
        dataclasses.replace(pdata, available=pdata.available[:, :2])
    off_reference = pdata.available.copy()
    off_reference[pdata.reference_item[1], 0] = False
    with pytest.raises(ValueError, match="reference item must be available"):
        dataclasses.replace(pdata, available=off_reference)
    off_chosen = pdata.available.copy()
    row = np.flatnonzero(~np.isin(pdata.chosen_item, pdata.reference_item))[0]
    off_chosen[pdata.chosen_item[row], pdata.occasion_week[pdata.chosen_occasion[row]]] = False
    with pytest.raises(ValueError, match="chosen items are off the shelf"):
        dataclasses.replace(pdata, available=off_chosen)
    with pytest.raises(ValueError, match="availability"):
        product.ProductConfig(availability="sometimes")


def test_availability_span_and_item_grid_by_hand():
    product_weeks = pd.DataFrame({
        "product_id": [1, 1, 1, 1, 2, 2, 2, 3, 3],
        "week": [1, 2, 3, 4, 1, 2, 3, 1, 4],
        "lines": [0, 2, 0, 0, 0, 0, 1, 1, 0],
        "display": [False, False, True, False, True, False, False, False, None],
        "mailer": [False, False, False, False, False, False, False, False, False],
    })
    span = product.availability_span(product_weeks)
    assert span.loc[1].tolist() == [2, 3] and span.loc[2].tolist() == [1, 3] and span.loc[3].tolist() == [1, 1]
    items = pd.DataFrame({"category_id": [0, 0, 0, 1, 1], "item": [0, 1, 2, 0, 1],
                          "product_id": [1, 2, np.nan, 3, 9]})
    grid = product.item_availability(items, span, np.array([1, 2, 3, 4]))
    np.testing.assert_array_equal(grid, [
        [False, True, True, False],   # product 1: weeks 2-3
        [True, True, True, False],    # product 2: weeks 1-3
        [True, True, True, True],     # "other"
        [True, False, False, False],  # product 3: week 1
        [True, True, True, True],     # product 9: the reference of category 1 (and unseen)
    ])


def test_intercepts_recovered_with_availability_and_biased_down_without():
    # maximum likelihood of the item intercepts with the other parameters at the truth (the kernel's gradient)
    from scipy.optimize import minimize

    rng = np.random.default_rng(12)
    design = product.synthetic_design(rng, n_households=600, n_categories=3, items_per_category=6, n_weeks=20,
                                      occasion_rate=0.5, off_shelf=0.7)
    params = product.draw_parameters(design, rng, n_classes=4, sigma=(0.3, 0.3, 0.05, 0.3, 0.3), log_extra_rate=-1.0)
    pdata = product.simulate_occasions(params, design, rng.integers(0, 4, 600), rng)
    free = product.free_items(pdata)

    def fit(data):
        def loss(x):
            t = np.zeros(data.item_category.size)
            t[free] = x
            value, d_t, *_ = choice_loglik(t, params["theta"], *product.promo_coefficients(params),
                                           *product.kernel_inputs(data))
            return -value, -d_t[free]

        return minimize(loss, np.zeros(free.size), jac=True, method="L-BFGS-B").x

    share_on = pdata.available[free].mean(axis=1)
    partial = share_on < 0.6
    assert partial.sum() >= 4
    with_shelf = fit(pdata) - params["t"][free]
    without = fit(dataclasses.replace(pdata, available=None)) - params["t"][free]
    assert np.abs(with_shelf).max() < 0.25 and abs(with_shelf[partial].mean()) < 0.1
    # treated as always on the shelf, a part-year item looks unpopular: about log(share of weeks on the shelf)
    assert without[partial].mean() < -0.5
    assert np.corrcoef(without[partial], np.log(share_on[partial]))[0, 1] > 0.6


def test_deal_frequency_by_hand():
    # category 0: product 1 bought in 3 weeks (2 at a discount), product 2 in 1 week (none), product 3 never;
    # category 1: product 4 bought in 2 weeks, both at a discount; a depth at DEAL_DEPTH or below is full price
    product_weeks = pd.DataFrame({
        "product_id": [1, 1, 1, 1, 2, 2, 3, 4, 4],
        "category_id": [0, 0, 0, 0, 0, 0, 0, 1, 1],
        "lines": [1, 2, 1, 0, 1, 0, 0, 3, 1],
        "depth": [0.2, 0.1, 0.0, np.nan, product.DEAL_DEPTH, np.nan, np.nan, 0.3, 0.25],
    })
    items = pd.DataFrame({"category_id": [0, 0, 0, 0, 1, 1], "item": [0, 1, 2, 3, 0, 1],
                          "product_id": [1, 2, 3, np.nan, 4, np.nan]})
    a = product.DEAL_FREQUENCY_PRIOR_WEEKS
    rate0 = 2 / 4  # category 0: 2 discounted of 4 purchase weeks
    expected = [(2 + a * rate0) / (3 + a), (0 + a * rate0) / (1 + a), rate0, 0.0, (2 + a) / (2 + a), 0.0]
    np.testing.assert_allclose(product.deal_frequency(product_weeks, items), expected)


def test_deal_frequency_is_a_fourth_attribute_standardised_within_each_category(tmp_path):
    from tiny_data import write_internal

    from bayes_retail.data import load_data
    from bayes_retail.pricing.model import PricingPanel

    data = load_data(write_internal(tmp_path / "src"), cache_dir=tmp_path / "cache")
    depth = np.nan_to_num(PricingPanel.from_product_weeks(data.product_weeks).depth)
    plain = product.build_product_data(data, depth, product.ProductConfig(burn_in_weeks=0))
    with_deals = product.build_product_data(data, depth, product.ProductConfig(burn_in_weeks=0, deal_frequency=True))
    np.testing.assert_array_equal(with_deals.attributes[:, :3], plain.attributes)
    items = product.item_table(data.choice_sets)
    real = items["product_id"].notna().to_numpy()
    freq = product.deal_frequency(data.product_weeks, items)
    column = with_deals.attributes[:, 3]
    assert (column[~real] == 0).all()
    for c in np.unique(items["category_id"]):
        mine = real & (items["category_id"].to_numpy() == c)
        if freq[mine].std() > 0:
            np.testing.assert_allclose(column[mine].mean(), 0.0, atol=1e-12)
            np.testing.assert_allclose(column[mine], (freq[mine] - freq[mine].mean()) / freq[mine].std(ddof=1))
