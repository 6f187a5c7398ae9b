"""The pricing model: base-price and promotion HMMs per category, coupled by a chain-wide calendar.

- Base price: one HMM per category over its choice-set products' sequences of
  relative log shelf price (:class:`~bayes_retail.pricing.emissions.RelativePriceEmission`).
- Promotion: one HMM per category over display, mailer and depth
  (:class:`~bayes_retail.pricing.emissions.PromotionEmission`), whose transitions
  depend on a chain-wide calendar state.
- Calendar: a Gaussian HMM over the weekly chain-wide shares of products in the
  mailer and on display. Its Viterbi path is fixed when the promotion HMMs are
  fitted (a two-step approximation), and sampled when prices are simulated, so
  products are promoted together in the weeks the chain runs big mailers.

All of these are maximum-likelihood (with a weak Dirichlet prior on
transitions) point fits: the simulator does not propagate pricing uncertainty.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from hmmlearn.hmm import GaussianHMM

from bayes_retail.pricing import em
from bayes_retail.pricing.emissions import PromotionEmission, RelativePriceEmission, mailer_param_names
from bayes_retail.pricing.hmm import Stack, forward_backward, sample_paths, sample_posterior_paths, stationary_distribution

#: Offered depths are recorded in hundredths and capped (as in the data layer).
MAX_DEPTH = 0.95


@dataclass(frozen=True)
class PricingConfig:
    """Settings of :func:`fit_pricing` (defaults are the ``default`` configuration).

    Attributes
    ----------
    n_base_states, n_promo_states, n_calendar_states
        States of the base-price, promotion and calendar HMMs (upper bounds for
        the first two: a category whose fit is degenerate gets fewer).
    restarts
        EM runs from different random starting values; each category keeps its best.
    max_iter, tol
        EM stops after ``max_iter`` iterations or when the log-likelihood gains less than ``tol``.
    min_occupancy
        A state with less than this share of a category's weeks is degenerate.
    transmat_prior, startprob_prior
        Dirichlet concentrations (hmmlearn semantics: ``prior - 1`` pseudo-counts).
    n_imputations
        Imputed depth panels drawn for the shopper models (M >= 5).
    """

    n_base_states: int = 3
    n_promo_states: int = 3
    n_calendar_states: int = 2
    restarts: int = 3
    max_iter: int = 200
    tol: float = 1e-2
    min_occupancy: float = 0.01
    transmat_prior: float = 2.0
    startprob_prior: float = 2.0
    n_imputations: int = 5

    def __post_init__(self) -> None:
        for name, spec in self.__dataclass_fields__.items():
            value = getattr(self, name)
            if spec.type == "int" and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if spec.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
                raise ValueError(f"{name} must be a number, got {value!r}")
        for name in ("n_base_states", "n_promo_states", "n_calendar_states", "restarts", "max_iter", "n_imputations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.min_occupancy < 1.0:
            raise ValueError(f"min_occupancy must be in [0, 1), got {self.min_occupancy}")
        for name in ("transmat_prior", "startprob_prior"):
            if getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be >= 1 (a Dirichlet concentration below 1 can zero a transition), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- panel


@dataclass
class PricingPanel:
    """The product-week panel as ``(T, N)`` arrays (week x product), products sorted by category.

    Attributes
    ----------
    products
        One row per sequence: ``product_id``, ``category_id``, ``median_shelf``
        (median observed shelf price).
    weeks
        ``(T,)`` week numbers.
    shelf
        Offered shelf price, carried over weeks without a purchase.
    shelf_observed
        Whether the week's shelf price was observed (a purchase).
    x
        ``log(shelf / median_shelf)`` where observed, NaN elsewhere.
    display, mailer
        Promotion flags (always observed).
    depth
        Offered depth where observed, NaN elsewhere.
    """

    products: pd.DataFrame
    weeks: np.ndarray
    shelf: np.ndarray
    shelf_observed: np.ndarray
    x: np.ndarray
    display: np.ndarray
    mailer: np.ndarray
    depth: np.ndarray

    @classmethod
    def from_product_weeks(cls, product_weeks: pd.DataFrame) -> "PricingPanel":
        """Reshape the data layer's dense ``product_weeks`` panel."""
        pw = product_weeks.sort_values(["category_id", "product_id", "week"], ignore_index=True)
        weeks = np.unique(pw["week"].to_numpy())
        t_len = weeks.size
        n = len(pw) // t_len
        if n * t_len != len(pw):
            raise ValueError("product_weeks is not a dense product x week grid")

        def grid(col, dtype=float):
            return np.ascontiguousarray(pw[col].to_numpy(dtype=dtype).reshape(n, t_len).T)

        shelf = grid("shelf_price")
        observed = grid("shelf_observed", bool)
        median = np.nanmedian(np.where(observed, shelf, np.nan), axis=0)
        products = pd.DataFrame(
            {
                "product_id": pw["product_id"].to_numpy()[::t_len],
                "category_id": pw["category_id"].to_numpy()[::t_len],
                "median_shelf": median,
            }
        )
        return cls(
            products=products,
            weeks=weeks,
            shelf=shelf,
            shelf_observed=observed,
            x=np.where(observed, np.log(shelf / median), np.nan),
            display=grid("display", bool),
            mailer=grid("mailer", bool),
            depth=grid("depth"),
        )

    @property
    def stack(self) -> Stack:
        cats = self.products["category_id"].to_numpy()
        return Stack(cats, int(cats.max()) + 1 if cats.size else 0)

    def replay(self, depth: np.ndarray) -> pd.DataFrame:
        """The observed prices in :meth:`PricingModel.simulate`'s schema (replay mode).

        ``base_price`` is the offered shelf price (carried over weeks without a
        purchase), ``depth`` the given completed panel (observed depths plus one
        imputation, e.g. ``PricingModel.impute_depths(...)[m]``), display and
        mailer as observed.
        """
        if depth.shape != self.depth.shape:
            raise ValueError(f"depth must have the panel's shape {self.depth.shape}, got {depth.shape}")
        if np.isnan(depth).any():
            raise ValueError("depth has missing values: pass an imputed panel")
        n, t_len = self.products.shape[0], self.weeks.size
        base = self.shelf.T
        return pd.DataFrame(
            {
                "product_id": np.repeat(self.products["product_id"].to_numpy(), t_len),
                "category_id": np.repeat(self.products["category_id"].to_numpy(), t_len),
                "week": np.tile(self.weeks, n),
                "base_price": base.ravel(),
                "depth": depth.T.ravel(),
                "price": np.round(base * (1.0 - depth.T), 2).ravel(),
                "display": self.display.T.ravel(),
                "mailer": self.mailer.T.ravel(),
            }
        )

    def calendar_features(self) -> np.ndarray:
        """``(T, 1)``: log of each week's share of products in the mailer.

        The weekly mailer is what runs for many products at once (its share jumps
        from about 4% to 7-9% in a handful of weeks); display shares drift slowly
        and are left to the per-category HMMs.
        """
        share = self.mailer.mean(axis=1)
        return np.log(np.maximum(share, 1.0 / max(self.mailer.shape[1], 1)))[:, None]


# --------------------------------------------------------------------------- fitted pieces


@dataclass
class HMMSet:
    """One HMM per category, padded to a common number of states.

    ``bic[m, k - 1]`` is the BIC of category m's fit with k states (NaN when
    that fit was degenerate); the kept fit is the one with the lowest.

    A category with ``n_states[m] < K`` has start probability 0 on its padded
    states, transitions into them 0, and emission parameters copied from its
    last real state (never reached, always finite).
    """

    kind: str
    n_states: np.ndarray
    startprob: np.ndarray
    transmat: np.ndarray
    params: dict[str, np.ndarray]
    loglik: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    occupancy: np.ndarray
    restart_loglik: np.ndarray
    bic: np.ndarray

    @property
    def n_models(self) -> int:
        return int(self.n_states.size)

    @property
    def max_states(self) -> int:
        return int(self.startprob.shape[1])

    @property
    def n_calendar(self) -> int:
        return int(self.transmat.shape[1])


def fit_ladder(
    emission,
    obs: dict,
    stack: Stack,
    *,
    kind: str,
    n_states: int,
    config: PricingConfig,
    rng: np.random.Generator,
    calendar: np.ndarray | None = None,
    n_calendar: int = 1,
    progress: Callable[[str], None] | None = None,
) -> HMMSet:
    """Fit every model with K = ``n_states`` .. 1 states; keep per model the best non-degenerate K by BIC.

    BIC = -2 log L + (free parameters) x log(observed values). A degenerate fit
    (a state occupied less than ``config.min_occupancy`` of the weeks, or
    non-finite parameters) is never kept; K = 1 always qualifies. A category
    whose prices never move (every relative price 0) therefore ends with one
    state: extra states would only copy it.
    """
    say = progress or (lambda _m: None)
    m_count = stack.n_models
    out = _empty_set(emission, kind, m_count, n_states, n_calendar, config.restarts)
    present = np.isin(np.arange(m_count), stack.model)
    log_n = np.log(np.maximum(emission.n_observations(obs, stack), 1.0))
    best = np.full(m_count, np.inf)
    for k in range(n_states, 0, -1):
        t0 = time.perf_counter()
        fit = em.fit_restarts(
            emission,
            obs,
            stack,
            n_states=k,
            restarts=config.restarts,
            rng=rng,
            calendar=calendar,
            n_calendar=n_calendar,
            max_iter=config.max_iter,
            tol=config.tol,
            startprob_prior=config.startprob_prior,
            transmat_prior=config.transmat_prior,
        )
        free = (k - 1) + n_calendar * k * (k - 1) + k * len(emission.params)
        bic = -2.0 * fit.loglik + free * log_n
        usable = present & (~em.degenerate(fit, min_occupancy=config.min_occupancy) if k > 1 else True)
        out.bic[usable, k - 1] = bic[usable]
        keep = usable & (bic < best)
        _store(out, fit, keep, k)
        best[keep] = bic[keep]
        say(f"{kind}: K={k} fitted in {time.perf_counter() - t0:.1f}s, {int(usable.sum())} usable")
    say(f"{kind}: categories by chosen K {np.bincount(out.n_states[present], minlength=n_states + 1)[1:].tolist()}")
    return out


def _empty_set(emission, kind: str, m: int, k: int, c: int, restarts: int) -> HMMSet:
    return HMMSet(
        kind=kind,
        n_states=np.zeros(m, dtype=np.int64),
        startprob=np.zeros((m, k)),
        transmat=np.tile(np.eye(k), (m, c, 1, 1)),
        params={name: np.zeros((m, k)) for name in emission.params},
        loglik=np.full(m, np.nan),
        n_iter=np.zeros(m, dtype=np.int64),
        converged=np.zeros(m, dtype=bool),
        occupancy=np.zeros((m, k)),
        restart_loglik=np.full((m, restarts), np.nan),
        bic=np.full((m, k), np.nan),
    )


def _store(out: HMMSet, fit: em.StackFit, accept: np.ndarray, k: int) -> None:
    rows = np.flatnonzero(accept)
    kmax = out.max_states
    out.n_states[rows] = k
    out.startprob[rows] = 0.0
    out.startprob[rows, :k] = fit.startprob[rows]
    trans = np.tile(np.eye(kmax), (rows.size, out.n_calendar, 1, 1))
    trans[:, :, :k, :k] = fit.transmat[rows]
    out.transmat[rows] = trans
    for name, value in fit.params.items():
        padded = np.repeat(value[rows, -1:], kmax, axis=1)
        padded[:, :k] = value[rows]
        out.params[name][rows] = padded
    out.loglik[rows] = fit.loglik[rows]
    out.n_iter[rows] = fit.n_iter[rows]
    out.converged[rows] = fit.converged[rows]
    out.occupancy[rows] = 0.0
    out.occupancy[rows, :k] = fit.occupancy[rows]
    out.restart_loglik[rows] = fit.restart_loglik[rows]


@dataclass
class CalendarHMM:
    """Chain-wide promotion calendar: a Gaussian HMM over the weekly log share of products in the mailer.

    States are sorted by mailer share (state 0 = the quietest weeks). ``path`` is
    the Viterbi path over the fitted weeks.
    """

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    path: np.ndarray
    weeks: np.ndarray
    loglik: float

    @property
    def n_states(self) -> int:
        return int(self.startprob.size)

    def transitions(self) -> np.ndarray | None:
        """Calendar state of each week-to-week transition: the state of the week entered."""
        return self.path[1:] if self.n_states > 1 else None

    def sample_path(self, n_weeks: int, rng: np.random.Generator) -> np.ndarray:
        """A calendar path starting from the stationary distribution."""
        start = stationary_distribution(self.transmat)[None]
        return sample_paths(start, self.transmat[None, None], n_weeks, rng)[0]


@contextlib.contextmanager
def _quiet_hmmlearn():
    """hmmlearn logs a warning whenever EM wobbles on a short sequence; the restarts handle that."""
    logger = logging.getLogger("hmmlearn")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


#: The calendar HMM has one short sequence: restarts are cheap and its likelihood is multimodal.
CALENDAR_RESTARTS = 20


def fit_calendar(panel: PricingPanel, *, n_states: int, rng: np.random.Generator) -> CalendarHMM:
    """Fit the calendar HMM (hmmlearn GaussianHMM) with restarts; fewer states when one goes unused.

    A state that the Viterbi path never visits is degenerate: the fit is
    repeated with one state fewer (down to 1, no calendar coupling).
    """
    features = panel.calendar_features()
    for k in range(n_states, 1, -1):
        best, best_score = None, -np.inf
        for _ in range(CALENDAR_RESTARTS):
            # starting means: k distinct weeks' values (hmmlearn's own start runs k-means,
            # which costs more than the EM on 52 points)
            model = GaussianHMM(
                k, covariance_type="diag", n_iter=200, init_params="stc", random_state=int(rng.integers(2**31))
            )
            model.means_ = np.sort(rng.choice(features[:, 0], size=k, replace=False))[:, None]
            with _quiet_hmmlearn():
                model.fit(features)
            score = model.score(features)
            if score > best_score:
                best, best_score = model, score
        path = best.predict(features)
        if np.unique(path).size < k:
            continue
        order = np.argsort(best.means_[:, 0])
        rank = np.argsort(order)
        return CalendarHMM(
            startprob=best.startprob_[order],
            transmat=best.transmat_[np.ix_(order, order)],
            means=best.means_[order],
            variances=np.array([np.diag(c) for c in best.covars_])[order],
            path=rank[path],
            weeks=panel.weeks,
            loglik=float(best_score),
        )
    return CalendarHMM(
        startprob=np.ones(1),
        transmat=np.ones((1, 1)),
        means=features.mean(axis=0, keepdims=True),
        variances=features.var(axis=0, keepdims=True),
        path=np.zeros(panel.weeks.size, dtype=np.int64),
        weeks=panel.weeks,
        loglik=float("nan"),
    )


# --------------------------------------------------------------------------- the model


@dataclass
class PricingModel:
    """Fitted pricing HMMs and the catalogue they price.

    Attributes
    ----------
    base, promo
        Per-category HMM sets (``category`` = ``category_id``).
    calendar
        The chain-wide calendar HMM.
    catalogue
        ``product_id``, ``category_id``, ``median_shelf`` of every priced product
        (the choice-set products), in sequence order.
    config
        The :class:`PricingConfig` used.
    attrs
        Provenance: package version, data hash, seed, fit seconds.
    """

    base: HMMSet
    promo: HMMSet
    calendar: CalendarHMM
    catalogue: pd.DataFrame
    config: PricingConfig
    attrs: dict = field(default_factory=dict)

    @property
    def stack(self) -> Stack:
        cats = self.catalogue["category_id"].to_numpy()
        return Stack(cats, self.base.n_models)

    def promotion_emission(self, calendar: np.ndarray | None = None) -> PromotionEmission:
        """The promotion emission with this model's calendar states (and path, when given)."""
        return PromotionEmission(calendar=calendar, n_calendar=self.calendar.n_states)

    # -- imputation
    def impute_depths(self, panel: PricingPanel, rng: np.random.Generator, *, m: int | None = None) -> np.ndarray:
        """``(M, T, N)`` depth panels: observed depths kept, missing ones drawn from the smoothing posterior.

        Each imputation draws one joint promotion-state path per product from
        P(path | display, mailer, observed depths) (forward filtering, backward
        sampling) and a depth from the emission of each missing week's state.
        """
        m = self.config.n_imputations if m is None else m
        stack = self._check_panel(panel)
        emission = self.promotion_emission(self.calendar.path)
        obs = emission.prepare({"display": panel.display, "mailer": panel.mailer, "depth": panel.depth})
        transmat = stack.gather(self.promo.transmat)
        post = forward_backward(
            emission.log_likelihood(self.promo.params, obs, stack),
            stack.gather(self.promo.startprob),
            transmat,
            self.calendar.transitions(),
            transitions=False,
        )
        missing = np.isnan(panel.depth)
        out = np.empty((m, *panel.depth.shape))
        for i in range(m):
            paths = sample_posterior_paths(post, transmat, rng, self.calendar.transitions())
            draws = _round_depth(emission.sample_depth(self.promo.params, paths, stack.model, rng).T)
            out[i] = np.where(missing, draws, panel.depth)
        return out

    def _check_panel(self, panel: PricingPanel) -> Stack:
        if not np.array_equal(panel.products["product_id"].to_numpy(), self.catalogue["product_id"].to_numpy()):
            raise ValueError("the panel's products differ from the ones this pricing model was fitted on")
        if panel.weeks.size != self.calendar.weeks.size:
            raise ValueError(f"the panel has {panel.weeks.size} weeks, the model was fitted on {self.calendar.weeks.size}")
        return self.stack

    # -- simulation
    def promotion_tilt(self, timing) -> tuple[np.ndarray, dict]:
        """Solve :func:`~bayes_retail.pricing.timing.seasonal_tilt` once for ``timing`` (with its fitted calendar).

        The weights depend on the calendar path only, so with the fitted path
        they serve every simulation of the same weeks (``simulate(..., tilt=...)``).
        """
        from bayes_retail.pricing.timing import seasonal_tilt

        if timing.calendar is None and self.calendar.n_states > 1:
            raise ValueError("a tilt solved once needs the timing's calendar path (observed_timing(..., calendar=...))")
        cal = None if self.calendar.n_states == 1 else np.asarray(timing.calendar, dtype=np.int64)
        on, start, trans = self._tilt_inputs(cal, timing.share.shape[1])
        return seasonal_tilt(on, start, trans, None if cal is None else cal[1:], self.stack.model, timing)

    def _tilt_inputs(self, cal: np.ndarray | None, t_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(on | state, week), start probabilities and transitions of every sequence, for a calendar path."""
        from bayes_retail.pricing.timing import on_probability

        stack = self.stack
        calendar = np.zeros(t_len, np.int64) if cal is None else cal
        on = on_probability(self.promo.params, self.promotion_emission().mailer_params, stack, calendar)
        return on, stack.gather(self.promo.startprob), stack.gather(self.promo.transmat)

    def simulate(self, weeks, rng: np.random.Generator, *, timing=None, tilt: np.ndarray | None = None) -> pd.DataFrame:
        """Prices and promotions of every catalogue product over ``weeks``, drawn from the HMMs.

        A calendar path is drawn first; base-price and promotion state paths are
        drawn for all products at once (one numpy step per week). The base price
        holds one level per regime visit (drawn from the state's emission at the
        visit's first week), so shelf prices change at regime switches as they do
        in the data; the marginal distribution of relative prices is the fitted
        emission's. Depths are drawn every week from the promotion state.
        ``timing`` (:class:`~bayes_retail.pricing.timing.PromotionTiming`) draws
        the promotion paths from the HMM's law tilted toward each category's
        observed weekly promotion share (:mod:`bayes_retail.pricing.timing`);
        the fit's convergence is in ``attrs["timing"]`` of the returned frame.
        ``tilt``: weights already solved by :meth:`promotion_tilt` for this ``timing``.

        Returns
        -------
        DataFrame
            One row per product-week: ``product_id``, ``category_id``, ``week``,
            ``base_price``, ``depth``, ``price`` = base_price x (1 - depth),
            ``display``, ``mailer``.
        """
        weeks = np.asarray(weeks, dtype=np.int64)
        t_len = weeks.size
        stack = self.stack
        n = stack.model.size
        if timing is not None and timing.calendar is not None:  # the fitted calendar, as the timing's shares saw it
            cal = np.asarray(timing.calendar, dtype=np.int64) if self.calendar.n_states > 1 else None
        else:
            cal = self.calendar.sample_path(t_len, rng) if self.calendar.n_states > 1 else None
        cal_steps = None if cal is None else cal[1:]
        base_states = sample_paths(self.base.startprob[stack.model], self.base.transmat[stack.model], t_len, rng)
        x = RelativePriceEmission().sample(self.base.params, base_states, stack.model, rng)["x"]
        x = _hold_within_visits(x, base_states)
        info = None
        if timing is None:
            promo_states = sample_paths(
                self.promo.startprob[stack.model], self.promo.transmat[stack.model], t_len, rng, cal_steps
            )
        else:
            from bayes_retail.pricing.timing import seasonal_tilt, tilted_paths

            on, start, trans = self._tilt_inputs(cal, t_len)
            if tilt is None:
                tilt, info = seasonal_tilt(on, start, trans, cal_steps, stack.model, timing)
            elif tilt.shape != (stack.n_models, t_len):
                raise ValueError(f"tilt must have shape {(stack.n_models, t_len)}, got {tilt.shape}")
            promo_states = tilted_paths(on, start, trans, cal_steps, stack.model, tilt, rng)
        promo = self.promotion_emission().sample(
            self.promo.params, promo_states, stack.model, rng, calendar=np.zeros(t_len, np.int64) if cal is None else cal
        )
        median = self.catalogue["median_shelf"].to_numpy()[:, None]
        base_price = np.maximum(np.round(median * np.exp(x), 2), 0.01)
        depth = _round_depth(promo["depth"])
        frame = pd.DataFrame(
            {
                "product_id": np.repeat(self.catalogue["product_id"].to_numpy(), t_len),
                "category_id": np.repeat(self.catalogue["category_id"].to_numpy(), t_len),
                "week": np.tile(weeks, n),
                "base_price": base_price.ravel(),
                "depth": depth.ravel(),
                "price": np.round(base_price * (1.0 - depth), 2).ravel(),
                "display": promo["display"].ravel(),
                "mailer": promo["mailer"].ravel(),
            }
        )
        if info is not None:
            frame.attrs["timing"] = info
        return frame

    # -- hmmlearn view of one category
    def category_hmm(self, kind: str, category_id: int, *, calendar_state: int = 0):
        """A fitted hmmlearn model of one category (``kind`` = "base_price" or "promotion").

        The promotion HMM's transitions are those of ``calendar_state``.
        """
        from bayes_retail.pricing.hmmlearn_models import PromotionHMM, RelativePriceHMM

        hmms = {"base_price": (self.base, RelativePriceHMM), "promotion": (self.promo, PromotionHMM)}
        if kind not in hmms:
            raise ValueError(f"kind must be 'base_price' or 'promotion', got {kind!r}")
        fitted, cls = hmms[kind]
        if not 0 <= calendar_state < self.calendar.n_states:
            raise ValueError(f"calendar_state must be in 0..{self.calendar.n_states - 1}, got {calendar_state}")
        k = int(fitted.n_states[category_id])
        model = cls(n_components=k, init_params="")
        model.startprob_ = fitted.startprob[category_id, :k].copy()
        # the base-price HMM has one transition matrix whatever the calendar
        model.transmat_ = fitted.transmat[category_id, min(calendar_state, fitted.n_calendar - 1), :k, :k].copy()
        params = dict(fitted.params)
        if kind == "promotion":
            # the hmmlearn model has one mailer probability: the one of this calendar state
            params["p_mailer"] = params[mailer_param_names(self.calendar.n_states)[calendar_state]]
        for name in cls()._emission().params:
            setattr(model, f"{name}_", params[name][category_id, :k].copy())
        return model


def _hold_within_visits(x: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Each cell takes the draw of the first week of its regime visit."""
    t_len = states.shape[1]
    starts = np.ones(states.shape, dtype=bool)
    starts[:, 1:] = states[:, 1:] != states[:, :-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(t_len)[None, :], 0), axis=1)
    return np.take_along_axis(x, first, axis=1)


def _round_depth(depth: np.ndarray) -> np.ndarray:
    return np.clip(np.round(depth, 2), 0.0, MAX_DEPTH)


def fit_pricing(
    product_weeks: pd.DataFrame,
    *,
    config: PricingConfig | None = None,
    rng: np.random.Generator,
    progress: Callable[[str], None] | None = None,
) -> PricingModel:
    """Fit the calendar, base-price and promotion HMMs of every category.

    Parameters
    ----------
    product_weeks
        The data layer's dense product-week panel (``RetailData.product_weeks``).
    config
        Settings (default :class:`PricingConfig`).
    rng
        The one random stream of the fit (restarts' starting values).
    progress
        Called with a message after each step.
    """
    config = config or PricingConfig()
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    panel = PricingPanel.from_product_weeks(product_weeks)
    stack = panel.stack
    calendar = fit_calendar(panel, n_states=config.n_calendar_states, rng=rng)
    say(f"calendar: {calendar.n_states} states, path {np.bincount(calendar.path, minlength=calendar.n_states).tolist()}")
    base = fit_ladder(
        RelativePriceEmission(), {"x": panel.x}, stack,
        kind="base_price", n_states=config.n_base_states, config=config, rng=rng, progress=say,
    )
    promo = fit_ladder(
        PromotionEmission(calendar=calendar.path, n_calendar=calendar.n_states),
        {"display": panel.display, "mailer": panel.mailer, "depth": panel.depth}, stack,
        kind="promotion", n_states=config.n_promo_states, config=config, rng=rng,
        calendar=calendar.transitions(), n_calendar=calendar.n_states, progress=say,
    )
    attrs = {"fit_seconds": round(time.perf_counter() - t0, 2)}
    return PricingModel(base, promo, calendar, panel.products, config, attrs)
