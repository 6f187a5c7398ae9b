"""Seasonal promotion timing (bayes_retail.pricing.timing): the tilted HMM meets its weekly targets, and only them."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_retail.pricing.hmm import forward_backward
from bayes_retail.pricing.timing import (
    MAX_TILT,
    PromotionTiming,
    observed_timing,
    on_probability,
    seasonal_tilt,
)
from test_pricing_model import CAL_PATH, WEEKS, hand_model


def test_observed_timing_by_hand():
    # weeks x sequences; sequences 0, 1 in model 0, sequence 2 in model 1, model 2 has none
    display = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0]])
    mailer = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    timing = observed_timing(display, mailer, np.array([0, 0, 1]), 3, calendar=np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(timing.share[:2], [[0.5, 0.5, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    assert np.isnan(timing.share[2]).all() and list(timing.products) == [2, 1, 0]
    np.testing.assert_array_equal(timing.calendar, [0, 1, 0, 1])
    # a horizon picks data weeks by position, calendar included; smoothing averages neighbouring weeks
    later = observed_timing(display, mailer, np.array([0, 0, 1]), 3, np.array([0, 1, 2, 3, 0]),
                            calendar=np.array([0, 1, 0, 1]), smooth_weeks=3)
    np.testing.assert_allclose(later.share[0], [0.5, 1 / 3, 0.5, 2 / 3, 0.5])  # edges repeat the end week
    np.testing.assert_array_equal(later.calendar, [0, 1, 0, 1, 0])


def test_targets_shrink_toward_the_hmm_and_bad_shapes_are_named():
    timing = PromotionTiming(share=np.array([[0.0, 0.5], [np.nan, np.nan]]), products=np.array([10, 0]),
                             prior_weight=10.0)
    expected = np.array([[0.4, 0.4], [0.3, 0.3]])
    np.testing.assert_allclose(timing.target(expected), [[0.2, 0.45], [0.3, 0.3]])
    with pytest.raises(ValueError, match=r"share must be \(M, W\)"):
        PromotionTiming(share=np.zeros(3), products=np.zeros(3))
    with pytest.raises(ValueError, match="calendar must have one state per week"):
        PromotionTiming(share=np.zeros((1, 4)), products=np.ones(1), calendar=np.zeros(3))
    with pytest.raises(ValueError, match="prior_weight"):
        PromotionTiming(share=np.zeros((1, 4)), products=np.ones(1), prior_weight=-1)


def _expected_share(model, timing, lam):
    stack = model.stack
    on = on_probability(model.promo.params, model.promotion_emission().mailer_params, stack, timing.calendar)
    post = forward_backward(lam[stack.model].T[:, None, :] * on, stack.gather(model.promo.startprob),
                            stack.gather(model.promo.transmat), timing.calendar[1:])
    return (post.gamma * on).sum(axis=1).mean(axis=1)


SEASON = 0.35 + 0.2 * np.sin(2 * np.pi * WEEKS / 26)  # two promotion seasons a year, 0.15-0.55


def test_the_tilted_paths_follow_a_seasonal_target_week_by_week():
    n = 4000
    model = hand_model(n)
    timing = PromotionTiming(share=SEASON[None], products=np.array([n]), prior_weight=0.0, calendar=CAL_PATH)
    lam, info = model.promotion_tilt(timing)
    assert info["converged"] and info["at_bound"] == 0 and info["median_error"] <= 0.005
    np.testing.assert_allclose(_expected_share(model, timing, lam), SEASON, atol=0.005)
    sim = model.simulate(WEEKS, np.random.default_rng(3), timing=timing, tilt=lam)
    on = ((sim["display"] > 0) | (sim["mailer"] > 0)).to_numpy().reshape(n, WEEKS.size)
    z = (on.mean(axis=0) - SEASON) / np.sqrt(SEASON * (1 - SEASON) / n)
    assert np.abs(z).max() < 4.5
    # the untilted HMM, with the same calendar, does not follow the season
    plain = model.simulate(WEEKS, np.random.default_rng(3))
    flat = ((plain["display"] > 0) | (plain["mailer"] > 0)).to_numpy().reshape(n, WEEKS.size).mean(axis=0)
    assert np.corrcoef(flat, SEASON)[0, 1] < 0.5 < np.corrcoef(on.mean(axis=0), SEASON)[0, 1]
    # solved inside simulate when no tilt is given: the same paths
    again = model.simulate(WEEKS, np.random.default_rng(3), timing=timing)
    assert again.attrs["timing"]["converged"] and again["display"].equals(sim["display"])


def test_a_target_at_the_hmm_expectation_leaves_the_law_alone():
    model = hand_model(50)
    untilted = PromotionTiming(share=np.zeros((1, WEEKS.size)), products=np.array([50]), prior_weight=1e12,
                               calendar=CAL_PATH)  # the target is the HMM's own expectation
    lam, info = model.promotion_tilt(untilted)
    assert info["iterations"] == 1 and not lam.any()


def test_an_unreachable_target_stops_at_the_bound_and_an_untiltable_model_is_left_alone():
    t_len, n = 12, 40
    model = np.repeat([0, 1], n // 2)
    start = np.tile(np.array([0.5, 0.5])[:, None], (1, n))
    trans = np.tile(np.array([[0.8, 0.2], [0.3, 0.7]])[None, :, :, None], (1, 1, 1, n))
    on = np.empty((t_len, 2, n))
    on[:, :, model == 0] = np.array([0.1, 0.6])[None, :, None]  # model 0: at most 0.6 of its products promoted
    on[:, :, model == 1] = 0.3  # model 1: both states promote alike
    share = np.full((2, t_len), 0.4)
    share[0, 5] = 0.95  # beyond model 0's reach in week 5
    timing = PromotionTiming(share=share, products=np.array([n // 2, n // 2]), prior_weight=0.0)
    lam, info = seasonal_tilt(on, start, trans, None, model, timing, max_iter=300)
    assert info["at_bound"] == 1 and lam[0, 5] == MAX_TILT and info["converged"]
    assert not lam[1].any()
    with pytest.raises(ValueError, match="the timing has 12 weeks, the paths 11"):
        seasonal_tilt(on[:11], start, trans, None, model, timing)
