"""Batched EM (bayes_retail.pricing.em): agreement with hmmlearn, recovery, stable labels, degeneracy."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_retail.pricing import em
from bayes_retail.pricing.emissions import PromotionEmission, RelativePriceEmission
from bayes_retail.pricing.hmm import Stack
from bayes_retail.pricing.hmmlearn_models import MISSING, PromotionHMM, RelativePriceHMM


def _logit(p):
    return np.log(p / (1 - p))


# A promotion HMM: none / shallow / deep, ordered by expected depth (1 - p_zero) * logistic(mu):
# 0.05 * 0.1 < 0.8 * 0.15 < 0.95 * 0.35, so the sorted fit must come back in this order.
PROMO_A = np.array([[0.85, 0.1, 0.05], [0.25, 0.65, 0.1], [0.2, 0.1, 0.7]])
PROMO = {
    "p_display": np.array([0.02, 0.3, 0.8]),
    "p_mailer": np.array([0.01, 0.2, 0.7]),
    "p_zero": np.array([0.95, 0.2, 0.05]),
    "depth_mu": _logit(np.array([0.1, 0.15, 0.4])),
    "depth_var": np.array([0.3, 0.1, 0.1]),
}
# A base-price HMM: a low, a regular (mostly exactly at the median) and a high regime,
# ordered by (1 - p_zero) * mu: -0.135 < 0.002 < 0.096.
PRICE_A = np.array([[0.9, 0.08, 0.02], [0.03, 0.94, 0.03], [0.02, 0.08, 0.9]])
PRICE = {"p_zero": np.array([0.1, 0.9, 0.2]), "mu": np.array([-0.15, 0.02, 0.12]), "var": np.array([0.003, 0.001, 0.002])}


def _stationary(a):
    return np.linalg.matrix_power(a, 1000)[0]


def _chain(rng, a, n, t_len):
    """(N, T) Markov chain paths started from the stationary distribution (written out, not the package's sampler)."""
    states = np.empty((n, t_len), dtype=np.int64)
    states[:, 0] = (rng.random(n)[:, None] > np.cumsum(_stationary(a))).sum(axis=1)
    for t in range(1, t_len):
        states[:, t] = (rng.random(n)[:, None] > np.cumsum(a[states[:, t - 1]], axis=1)).sum(axis=1)
    return np.minimum(states, a.shape[0] - 1)


def promotion_data(rng, n=300, t_len=52, hide=0.5):
    """(T, N) display, mailer and depth drawn from PROMO; ``hide`` of the depths set to NaN at random."""
    s = _chain(rng, PROMO_A, n, t_len)
    display = rng.random(s.shape) < PROMO["p_display"][s]
    mailer = rng.random(s.shape) < PROMO["p_mailer"][s]
    y = PROMO["depth_mu"][s] + np.sqrt(PROMO["depth_var"][s]) * rng.standard_normal(s.shape)
    depth = np.where(rng.random(s.shape) < PROMO["p_zero"][s], 0.0, 1 / (1 + np.exp(-y)))
    depth[rng.random(s.shape) < hide] = np.nan
    return {"display": display.T, "mailer": mailer.T, "depth": depth.T}


def price_data(rng, n=300, t_len=52, hide=0.5):
    s = _chain(rng, PRICE_A, n, t_len)
    y = PRICE["mu"][s] + np.sqrt(PRICE["var"][s]) * rng.standard_normal(s.shape)
    x = np.where(rng.random(s.shape) < PRICE["p_zero"][s], 0.0, y)
    x[rng.random(s.shape) < hide] = np.nan
    return {"x": x.T}


def _single(n):
    return Stack(np.zeros(n, dtype=np.int64), 1)


# --------------------------------------------------------------------------- same steps as hmmlearn


def _init_price():
    start = np.array([[0.6, 0.4]])
    trans = np.array([[[[0.8, 0.2], [0.3, 0.7]]]])
    params = {"p_zero": np.array([[0.7, 0.3]]), "mu": np.array([[-0.05, 0.1]]), "var": np.array([[0.01, 0.02]])}
    return start, trans, params


def _init_promo():
    start = np.array([[0.5, 0.3, 0.2]])
    trans = np.array([[[[0.8, 0.15, 0.05], [0.2, 0.7, 0.1], [0.3, 0.2, 0.5]]]])
    params = {
        "p_display": np.array([[0.1, 0.4, 0.7]]),
        "p_mailer": np.array([[0.05, 0.3, 0.6]]),
        "p_zero": np.array([[0.9, 0.5, 0.2]]),
        "depth_mu": np.array([[-2.0, -1.5, -0.5]]),
        "depth_var": np.array([[0.5, 0.5, 0.5]]),
    }
    return start, trans, params


def _hmmlearn_fit(cls, init, X, lengths, n_iter, prior):
    start, trans, params = init
    model = cls(
        n_components=start.shape[1], init_params="", params="ste", n_iter=n_iter, tol=-np.inf,
        startprob_prior=prior, transmat_prior=prior,
    )
    model.startprob_, model.transmat_ = start[0].copy(), trans[0, 0].copy()
    for name, value in params.items():
        setattr(model, f"{name}_", value[0].copy())
    return model.fit(X, lengths=lengths)


def _assert_same_fit(fit, model, names):
    np.testing.assert_allclose(fit.startprob[0], model.startprob_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.transmat[0, 0], model.transmat_, rtol=1e-10, atol=1e-12)
    for name in names:
        np.testing.assert_allclose(fit.params[name][0], getattr(model, f"{name}_"), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("prior", [1.0, 2.0])
def test_batched_em_takes_the_same_steps_as_hmmlearn_for_relative_prices(prior):
    # 12 EM iterations from identical starting values, tol = -inf so neither stops early
    rng = np.random.default_rng(0)
    t_len, n = 30, 8
    x = np.where(rng.random((t_len, n)) < 0.5, 0.0, rng.normal(0.05, 0.1, (t_len, n)))
    x[rng.random((t_len, n)) < 0.4] = np.nan
    fit = em.fit_once(
        RelativePriceEmission(), {"x": x}, _single(n), n_states=2, rng=rng, init=_init_price(),
        tol=-np.inf, max_iter=12, startprob_prior=prior, transmat_prior=prior,
    )
    X = np.where(np.isnan(x), MISSING, x).T.reshape(-1, 1)  # sequences one after another
    model = _hmmlearn_fit(RelativePriceHMM, _init_price(), X, [t_len] * n, 12, prior)
    assert fit.n_iter[0] == 12
    _assert_same_fit(fit, model, RelativePriceEmission.params)
    # the reported log-likelihood is the last E-step's, hmmlearn's last history entry
    assert fit.loglik[0] == pytest.approx(model.monitor_.history[-1], rel=1e-12)


@pytest.mark.parametrize("prior", [1.0, 2.0])
def test_batched_em_takes_the_same_steps_as_hmmlearn_for_promotions(prior):
    rng = np.random.default_rng(1)
    obs = promotion_data(rng, n=10, t_len=25, hide=0.5)
    fit = em.fit_once(
        PromotionEmission(), obs, _single(10), n_states=3, rng=rng, init=_init_promo(),
        tol=-np.inf, max_iter=12, startprob_prior=prior, transmat_prior=prior,
    )
    depth = np.where(np.isnan(obs["depth"]), MISSING, obs["depth"])
    X = np.stack([obs["display"], obs["mailer"], depth], axis=-1).transpose(1, 0, 2).reshape(-1, 3).astype(float)
    model = _hmmlearn_fit(PromotionHMM, _init_promo(), X, [25] * 10, 12, prior)
    _assert_same_fit(fit, model, PromotionEmission.params)


def test_models_of_a_stack_are_fitted_independently_with_their_own_convergence():
    # two categories in one stack give the same fits (and iteration counts) as fitting each alone
    rng = np.random.default_rng(2)
    a, b = price_data(rng, n=40, t_len=30), price_data(rng, n=25, t_len=30, hide=0.2)
    both = {"x": np.hstack([a["x"], b["x"]])}
    stack = Stack(np.repeat([0, 1], [40, 25]), 2)
    start, trans, params = _init_price()
    init2 = (np.vstack([start, start]), np.vstack([trans, trans]), {k: np.vstack([v, v]) for k, v in params.items()})
    kw = dict(n_states=2, rng=rng, tol=1e-3, max_iter=300)
    joint = em.fit_once(RelativePriceEmission(), both, stack, init=init2, **kw)
    for m, part in enumerate((a, b)):
        alone = em.fit_once(RelativePriceEmission(), part, _single(part["x"].shape[1]), init=_init_price(), **kw)
        assert joint.n_iter[m] == alone.n_iter[0]
        assert joint.loglik[m] == pytest.approx(alone.loglik[0], rel=1e-12)
        np.testing.assert_allclose(joint.transmat[m], alone.transmat[0], rtol=1e-10)
        for name in params:
            np.testing.assert_allclose(joint.params[name][m], alone.params[name][0], rtol=1e-10)
    assert joint.n_iter[0] != joint.n_iter[1]  # they did stop at different iterations
    assert joint.converged.all()


def test_em_never_decreases_the_likelihood():
    # maximum likelihood EM (prior 1) from one start: the log-likelihood after i iterations is non-decreasing in i
    rng = np.random.default_rng(3)
    obs = promotion_data(rng, n=30, t_len=40)
    lls = [
        em.fit_once(
            PromotionEmission(), obs, _single(30), n_states=3, rng=rng, init=_init_promo(), tol=-np.inf,
            max_iter=i, startprob_prior=1.0, transmat_prior=1.0,
        ).loglik[0]
        for i in range(1, 16)
    ]
    assert np.all(np.diff(lls) >= -1e-8), np.diff(lls)
    assert lls[-1] > lls[0] + 1.0


def test_a_converged_fit_reports_the_loglik_of_the_parameters_it_returns():
    rng = np.random.default_rng(4)
    obs = price_data(rng, n=50, t_len=30)
    stack = _single(50)
    fit = em.fit_restarts(RelativePriceEmission(), obs, stack, n_states=3, restarts=3, rng=rng, tol=1e-3, max_iter=500)
    assert fit.converged.all()
    # states were sorted after the fit: the likelihood is invariant to the relabelling
    post = em.e_step(RelativePriceEmission(), fit.params, fit.startprob, fit.transmat, obs, stack, None)
    assert post.loglik.sum() == pytest.approx(fit.loglik[0], rel=1e-12)
    # and the kept restart is the best one
    assert fit.restart_loglik.shape == (1, 3)
    assert fit.loglik[0] == fit.restart_loglik[0].max()


def test_restarts_must_be_positive():
    with pytest.raises(ValueError, match="restarts"):
        em.fit_restarts(
            RelativePriceEmission(), {"x": np.zeros((3, 1))}, _single(1), n_states=1, restarts=0, rng=np.random.default_rng(0)
        )


# --------------------------------------------------------------------------- recovery


@pytest.fixture(scope="module")
def promo_fits():
    """One data set (300 products x 52 weeks, half the depths hidden) fitted from two seeds."""
    obs = promotion_data(np.random.default_rng(101))
    fits = [
        em.fit_restarts(
            PromotionEmission(), obs, _single(300), n_states=3, restarts=2, rng=np.random.default_rng(s), tol=1e-4, max_iter=500
        )
        for s in (0, 1)
    ]
    return obs, fits


# Tolerances: a replication study (16 data sets of this size) gave standard deviations of the
# estimates of at most 0.014 (transitions), 0.016 (display / mailer), 0.022 (p_zero), 0.046
# (depth_mu: state 0 has few non-zero depths, 5% of its weeks, half of them hidden) and 0.038
# (depth_var). The tolerances are about 3.5 of those sd.
PROMO_TOL = {"p_display": 0.05, "p_mailer": 0.05, "p_zero": 0.08, "depth_mu": 0.16, "depth_var": 0.13}


def test_promotion_hmm_is_recovered_with_half_the_depths_hidden(promo_fits):
    _, (fit, _) = promo_fits
    assert fit.converged.all()
    np.testing.assert_allclose(fit.transmat[0, 0], PROMO_A, atol=0.05)
    for name, tol in PROMO_TOL.items():
        np.testing.assert_allclose(fit.params[name][0], PROMO[name], atol=tol, err_msg=name)


def test_state_labels_are_sorted_and_the_same_across_seeds(promo_fits):
    _, (a, b) = promo_fits
    key = PromotionEmission().order_key
    for fit in (a, b):
        assert np.all(np.diff(key(fit.params)[0]) > 0)
    # the two seeds found the same optimum under the same labels: differences far below the
    # gaps between states (>= 0.1 in every parameter)
    np.testing.assert_allclose(a.transmat, b.transmat, atol=0.01)
    for name in PROMO:
        np.testing.assert_allclose(a.params[name], b.params[name], atol=0.01, err_msg=name)


def test_base_price_hmm_is_recovered_with_half_the_prices_unobserved():
    obs = price_data(np.random.default_rng(102))
    fit = em.fit_restarts(
        RelativePriceEmission(), obs, _single(300), n_states=3, restarts=2, rng=np.random.default_rng(5), tol=1e-4, max_iter=500
    )
    # replication sd (12 data sets): transitions <= 0.007, p_zero <= 0.017, mu <= 0.002, var <= 1.2e-4
    np.testing.assert_allclose(fit.transmat[0, 0], PRICE_A, atol=0.03)
    np.testing.assert_allclose(fit.params["p_zero"][0], PRICE["p_zero"], atol=0.06)
    np.testing.assert_allclose(fit.params["mu"][0], PRICE["mu"], atol=0.008)
    np.testing.assert_allclose(fit.params["var"][0], PRICE["var"], atol=5e-4)


# --------------------------------------------------------------------------- sorting and degeneracy


def _stackfit(occupancy, **over):
    m, k = occupancy.shape
    fit = em.StackFit(
        startprob=np.full((m, k), 1 / k),
        transmat=np.tile(np.eye(k), (m, 1, 1, 1)),
        params={"p_zero": np.full((m, k), 0.5), "mu": np.zeros((m, k)), "var": np.ones((m, k))},
        loglik=np.zeros(m),
        n_iter=np.ones(m, dtype=np.int64),
        converged=np.ones(m, dtype=bool),
        occupancy=occupancy,
    )
    for name, value in over.items():
        fit.params[name] = value
    return fit


def test_degenerate_flags_an_unoccupied_state_and_nan_parameters():
    occupancy = np.array([[60.0, 0.0, 40.0], [30.0, 30.0, 40.0], [50.0, 0.5, 49.5], [30.0, 30.0, 40.0]])
    mu = np.zeros((4, 3))
    mu[3, 1] = np.nan
    fit = _stackfit(occupancy, mu=mu)
    # model 0: a state with no weeks; 2: 0.5% of the weeks (< 1%); 3: a NaN parameter
    np.testing.assert_array_equal(em.degenerate(fit, min_occupancy=0.01), [True, False, True, True])
    np.testing.assert_array_equal(em.degenerate(fit, min_occupancy=0.001), [True, False, False, True])
    # a one-state model cannot have an unused state
    one = _stackfit(np.array([[0.0], [10.0]]))
    np.testing.assert_array_equal(em.degenerate(one), [False, False])


def test_sort_states_relabels_transitions_and_parameters_consistently():
    rng = np.random.default_rng(6)
    k, c = 3, 2
    trans = rng.dirichlet(np.ones(k), size=(2, c, k))
    mu = np.array([[0.3, -0.2, 0.1], [0.0, 0.5, -0.5]])
    fit = em.StackFit(
        startprob=rng.dirichlet(np.ones(k), size=2),
        transmat=trans,
        params={"p_zero": np.full((2, k), 0.2), "mu": mu, "var": np.full((2, k), 0.01)},
        loglik=np.zeros(2),
        n_iter=np.ones(2, dtype=np.int64),
        converged=np.ones(2, dtype=bool),
        occupancy=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
    )
    out = em.sort_states(fit, RelativePriceEmission())
    for m in range(2):
        order = np.argsort(mu[m])
        np.testing.assert_array_equal(out.params["mu"][m], mu[m][order])
        np.testing.assert_array_equal(out.startprob[m], fit.startprob[m][order])
        np.testing.assert_array_equal(out.occupancy[m], fit.occupancy[m][order])
        for cal in range(c):
            np.testing.assert_array_equal(out.transmat[m, cal], trans[m, cal][np.ix_(order, order)])


# --------------------------------------------------------------------------- calendar-dependent promotions


def test_promotion_m_step_is_the_posterior_weighted_maximum_likelihood():
    # closed forms from gamma: shares of flags and zeros, mean and variance of logit(depth) over
    # the non-zero observed depths; the mailer share separately over each calendar state's weeks
    rng = np.random.default_rng(7)
    t_len, n, k = 20, 6, 3
    calendar = rng.integers(0, 2, t_len)
    obs = promotion_data(rng, n=n, t_len=t_len)
    gamma = rng.dirichlet(np.ones(k), size=(t_len, n)).transpose(0, 2, 1)  # (T, K, N)
    emission = PromotionEmission(calendar=calendar, n_calendar=2)
    old = {name: np.full((1, k), 0.5) for name in emission.params}
    new = emission.m_step(emission.stats(gamma, obs, _single(n)), old)
    g = gamma.transpose(1, 0, 2)  # (K, T, N)
    np.testing.assert_allclose(new["p_display"][0], (g * obs["display"]).sum((1, 2)) / g.sum((1, 2)))
    for c, name in enumerate(("p_mailer", "p_mailer_cal1")):
        gc = g[:, calendar == c]
        np.testing.assert_allclose(new[name][0], (gc * obs["mailer"][calendar == c]).sum((1, 2)) / gc.sum((1, 2)))
    d = obs["depth"]
    seen, nonzero = ~np.isnan(d), ~np.isnan(d) & (d > 0)
    np.testing.assert_allclose(new["p_zero"][0], (g * (seen & ~nonzero)).sum((1, 2)) / (g * seen).sum((1, 2)))
    y = np.where(nonzero, _logit(np.where(nonzero, d, 0.5)), 0.0)
    w = g * nonzero
    mu = (w * y).sum((1, 2)) / w.sum((1, 2))
    np.testing.assert_allclose(new["depth_mu"][0], mu)
    np.testing.assert_allclose(new["depth_var"][0], (w * (y - mu[:, None, None]) ** 2).sum((1, 2)) / w.sum((1, 2)))


CAL_A = np.array([[[0.9, 0.1], [0.3, 0.7]], [[0.5, 0.5], [0.1, 0.9]]])  # ordinary / big-mailer weeks
CAL_P = {
    "p_display": np.array([0.05, 0.6]),
    "p_mailer": np.array([0.02, 0.3]),
    "p_mailer_cal1": np.array([0.1, 0.8]),
    "p_zero": np.array([0.9, 0.1]),
    "depth_mu": _logit(np.array([0.1, 0.3])),
    "depth_var": np.array([0.2, 0.1]),
}
CAL_PATH = (np.arange(52) % 6 >= 4).astype(np.int64)


def test_calendar_transitions_and_mailer_rates_are_recovered():
    rng = np.random.default_rng(103)
    n, t_len = 200, 52
    s = np.empty((t_len, n), dtype=np.int64)
    s[0] = rng.random(n) < 0.3
    for t in range(1, t_len):  # the step into week t follows week t's calendar state
        s[t] = rng.random(n) < CAL_A[CAL_PATH[t]][s[t - 1], 1]
    p_mailer = np.where(CAL_PATH[:, None] == 1, CAL_P["p_mailer_cal1"][s], CAL_P["p_mailer"][s])
    y = CAL_P["depth_mu"][s] + np.sqrt(CAL_P["depth_var"][s]) * rng.standard_normal(s.shape)
    depth = np.where(rng.random(s.shape) < CAL_P["p_zero"][s], 0.0, 1 / (1 + np.exp(-y)))
    depth[rng.random(s.shape) < 0.5] = np.nan
    obs = {"display": rng.random(s.shape) < CAL_P["p_display"][s], "mailer": rng.random(s.shape) < p_mailer, "depth": depth}
    fit = em.fit_restarts(
        PromotionEmission(calendar=CAL_PATH, n_calendar=2), obs, _single(n), n_states=2, restarts=2,
        rng=np.random.default_rng(0), tol=1e-4, max_iter=500, calendar=CAL_PATH[1:], n_calendar=2,
    )
    # replication sd (12 data sets of this size): transitions <= 0.015, flag rates <= 0.016,
    # p_zero <= 0.005, depth_mu <= 0.025, depth_var <= 0.015; tolerances ~4 sd
    np.testing.assert_allclose(fit.transmat[0], CAL_A, atol=0.06)
    tolerances = {"p_display": 0.06, "p_mailer": 0.06, "p_mailer_cal1": 0.06, "p_zero": 0.03, "depth_mu": 0.1, "depth_var": 0.06}
    for name, tol in tolerances.items():
        np.testing.assert_allclose(fit.params[name][0], CAL_P[name], atol=tol, err_msg=name)
