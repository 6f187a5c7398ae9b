"""Batched hidden-Markov-model arithmetic in numpy: many independent HMMs at once.

One category's HMM pools its products' sequences, and all sequences of a panel
have the same length (the weeks), so the forward-backward recursions run over a
stack of sequences with one numpy operation per week instead of one Python call
per sequence (hmmlearn's loop). Sequence ``n`` belongs to model ``model[n]``;
transitions may depend on a shared calendar state (``calendar[t]`` governs the
step from week ``t`` to week ``t + 1``), which is how the chain-wide promotion
calendar couples products.

Layout: arrays are (week, state, sequence), ``(T, K, N)``, with the long
sequence axis innermost; with K ~ 3 states this makes each step a handful of fast
vector operations (an (N, K) layout is several times slower here).

Everything here is pure: arrays in, arrays out, an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stack:
    """Which model each sequence belongs to; sequences are sorted by model.

    Attributes
    ----------
    model
        ``(N,)`` model index of each sequence, non-decreasing.
    n_models
        Number of models (some may own no sequence).
    """

    model: np.ndarray
    n_models: int

    def __post_init__(self) -> None:
        if self.model.size and np.any(np.diff(self.model) < 0):
            raise ValueError("sequences must be sorted by model")

    def per_model(self, per_sequence: np.ndarray) -> np.ndarray:
        """Sum an array whose LAST axis is the sequence axis over each model's sequences.

        Returns an array with the model axis first: ``(M, *leading axes)``.
        """
        by_sequence = np.moveaxis(per_sequence, -1, 0)
        out = np.zeros((self.n_models, *by_sequence.shape[1:]), dtype=per_sequence.dtype)
        if self.model.size:
            starts = np.concatenate([[0], np.flatnonzero(np.diff(self.model)) + 1])
            out[self.model[starts]] = np.add.reduceat(by_sequence, starts, axis=0)
        return out

    def gather(self, per_model: np.ndarray) -> np.ndarray:
        """Each sequence's copy of a model-first array, sequence axis last: ``(*rest, N)``."""
        return np.ascontiguousarray(np.moveaxis(per_model[self.model], 0, -1))


@dataclass
class Posterior:
    """Result of :func:`forward_backward` (sequence axis last).

    Attributes
    ----------
    loglik
        ``(N,)`` log-likelihood of each sequence.
    gamma
        ``(T, K, N)`` smoothing posteriors P(state_t = k | sequence).
    xi
        ``(C, K, K, N)`` expected transitions i -> j summed over the weeks whose
        calendar state is c (``None`` when not asked for).
    alpha
        ``(T, K, N)`` normalised filtering distributions (for backward sampling).
    """

    loglik: np.ndarray
    gamma: np.ndarray
    xi: np.ndarray | None
    alpha: np.ndarray


def _calendar(calendar: np.ndarray | None, n_steps: int) -> np.ndarray:
    if calendar is None:
        return np.zeros(n_steps, dtype=np.int64)
    calendar = np.asarray(calendar, dtype=np.int64)
    if calendar.shape != (n_steps,):
        raise ValueError(f"calendar must have one state per transition ({n_steps}), got shape {calendar.shape}")
    return calendar


def forward_backward(
    log_b: np.ndarray,
    startprob: np.ndarray,
    transmat: np.ndarray,
    calendar: np.ndarray | None = None,
    *,
    transitions: bool = True,
) -> Posterior:
    """Scaled forward-backward over a stack of equal-length sequences.

    Parameters
    ----------
    log_b
        ``(T, K, N)`` emission log-likelihoods of each sequence's observations
        (a missing observation contributes 0: it is uninformative).
    startprob
        ``(K, N)`` initial distribution of each sequence (its model's).
    transmat
        ``(C, K, K, N)`` transition matrices of each sequence by calendar state.
    calendar
        ``(T - 1,)`` calendar state of each transition (default: all 0, ``C`` = 1).
    transitions
        Accumulate the expected transition counts ``xi`` (EM needs them; the
        state marginals ``gamma`` and the filter ``alpha`` do not: ``xi`` is
        then ``None``).
    """
    t_len, k, n = log_b.shape
    cal = _calendar(calendar, t_len - 1)
    # Each week's emissions are scaled by their max so exp() cannot underflow to zeros.
    offset = log_b.max(axis=1)
    b = np.exp(log_b - offset[:, None, :])
    alpha = np.empty_like(b)
    scale = np.empty((t_len, n))
    a0 = startprob * b[0]
    scale[0] = a0.sum(axis=0)
    alpha[0] = a0 / scale[0]
    for t in range(1, t_len):
        at = (alpha[t - 1][:, None, :] * transmat[cal[t - 1]]).sum(axis=0) * b[t]
        scale[t] = at.sum(axis=0)
        alpha[t] = at / scale[t]
    beta = np.empty_like(b)
    beta[-1] = 1.0
    xi = np.zeros((transmat.shape[0], k, k, n)) if transitions else None
    for t in range(t_len - 2, -1, -1):
        a_t = transmat[cal[t]]
        weighted = b[t + 1] * beta[t + 1] / scale[t + 1]
        beta[t] = (a_t * weighted[None, :, :]).sum(axis=1)
        if transitions:
            xi[cal[t]] += alpha[t][:, None, :] * a_t * weighted[None, :, :]
    gamma = np.multiply(alpha, beta, out=beta)
    gamma /= gamma.sum(axis=1, keepdims=True)
    loglik = np.log(scale).sum(axis=0) + offset.sum(axis=0)
    return Posterior(loglik=loglik, gamma=gamma, xi=xi, alpha=alpha)


def sample_posterior_paths(
    post: Posterior,
    transmat: np.ndarray,
    rng: np.random.Generator,
    calendar: np.ndarray | None = None,
) -> np.ndarray:
    """Forward-filtering backward-sampling: one joint state path per sequence from P(path | data).

    Parameters
    ----------
    post
        From :func:`forward_backward` (its ``alpha``).
    transmat
        ``(C, K, K, N)``, as given to :func:`forward_backward`.
    rng
        Random stream: one ``(N, T)`` block of uniforms is drawn.
    calendar
        As given to :func:`forward_backward`.

    Returns
    -------
    ``(N, T)`` int state paths.
    """
    alpha = post.alpha
    t_len, _, n = alpha.shape
    cal = _calendar(calendar, t_len - 1)
    paths = np.empty((n, t_len), dtype=np.int64)
    u = rng.random((n, t_len))
    paths[:, -1] = _draw(alpha[-1].T, u[:, -1])
    cols = np.arange(n)
    for t in range(t_len - 2, -1, -1):
        # P(s_t | s_{t+1}, data up to t) is proportional to alpha_t(s_t) A(s_t, s_{t+1})
        weights = alpha[t].T * transmat[cal[t]][:, paths[:, t + 1], cols].T
        paths[:, t] = _draw(weights / weights.sum(axis=1, keepdims=True), u[:, t])
    return paths


def sample_paths(
    startprob: np.ndarray,
    transmat: np.ndarray,
    n_steps: int,
    rng: np.random.Generator,
    calendar: np.ndarray | None = None,
) -> np.ndarray:
    """Draw state paths of a stack of Markov chains, all sequences at once.

    Parameters
    ----------
    startprob
        ``(N, K)``.
    transmat
        ``(N, C, K, K)``.
    n_steps
        Path length T.
    rng
        Random stream: one ``(N, T)`` block of uniforms is drawn.
    calendar
        ``(T - 1,)`` calendar state of each transition.

    Returns
    -------
    ``(N, T)`` int state paths.
    """
    n = startprob.shape[0]
    cal = _calendar(calendar, n_steps - 1)
    u = rng.random((n, n_steps))
    paths = np.empty((n, n_steps), dtype=np.int64)
    paths[:, 0] = _draw(startprob, u[:, 0])
    rows = np.arange(n)
    for t in range(1, n_steps):
        paths[:, t] = _draw(transmat[rows, cal[t - 1], paths[:, t - 1]], u[:, t])
    return paths


def _draw(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one category per row of ``probs`` with uniforms ``u``."""
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = np.inf  # rounding must never push a draw past the last state
    return (u[:, None] >= cdf).sum(axis=1)


def stationary_distribution(transmat: np.ndarray) -> np.ndarray:
    """Stationary distribution of a (K, K) transition matrix (left eigenvector for eigenvalue 1)."""
    vals, vecs = np.linalg.eig(transmat.T)
    vec = np.real(vecs[:, np.argmin(np.abs(vals - 1.0))])
    return vec / vec.sum()
