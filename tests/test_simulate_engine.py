"""The simulator's engine: random streams, batch invariance, and each stage's law against its analytic form."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_retail.models import product as product_stage
from bayes_retail.models import visit as visit_stage
from bayes_retail.simulate import _kernels, simulate_batch
from bayes_retail.simulate.streams import ITEM, QUANTITY, VISIT, customer_keys, uniforms
from bayes_retail.simulate.synthetic import synthetic_catalogue, synthetic_customers, synthetic_draw, synthetic_prices

N_WEEKS = 20


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(11)
    catalogue = synthetic_catalogue(rng, n_categories=4, items=5, tail=3)
    prices = synthetic_prices(rng, catalogue, N_WEEKS)
    draw = synthetic_draw(rng, catalogue, N_WEEKS)
    customers = synthetic_customers(rng, 1500, catalogue.n_categories, N_WEEKS)
    batch = simulate_batch(draw, customers, catalogue, prices, seed=5)
    return catalogue, prices, draw, customers, batch


def _z(observed_sum, expected_sum, variance_sum) -> float:
    return (observed_sum - expected_sum) / np.sqrt(variance_sum)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- streams


def test_customer_keys_are_the_seed_sequence_children_of_seed_draw_and_customer():
    keys = customer_keys(7, 2, np.array([0, 5]))
    child = np.random.SeedSequence(7).spawn(3)[2].spawn(6)
    assert keys[0] == child[0].generate_state(1, np.uint64)[0]
    assert keys[1] == child[5].generate_state(1, np.uint64)[0]
    assert customer_keys(7, 3, np.array([5]))[0] != keys[1]
    with pytest.raises(ValueError, match="seed"):
        customer_keys(-1, 0, np.array([0]))


def test_counter_uniforms_are_uniform_and_independent_across_keys_and_counters():
    keys = customer_keys(3, 0, np.arange(50_000))
    a = uniforms(keys, 4, VISIT, 0, 0)
    b = uniforms(keys, 4, VISIT, 0, 1)  # next slot
    c = uniforms(keys, 5, VISIT, 0, 0)  # next week
    d = uniforms(keys, 4, ITEM, 0, 0)  # other purpose
    for u in (a, b, c, d):
        assert 0 < u.min() and u.max() < 1
        assert stats.kstest(u, "uniform").statistic < 0.01
    for x, y in itertools.combinations((a, b, c, d), 2):
        assert abs(np.corrcoef(x, y)[0, 1]) < 0.02
    # one key along many counters
    one = np.array([uniforms(keys[:1], w, QUANTITY, g, 0)[0] for w in range(50) for g in range(400)])
    assert stats.kstest(one, "uniform").statistic < 0.015


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_same_output_whatever_the_batches(world):
    catalogue, prices, draw, customers, batch = world
    again = simulate_batch(draw, customers, catalogue, prices, seed=5)
    assert batch.lines.equals(again.lines) and batch.visits.equals(again.visits)

    def part(rows):
        fields = {f.name: getattr(customers, f.name)[rows] for f in dataclasses.fields(customers)}
        return simulate_batch(draw, type(customers)(**fields), catalogue, prices, seed=5)

    first, second = part(slice(0, 400)), part(slice(400, None))
    for name in ("lines", "visits"):
        joined = np.concatenate([getattr(first, name).to_numpy(), getattr(second, name).to_numpy()])
        np.testing.assert_array_equal(joined, getattr(batch, name).to_numpy())
    other = simulate_batch(draw, customers, catalogue, prices, seed=6)
    assert len(other.lines) != len(batch.lines) or not other.lines.equals(batch.lines)
    other_draw = simulate_batch(draw, customers, catalogue, prices, seed=5, draw_index=1)
    assert not other_draw.visits.equals(batch.visits)


# --------------------------------------------------------------------------- stage laws


def _trips_grid(batch, customers):
    grid = np.zeros((customers.size, N_WEEKS), dtype=np.int64)
    grid[batch.visits["customer"].to_numpy(), batch.visits["week"].to_numpy()] = batch.visits["trips"].to_numpy()
    return grid


def test_visits_follow_the_visit_stage_logit_with_state(world):
    catalogue, prices, draw, customers, batch = world
    trips = _trips_grid(batch, customers)
    visited = trips > 0
    week = np.arange(N_WEEKS)[None, :]
    entry = customers.entry_week[:, None]
    assert not visited[week < entry].any() and visited[week == entry].all()
    previous = np.zeros_like(visited)
    previous[:, 1:] = visited[:, :-1]
    eta = (customers.visit[:, [0]] + customers.visit[:, [1]] * customers.signal + draw.rho * previous
           + draw.visit_week[None, :])
    p = _sigmoid(eta)[week > entry]
    # a martingale: observed minus predicted visits given the simulated past
    assert abs(_z(visited[week > entry].sum(), p.sum(), (p * (1 - p)).sum())) < 4
    rate = np.broadcast_to(np.exp(customers.visit[:, [2]]), trips.shape)[visited]
    assert abs(_z((trips[visited] - 1).sum(), rate.sum(), rate.sum())) < 4


def test_visit_rate_matches_the_visit_stage_sampler(world):
    catalogue, prices, draw, customers, batch = world
    ours = (_trips_grid(batch, customers) > 0).mean()
    theirs = np.mean([
        (visit_stage.simulate(customers.visit, draw.rho, draw.visit_week, customers.signal, np.random.default_rng(s),
                              start=customers.entry_week) > 0).mean()
        for s in range(4)
    ])
    se = np.sqrt(ours * (1 - ours) / (customers.size * N_WEEKS))
    assert abs(ours - theirs) < 5 * se


def test_category_purchases_follow_the_cloglog_with_the_trips_offset(world):
    catalogue, prices, draw, customers, batch = world
    trips = _trips_grid(batch, customers)
    item = catalogue.product_item()[batch.lines["product"].to_numpy()]
    category = catalogue.item_category[item]
    bought = np.zeros((customers.size, catalogue.n_categories, N_WEEKS), dtype=bool)
    bought[batch.lines["customer"].to_numpy(), category, batch.lines["week"].to_numpy()] = True
    eta = (draw.category_intercept[None, :, None] + customers.category_preference[:, :, None]
           + draw.category_week[None, None, :] + draw.category_season[None, :, :])
    p = -np.expm1(-trips[:, None, :] * np.exp(eta))
    assert not bought[np.broadcast_to(trips[:, None, :] == 0, bought.shape)].any()
    assert abs(_z(bought.sum(), p.sum(), (p * (1 - p)).sum())) < 4


def _bought_grid(batch, customers, catalogue):
    item = catalogue.product_item()[batch.lines["product"].to_numpy()]
    bought = np.zeros((customers.size, catalogue.n_categories, N_WEEKS), dtype=bool)
    bought[batch.lines["customer"].to_numpy(), catalogue.item_category[item], batch.lines["week"].to_numpy()] = True
    return bought


def test_category_value_moves_each_class_by_k_times_its_departure_from_the_centre(world):
    from scipy.special import logsumexp

    from bayes_retail.simulate.engine import class_utilities_week

    catalogue, prices, draw, customers, _ = world
    n_classes = draw.class_coefficients.shape[0]
    covariates = prices.item_covariates(catalogue)
    # category values computed here, category by category, from the engine's utilities
    values = np.stack([
        np.stack([logsumexp(u[:, catalogue.item_category == c], axis=1) for c in range(catalogue.n_categories)], axis=1)
        for u in (class_utilities_week(draw, catalogue, covariates, w) for w in range(N_WEEKS))
    ])  # (W, K, C)
    k = np.array([1.5, 0.0, -1.0, 2.0])
    centre = values.mean(axis=0) - 0.3  # every class-category a little above its centre on average
    valued = dataclasses.replace(draw, category_value_response=k, category_value_centre=centre)
    batch = simulate_batch(valued, customers, catalogue, prices, seed=5)
    trips = _trips_grid(batch, customers)
    bought = _bought_grid(batch, customers, catalogue)
    offset = k[None, :, None] * (values.transpose(1, 2, 0) - centre[:, :, None])[customers.product_class]  # (n, C, W)
    eta = (draw.category_intercept[None, :, None] + customers.category_preference[:, :, None]
           + draw.category_week[None, None, :] + draw.category_season[None, :, :] + offset)
    p = -np.expm1(-trips[:, None, :] * np.exp(eta))
    for c in range(catalogue.n_categories):  # each category's own k: +, 0, -, +
        assert abs(_z(bought[:, c].sum(), p[:, c].sum(), (p[:, c] * (1 - p[:, c])).sum())) < 4
    assert len(np.unique(customers.product_class)) == n_classes > 1  # the classes' values differ and all are used
    without = simulate_batch(draw, customers, catalogue, prices, seed=5)
    more, less = bought.sum(axis=(0, 2)), _bought_grid(without, customers, catalogue).sum(axis=(0, 2))
    assert more[3] > less[3] and more[2] < less[2] and more[1] == pytest.approx(less[1], rel=0.1)
    with pytest.raises(ValueError, match="category_value_centre must have shape"):
        dataclasses.replace(draw, category_value_response=k, category_value_centre=centre[:, :2]).check(catalogue, N_WEEKS)


def test_the_trips_that_buy_a_category_follow_their_joint_law_given_a_purchase():
    n, m, rate = 40_000, 3, 0.5
    keys = customer_keys(1, 0, np.arange(n))
    occ_customer, occ_category, mask = _kernels.category_week(
        keys, 0, np.full(n, m), np.ones((n, 1)), np.array([[rate]]), np.zeros(n, dtype=np.int64)
    )
    p = -np.expm1(-rate)
    assert abs(_z(occ_customer.size, n * -np.expm1(-m * rate), n * p)) < 5
    for s in range(1, 2**m):
        k = bin(s).count("1")
        expected = p**k * (1 - p) ** (m - k) / (1 - (1 - p) ** m)
        share = np.mean(mask == s)
        assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / mask.size)


def _choose(n, prob, lam, last, m, *, seed=2, lam_previous=None, n_previous=0, shift=None, discount=None):
    """``n`` occasions in one category (items 0..len(prob)-1), each with state ``last`` and ``m`` items.

    With ``lam_previous`` the ``"both"`` memory: the first ``n_previous`` state items gain it too. ``shift``
    ``(n,)`` and ``discount`` ``(G,)``: each customer's deal-hunting deviation and the items' discounts.
    """
    g = prob.size
    keys = customer_keys(seed, 0, np.arange(n))
    state_items = np.zeros((n, 1, _kernels.MAX_STATE_ITEMS), dtype=np.int64)
    state_items[:, 0, : len(last)] = last
    state_count = np.full((n, 1), len(last), dtype=np.int64)
    previous_count = np.full((n, 1), n_previous, dtype=np.int64)
    theta = np.array([[0.0, 0.0, lam] + ([] if lam_previous is None else [lam_previous])])
    memory = _kernels.LAST_STATE if lam_previous is None else _kernels.BOTH_STATE
    items, _ = _kernels.choose_week(
        keys, 0, np.arange(n), np.zeros(n, np.int64), np.ones(n, np.int64), np.full(n, m),
        np.arange(n + 1) * m, np.zeros(n, np.int64), theta, np.cumsum(prob)[None, :],
        np.array([0]), np.array([g]), state_items, state_count, previous_count, memory,
        np.zeros(0) if shift is None else shift, np.zeros(0) if discount is None else discount,
    )
    return items.reshape(n, m), state_items, state_count


def _set_probability(prob, lam, last, chosen, lam_previous=0.0, previous=()):
    """Exact probability of the unordered set ``chosen``: sum over orders of sequential draws without replacement."""
    w = prob * np.where(np.isin(np.arange(prob.size), last), np.exp(lam), 1.0)
    w = w * np.where(np.isin(np.arange(prob.size), previous), np.exp(lam_previous), 1.0)
    w = w / w.sum()
    total = 0.0
    for order in itertools.permutations(chosen):
        left, p = 1.0, 1.0
        for j in order:
            p *= w[j] / left
            left -= w[j]
        total += p
    return total


@pytest.mark.parametrize("lam", [1.2, -1.5])
def test_item_sets_follow_the_logit_drawn_without_replacement_with_state(lam):
    prob = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
    n, last = 60_000, [1, 3]
    items, state_items, state_count = _choose(n, prob, lam, last, 2)
    assert np.all(items[:, 0] != items[:, 1])
    pairs = np.sort(items, axis=1)
    for pair in itertools.combinations(range(5), 2):
        expected = _set_probability(prob, lam, last, pair)
        share = np.mean((pairs[:, 0] == pair[0]) & (pairs[:, 1] == pair[1]))
        assert abs(share - expected) < 4.5 * np.sqrt(expected * (1 - expected) / n), pair
    # the state now holds each occasion's own set
    assert np.all(state_count == 2) and np.array_equal(state_items[:, 0, :2], items)


@pytest.mark.parametrize(("lam", "lam_previous"), [(1.2, 0.8), (0.5, -1.5), (-1.0, 2.0)])
def test_a_both_state_gives_the_previous_occasions_items_their_own_pull(lam, lam_previous):
    # state [1, 3, 4], item 1 bought on the previous occasion: it gains lam + lam_previous, 3 and 4 lam
    # (mixed signs take the proposal-and-acceptance path for some items and the extra mass for others)
    prob = np.array([0.3, 0.2, 0.2, 0.15, 0.15])
    n, last = 60_000, [1, 3, 4]
    items, state_items, state_count = _choose(n, prob, lam, last, 2, lam_previous=lam_previous, n_previous=1)
    pairs = np.sort(items, axis=1)
    for pair in itertools.combinations(range(5), 2):
        expected = _set_probability(prob, lam, last, pair, lam_previous, previous=[1])
        share = np.mean((pairs[:, 0] == pair[0]) & (pairs[:, 1] == pair[1]))
        assert abs(share - expected) < 4.5 * np.sqrt(expected * (1 - expected) / n), pair
    # an "ever" state: the two items bought, then the earlier ones they did not repeat (most recent first)
    for row in range(50):
        want = product_stage.next_ever_state(np.array(last), items[row])
        np.testing.assert_array_equal(state_items[row, 0, :state_count[row, 0]], want)


def test_a_deal_hunting_week_reweights_the_logit_by_the_discounts():
    # the shift moves the discount coefficient: probabilities times exp(shift * discount), renormalised
    prob = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
    discount = np.array([0.0, -0.3, 0.0, -0.6, 0.0])  # log(1 - depth) of items 1 and 3
    n, lam = 60_000, 0.7
    shift = np.where(np.arange(n) % 2 == 0, -1.5, 1.0)
    items, _, _ = _choose(n, prob, lam, [2], 1, shift=shift, discount=discount)
    for value in (-1.5, 1.0):
        rows = items[shift == value, 0]
        want = prob * np.exp(value * discount) * np.where(np.arange(5) == 2, np.exp(lam), 1.0)
        want /= want.sum()
        counts = np.bincount(rows, minlength=5)
        assert stats.chisquare(counts, want * rows.size).pvalue > 1e-4
    # no shift: the same uniforms give the same items as without the argument
    plain, _, _ = _choose(2_000, prob, lam, [2], 2)
    zero, _, _ = _choose(2_000, prob, lam, [2], 2, shift=np.zeros(2_000), discount=discount)
    np.testing.assert_array_equal(plain, zero)


def _discount_dispersion(batch, prices):
    """Dispersion of customer-weeks' discounted-line counts around each customer's share (1: independent lines)."""
    lines = batch.lines
    discounted = prices.depth[lines["product"].to_numpy(), lines["week"].to_numpy()] > 0
    frame = pd.DataFrame({"customer": lines["customer"], "week": lines["week"], "x": discounted.astype(float)})
    share = frame.groupby("customer")["x"].transform("mean")
    weeks = frame.assign(p=share, v=share * (1 - share)).groupby(["customer", "week"])[["x", "p", "v"]].sum()
    return float(((weeks["x"] - weeks["p"]) ** 2).sum() / weeks["v"].sum())


def test_deal_hunting_weeks_make_whole_weeks_lean_toward_or_away_from_deals(world):
    catalogue, prices, draw, customers, batch = world
    hunting = dataclasses.replace(draw, deal_week_sd=6.0, deal_week_points=3)  # 15% of item-weeks discounted
    with_weeks = simulate_batch(hunting, customers, catalogue, prices, seed=5)
    again = simulate_batch(hunting, customers, catalogue, prices, seed=5)
    pd.testing.assert_frame_equal(with_weeks.lines, again.lines)  # one seed, one output
    assert _discount_dispersion(with_weeks, prices) > _discount_dispersion(batch, prices) + 0.12  # 0.86 -> 1.05
    # the visits and category purchases do not see the week's deviation: the same occasions, other items
    pd.testing.assert_frame_equal(with_weeks.visits, batch.visits)
    for bad in ({"deal_week_sd": -0.1, "deal_week_points": 3}, {"deal_week_sd": 0.5, "deal_week_points": 1}):
        with pytest.raises(ValueError, match="deal_week"):
            dataclasses.replace(draw, **bad).check(catalogue, N_WEEKS)


def test_deal_week_shifts_lie_on_the_grid_with_equal_frequency():
    locations = np.array([-1.2, 0.0, 1.2])
    keys = customer_keys(7, 0, np.arange(30_000))
    shifts = _kernels.deal_week_shifts(keys, 3, 0.5, locations)
    counts = np.array([(np.isclose(shifts, 0.5 * x)).sum() for x in locations])
    assert counts.sum() == keys.size
    assert stats.chisquare(counts).pvalue > 1e-4
    other_week = _kernels.deal_week_shifts(keys, 4, 0.5, locations)
    assert np.mean(other_week == shifts) < 0.4  # a fresh point every week


def test_a_dominant_item_still_gives_the_exact_law_when_rejection_gives_up():
    prob = np.array([0.995, 0.002, 0.002, 0.001])
    n = 20_000
    items, _, _ = _choose(n, prob, 0.0, [], 3, seed=4)
    sets = np.sort(items, axis=1)
    assert np.all(sets[:, 0] == 0)  # item 0 is in every set of 3 out of 4 (only {1, 2, 3} lacks it)
    for rest in itertools.combinations(range(1, 4), 2):
        expected = _set_probability(prob, 0.0, [], (0, *rest))
        share = np.mean((sets[:, 1] == rest[0]) & (sets[:, 2] == rest[1]))
        assert abs(share - expected) < 4.5 * np.sqrt(expected * (1 - expected) / n), rest


def test_quantities_and_tail_products_follow_their_laws(world):
    catalogue, prices, draw, customers, batch = world
    lines = batch.lines
    product, week = lines["product"].to_numpy(), lines["week"].to_numpy()
    item = catalogue.product_item()[product]
    category = catalogue.item_category[item]
    mean = np.exp(draw.quantity_intercept[item] + draw.kappa[category] * prices.depth[product, week]
                  + customers.basket[lines["customer"].to_numpy()])
    variance = mean + mean**2 / draw.alpha[category]
    assert lines["quantity"].min() >= 1
    assert abs(_z((lines["quantity"] - 1).sum(), mean.sum(), variance.sum())) < 4
    tail = catalogue.item_product[item] < 0
    for c in range(catalogue.n_categories):
        rows = catalogue.tail_product[catalogue.tail_start[c]:catalogue.tail_start[c] + catalogue.tail_count[c]]
        share = np.diff(np.r_[0.0, catalogue.tail_cumshare[catalogue.tail_start[c]:][: rows.size]])
        got = product[tail & (category == c)]
        counts = np.array([(got == r).sum() for r in rows])
        assert counts.sum() > 50
        assert stats.chisquare(counts, share * counts.sum()).pvalue > 1e-4


def test_state_dependence_repeats_the_last_items(world):
    catalogue, prices, draw, customers, _ = world
    sticky = dataclasses.replace(draw, class_coefficients=draw.class_coefficients.copy(),
                                 log_extra_rate=np.full(catalogue.n_categories, -30.0))
    sticky.class_coefficients[:, 2] = 8.0
    loose = dataclasses.replace(sticky, class_coefficients=sticky.class_coefficients.copy())
    loose.class_coefficients[:, 2] = 0.0

    def repeat_share(d):
        lines = simulate_batch(d, customers, catalogue, prices, seed=9).lines
        item = catalogue.product_item()[lines["product"].to_numpy()]
        frame = lines.assign(item=item, category=catalogue.item_category[item]).sort_values(["customer", "category", "week"])
        same = (frame["customer"].diff() == 0) & (frame["category"].diff() == 0)
        return (frame["item"].diff() == 0)[same].mean()

    assert repeat_share(sticky) > 0.97 and repeat_share(loose) < 0.6


def test_inputs_with_wrong_shapes_are_named(world):
    catalogue, prices, draw, customers, _ = world
    with pytest.raises(ValueError, match="kappa"):
        simulate_batch(dataclasses.replace(draw, kappa=np.zeros(2)), customers, catalogue, prices, seed=1)
    with pytest.raises(ValueError, match="product_class"):
        bad = dataclasses.replace(customers, product_class=np.full(customers.size, 99))
        simulate_batch(draw, bad, catalogue, prices, seed=1)
    with pytest.raises(ValueError, match="depths"):
        dataclasses.replace(prices, depth=prices.depth + 1.0)


def _with_previous(draw, lam_previous):
    """``draw`` under the ``"both"`` memory: a previous-occasion column after the state coefficient."""
    theta = draw.class_coefficients
    column = np.full((theta.shape[0], 1), lam_previous)
    return dataclasses.replace(draw, state_memory="both",
                               class_coefficients=np.hstack([theta[:, :3], column, theta[:, 3:]]))


def test_a_both_state_without_a_previous_pull_is_the_ever_state_and_with_one_repeats_the_previous_items(world):
    catalogue, prices, draw, customers, _ = world
    single = np.full(catalogue.n_categories, -30.0)  # one item per occasion: repeats are easy to read
    ever = dataclasses.replace(draw, class_coefficients=draw.class_coefficients.copy(), log_extra_rate=single,
                               state_memory="ever")
    ever.class_coefficients[:, 2] = 1.0
    same = simulate_batch(_with_previous(ever, 0.0), customers, catalogue, prices, seed=9)
    pd.testing.assert_frame_equal(same.lines, simulate_batch(ever, customers, catalogue, prices, seed=9).lines)

    def previous_repeats(d):
        lines = simulate_batch(d, customers, catalogue, prices, seed=9).lines
        item = catalogue.product_item()[lines["product"].to_numpy()]
        frame = lines.assign(item=item, category=catalogue.item_category[item]).sort_values(["customer", "category", "week"])
        later = frame.groupby(["customer", "category"]).cumcount() > 0
        return (frame["item"].diff() == 0)[later].mean()

    assert previous_repeats(_with_previous(ever, 2.0)) > previous_repeats(ever) + 0.1
    with pytest.raises(ValueError, match="class_coefficients"):
        simulate_batch(dataclasses.replace(ever, state_memory="both"), customers, catalogue, prices, seed=1)


def test_ever_state_update_is_the_product_stages_recursion():
    from bayes_retail.models import product

    assert _kernels.MAX_STATE_ITEMS == product.EVER_STATE_ITEMS
    rng = np.random.default_rng(2)
    state_items = np.zeros((1, 1, _kernels.MAX_STATE_ITEMS), dtype=np.int64)
    state_count = np.zeros((1, 1), dtype=np.int64)
    want = None
    for _ in range(40):
        bought = rng.choice(50, rng.integers(1, 6), replace=False).astype(np.int64)
        _kernels._update_ever_state(state_items[0, 0], state_count, 0, 0, bought)
        want = product.next_ever_state(want, bought)
        np.testing.assert_array_equal(state_items[0, 0, :state_count[0, 0]], want)
    assert state_count[0, 0] == _kernels.MAX_STATE_ITEMS


def test_an_ever_state_brings_customers_back_to_items_bought_before_the_last_occasion(world):
    catalogue, prices, draw, customers, _ = world
    single = np.full(catalogue.n_categories, -30.0)  # one item per occasion: the state is then easy to read
    last = dataclasses.replace(draw, class_coefficients=draw.class_coefficients.copy(), log_extra_rate=single)
    last.class_coefficients[:, 2] = 2.0
    ever = dataclasses.replace(last, state_memory="ever")

    def repeats(d):
        """Share of non-first category purchases that repeat the previous item / any earlier item."""
        lines = simulate_batch(d, customers, catalogue, prices, seed=9).lines
        item = catalogue.product_item()[lines["product"].to_numpy()]
        frame = lines.assign(item=item, category=catalogue.item_category[item]).sort_values(["customer", "category", "week"])
        group = frame.groupby(["customer", "category"])["item"]
        later = group.cumcount() > 0
        previous = (frame["item"].diff() == 0)[later].mean()
        earlier = frame.assign(seen=group.transform(lambda s: s.duplicated()))["seen"][later].mean()
        return previous, earlier

    last_previous, last_earlier = repeats(last)
    ever_previous, ever_earlier = repeats(ever)
    # the same coefficient on every earlier item: customers return to older items (0.15 of later purchases here
    # against 0.05 under "last"), and the previous item's pull is shared with them
    assert ever_earlier - ever_previous > 2 * (last_earlier - last_previous) > 0
    assert ever_previous < last_previous
    with pytest.raises(ValueError, match="state_memory"):
        simulate_batch(dataclasses.replace(draw, state_memory="always"), customers, catalogue, prices, seed=1)


def test_an_other_item_becomes_distinct_tail_products_in_the_observed_numbers(world):
    catalogue, prices, draw, customers, _ = world
    size_probs = np.array([0.5, 0.3, 0.2])  # the synthetic catalogue has 3 tail products per category
    multi = dataclasses.replace(catalogue, tail_size_cumprob=np.tile(np.cumsum(size_probs), (catalogue.n_categories, 1)))
    lines = simulate_batch(draw, customers, multi, prices, seed=4).lines
    item = multi.product_item()[lines["product"].to_numpy()]
    tail = multi.item_product[item] < 0
    occasion = lines.loc[tail].assign(category=multi.item_category[item[tail]])
    per = occasion.groupby(["customer", "week", "category"])["product"]
    assert (per.nunique() == per.size()).all()  # distinct products within an occasion
    counts = per.size().value_counts().reindex([1, 2, 3], fill_value=0).to_numpy()
    assert counts.sum() > 500
    assert stats.chisquare(counts, size_probs * counts.sum()).pvalue > 1e-4
    single = simulate_batch(draw, customers, catalogue, prices, seed=4).lines
    assert len(lines) > len(single)
    # one tail product per "other" item: the same draws as a catalogue without the table
    one = dataclasses.replace(catalogue, tail_size_cumprob=np.ones((catalogue.n_categories, 1)))
    pd.testing.assert_frame_equal(simulate_batch(draw, customers, one, prices, seed=4).lines, single)


def test_tail_size_table_is_checked(world):
    catalogue = world[0]
    with pytest.raises(ValueError, match="tail_size_cumprob"):
        dataclasses.replace(catalogue, tail_size_cumprob=np.ones((2, 1)))
    with pytest.raises(ValueError, match="rise to 1"):
        dataclasses.replace(catalogue, tail_size_cumprob=np.tile([0.6, 0.5], (catalogue.n_categories, 1)))


def test_shock_loadings_give_each_category_its_own_share_of_the_weeks_shock():
    n, rate, sigma = 40_000, 0.2, 0.8
    loading = np.array([0.3, 1.0, 2.5])
    keys = customer_keys(4, 0, np.arange(n))
    args = (keys, 0, np.ones(n, dtype=np.int64), np.ones((n, 3)), np.full((1, 3), rate), np.zeros(n, dtype=np.int64))
    customer, category, _ = _kernels.category_week(*args, sigma, 0.0, 1.0, loading)
    bought = np.zeros((n, 3))
    bought[customer, category] = 1.0
    nodes, weights = np.polynomial.hermite.hermgauss(60)
    weights = weights / np.sqrt(np.pi)
    # given the shock z, category c buys with 1 - exp(-rate exp(lambda_c z)), independently of the others
    p = -np.expm1(-rate * np.exp(np.sqrt(2.0) * sigma * nodes[:, None] * loading[None, :]))
    mean = weights @ p
    np.testing.assert_allclose(bought.mean(axis=0), mean, atol=4 * np.sqrt(mean * (1 - mean) / n).max())
    for a, b in ((0, 1), (0, 2), (1, 2)):
        both = weights @ (p[:, a] * p[:, b])
        assert abs(np.mean(bought[:, a] * bought[:, b]) - both) < 4 * np.sqrt(both / n), (a, b)
    # the heavily loaded pair moves together far more than the lightly loaded one
    lift = lambda a, b: np.mean(bought[:, a] * bought[:, b]) / (bought[:, a].mean() * bought[:, b].mean())
    assert lift(1, 2) - 1 > 3 * (lift(0, 1) - 1) > 0
    # an empty loading array is the shared shock, draw for draw
    shared = _kernels.category_week(*args, sigma)
    same = _kernels.category_week(*args, sigma, 0.0, 1.0, np.ones(3))
    assert all(np.array_equal(x, y) for x, y in zip(shared, same))


def test_a_household_week_shock_spreads_the_categories_of_a_week_as_the_model_says():
    n, n_c, rate, sigma = 40_000, 10, 0.2, 0.8
    keys = customer_keys(3, 0, np.arange(n))
    args = (keys, 0, np.ones(n, dtype=np.int64), np.ones((n, n_c)), np.full((1, n_c), rate), np.zeros(n, dtype=np.int64))
    count = np.bincount(_kernels.category_week(*args, sigma)[0], minlength=n)
    plain = np.bincount(_kernels.category_week(*args)[0], minlength=n)
    nodes, weights = np.polynomial.hermite.hermgauss(60)
    p = -np.expm1(-rate * np.exp(np.sqrt(2.0) * sigma * nodes))  # purchase probability given the shock
    weights = weights / np.sqrt(np.pi)
    mean = n_c * (weights * p).sum()
    variance = (weights * n_c * p * (1 - p)).sum() + (weights * (n_c * p) ** 2).sum() - mean**2
    assert abs(count.mean() - mean) < 4 * np.sqrt(variance / n)
    assert count.var() == pytest.approx(variance, rel=0.05)
    assert count.var() > 1.5 * plain.var()  # without the shock: a binomial count


def _tail_lines_after_tail(lines, catalogue):
    """Tail lines whose customer's previous occasion in the category bought one tail product: that product too."""
    item = catalogue.product_item()[lines["product"].to_numpy()]
    frame = lines.assign(category=catalogue.item_category[item], tail=catalogue.item_product[item] < 0)
    weeks = frame[["customer", "category", "week"]].drop_duplicates().sort_values(["customer", "category", "week"])
    weeks["previous"] = weeks.groupby(["customer", "category"])["week"].shift(fill_value=-1)
    tails = frame.loc[frame["tail"], ["customer", "category", "week", "product"]]
    before = tails.rename(columns={"week": "previous", "product": "previous_product"})
    return tails.merge(weeks, on=["customer", "category", "week"]).merge(before, on=["customer", "category", "previous"])


def test_a_tail_product_is_bought_again_with_the_categorys_repeat_probability(world):
    catalogue, prices, draw, customers, batch = world
    cum = np.append(0.0, catalogue.tail_cumshare)
    share = np.diff(cum)
    share[catalogue.tail_start] = catalogue.tail_cumshare[catalogue.tail_start]  # each group's first share
    share_of = dict(zip(catalogue.tail_product, share))
    repeat = np.array([0.0, 0.3, 0.6, 1.0])
    lines = simulate_batch(draw, customers, dataclasses.replace(catalogue, tail_repeat=repeat), prices, seed=5).lines
    eligible = _tail_lines_after_tail(lines, catalogue)
    hit = (eligible["product"] == eligible["previous_product"]).to_numpy()
    r = repeat[eligible["category"].to_numpy()]
    chance = eligible["previous_product"].map(share_of).to_numpy()
    expected = r + (1 - r) * chance
    assert len(eligible) > 2000
    assert hit[r == 1.0].all()  # certain repeat: every such line is the previous occasion's tail product
    assert abs(_z(hit.sum(), expected.sum(), (expected * (1 - expected)).sum())) < 4
    for c in (0, 1, 2):  # and per category, where the chance of a repeat by share alone is small
        mask = eligible["category"].to_numpy() == c
        e = expected[mask]
        assert abs(_z(hit[mask].sum(), e.sum(), (e * (1 - e)).sum())) < 4
    # no repeat probability: exactly the draws of a catalogue without one
    none = simulate_batch(draw, customers, dataclasses.replace(catalogue, tail_repeat=np.zeros(4)), prices, seed=5)
    pd.testing.assert_frame_equal(none.lines, batch.lines)


def test_tail_repeat_probabilities_are_checked(world):
    catalogue = world[0]
    with pytest.raises(ValueError, match="tail_repeat must have shape"):
        dataclasses.replace(catalogue, tail_repeat=np.zeros(3))
    with pytest.raises(ValueError, match=r"tail_repeat must lie in \[0, 1\]"):
        dataclasses.replace(catalogue, tail_repeat=np.array([0.1, 0.2, 1.5, 0.0]))


def _tail_shares(catalogue):
    cum = np.append(0.0, catalogue.tail_cumshare)
    share = np.diff(cum)
    share[catalogue.tail_start] = catalogue.tail_cumshare[catalogue.tail_start]  # each group's first share
    return share


def test_promoted_tail_products_are_chosen_with_the_categorys_promotion_weight(world):
    catalogue, prices, draw, customers, batch = world
    effect = np.array([0.0, 1.0, 2.5, -1.0])
    lines = simulate_batch(draw, customers, dataclasses.replace(catalogue, tail_promotion=effect), prices, seed=5).lines
    share = _tail_shares(catalogue)
    on = ((prices.display > 0) | (prices.mailer > 0))[catalogue.tail_product]  # (tail, W)
    item = catalogue.product_item()[lines["product"].to_numpy()]
    tail_lines = lines[catalogue.item_product[item] < 0]
    category = catalogue.item_category[catalogue.product_item()[tail_lines["product"].to_numpy()]]
    row = np.searchsorted(catalogue.tail_product, tail_lines["product"].to_numpy())
    week = tail_lines["week"].to_numpy()
    hit = on[row, week]
    # P(the line's product is promoted) for its category and week under share x exp(effect * promoted)
    expected = np.empty(len(tail_lines))
    for c in range(catalogue.n_categories):
        rows = slice(catalogue.tail_start[c], catalogue.tail_start[c] + catalogue.tail_count[c])
        weight = share[rows, None] * np.exp(effect[c] * on[rows])
        p_on = (weight * on[rows]).sum(axis=0) / weight.sum(axis=0)
        expected[category == c] = p_on[week[category == c]]
    for c in range(catalogue.n_categories):
        mask = category == c
        e = expected[mask]
        assert mask.sum() > 500
        assert abs(_z(hit[mask].sum(), e.sum(), (e * (1 - e)).sum())) < 4
    assert hit[category == 2].mean() > 2 * on.mean()  # a strong effect shows
    # a zero effect: exactly the draws of a catalogue without one
    none = simulate_batch(draw, customers, dataclasses.replace(catalogue, tail_promotion=np.zeros(4)), prices, seed=5)
    pd.testing.assert_frame_equal(none.lines, batch.lines)


def test_the_explicit_tail_draw_follows_the_weights_of_the_free_products():
    tail_product = np.arange(10, 14)
    cumshare = np.cumsum([0.1, 0.2, 0.3, 0.4])
    promoted = np.zeros(20)
    promoted[[11, 13]] = 1.0
    taken = np.array([12])
    keys = customer_keys(1, 0, np.arange(40_000))
    got = np.array([_kernels._explicit_tail_product(k, 3, 2, 0, 0, 4, cumshare, tail_product, taken, 0.8, promoted)
                    for k in keys])
    weight = np.array([0.1, 0.2 * np.exp(0.8), 0.0, 0.4 * np.exp(0.8)])
    expected = weight / weight.sum()
    counts = np.array([(got == p).sum() for p in tail_product])
    assert counts[2] == 0 and counts.sum() == keys.size
    assert stats.chisquare(counts[[0, 1, 3]], expected[[0, 1, 3]] * keys.size).pvalue > 1e-3
    everything = np.array([10, 11, 12, 13])
    assert _kernels._explicit_tail_product(keys[0], 3, 2, 0, 0, 4, cumshare, tail_product, everything, 0.8, promoted) == -1


def test_tail_promotion_effects_are_checked(world):
    catalogue = world[0]
    with pytest.raises(ValueError, match="tail_promotion must have shape"):
        dataclasses.replace(catalogue, tail_promotion=np.zeros(3))
    with pytest.raises(ValueError, match="tail_promotion must be finite"):
        dataclasses.replace(catalogue, tail_promotion=np.array([0.1, np.nan, 0.0, 0.0]))


# --------------------------------------------------------------------------- availability


def _shelf(catalogue, rng):
    """``(P, W)`` availability: half the choice-set products on the shelf for a random span; category 0's real
    items all off in week 3 (only its "other" left)."""
    n_p = catalogue.product_ids.size
    available = np.ones((n_p, N_WEEKS), dtype=bool)
    real_rows = catalogue.item_product[catalogue.item_product >= 0]
    for row in real_rows[rng.random(real_rows.size) < 0.5]:
        start = rng.integers(0, N_WEEKS)
        available[row] = (np.arange(N_WEEKS) >= start) & (np.arange(N_WEEKS) <= rng.integers(start, N_WEEKS))
    zero = catalogue.item_product[(catalogue.item_category == 0) & (catalogue.item_product >= 0)]
    available[zero, 3] = False
    return available


def test_items_off_the_shelf_are_never_bought_and_the_rest_share_the_logit(world):
    from bayes_retail.simulate.engine import choice_tables, class_utilities_week

    catalogue, prices, draw, customers, _ = world
    shelf = dataclasses.replace(prices, available=_shelf(catalogue, np.random.default_rng(2)))
    one_item = dataclasses.replace(draw, log_extra_rate=np.full(catalogue.n_categories, -30.0),
                                   class_coefficients=draw.class_coefficients.copy())
    one_item.class_coefficients[:, 2] = 0.0  # no state: each occasion is the week's logit
    lines = simulate_batch(one_item, customers, catalogue, shelf, seed=3).lines
    item = catalogue.product_item()[lines["product"].to_numpy()]
    week = lines["week"].to_numpy()
    available = shelf.item_available(catalogue)
    assert available[item, week].all()
    # each item's count against the sum over occasions of its renormalised logit probability
    first = lines.assign(item=item, category=catalogue.item_category[item]).drop_duplicates(
        ["customer", "week", "category"])
    cumulative, values = choice_tables(one_item, catalogue, shelf)
    # the probabilities are the differences of each category's running sums
    starts = np.repeat(catalogue.category_start, catalogue.category_items)
    shifted = np.concatenate([np.zeros(cumulative.shape[:2] + (1,), np.float32), cumulative[..., :-1]], axis=2)
    prob = cumulative.astype(float) - np.where(np.arange(starts.size) == starts, 0.0, shifted)
    klass = customers.product_class[first["customer"].to_numpy()]
    covariates = shelf.item_covariates(catalogue)
    for c in range(catalogue.n_categories):
        rows = first[first["category"] == c]
        p = prob[rows["week"].to_numpy(), klass[first["category"].to_numpy() == c]]  # (n, G)
        items = np.flatnonzero(catalogue.item_category == c)
        for j in items:
            expected = p[:, j]
            got = (rows["item"].to_numpy() == j).sum()
            assert abs(_z(got, expected.sum(), (expected * (1 - expected)).sum() + 1e-12)) < 4.5
    zero = np.flatnonzero((catalogue.item_category == 0) & (catalogue.item_product >= 0))
    assert np.all(prob[3][:, zero] == 0.0) and np.all(prob[2][:, zero[available[zero, 2]]] > 0.0)
    # the category values are the log-sum-exp over the items on the shelf
    from scipy.special import logsumexp
    u = class_utilities_week(one_item, catalogue, covariates, 3)
    on = available[:, 3] & (catalogue.item_category == 0)
    np.testing.assert_allclose(values[3][:, 0], logsumexp(u[:, on], axis=1))


def test_an_occasion_buys_no_more_distinct_items_than_are_on_the_shelf(world):
    catalogue, prices, draw, customers, _ = world
    shelf = dataclasses.replace(prices, available=_shelf(catalogue, np.random.default_rng(4)))
    many = dataclasses.replace(draw, log_extra_rate=np.full(catalogue.n_categories, 2.0))
    lines = simulate_batch(many, customers, catalogue, shelf, seed=6).lines
    item = catalogue.product_item()[lines["product"].to_numpy()]
    frame = lines.assign(item=item, category=catalogue.item_category[item])
    distinct = frame.groupby(["customer", "week", "category"])["item"].nunique()
    on_shelf = shelf.items_on_shelf(catalogue)
    limit = on_shelf[distinct.index.get_level_values("category"), distinct.index.get_level_values("week")]
    assert (distinct.to_numpy() <= limit).all() and (distinct.to_numpy() == limit).mean() > 0.3
    assert on_shelf[0, 3] == 1 and (distinct.loc[(slice(None), 3, 0)] == 1).all()
    with pytest.raises(ValueError, match="available"):
        dataclasses.replace(shelf, available=shelf.available[:, :3])
    # a category without an "other" item can run out of items
    from bayes_retail.simulate.inputs import Catalogue, PriceGrid

    bare = Catalogue(item_category=np.array([0, 0]), item_product=np.array([0, 1]), attributes=np.zeros((2, 1)),
                     tail_start=np.array([0]), tail_count=np.array([0]), tail_product=np.zeros(0, np.int64),
                     tail_cumshare=np.zeros(0), product_ids=np.array([1, 2]))
    off = np.array([[True, False, True], [True, False, False]])
    grid = PriceGrid(shelf=np.ones((2, 3)), depth=np.zeros((2, 3)), display=np.zeros((2, 3)),
                     mailer=np.zeros((2, 3)), log_shelf_centre=np.zeros(2), available=off)
    with pytest.raises(ValueError, match="category 0 has no item on the shelf in week position 1"):
        grid.items_on_shelf(bare)


def test_a_category_depth_response_adds_its_coefficient_times_the_discount(world):
    from bayes_retail.simulate.engine import class_utilities_week

    catalogue, prices, draw, customers, _ = world
    covariates = prices.item_covariates(catalogue)
    depth = np.array([1.5, 0.0, -0.7, 0.4])
    deep = dataclasses.replace(draw, depth=depth)
    discount = covariates[1]
    assert (discount < 0).any()
    for w in (0, 5):
        want = class_utilities_week(draw, catalogue, covariates, w) + (depth[catalogue.item_category] * discount[:, w])
        np.testing.assert_allclose(class_utilities_week(deep, catalogue, covariates, w), want, rtol=1e-12)
    with pytest.raises(ValueError, match="depth must have shape"):
        simulate_batch(dataclasses.replace(draw, depth=np.zeros(3)), customers, catalogue, prices, seed=5)
    # a more negative coefficient of log(1 - depth) in category 0: more of its lines bought on a discount
    n = catalogue.n_categories

    def discounted_share(d):
        lines = simulate_batch(dataclasses.replace(draw, depth=d), customers, catalogue, prices, seed=5).lines
        item = catalogue.product_item()[lines["product"].to_numpy()]
        in_zero = catalogue.item_category[item] == 0
        on_discount = prices.depth[lines["product"].to_numpy(), lines["week"].to_numpy()] > 0
        return float(on_discount[in_zero].mean())

    assert discounted_share(np.eye(n)[0] * -3.0) > discounted_share(np.zeros(n)) + 0.02
