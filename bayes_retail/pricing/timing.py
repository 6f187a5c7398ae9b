"""Seasonal promotion timing: promotion paths tilted toward each category's observed weekly promotion intensity.

The promotion HMMs are time-homogeneous within a calendar state: a drawn
calendar promotes a category's products in any week alike. The retailer does
not: on the embedded data a category's weekly share of promoted products
follows its own season (Spearman correlation with the category stage's
seasonal index: median 0.25 over categories, 0.03 for HMM draws), so
simulated promotions miss the weeks of high demand they fall in.

:func:`seasonal_tilt` finds, for one drawn calendar path, the law of
promotion-state paths closest to the fitted HMM's (in Kullback-Leibler
divergence) whose expected share of a category's products on display or in
the mailer equals a target in every week: the HMM's path law reweighted by
``exp(sum_t lambda[c, t] * P(on | state_t, calendar_t))``. The weights
``lambda`` are found by iterative scaling on exact forward-backward marginals;
the paths are then drawn by forward filtering, backward sampling. Run lengths
and co-promotion keep the HMM's dynamics; only the timing moves.

The target is the category's observed weekly share shrunk toward the HMM's
own expectation (``prior_weight`` pseudo-products), so a category with few
products does not copy its one observed year. This is an empirical plug-in
(a point estimate from the data, not a posterior), like the HMMs themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_retail.pricing.hmm import forward_backward, sample_posterior_paths

#: Shares are kept inside [EDGE, 1 - EDGE] so that their logits stay finite.
EDGE = 1e-3
#: Largest weight on a week's promotion probability (a target beyond reach stops here).
MAX_TILT = 20.0


@dataclass(frozen=True)
class PromotionTiming:
    """What tilts a simulation's promotion paths toward observed timing.

    Attributes
    ----------
    share
        ``(M, W)`` each category model's observed share of products on display
        or in the mailer in each simulated week (NaN for a model without products).
    products
        ``(M,)`` number of products of each model (the weight of its observed shares).
    prior_weight
        Pseudo-products of the HMM's own expectation mixed into each target.
    calendar
        ``(W,)`` chain-wide calendar state of each simulated week (the fitted
        path: the shares above include its big mailer weeks); ``None``: drawn.
    """

    share: np.ndarray
    products: np.ndarray
    prior_weight: float = 10.0
    calendar: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.share.ndim != 2 or self.products.shape != (self.share.shape[0],):
            raise ValueError(f"share must be (M, W) and products (M,), got {self.share.shape} and {self.products.shape}")
        if not self.prior_weight >= 0:
            raise ValueError(f"prior_weight must be >= 0, got {self.prior_weight!r}")
        if self.calendar is not None and np.shape(self.calendar) != (self.share.shape[1],):
            raise ValueError(f"calendar must have one state per week ({self.share.shape[1]}), "
                             f"got shape {np.shape(self.calendar)}")

    def target(self, expected: np.ndarray) -> np.ndarray:
        """``(M, W)`` targets: observed shares shrunk toward ``expected`` (the untilted HMM's), inside the edges."""
        n = self.products[:, None].astype(float)
        observed = np.where(np.isnan(self.share), expected, self.share)
        mixed = (n * observed + self.prior_weight * expected) / np.maximum(n + self.prior_weight, 1e-12)
        return np.clip(mixed, EDGE, 1 - EDGE)


def observed_timing(display: np.ndarray, mailer: np.ndarray, model: np.ndarray, n_models: int,
                    positions: np.ndarray | None = None, *, calendar: np.ndarray | None = None,
                    prior_weight: float = 10.0, smooth_weeks: int = 1) -> PromotionTiming:
    """:class:`PromotionTiming` from an observed ``(T, N)`` calendar of sequences of ``model``.

    ``positions`` maps each simulated week to a data week (default: the data's
    weeks); ``calendar`` is the fitted ``(T,)`` calendar path (taken at the
    same positions); ``smooth_weeks`` averages each share over that many
    weeks around it (1: none).
    """
    on = (np.asarray(display) > 0) | (np.asarray(mailer) > 0)
    products = np.bincount(model, minlength=n_models)
    share = _model_means(on.astype(float), model, n_models)
    if smooth_weeks > 1:
        from scipy.ndimage import uniform_filter1d

        share = uniform_filter1d(share, size=int(smooth_weeks), axis=1, mode="nearest")
    share[products == 0] = np.nan
    pick = np.arange(on.shape[0]) if positions is None else np.asarray(positions)
    return PromotionTiming(share=share[:, pick], products=products, prior_weight=prior_weight,
                           calendar=None if calendar is None else np.asarray(calendar, dtype=np.int64)[pick])


def on_probability(params: dict, mailer_names: tuple[str, ...], stack, calendar: np.ndarray) -> np.ndarray:
    """``(T, K, N)`` P(display or mailer | state, week) of each sequence: flags are independent given the state."""
    display = stack.gather(params["p_display"])
    mailer = np.stack([stack.gather(params[name]) for name in mailer_names])[np.asarray(calendar, dtype=np.int64)]
    return 1.0 - (1.0 - display)[None] * (1.0 - mailer)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _model_means(per_sequence: np.ndarray, model: np.ndarray, n_models: int) -> np.ndarray:
    """``(M, T)`` mean over each model's sequences of a ``(T, N)`` array (0 where a model has none)."""
    total = np.stack([np.bincount(model, weights=week, minlength=n_models) for week in per_sequence], axis=1)
    return total / np.maximum(np.bincount(model, minlength=n_models), 1)[:, None]


def seasonal_tilt(
    on: np.ndarray, startprob: np.ndarray, transmat: np.ndarray, calendar_steps: np.ndarray | None,
    model: np.ndarray, timing: PromotionTiming, *, step: float = 0.15, max_iter: int = 100, tol: float = 0.005,
) -> tuple[np.ndarray, dict]:
    """``(M, T)`` weights ``lambda`` whose tilted path law meets ``timing``'s targets; and how the fit went.

    Parameters
    ----------
    on
        ``(T, K, N)`` P(display or mailer | state, the week's calendar state) of each sequence.
    startprob, transmat, calendar_steps
        As :func:`~bayes_retail.pricing.hmm.forward_backward` takes them (``(K, N)``, ``(C, K, K, N)``, ``(T - 1,)``).
    model
        ``(N,)`` category model of each sequence.
    timing
        The targets (``share`` must have T weeks).
    step
        Damping of the iterative scaling: each round moves every weight by
        ``step`` times the logit gap between target and expectation. A weight
        at week t also raises promotion in the weeks around it (states
        persist), so full steps overshoot and oscillate.
    max_iter, tol
        Stops when every reachable model-week's expected share is within
        ``tol`` of its target. A target no state can reach (more promotion than
        the most promoted state gives that week) stops at ``MAX_TILT``.

    Returns
    -------
    lam, info
        ``info``: ``iterations``, ``converged``, ``median_error`` and
        ``p99_error`` (absolute share errors over reachable model-weeks),
        ``at_bound`` (model-weeks whose target is out of reach), ``models``
        (tiltable category models) and ``models_off`` (those with a week more
        than 0.05 from its target when the iterations stop: observed timing
        the HMM's dynamics cannot follow, e.g. a one-week event in a category
        whose promotion state lasts months; the weights are then the
        compromise reached, not an exact solution).
    """
    n_models, t_len = timing.share.shape
    if on.shape[0] != t_len:
        raise ValueError(f"the timing has {t_len} weeks, the paths {on.shape[0]}")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step!r}")
    counts = np.bincount(model, minlength=n_models)
    # a model whose states promote alike (one state, say) cannot be tilted: its target is its own expectation
    spread = np.zeros(n_models)
    np.maximum.at(spread, model, (on.max(axis=1) - on.min(axis=1)).max(axis=0))
    tiltable = (spread > 1e-6) & (counts > 0)
    lam = np.zeros((n_models, t_len))
    target = None
    for i in range(1, max_iter + 1):
        post = forward_backward(lam[model].T[:, None, :] * on, startprob, transmat, calendar_steps, transitions=False)
        expected = np.clip(_model_means((post.gamma * on).sum(axis=1), model, n_models), EDGE, 1 - EDGE)
        if target is None:  # the untilted HMM's expectation anchors the shrinkage
            target = np.where(tiltable[:, None], timing.target(expected), expected)
        gap = _logit(target) - _logit(expected)
        bound = ((lam >= MAX_TILT) & (gap > 0)) | ((lam <= -MAX_TILT) & (gap < 0))
        reachable = tiltable[:, None] & ~bound
        error = np.abs(expected - target)[reachable]
        if not error.size or error.max() <= tol:
            break
        lam = np.clip(lam + step * np.where(reachable, gap, 0.0), -MAX_TILT, MAX_TILT)
    off = np.where(reachable, np.abs(expected - target), 0.0).max(axis=1) > 0.05
    info = {"iterations": i, "converged": bool(not error.size or error.max() <= tol),
            "median_error": float(np.median(error)) if error.size else 0.0,
            "p99_error": float(np.quantile(error, 0.99)) if error.size else 0.0,
            "at_bound": int(bound[tiltable].sum()), "models_off": int(off.sum()), "models": int(tiltable.sum())}
    return lam, info


def tilted_paths(
    on: np.ndarray, startprob: np.ndarray, transmat: np.ndarray, calendar_steps: np.ndarray | None,
    model: np.ndarray, lam: np.ndarray, rng: np.random.Generator,
) -> np.ndarray:
    """``(N, T)`` promotion-state paths drawn from the HMM's path law tilted by ``lam`` (FFBS)."""
    post = forward_backward(lam[model].T[:, None, :] * on, startprob, transmat, calendar_steps, transitions=False)
    return sample_posterior_paths(post, transmat, rng, calendar_steps)
