"""Trip sizes within a week: the weighted trip law, the empty-trip fill, and the plug-in estimate of the weights' spread."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import special

from bayes_retail.simulate import _kernels, simulate_batch
from bayes_retail.simulate.streams import customer_keys
from bayes_retail.simulate.synthetic import synthetic_catalogue, synthetic_customers, synthetic_draw, synthetic_prices
from bayes_retail.simulate.trips import split_log_likelihood, trip_weight_sd, two_trip_splits

N_WEEKS = 12


def _weights(key, m, sd):
    weight, cumulative = np.ones(_kernels.MAX_TRIPS), np.empty(_kernels.MAX_TRIPS)
    _kernels._trip_weights(key, 0, m, sd, weight, cumulative)
    return weight[:m].copy(), cumulative[:m].copy()


def test_trip_weights_sum_to_the_trips_and_spread_as_their_log_sd():
    keys = customer_keys(4, 0, np.arange(20_000))
    weights = np.array([_weights(k, 3, 0.8)[0] for k in keys])
    np.testing.assert_allclose(weights.sum(axis=1), 3.0, rtol=1e-12)
    # log w_t = e_t - log mean(exp e): the pairwise log ratios are e_t - e_s, sd sqrt(2) * 0.8
    ratio = np.log(weights[:, 0] / weights[:, 1])
    assert abs(ratio.mean()) < 0.03
    assert ratio.std() == pytest.approx(np.sqrt(2) * 0.8, rel=0.03)


def test_weighted_trips_keep_the_weeks_law_and_follow_their_joint_law_given_the_weights():
    n, m, rate, sd = 40_000, 3, 0.5, 1.0
    keys = customer_keys(1, 0, np.arange(n))
    customer, _, mask = _kernels.category_week(
        keys, 0, np.full(n, m), np.ones((n, 1)), np.array([[rate]]), np.zeros(n, dtype=np.int64), 0.0, sd
    )
    p_week = -np.expm1(-m * rate)  # the fitted cloglog: unchanged by the weights
    assert abs(customer.size - n * p_week) < 4.5 * np.sqrt(n * p_week * (1 - p_week))
    trip = -np.expm1(-rate * np.array([_weights(k, m, sd)[0] for k in keys]))  # (n, m) per-trip probabilities
    for s in range(1, 2**m):
        member = np.array([(s >> t) & 1 for t in range(m)], dtype=bool)
        p = np.prod(np.where(member, trip, 1 - trip), axis=1)  # each customer's probability of exactly these trips
        assert abs(np.sum(mask == s) - p.sum()) < 4.5 * np.sqrt((p * (1 - p)).sum())
    plain = _kernels.category_week(keys, 0, np.full(n, m), np.ones((n, 1)), np.array([[rate]]),
                                   np.zeros(n, dtype=np.int64))[2]
    # weights make the trips unequal: fewer weeks buy the category on every trip
    assert np.mean(mask == 2**m - 1) < np.mean(plain == 2**m - 1) - 0.02


def test_weighted_trips_make_big_shops_and_top_ups():
    n, m, n_c, rate = 20_000, 2, 12, 0.3
    keys = customer_keys(2, 0, np.arange(n))
    args = (keys, 0, np.full(n, m), np.ones((n, n_c)), np.full((1, n_c), rate), np.zeros(n, dtype=np.int64), 0.0)

    def per_trip(sd):
        customer, category, mask = _kernels.category_week(*args, sd)
        counts = np.zeros((n, m))
        for t in range(m):
            np.add.at(counts[:, t], customer, (mask >> t) & 1)
        return (customer, category), counts

    (weeks, alike), (sized_weeks, sized) = per_trip(0.0), per_trip(1.2)
    for a, b in zip(weeks, sized_weeks):  # the week's categories: the same law and the same numbers
        np.testing.assert_array_equal(a, b)
    spread = np.abs(sized[:, 0] - sized[:, 1]).mean()
    assert spread > 1.5 * np.abs(alike[:, 0] - alike[:, 1]).mean()


def test_an_empty_trip_gets_one_line_from_a_trip_with_several():
    keys = customer_keys(0, 0, np.arange(3))
    line_customer = np.array([0, 0, 0, 0, 1, 2, 2])
    line_trip = np.array([0, 0, 0, 1, 0, 1, 1])
    trips = np.array([4, 2, 3])
    _kernels.fill_empty_trips(keys, 0, line_customer, line_trip, trips)
    first = np.bincount(line_trip[:4], minlength=4)
    np.testing.assert_array_equal(first, [1, 1, 1, 1])  # trips 2 and 3 each took a line of trip 0
    assert line_trip[4] == 0  # one line, two trips: one stays empty
    np.testing.assert_array_equal(np.bincount(line_trip[5:], minlength=3), [1, 1, 0])  # two lines, three trips


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(3)
    catalogue = synthetic_catalogue(rng, n_categories=6, items=5, tail=3)
    prices = synthetic_prices(rng, catalogue, N_WEEKS)
    draw = synthetic_draw(rng, catalogue, N_WEEKS)
    customers = synthetic_customers(rng, 800, catalogue.n_categories, N_WEEKS)
    return catalogue, prices, draw, customers


def test_trip_sizes_move_lines_between_trips_only(world):
    catalogue, prices, draw, customers = world
    alike = simulate_batch(draw, customers, catalogue, prices, seed=2).lines
    sized = simulate_batch(dataclasses.replace(draw, trip_weight_sd=1.2), customers, catalogue, prices, seed=2)
    # the week's categories, items and units are drawn from the same numbers whatever the trips' sizes
    pd.testing.assert_frame_equal(sized.lines.drop(columns="trip"), alike.drop(columns="trip"))
    assert (sized.lines["trip"] != alike["trip"]).mean() > 0.05  # (the kernel test checks how they spread)
    # every drawn trip buys something when its week has at least as many lines as trips
    lines = sized.lines.groupby(["customer", "week"]).agg(lines=("trip", "size"), used=("trip", "nunique"))
    visits = sized.visits.set_index(["customer", "week"])["trips"].reindex(lines.index)
    np.testing.assert_array_equal(lines["used"], np.minimum(lines["lines"], visits))
    with pytest.raises(ValueError, match="trip_weight_sd"):
        dataclasses.replace(draw, trip_weight_sd=-0.1).check(catalogue, N_WEEKS)


# --------------------------------------------------------------------------- the plug-in estimate


def test_two_trip_splits_count_categories_by_trip():
    choice_sets = pd.DataFrame({"product_id": [1, 2, 3, 4], "category_id": [0, 0, 1, 2]})
    transactions = pd.DataFrame({
        "household_id": [7, 7, 7, 7, 7, 8, 8, 9],
        "week": [1, 1, 1, 1, 1, 1, 1, 1],
        "basket_id": [20, 20, 21, 21, 21, 30, 30, 40],
        "product_id": [1, 3, 2, 4, 4, 1, 3, 1],
    })
    # household 7: basket 20 buys categories 0, 1; basket 21 buys 0 and 2 -> 1 first-only, 1 second-only, 1 both.
    # households 8 and 9 made one trip: not two-trip weeks.
    np.testing.assert_array_equal(two_trip_splits(transactions, choice_sets), [[1, 1, 1]])
    with pytest.raises(ValueError, match="product_id 5"):
        two_trip_splits(transactions.assign(product_id=[1, 3, 2, 4, 5, 1, 3, 1]), choice_sets)


def test_split_likelihood_at_equal_trips_is_the_truncated_binomial():
    splits = np.array([[2, 1, 0], [3, 0, 1]])
    # pi = 1/2: (1/2)^3 / (1 - 2 (1/2)^3) for the first week (both trips must buy); (1/2)^3 for the second
    expected = 3 * np.log(0.5) - np.log(1 - 2 * 0.5**3) + 3 * np.log(0.5)
    assert split_log_likelihood(splits, 0.0) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="sd"):
        split_log_likelihood(splits, -1.0)


def _simulated_splits(rng, sd, n_weeks):
    """Two-trip weeks under the estimator's own model: binomial splits given logit(pi) ~ N(0, 2 sd^2),
    some categories on both trips, weeks with an empty trip unseen."""
    logit = rng.normal(0.0, np.sqrt(2.0) * sd, n_weeks)
    total = 1 + rng.poisson(6.0, n_weeks)
    first = rng.binomial(total, special.expit(logit))
    both = rng.poisson(0.8, n_weeks)
    seen = (both > 0) | ((first > 0) & (first < total))
    return np.column_stack([first, total - first, both])[seen]


@pytest.mark.parametrize("truth", [0.4, 1.2])
def test_the_trip_weight_sd_is_recovered_from_two_trip_weeks(truth, monkeypatch):
    splits = _simulated_splits(np.random.default_rng(int(truth * 10)), truth, 6_000)
    from bayes_retail.simulate import trips

    monkeypatch.setattr(trips, "two_trip_splits", lambda *_: splits)
    assert trip_weight_sd(None, None) == pytest.approx(truth, abs=0.06)


def test_no_two_trip_weeks_means_alike_trips(monkeypatch):
    from bayes_retail.simulate import trips

    monkeypatch.setattr(trips, "two_trip_splits", lambda *_: np.zeros((0, 3), dtype=np.int64))
    assert trip_weight_sd(None, None) == 0.0


def test_the_trips_elasticity_scales_the_weeks_exposure():
    n, m, rate, gamma = 40_000, 4, 0.3, 0.6
    keys = customer_keys(6, 0, np.arange(n))
    customer, _, mask = _kernels.category_week(
        keys, 0, np.full(n, m), np.ones((n, 1)), np.array([[rate]]), np.zeros(n, dtype=np.int64), 0.0, 1.0, gamma
    )
    p_week = -np.expm1(-m**gamma * rate)  # the category stage's 1 - exp(-n^gamma exp(eta))
    assert abs(customer.size - n * p_week) < 4.5 * np.sqrt(n * p_week * (1 - p_week))
    assert m**gamma * rate < 0.75 * m * rate  # a real difference from the plain offset
    assert mask.max() < 2**m
