"""The batched HMM engine (bayes_retail.pricing.hmm) against brute force and hmmlearn.

Brute force: on short sequences every one of the K^T state paths is enumerated
and its probability is computed from emission densities written out here with
scipy (not the package's emission code), so the forward-backward recursion and
the zero-inflated missing-data emissions are checked together.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM
from scipy import stats

from bayes_retail.pricing.emissions import PromotionEmission, RelativePriceEmission
from bayes_retail.pricing.hmm import (
    Stack,
    _draw,
    forward_backward,
    sample_paths,
    sample_posterior_paths,
    stationary_distribution,
)
from bayes_retail.pricing.hmmlearn_models import MISSING, PromotionHMM, RelativePriceHMM

ONE = Stack(np.zeros(1, dtype=np.int64), 1)

START = np.array([0.6, 0.4])
TRANS = np.array([[0.8, 0.2], [0.3, 0.7]])
PRICE = {"p_zero": np.array([[0.7, 0.2]]), "mu": np.array([[-0.1, 0.15]]), "var": np.array([[0.01, 0.02]])}
PROMO = {
    "p_display": np.array([[0.1, 0.4, 0.9]]),
    "p_mailer": np.array([[0.05, 0.3, 0.8]]),
    "p_zero": np.array([[0.9, 0.3, 0.1]]),
    "depth_mu": np.array([[-2.0, -1.2, -0.3]]),
    "depth_var": np.array([[0.5, 0.2, 0.3]]),
}
START3 = np.array([0.5, 0.3, 0.2])
TRANS3 = np.array([[0.85, 0.1, 0.05], [0.3, 0.6, 0.1], [0.4, 0.1, 0.5]])


# --------------------------------------------------------------------------- independent densities


def _zin_density(v, p_zero, mu, var, *, logit):
    """Density of one zero-inflated value; NaN (missing) contributes a factor 1."""
    if np.isnan(v):
        return 1.0
    if v == 0:
        return p_zero
    if logit:
        y = np.log(v / (1 - v))
        return (1 - p_zero) * stats.norm.pdf(y, mu, np.sqrt(var)) / (v * (1 - v))
    return (1 - p_zero) * stats.norm.pdf(v, mu, np.sqrt(var))


def _price_density(x, k, p=PRICE):
    return _zin_density(x, p["p_zero"][0, k], p["mu"][0, k], p["var"][0, k], logit=False)


def _promo_density(display, mailer, depth, k, p=PROMO):
    pd_, pm = p["p_display"][0, k], p["p_mailer"][0, k]
    out = pd_ if display else 1 - pd_
    out *= pm if mailer else 1 - pm
    return out * _zin_density(depth, p["p_zero"][0, k], p["depth_mu"][0, k], p["depth_var"][0, k], logit=True)


def _brute_force(b, start, trans, calendar=None):
    """Enumerate all paths. ``b``: (T, K) emission densities; ``trans``: (C, K, K).

    Returns the log-likelihood, (T, K) state marginals and (C, K, K) expected
    transition counts by calendar state.
    """
    t_len, k = b.shape
    cal = np.zeros(t_len - 1, dtype=int) if calendar is None else np.asarray(calendar)
    total, gamma, xi = 0.0, np.zeros((t_len, k)), np.zeros(trans.shape)
    for path in itertools.product(range(k), repeat=t_len):
        p = start[path[0]] * b[0, path[0]]
        for t in range(1, t_len):
            p *= trans[cal[t - 1], path[t - 1], path[t]] * b[t, path[t]]
        total += p
        for t in range(t_len):
            gamma[t, path[t]] += p
        for t in range(t_len - 1):
            xi[cal[t], path[t], path[t + 1]] += p
    return np.log(total), gamma / total, xi / total


def _one_sequence(start, trans):
    """Engine layout for a single sequence: (K, 1) start and (C, K, K, 1) transitions."""
    trans = np.asarray(trans)
    if trans.ndim == 2:
        trans = trans[None]
    return start[:, None], trans[..., None]


# --------------------------------------------------------------------------- forward-backward


@pytest.mark.parametrize("with_missing", [False, True])
def test_forward_backward_matches_path_enumeration_for_relative_prices(with_missing):
    # exact zeros, non-zero values and (optionally) missing weeks: all three branches
    x = np.array([0.0, 0.12, -0.08, 0.0, 0.2, 0.0])
    if with_missing:
        x[[1, 3]] = np.nan
    b = np.array([[_price_density(v, k) for k in range(2)] for v in x])
    ll, gamma, xi = _brute_force(b, START, TRANS[None])

    log_b = RelativePriceEmission().log_likelihood(PRICE, {"x": x[:, None]}, ONE)
    post = forward_backward(log_b, *_one_sequence(START, TRANS))

    assert post.loglik[0] == pytest.approx(ll, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(post.gamma[:, :, 0], gamma, atol=1e-12)
    np.testing.assert_allclose(post.xi[..., 0], xi, atol=1e-12)


@pytest.mark.parametrize("with_missing", [False, True])
def test_forward_backward_matches_path_enumeration_for_promotions(with_missing):
    display = np.array([0, 1, 1, 0, 0])
    mailer = np.array([0, 1, 0, 0, 1])
    depth = np.array([0.0, 0.35, 0.2, 0.0, 0.05])
    if with_missing:
        depth[[0, 2, 3]] = np.nan
    b = np.array([[_promo_density(d, m, x, k) for k in range(3)] for d, m, x in zip(display, mailer, depth)])
    ll, gamma, xi = _brute_force(b, START3, TRANS3[None])

    obs = {"display": display[:, None].astype(bool), "mailer": mailer[:, None].astype(bool), "depth": depth[:, None]}
    post = forward_backward(PromotionEmission().log_likelihood(PROMO, obs, ONE), *_one_sequence(START3, TRANS3))

    assert post.loglik[0] == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(post.gamma[:, :, 0], gamma, atol=1e-12)
    np.testing.assert_allclose(post.xi[..., 0], xi, atol=1e-12)


def test_an_all_missing_sequence_has_likelihood_one_and_prior_marginals():
    # every week uninformative: P(data) = 1 and the smoothing posterior is the prior chain's marginals
    log_b = RelativePriceEmission().log_likelihood(PRICE, {"x": np.full((5, 1), np.nan)}, ONE)
    post = forward_backward(log_b, *_one_sequence(START, TRANS))
    assert post.loglik[0] == pytest.approx(0.0, abs=1e-14)
    prior = [START]
    for _ in range(4):
        prior.append(prior[-1] @ TRANS)
    np.testing.assert_allclose(post.gamma[:, :, 0], np.array(prior), atol=1e-14)


def test_forward_backward_with_a_calendar_matches_path_enumeration():
    # two calendar regimes with very different transitions; calendar[t] governs week t -> t + 1
    trans = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.3, 0.7], [0.05, 0.95]]])
    calendar = np.array([0, 1, 1, 0, 1])
    x = np.array([0.0, np.nan, 0.1, 0.0, np.nan, 0.16])
    b = np.array([[_price_density(v, k) for k in range(2)] for v in x])
    ll, gamma, xi = _brute_force(b, START, trans, calendar)

    log_b = RelativePriceEmission().log_likelihood(PRICE, {"x": x[:, None]}, ONE)
    post = forward_backward(log_b, *_one_sequence(START, trans), calendar)

    assert post.loglik[0] == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(post.gamma[:, :, 0], gamma, atol=1e-12)
    np.testing.assert_allclose(post.xi[..., 0], xi, atol=1e-12)  # split by calendar state
    # ignoring the calendar gives a different answer: the test can tell them apart
    plain = forward_backward(log_b, *_one_sequence(START, trans[0]))
    assert abs(plain.loglik[0] - ll) > 1e-3
    # without the transition counts (the tilt and path sampling need none) the rest is the same, bit for bit
    lean = forward_backward(log_b, *_one_sequence(START, trans), calendar, transitions=False)
    assert lean.xi is None
    for name in ("loglik", "gamma", "alpha"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(post, name))


def test_calendar_must_have_one_state_per_transition():
    log_b = np.zeros((4, 2, 1))
    with pytest.raises(ValueError, match="one state per transition"):
        forward_backward(log_b, *_one_sequence(START, np.stack([TRANS, TRANS])), np.zeros(4, dtype=int))


def test_sequences_of_a_stack_are_independent():
    # the batched result for each column equals a run on that column alone
    rng = np.random.default_rng(3)
    x = np.where(rng.random((8, 5)) < 0.4, 0.0, rng.normal(0, 0.1, (8, 5)))
    x[rng.random((8, 5)) < 0.3] = np.nan
    stack = Stack(np.array([0, 0, 1, 1, 1]), 2)
    params = {k: np.vstack([v, v[:, ::-1]]) for k, v in PRICE.items()}  # model 1: states swapped
    start = np.array([START, START[::-1]])
    trans = np.array([[TRANS], [TRANS.T / TRANS.T.sum(1, keepdims=True)]])
    log_b = RelativePriceEmission().log_likelihood(params, {"x": x}, stack)
    post = forward_backward(log_b, stack.gather(start), stack.gather(trans))
    for n, m in enumerate(stack.model):
        one = forward_backward(
            RelativePriceEmission().log_likelihood({k: v[[m]] for k, v in params.items()}, {"x": x[:, [n]]}, ONE),
            start[m][:, None],
            trans[m][..., None],
        )
        assert post.loglik[n] == pytest.approx(one.loglik[0], rel=1e-13)
        np.testing.assert_allclose(post.gamma[:, :, n], one.gamma[:, :, 0], atol=1e-13)


def test_scaling_survives_emissions_that_underflow_exp():
    # log-densities of -2000 underflow exp() to 0; the per-week offset must keep the recursion exact:
    # adding c_t to every state's log-density of week t adds sum(c_t) to the log-likelihood, gamma unchanged
    rng = np.random.default_rng(0)
    log_b = rng.normal(0, 1, (30, 2, 1))
    shift = rng.uniform(-3000, -1000, 30)
    start, trans = _one_sequence(START, TRANS)
    base = forward_backward(log_b, start, trans)
    shifted = forward_backward(log_b + shift[:, None, None], start, trans)
    assert np.isfinite(shifted.loglik).all()
    assert shifted.loglik[0] == pytest.approx(base.loglik[0] + shift.sum(), rel=1e-12)
    np.testing.assert_allclose(shifted.gamma, base.gamma, atol=1e-12)


def test_relative_price_loglik_equals_gaussian_hmm_score_plus_log1m_p_zero():
    # with no exact zero and no missing value, every observation is a "non-zero" one, so the
    # zero-inflated density is (1 - p_zero) * Normal; with p_zero equal across states that factor
    # leaves the path sum and adds T * log(1 - p_zero) to hmmlearn's Gaussian log-likelihood
    means, var = np.array([-0.2, 0.0, 0.15]), np.array([0.01, 0.002, 0.02])
    gauss = GaussianHMM(3, covariance_type="diag", init_params="", params="")
    gauss.startprob_, gauss.transmat_ = START3, TRANS3
    gauss.means_, gauss.covars_ = means[:, None], var[:, None]
    x, _ = gauss.sample(200, random_state=2)
    assert np.all(x != 0)
    p_zero = 0.3
    params = {"p_zero": np.full((1, 3), p_zero), "mu": means[None], "var": var[None]}
    post = forward_backward(RelativePriceEmission().log_likelihood(params, {"x": x}, ONE), *_one_sequence(START3, TRANS3))
    expected = gauss.score(x) + 200 * np.log1p(-p_zero)
    assert post.loglik[0] == pytest.approx(expected, rel=1e-11)
    ours = RelativePriceHMM(n_components=3, init_params="")
    ours.startprob_, ours.transmat_ = START3, TRANS3
    ours.p_zero_, ours.mu_, ours.var_ = np.full(3, p_zero), means, var
    assert ours.score(x) == pytest.approx(expected, rel=1e-11)
    _, hmmlearn_gamma = gauss.score_samples(x)
    np.testing.assert_allclose(post.gamma[:, :, 0], hmmlearn_gamma, atol=1e-9)


# --------------------------------------------------------------------------- hmmlearn subclasses


def _price_hmm():
    model = RelativePriceHMM(n_components=2, init_params="")
    model.startprob_, model.transmat_ = START, TRANS
    for name, v in PRICE.items():
        setattr(model, f"{name}_", v[0])
    return model


def _promo_hmm():
    model = PromotionHMM(n_components=3, init_params="")
    model.startprob_, model.transmat_ = START3, TRANS3
    for name, v in PROMO.items():
        setattr(model, f"{name}_", v[0])
    return model


def _promo_data(rng, t_len):
    display = rng.random(t_len) < 0.3
    mailer = rng.random(t_len) < 0.2
    depth = np.where(rng.random(t_len) < 0.6, 0.0, np.round(rng.uniform(0.05, 0.6, t_len), 2))
    return display, mailer, depth


@pytest.mark.parametrize("missing_share", [0.0, 0.5])
def test_promotion_hmm_score_equals_engine_loglik(missing_share):
    rng = np.random.default_rng(4)
    display, mailer, depth = _promo_data(rng, 40)
    depth[rng.random(40) < missing_share] = np.nan
    X = np.column_stack([display, mailer, np.where(np.isnan(depth), MISSING, depth)])
    obs = {"display": display[:, None], "mailer": mailer[:, None], "depth": depth[:, None]}
    post = forward_backward(PromotionEmission().log_likelihood(PROMO, obs, ONE), *_one_sequence(START3, TRANS3))
    model = _promo_hmm()
    assert model.score(X) == pytest.approx(post.loglik[0], rel=1e-12)
    np.testing.assert_allclose(model.predict_proba(X), post.gamma[:, :, 0], atol=1e-10)


@pytest.mark.parametrize("missing_share", [0.0, 0.5])
def test_relative_price_hmm_score_equals_engine_loglik(missing_share):
    rng = np.random.default_rng(5)
    x = np.where(rng.random(40) < 0.5, 0.0, rng.normal(0, 0.1, 40))
    x[rng.random(40) < missing_share] = np.nan
    X = np.where(np.isnan(x), MISSING, x)[:, None]
    post = forward_backward(RelativePriceEmission().log_likelihood(PRICE, {"x": x[:, None]}, ONE), *_one_sequence(START, TRANS))
    assert _price_hmm().score(X) == pytest.approx(post.loglik[0], rel=1e-12)


def test_missing_coded_value_is_uninformative_in_hmmlearn_subclass():
    # a sequence whose unobserved weeks are dropped from the emission has the same likelihood as
    # the full-length one with MISSING there: computed by brute force with those weeks' factor = 1
    x = np.array([0.0, MISSING, 0.1, MISSING, 0.0])
    b = np.array([[_price_density(np.nan if v == MISSING else v, k) for k in range(2)] for v in x])
    ll, _, _ = _brute_force(b, START, TRANS[None])
    assert _price_hmm().score(x[:, None]) == pytest.approx(ll, rel=1e-12)


# --------------------------------------------------------------------------- sampling


def _runs(paths):
    """Lengths and states of the runs that start and end strictly inside each path (no censoring)."""
    lengths, states = [], []
    for row in paths:
        change = np.flatnonzero(np.diff(row)) + 1
        for a, b in zip(change[:-1], change[1:]):
            lengths.append(b - a)
            states.append(row[a])
    return np.array(lengths), np.array(states)


def test_sample_paths_visit_states_at_the_stationary_rates_with_geometric_runs():
    rng = np.random.default_rng(11)
    pi = stationary_distribution(TRANS3)
    n, t_len = 400, 1500
    paths = sample_paths(np.tile(pi, (n, 1)), np.tile(TRANS3, (n, 1, 1, 1)), t_len, rng)
    freq = np.bincount(paths.ravel(), minlength=3) / paths.size
    # 600k cells with run lengths <= 7: effective sample size > 600k / 15, so the sd of each
    # frequency is < sqrt(0.25 / 40k) = 0.0025; 0.01 is 4 sd
    np.testing.assert_allclose(freq, pi, atol=0.01)
    lengths, states = _runs(paths)
    for k in range(3):
        mean = 1.0 / (1.0 - TRANS3[k, k])
        got = lengths[states == k]
        # tens of thousands of geometric runs: relative sd of the mean < 1%; censoring at the ends
        # removes < (run length / T) = 0.5% of runs
        assert got.mean() == pytest.approx(mean, rel=0.03), k


def test_stationary_distribution_is_a_left_eigenvector():
    pi = stationary_distribution(TRANS3)
    np.testing.assert_allclose(pi @ TRANS3, pi, atol=1e-14)
    assert pi.sum() == pytest.approx(1.0) and np.all(pi > 0)


def _transition_counts(paths, k):
    counts = np.zeros((k, k))
    np.add.at(counts, (paths[:, :-1].ravel(), paths[:, 1:].ravel()), 1)
    return counts


def test_sample_paths_agree_in_distribution_with_hmmlearn_sample():
    gauss = GaussianHMM(3, covariance_type="diag", init_params="", params="")
    gauss.startprob_, gauss.transmat_ = START3, TRANS3
    gauss.means_, gauss.covars_ = np.zeros((3, 1)), np.ones((3, 1))
    _, z = gauss.sample(5000, random_state=7)  # hmmlearn's per-step loop: one long chain
    ours = sample_paths(
        np.tile(START3, (40, 1)), np.tile(TRANS3, (40, 1, 1, 1)), 500, np.random.default_rng(8)
    )
    theirs = _transition_counts(z[None], 3)
    mine = _transition_counts(ours, 3)
    # given the from-state, next states are multinomial: a homogeneity test per row
    for i in range(3):
        p = stats.chi2_contingency(np.vstack([theirs[i], mine[i]])).pvalue
        assert p > 1e-3, (i, theirs[i], mine[i])
    # the check has power: a transposed matrix is rejected
    wrong = sample_paths(
        np.tile(START3, (40, 1)), np.tile(TRANS3.T / TRANS3.T.sum(1, keepdims=True), (40, 1, 1, 1)), 500,
        np.random.default_rng(8),
    )
    bad = _transition_counts(wrong, 3)
    assert min(stats.chi2_contingency(np.vstack([theirs[i], bad[i]])).pvalue for i in range(3)) < 1e-10


def test_sample_paths_follow_the_calendar_state_of_each_step():
    trans = np.array([[[0.95, 0.05], [0.05, 0.95]], [[0.1, 0.9], [0.9, 0.1]]])
    calendar = np.tile([0, 1], 100)[:199]
    n = 500
    paths = sample_paths(np.full((n, 2), 0.5), np.tile(trans, (n, 1, 1, 1)), 200, np.random.default_rng(9), calendar)
    for c in range(2):
        steps = np.flatnonzero(calendar == c)
        counts = np.zeros((2, 2))
        np.add.at(counts, (paths[:, steps].ravel(), paths[:, steps + 1].ravel()), 1)
        # ~50k transitions per calendar state: sd of each estimated probability < 0.002
        np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), trans[c], atol=0.01)


def test_posterior_path_draws_match_smoothing_marginals_and_expected_transitions():
    # one short sequence copied n times: each column's FFBS draw is an independent draw from
    # P(path | data), so the frequencies estimate gamma and the transition counts estimate xi
    trans = np.array([TRANS3, TRANS3[:, ::-1] * 0.5 + TRANS3 * 0.5])
    calendar = np.array([0, 1, 0, 1, 1])
    display = np.array([0, 1, 1, 0, 0, 1])
    mailer = np.array([0, 1, 0, 0, 1, 1])
    depth = np.array([0.0, np.nan, 0.2, np.nan, 0.05, 0.4])
    n = 20000
    obs = {
        "display": np.tile(display[:, None], n).astype(bool),
        "mailer": np.tile(mailer[:, None], n).astype(bool),
        "depth": np.tile(depth[:, None], n),
    }
    stack = Stack(np.zeros(n, dtype=np.int64), 1)
    transmat = stack.gather(trans[None])
    post = forward_backward(PromotionEmission().log_likelihood(PROMO, obs, stack), stack.gather(START3[None]), transmat, calendar)
    paths = sample_posterior_paths(post, transmat, np.random.default_rng(10), calendar)
    freq = np.stack([(paths == k).mean(axis=0) for k in range(3)], axis=1)
    # binomial sd <= sqrt(0.25 / 20000) = 0.0035: 0.015 is > 4 sd
    np.testing.assert_allclose(freq, post.gamma[:, :, 0], atol=0.015)
    for c in range(2):
        steps = np.flatnonzero(calendar == c)
        counts = np.zeros((3, 3))
        np.add.at(counts, (paths[:, steps].ravel(), paths[:, steps + 1].ravel()), 1)
        # per draw a count in 0..3: sd of the mean < 1.5 / sqrt(20000) ~ 0.011
        np.testing.assert_allclose(counts / n, post.xi[c, :, :, 0], atol=0.045)


def test_posterior_paths_never_use_impossible_transitions():
    # a structural zero in the transition matrix must never appear in a backward draw
    trans = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    n = 2000
    stack = Stack(np.zeros(n, dtype=np.int64), 1)
    log_b = np.zeros((12, 3, n))
    transmat = stack.gather(trans[None, None])
    post = forward_backward(log_b, stack.gather(np.full((1, 3), 1 / 3)), transmat)
    paths = sample_posterior_paths(post, transmat, np.random.default_rng(12))
    counts = _transition_counts(paths, 3)
    assert counts[trans == 0].sum() == 0 and counts[trans > 0].min() > 0


def test_draw_never_goes_past_the_last_state():
    # rows that sum to slightly less than 1 by rounding, with a uniform above the sum
    probs = np.array([[0.3, 0.3, 0.4 - 1e-12], [1.0 - 1e-15, 0.0, 0.0]])
    u = np.array([1.0 - 1e-13, 1.0 - 1e-16])
    np.testing.assert_array_equal(_draw(probs, u), [2, 2])
    np.testing.assert_array_equal(_draw(np.array([[0.2, 0.8]] * 3), np.array([0.0, 0.19, 0.2])), [0, 0, 1])


# --------------------------------------------------------------------------- Stack


def test_stack_sums_per_model_and_gathers_per_sequence():
    stack = Stack(np.array([0, 0, 2, 2, 2]), 4)  # models 1 and 3 own no sequence
    per_seq = np.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(stack.per_model(per_seq), [[1, 11], [0, 0], [9, 24], [0, 0]])
    per_model = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    np.testing.assert_array_equal(stack.gather(per_model), [[1, 1, 5, 5, 5], [2, 2, 6, 6, 6]])
    with pytest.raises(ValueError, match="sorted"):
        Stack(np.array([1, 0]), 2)


# --------------------------------------------------------------------------- calendar-dependent mailer


def test_mailer_probability_follows_the_week_calendar_state():
    # with two calendar states the mailer probability of a state is the one of the week's calendar
    # state: brute force with those densities, transitions also switching by calendar state
    calendar = np.array([0, 1, 1, 0, 1])
    params = {**PROMO, "p_mailer_cal1": np.array([[0.5, 0.7, 0.95]])}
    trans = np.array([TRANS3, TRANS3[::-1]])
    display = np.array([0, 1, 1, 0, 0])
    mailer = np.array([0, 1, 1, 0, 1])
    depth = np.array([0.0, np.nan, 0.2, np.nan, 0.05])

    def density(t, k):
        p = params["p_mailer_cal1" if calendar[t] else "p_mailer"][0, k]
        no_mailer = {**params, "p_mailer": np.ones((1, 3))}
        return _promo_density(display[t], True, depth[t], k, no_mailer) * (p if mailer[t] else 1 - p)

    b = np.array([[density(t, k) for k in range(3)] for t in range(5)])
    ll, gamma, xi = _brute_force(b, START3, trans, calendar[1:])
    emission = PromotionEmission(calendar=calendar, n_calendar=2)
    assert emission.params == ("p_display", "p_mailer", "p_mailer_cal1", "p_zero", "depth_mu", "depth_var")
    obs = {"display": display[:, None].astype(bool), "mailer": mailer[:, None].astype(bool), "depth": depth[:, None]}
    post = forward_backward(emission.log_likelihood(params, obs, ONE), *_one_sequence(START3, trans), calendar[1:])
    assert post.loglik[0] == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(post.gamma[:, :, 0], gamma, atol=1e-12)
    np.testing.assert_allclose(post.xi[..., 0], xi, atol=1e-12)


def test_promotion_emission_needs_a_calendar_path_of_the_data_length():
    obs = {"display": np.zeros((4, 1), bool), "mailer": np.zeros((4, 1), bool), "depth": np.zeros((4, 1))}
    params = {**PROMO, "p_mailer_cal1": PROMO["p_mailer"]}
    with pytest.raises(ValueError, match="calendar"):
        PromotionEmission(n_calendar=2).log_likelihood(params, obs, ONE)
    with pytest.raises(ValueError, match="calendar"):
        PromotionEmission(calendar=np.zeros(5, dtype=int), n_calendar=2).log_likelihood(params, obs, ONE)
