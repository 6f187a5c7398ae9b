"""Expectation-maximisation for a stack of HMMs: restarts, per-model convergence, degenerate states.

One call fits every category's HMM at once (:mod:`bayes_retail.pricing.hmm`
batches the recursions). Each restart starts from its own random initial values;
each model keeps its best restart. A model stops iterating when its
log-likelihood improves by less than ``tol``. After the fit, states are sorted by
the emission's order key (so labels are stable across runs and seeds) and a model
whose state is (almost) never occupied is refitted with one state fewer.

Transitions and start probabilities get a Dirichlet prior (hmmlearn's
``transmat_prior`` / ``startprob_prior`` semantics: ``prior - 1`` pseudo-counts),
so these are maximum a posteriori fits with a weak prior; with ``prior = 1`` they
are maximum likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bayes_retail.pricing.hmm import Posterior, Stack, forward_backward


@dataclass
class StackFit:
    """Fitted parameters of a stack of HMMs with a common number of states K.

    Attributes
    ----------
    startprob
        ``(M, K)``.
    transmat
        ``(M, C, K, K)``: one transition matrix per calendar state.
    params
        Emission parameters, each ``(M, K)``.
    loglik
        ``(M,)`` log-likelihood at the last E-step of the kept restart.
    n_iter
        ``(M,)`` EM iterations of the kept restart.
    converged
        ``(M,)`` whether it stopped on ``tol`` rather than on ``max_iter``.
    occupancy
        ``(M, K)`` expected number of weeks in each state (the emission's own count).
    restart_loglik
        ``(M, R)`` final log-likelihood of every restart.
    """

    startprob: np.ndarray
    transmat: np.ndarray
    params: dict[str, np.ndarray]
    loglik: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    occupancy: np.ndarray
    restart_loglik: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def n_states(self) -> int:
        return self.startprob.shape[1]


def _take(obs: dict, cols: np.ndarray) -> dict:
    return {k: v[:, cols] for k, v in obs.items()}


def e_step(emission, params: dict, startprob: np.ndarray, transmat: np.ndarray, obs: dict, stack: Stack, calendar):
    """Posterior of every sequence under its model's parameters."""
    log_b = emission.log_likelihood(params, obs, stack)
    return forward_backward(log_b, stack.gather(startprob), stack.gather(transmat), calendar)


def m_step(
    emission,
    post: Posterior,
    obs: dict,
    stack: Stack,
    old: dict,
    *,
    startprob_prior: float,
    transmat_prior: float,
) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """New start, transition and emission parameters from the expected statistics."""
    start = stack.per_model(post.gamma[0]) + (startprob_prior - 1.0)
    trans = stack.per_model(post.xi) + (transmat_prior - 1.0)
    start = np.maximum(start, 0.0)
    trans = np.maximum(trans, 0.0)
    startprob = start / np.maximum(start.sum(axis=-1, keepdims=True), 1e-300)
    transmat = trans / np.maximum(trans.sum(axis=-1, keepdims=True), 1e-300)
    stats = emission.stats(post.gamma, obs, stack)
    return startprob, transmat, emission.m_step(stats, old), stats


def _initial_chain(n_models: int, n_calendar: int, k: int, rng: np.random.Generator):
    startprob = rng.dirichlet(np.ones(k), size=n_models)
    # sticky starts: regimes persist, which is what makes them regimes
    spread = rng.dirichlet(np.ones(k), size=(n_models, n_calendar, k))
    transmat = 0.2 * spread + 0.8 * np.eye(k)[None, None]
    return startprob, transmat


def fit_once(
    emission,
    obs: dict,
    stack: Stack,
    *,
    n_states: int,
    rng: np.random.Generator,
    calendar: np.ndarray | None = None,
    n_calendar: int = 1,
    max_iter: int = 200,
    tol: float = 1e-2,
    startprob_prior: float = 2.0,
    transmat_prior: float = 2.0,
    init: tuple[np.ndarray, np.ndarray, dict] | None = None,
) -> StackFit:
    """One EM run of every model from one set of initial values.

    Parameters
    ----------
    init
        ``(startprob, transmat, params)`` to start from; drawn from ``rng`` when absent.
    """
    m = stack.n_models
    obs = emission.prepare(obs)
    if init is None:
        startprob, transmat = _initial_chain(m, n_calendar, n_states, rng)
        params = emission.initial(obs, stack, n_states, rng)
    else:
        startprob, transmat, params = (np.array(init[0]), np.array(init[1]), {k: np.array(v) for k, v in init[2].items()})
    loglik = np.full(m, -np.inf)
    n_iter = np.zeros(m, dtype=np.int64)
    converged = np.zeros(m, dtype=bool)
    occupancy = np.zeros((m, n_states))
    active = np.isin(np.arange(m), stack.model)
    for _ in range(max_iter):
        rows = np.flatnonzero(active[stack.model])
        if rows.size == 0:
            break
        sub = Stack(stack.model[rows], m)
        sub_obs = _take(obs, rows)
        post = e_step(emission, params, startprob, transmat, sub_obs, sub, calendar)
        ll = sub.per_model(post.loglik)
        new_start, new_trans, new_params, stats = m_step(
            emission, post, sub_obs, sub, params, startprob_prior=startprob_prior, transmat_prior=transmat_prior
        )
        done = active & (ll - loglik < tol)
        # models that stopped keep the parameters their last E-step scored
        update = active & ~done
        startprob[update] = new_start[update]
        transmat[update] = new_trans[update]
        for name in params:
            params[name][update] = new_params[name][update]
        occupancy[active] = emission.occupancy(stats)[active]
        loglik[active] = ll[active]
        n_iter[active] += 1
        converged |= done
        active &= ~done
    return StackFit(startprob, transmat, params, loglik, n_iter, converged, occupancy)


def fit_restarts(emission, obs: dict, stack: Stack, *, n_states: int, restarts: int, rng: np.random.Generator, **kwargs) -> StackFit:
    """Best of ``restarts`` EM runs, chosen per model by log-likelihood; states then sorted."""
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    best: StackFit | None = None
    history = []
    for _ in range(restarts):
        fit = fit_once(emission, obs, stack, n_states=n_states, rng=rng, **kwargs)
        history.append(fit.loglik)
        best = fit if best is None else _keep_better(best, fit)
    assert best is not None
    best.restart_loglik = np.stack(history, axis=1)
    return sort_states(best, emission)


def _keep_better(a: StackFit, b: StackFit) -> StackFit:
    better = b.loglik > a.loglik
    pick = lambda x, y: np.where(better.reshape(-1, *([1] * (x.ndim - 1))), y, x)  # noqa: E731
    return StackFit(
        startprob=pick(a.startprob, b.startprob),
        transmat=pick(a.transmat, b.transmat),
        params={k: pick(a.params[k], b.params[k]) for k in a.params},
        loglik=pick(a.loglik, b.loglik),
        n_iter=pick(a.n_iter, b.n_iter),
        converged=pick(a.converged, b.converged),
        occupancy=pick(a.occupancy, b.occupancy),
    )


def sort_states(fit: StackFit, emission) -> StackFit:
    """Relabel each model's states in increasing order of the emission's order key."""
    order = np.argsort(emission.order_key(fit.params), axis=1, kind="stable")
    rows = np.arange(order.shape[0])[:, None]
    transmat = fit.transmat[rows[:, :, None], :, order[:, :, None], order[:, None, :]]
    # advanced indexing moved the calendar axis last: (M, K, K, C) -> (M, C, K, K)
    transmat = np.moveaxis(transmat, -1, 1)
    return StackFit(
        startprob=fit.startprob[rows, order],
        transmat=transmat,
        params={k: v[rows, order] for k, v in fit.params.items()},
        loglik=fit.loglik,
        n_iter=fit.n_iter,
        converged=fit.converged,
        occupancy=fit.occupancy[rows, order],
        restart_loglik=fit.restart_loglik,
    )


def degenerate(fit: StackFit, *, min_occupancy: float = 0.01) -> np.ndarray:
    """``(M,)`` models with a state occupied less than ``min_occupancy`` of their weeks, or NaN parameters."""
    share = fit.occupancy / np.maximum(fit.occupancy.sum(axis=1, keepdims=True), 1e-300)
    bad = (share < min_occupancy).any(axis=1) if fit.n_states > 1 else np.zeros(share.shape[0], dtype=bool)
    for value in (fit.startprob, fit.transmat, *fit.params.values()):
        bad |= ~np.isfinite(value.reshape(value.shape[0], -1)).all(axis=1)
    return bad
