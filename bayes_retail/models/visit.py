"""Stage 1: store visits and trips per household-week (DESIGN.md §2).

A hurdle model. Household h visits in week w (at least one trip) with

    P(visit_hw) = logistic(a_h + g_h * M_hw + rho * visit_h,w-1 + s_w)

and, given a visit, makes 1 + Poisson(exp(b_h)) trips. ``M_hw`` is the
household's marketing signal: its category weights (shares of its category
purchases in its first ``weight_weeks`` weeks) times each category's
chain-wide promotion intensity that week (share of the category's products on
display or in the mailer). It is centred within household (its household mean
is a level, which a_h absorbs) and scaled by its within-household sd, so g_h
is the response to a typical week-to-week change; it varies by household, so
it is not aliased with the week effect ``s_w``.

Household parameters: (a_h, b_h) are drawn from a population bivariate normal
whose means, scales and correlation (LKJ prior, written as its 2 x 2 Beta form) are inferred, in the centred form:
about 50 weeks per household identify them well, and the centred form mixed far
better. g_h is drawn from its own population normal in the NON-centred form:
the signal moves little within a household (within-household sd of the raw
signal 0.035 against 0.089 between households), so each g_h is weakly
identified, and centred g_h formed a funnel (measured on the embedded data: the
scale of g had bulk ESS 34 and R-hat 1.08 after 4 x 500 draws). ``s_w`` is a
ZeroSumNormal week effect; ``rho`` the state dependence on last week's visit.

The week a household enters the panel is a visit by construction (its window
starts at its first observed week), so that week is not scored; every later
week of the window is. The likelihood uses the dense household x week grid
with a mask (one exact Bernoulli-logit term per scored cell) and, for trips,
each household's sufficient statistics (visited weeks and extra trips).

:func:`simulate` is the forward sampler of exactly this model.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from bayes_retail.config import week_mask
from bayes_retail.models._kernels import logit_grid_loglik_op
from bayes_retail.models.artifacts import evenly_spaced

STAGE = "visit"
#: Bump when the model's structure or parameter names change: older traces are then refused.
MODEL_VERSION = 1
#: The household parameters (a, g, b): visit propensity, signal response, log extra-trip rate.
PARAMS = ("visit", "signal", "trips")


@dataclass(frozen=True)
class VisitConfig:
    """The ``[visit]`` section of a configuration.

    Attributes
    ----------
    weight_weeks
        Weeks (from a household's entry) whose category purchases define its category weights.
    mu_sigma, sd_sigma
        Prior scales of the population means and standard deviations of (a, g, b).
    lkj_eta
        LKJ concentration of the household-parameter correlations.
    rho_sigma, week_sigma
        Prior scales of the state dependence and of the week-effect scale.
    """

    weight_weeks: int = 8
    mu_sigma: tuple[float, float, float] = (1.5, 0.5, 1.0)
    sd_sigma: tuple[float, float, float] = (1.5, 0.5, 1.0)
    lkj_eta: float = 2.0
    rho_sigma: float = 1.0
    week_sigma: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.weight_weeks, bool) or not isinstance(self.weight_weeks, int) or self.weight_weeks < 1:
            raise ValueError(f"weight_weeks must be a positive integer, got {self.weight_weeks!r}")
        for name in ("mu_sigma", "sd_sigma"):
            value = tuple(getattr(self, name))
            if len(value) != 3 or min(value) <= 0:
                raise ValueError(f"{name} must be three positive numbers, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        for name in ("lkj_eta", "rho_sigma", "week_sigma"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VisitData:
    """Dense household x week arrays of the visit stage.

    Attributes
    ----------
    households, weeks
        Ids behind the rows and columns.
    trips
        ``(H, W)`` trips (0 = no visit; 0 outside the window too).
    scored
        ``(H, W)`` cells in the likelihood: window weeks after the entry week.
    lag
        ``(H, W)`` last week's visit (0/1).
    signal
        ``(H, W)`` marketing signal, centred within household and scaled by the
        within-household sd (0 outside scored cells).
    signal_household_mean, signal_sd
        The standardisation: raw = signal * sd + household mean.
    category_weights
        ``(H, C)`` each household's category shares from its first weeks.
    promo_intensity
        ``(C, W)`` each category's share of products promoted each week.
    entry_week
        ``(H,)`` first week of each household's window.
    """

    households: np.ndarray
    weeks: np.ndarray
    trips: np.ndarray
    scored: np.ndarray
    lag: np.ndarray
    signal: np.ndarray
    signal_household_mean: np.ndarray
    signal_sd: float
    category_weights: np.ndarray
    promo_intensity: np.ndarray
    entry_week: np.ndarray

    def subset_households(self, ids) -> "VisitData":
        """The rows of households ``ids`` (every one must be here); the signal's scale stays the whole panel's."""
        rows = pd.Index(self.households).get_indexer(np.asarray(ids))
        if (rows < 0).any():
            raise ValueError(f"households not in the visit panel: {np.asarray(ids)[rows < 0][:5].tolist()}")
        return replace(
            self, households=self.households[rows], trips=self.trips[rows], scored=self.scored[rows],
            lag=self.lag[rows], signal=self.signal[rows], signal_household_mean=self.signal_household_mean[rows],
            category_weights=self.category_weights[rows], entry_week=self.entry_week[rows],
        )

    @classmethod
    def from_arrays(
        cls,
        trips: np.ndarray,
        signal: np.ndarray,
        *,
        entry: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> "VisitData":
        """Stage data from a trips grid, e.g. one drawn by :func:`simulate` (recovery studies).

        ``signal`` is taken as already standardised; ``entry`` gives each row's
        first week index (default 0) and ``active`` the cells inside its window
        (default: from the entry week on).
        """
        trips = np.asarray(trips, dtype=np.int64)
        n, t_len = trips.shape
        if np.shape(signal) != trips.shape:
            raise ValueError(f"signal must have the shape of trips {trips.shape}, got {np.shape(signal)}")
        entry = np.zeros(n, dtype=np.int64) if entry is None else np.asarray(entry, dtype=np.int64)
        weeks = np.arange(t_len)
        after_entry = weeks[None, :] >= entry[:, None]
        active = after_entry if active is None else np.asarray(active, dtype=bool) & after_entry
        lag = np.zeros(trips.shape)
        lag[:, 1:] = trips[:, :-1] > 0
        return cls(
            households=np.arange(n),
            weeks=weeks,
            trips=np.where(active, trips, 0),
            scored=active & (weeks[None, :] > entry[:, None]),
            lag=lag,
            signal=np.asarray(signal, dtype=np.float64),
            signal_household_mean=np.zeros(n),
            signal_sd=1.0,
            category_weights=np.zeros((n, 0)),
            promo_intensity=np.zeros((0, t_len)),
            entry_week=entry,
        )

    def restricted_to(self, weeks) -> "VisitData":
        """The same data scoring only ``weeks`` (week numbers; ``None`` = all).

        The other weeks stay as history: a scored week's lag still reads the
        visit of the week before it, whether or not that week is scored.
        """
        if weeks is None:
            return self
        keep = week_mask(self.weeks, weeks)
        return replace(self, scored=self.scored & keep[None, :])

    @property
    def visited(self) -> np.ndarray:
        return (self.trips > 0).astype(np.float64)

    def trip_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per household over scored visited weeks: number of visits and sum of (trips - 1)."""
        visited = (self.trips > 0) & self.scored
        return visited.sum(axis=1).astype(float), np.where(visited, self.trips - 1, 0).sum(axis=1).astype(float)


def promo_intensity(product_weeks: pd.DataFrame, n_categories: int, weeks: np.ndarray) -> np.ndarray:
    """``(C, W)``: share of each category's choice-set products on display or in the mailer each week."""
    pw = product_weeks.assign(on=product_weeks["display"] | product_weeks["mailer"])
    grid = pw.groupby(["category_id", "week"])["on"].mean().unstack("week").reindex(columns=weeks)
    out = np.zeros((n_categories, weeks.size))
    out[grid.index.to_numpy()] = grid.fillna(0.0).to_numpy()
    return out


def category_weights(category_weeks: pd.DataFrame, households: pd.DataFrame, n_categories: int, weeks: int) -> np.ndarray:
    """``(H, C)``: share of each household's category purchases (household-category-weeks) in its first ``weeks`` weeks."""
    cw = category_weeks.merge(households[["household_id", "first_week"]], on="household_id")
    early = cw[cw["week"] < cw["first_week"] + weeks]
    counts = early.groupby(["household_id", "category_id"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=households["household_id"], columns=range(n_categories), fill_value=0)
    totals = counts.sum(axis=1).to_numpy(float)[:, None]
    return np.where(totals > 0, counts.to_numpy(float) / np.maximum(totals, 1.0), 0.0)


def build_visit_data(data, config: VisitConfig | None = None) -> VisitData:
    """Arrays of the visit stage from a :class:`~bayes_retail.data.RetailData`."""
    config = config or VisitConfig()
    hh = data.households.sort_values("household_id", ignore_index=True)
    weeks = np.asarray(data.weeks)
    h_index = pd.Index(hh["household_id"])
    visits = data.visits
    rows = h_index.get_indexer(visits["household_id"])
    cols = np.searchsorted(weeks, visits["week"].to_numpy())
    trips = np.zeros((len(hh), weeks.size), dtype=np.int64)
    in_window = np.zeros_like(trips, dtype=bool)
    trips[rows, cols] = visits["trips"].to_numpy()
    in_window[rows, cols] = True
    entry = np.searchsorted(weeks, hh["first_week"].to_numpy())
    scored = in_window & (np.arange(weeks.size)[None, :] > entry[:, None])
    lag = np.zeros(trips.shape)
    lag[:, 1:] = trips[:, :-1] > 0
    n_categories = len(data.categories)
    weights = category_weights(data.category_weeks, hh, n_categories, config.weight_weeks)
    intensity = promo_intensity(data.product_weeks, n_categories, weeks)
    raw = weights @ intensity
    counts = np.maximum(scored.sum(axis=1), 1)
    household_mean = np.where(scored, raw, 0.0).sum(axis=1) / counts
    within = np.where(scored, raw - household_mean[:, None], 0.0)
    sd = float(within[scored].std()) if scored.any() else 1.0
    sd = sd if sd > 0 else 1.0
    return VisitData(
        households=hh["household_id"].to_numpy(),
        weeks=weeks,
        trips=trips,
        scored=scored,
        lag=lag,
        signal=within / sd,
        signal_household_mean=household_mean,
        signal_sd=sd,
        category_weights=weights,
        promo_intensity=intensity,
        entry_week=hh["first_week"].to_numpy(),
    )


def coords(vd: VisitData) -> dict:
    """Named dims of the stage's model."""
    return {"household": vd.households, "week": vd.weeks, "param": list(PARAMS)}


def build_model(vd: VisitData, config: VisitConfig | None = None) -> pm.Model:
    """The PyMC model of the visit stage (see the module docstring)."""
    config = config or VisitConfig()
    n_visits, extra_trips = vd.trip_stats()
    scored = vd.scored.astype(np.float64)
    visited = vd.visited * scored
    with pm.Model(coords=coords(vd)) as model:
        mu = pm.Normal("mu", mu=[0.0, 0.0, -0.5], sigma=np.array(config.mu_sigma), dims="param")
        sigma = pm.HalfNormal("sigma", sigma=np.array(config.sd_sigma), dims="param")
        # LKJ(eta) on a 2 x 2 correlation is exactly (corr + 1) / 2 ~ Beta(eta, eta); written
        # out, the bivariate normal of (a, b) compiles in seconds instead of ~30 s under numba
        corr_beta = pm.Beta("corr_beta", config.lkj_eta, config.lkj_eta)
        corr = pm.Deterministic("corr_visit_trips", 2.0 * corr_beta - 1.0)
        # centred (a_h, b_h) ~ bivariate normal, as a_h and then b_h given a_h
        a = pm.Normal("a", mu=mu[0], sigma=sigma[0], dims="household")
        b_mean = mu[2] + corr * sigma[2] * (a - mu[0]) / sigma[0]
        b = pm.Normal("b", mu=b_mean, sigma=sigma[2] * pt.sqrt(1.0 - corr**2), dims="household")
        z_g = pm.Normal("z_signal", 0.0, 1.0, dims="household")
        g = mu[1] + sigma[1] * z_g
        rho = pm.Normal("rho", 0.0, config.rho_sigma)
        sigma_s = pm.HalfNormal("sigma_week", config.week_sigma)
        s = pm.ZeroSumNormal("s", sigma=sigma_s, dims="week")
        # Bernoulli-logit log-likelihood of every scored cell, y * eta - log(1 + exp(eta)),
        # eta = a_h + g_h * signal_hw + rho * lag_hw + s_w, in one fused kernel. The grids are
        # shared data: compiled in as constants they cost ~30 s more numba compile.
        grids = [
            pm.Data(name, value)
            for name, value in (("visited", visited), ("scored", scored), ("signal", vd.signal), ("lag", vd.lag))
        ]
        pm.Potential("visit_loglik", logit_grid_loglik_op(a, g, rho, s, *grids))
        # Poisson(exp(b_h)) extra trips of each visited week, by household sufficient statistics
        pm.Potential("trips_loglik", (extra_trips * b - n_visits * pt.exp(b)).sum())
    return model


def household_parameters(posterior) -> np.ndarray:
    """``(draws, H, 3)`` household (a, g, b) from a posterior (an xarray Dataset or InferenceData group)."""

    def flat(name: str) -> np.ndarray:  # double precision whatever the stored trace's (the shipped one is single)
        value = np.asarray(posterior[name].values, dtype=np.float64)
        return value.reshape(-1, *value.shape[2:])

    mu, sigma = flat("mu"), flat("sigma")
    g = mu[:, 1, None] + sigma[:, 1, None] * flat("z_signal")
    return np.stack([flat("a"), g, flat("b")], axis=-1)


def draw_households(mu: np.ndarray, sigma: np.ndarray, corr: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` household (a, g, b) drawn from the population distribution of the model.

    (a, b) bivariate normal with correlation ``corr``, g independent normal.
    """
    return households_from_normals(mu, sigma, corr, rng.standard_normal((n, 3)))


def households_from_normals(mu: np.ndarray, sigma: np.ndarray, corr: float, z: np.ndarray) -> np.ndarray:
    """``(n, 3)`` household (a, g, b) from ``(n, 3)`` standard normals ``z`` (see :func:`draw_households`)."""
    mu, sigma = np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float)
    if mu.shape != (3,) or sigma.shape != (3,) or np.any(sigma <= 0) or not -1 < corr < 1:
        raise ValueError("mu and sigma must be 3 numbers (sigma > 0) and corr in (-1, 1)")
    a = mu[0] + sigma[0] * z[:, 0]
    g = mu[1] + sigma[1] * z[:, 1]
    b = mu[2] + sigma[2] * (corr * z[:, 0] + np.sqrt(1.0 - corr**2) * z[:, 2])
    return np.stack([a, g, b], axis=1)


def seasonal_indices(vd: VisitData, posterior, *, draws: int = 200, prob: float = 0.9) -> pd.DataFrame:
    """Week indices of expected visits from the posterior, with ``prob`` bands.

    For each posterior draw, the expected visit probability of every scored
    household-week (given last week's observed visit) is averaged per week and
    divided by its average over all scored cells: 1.10 means 10% more visits
    than an average week. (``exp(s_w)`` itself is an odds ratio, not an index.)
    """
    theta = household_parameters(posterior)
    rho = posterior["rho"].values.reshape(-1)
    s = posterior["s"].values.reshape(-1, vd.weeks.size)
    picks = evenly_spaced(rho.size, draws)
    scored = vd.scored.astype(float)
    per_week = np.maximum(scored.sum(axis=0), 1.0)
    index = np.full((picks.size, vd.weeks.size), np.nan)
    for k, d in enumerate(picks):
        eta = theta[d, :, 0, None] + theta[d, :, 1, None] * vd.signal + rho[d] * vd.lag + s[d][None, :]
        p = scored / (1.0 + np.exp(-eta))
        index[k] = (p.sum(axis=0) / per_week) / (p.sum() / scored.sum())
    index[:, scored.sum(axis=0) == 0] = np.nan
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    return pd.DataFrame(
        {
            "week": vd.weeks,
            "index_mean": index.mean(axis=0),
            f"q{lo:.2f}".rstrip("0"): np.quantile(index, lo, axis=0),
            f"q{hi:.2f}".rstrip("0"): np.quantile(index, hi, axis=0),
            "observed": np.where(
                scored.sum(axis=0) > 0,
                (vd.visited * scored).sum(axis=0) / per_week / ((vd.visited * scored).sum() / scored.sum()),
                np.nan,
            ),
        }
    )


def posterior_predictive(vd: VisitData, posterior, *, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``(draws, H, W)`` trips grids replayed for the fitted households from evenly spaced posterior draws.

    Each grid uses one draw's household parameters, ``rho`` and week effects,
    the data's marketing signal and each household's window (entry week a visit).
    """
    theta = household_parameters(posterior)
    rho = posterior["rho"].values.reshape(-1)
    s = posterior["s"].values.reshape(-1, vd.weeks.size)
    picks = evenly_spaced(rho.size, draws)
    start = np.searchsorted(vd.weeks, vd.entry_week)
    active = vd.scored.copy()
    active[np.arange(vd.households.size), start] = True
    return np.stack([simulate(theta[d], float(rho[d]), s[d], vd.signal, rng, start=start, active=active) for d in picks])


def household_visit_share(trips: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Per household: share of its scored weeks with a visit (the suite's visit_probability unit, after entry)."""
    n = scored.sum(axis=1)
    return np.where(n > 0, ((trips > 0) & scored).sum(axis=1) / np.maximum(n, 1), np.nan)


def summary_statistics(trips: np.ndarray, scored: np.ndarray) -> dict[str, float]:
    """Visit rate and trips per visited week over the scored cells (what the prior predictive check compares)."""
    visited = (trips > 0) & scored
    n_visits = visited.sum()
    return {
        "visit_rate": float(n_visits / max(scored.sum(), 1)),
        "trips_per_visit": float(trips[visited].sum() / n_visits) if n_visits else float("nan"),
    }


def prior_predictive(vd: VisitData, config: VisitConfig | None = None, *, draws: int = 200, seed: int = 0) -> pd.DataFrame:
    """Prior predictive check: the summary statistics of visit grids simulated from prior draws.

    Hyperparameters are drawn from the PyMC model's own priors, households from
    the population distribution, grids by :func:`simulate` on the data's
    windows and signal. One row per draw; compare with
    :func:`summary_statistics` of the data.
    """
    rng = np.random.default_rng(seed)
    model = build_model(vd, config)
    names = ["mu", "sigma", "corr_visit_trips", "rho", "s"]
    with warnings.catch_warnings():
        # the likelihood is in Potentials, which prior sampling ignores: wanted here (only priors are drawn)
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=names, random_seed=rng).prior
    rows = []
    active = np.zeros_like(vd.scored)
    active[np.arange(vd.households.size), np.searchsorted(vd.weeks, vd.entry_week)] = True
    active |= vd.scored
    start = np.argmax(active, axis=1)
    for d in range(draws):
        value = {n: prior[n].values[0, d] for n in names}
        theta = draw_households(value["mu"], value["sigma"], float(value["corr_visit_trips"]), vd.households.size, rng)
        trips = simulate(theta, float(value["rho"]), value["s"], vd.signal, rng, start=start, active=active)
        rows.append(summary_statistics(trips, vd.scored))
    return pd.DataFrame(rows)


def pointwise_loglik(vd: VisitData, theta: np.ndarray, rho: float, s: np.ndarray) -> np.ndarray:
    """Row-level log-likelihood of every scored household-week for one parameter draw (NaN elsewhere).

    The sum over cells equals the model's two potentials plus the dropped
    constant -sum log((trips - 1)!) (tested), which is what makes the
    aggregated form exact.
    """
    from scipy.special import gammaln

    eta = theta[:, 0, None] + theta[:, 1, None] * vd.signal + rho * vd.lag + s[None, :]
    visited = vd.trips > 0
    ll_visit = np.where(visited, -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta))
    lam = np.exp(theta[:, 2])[:, None]
    extra = np.maximum(vd.trips - 1, 0)
    ll_trips = np.where(visited, extra * np.log(lam) - lam - gammaln(extra + 1.0), 0.0)
    return np.where(vd.scored, ll_visit + ll_trips, np.nan)


def cell_loglik_draws(vd: VisitData, posterior, *, draws: int = 100, cells: np.ndarray | None = None) -> np.ndarray:
    """``(S, N)`` log-likelihood of the ``N`` household-weeks in ``cells`` (default: the scored ones) under ``S`` draws.

    ``cells`` is an ``(H, W)`` mask; draws are evenly spaced over the chains
    stacked. What :func:`~bayes_retail.models.elpd.loo_summary` (fitted cells)
    and :func:`~bayes_retail.models.elpd.heldout_elpd` (held-out weeks) take.
    """
    mask = vd.scored if cells is None else np.asarray(cells, dtype=bool)
    theta = household_parameters(posterior)
    rho = posterior["rho"].values.reshape(-1)
    s = posterior["s"].values.reshape(-1, vd.weeks.size)
    masked = replace(vd, scored=mask)
    return np.stack([
        pointwise_loglik(masked, theta[i], float(rho[i]), s[i])[mask] for i in evenly_spaced(theta.shape[0], draws)
    ])


def simulate(
    theta: np.ndarray,
    rho: float,
    s: np.ndarray,
    signal: np.ndarray,
    rng: np.random.Generator,
    *,
    start: np.ndarray | None = None,
    active: np.ndarray | None = None,
) -> np.ndarray:
    """Forward sampler: ``(H, W)`` trips for given parameters (the model's generative process).

    Parameters
    ----------
    theta
        ``(H, 3)`` household (a, g, b).
    rho, s
        State dependence and ``(W,)`` week effects.
    signal
        ``(H, W)`` standardised marketing signal.
    rng
        Random stream.
    start
        ``(H,)`` first week index of each household's window (default 0); that
        week is a visit (the window starts at a visit), earlier weeks are 0.
    active
        ``(H, W)`` cells where the household exists (default: from ``start`` on).
    """
    n, t_len = signal.shape
    start = np.zeros(n, dtype=np.int64) if start is None else np.asarray(start)
    trips = np.zeros((n, t_len), dtype=np.int64)
    u = rng.random((n, t_len))
    extra = rng.poisson(np.exp(theta[:, 2])[:, None], size=(n, t_len))
    previous = np.zeros(n)
    for t in range(t_len):
        eta = theta[:, 0] + theta[:, 1] * signal[:, t] + rho * previous + s[t]
        visit = u[:, t] < 1.0 / (1.0 + np.exp(-eta))
        visit = np.where(start == t, True, visit) & (t >= start)
        if active is not None:
            visit &= active[:, t]
        trips[:, t] = np.where(visit, 1 + extra[:, t], 0)
        previous = visit.astype(float)
    return trips
