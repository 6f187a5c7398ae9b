"""Emission models of the pricing HMMs, batched over a stack of models.

Parameters are dicts of ``(M, K)`` arrays (model x state); observations are dicts
of ``(T, N)`` arrays (week x sequence) with NaN where a value is missing, and
log-likelihoods come out as ``(T, K, N)`` (the layout of :mod:`~bayes_retail.pricing.hmm`).
A missing value contributes 0 to the log-likelihood: it is uninformative, so a
week without a purchase keeps its place in the sequence (the timing) without
claiming anything about the price.

Both emissions are built on a zero-inflated normal: a value is exactly 0 with
probability ``p_zero``, otherwise its transform is normal. Exact zeros are real
data here: 84% of observed relative shelf prices sit exactly at the product's
median, and most observed depths are exactly 0.

:class:`RelativePriceEmission`
    ``x = log(shelf price / the product's median shelf price)``:
    0 with probability ``p_zero``, else x ~ Normal(``mu``, ``var``).
:class:`PromotionEmission`
    Independent given the state: display ~ Bernoulli(``p_display``), mailer ~
    Bernoulli(``p_mailer``) with one probability per chain-wide calendar state,
    and the depth d (observed only when someone bought): 0 with probability
    ``p_zero``, else logit(d) ~ Normal(``depth_mu``, ``depth_var``).
"""

from __future__ import annotations

import numpy as np

from bayes_retail.pricing.hmm import Stack

_LOG_2PI = np.log(2.0 * np.pi)
_PROB_CLIP = 1e-6
_TINY = 1e-300


def _weighted(gamma: np.ndarray, values: np.ndarray, stack: Stack) -> np.ndarray:
    """``(M, K)``: per model and state, the sum over its sequences and weeks of gamma * values."""
    return stack.per_model((gamma * values[:, None, :]).sum(axis=0))


def _normal_logpdf(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (_LOG_2PI + np.log(var) + (x - mean) ** 2 / var)


def _bernoulli_loglik(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.where(y > 0.5, np.log(p), np.log1p(-p))


def _keep_where_empty(new: np.ndarray, old: np.ndarray, weight: np.ndarray) -> np.ndarray:
    # A state that saw no observation keeps its previous value (it stays defined);
    # its zero occupancy is what the fitter reports as degenerate.
    return np.where(weight > 1e-10, new, old)


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, _PROB_CLIP, 1.0 - _PROB_CLIP)


def _columns_by_model(stack: Stack):
    """(model, slice of its sequences) for every model that owns sequences."""
    if stack.model.size == 0:
        return
    starts = np.concatenate([[0], np.flatnonzero(np.diff(stack.model)) + 1, [stack.model.size]])
    for a, b in zip(starts[:-1], starts[1:]):
        yield int(stack.model[a]), slice(a, b)


class ZeroInflatedNormal:
    """A value that is 0 with probability ``p_zero``, otherwise normal after a transform.

    Parameters
    ----------
    logit
        Transform non-zero values with logit (values in (0, 1), e.g. depths) and
        include the Jacobian, so the log-likelihood is a density of the value itself.
    min_var
        Floor of the normal variance.
    """

    def __init__(self, *, logit: bool, min_var: float):
        self.logit = logit
        self.min_var = float(min_var)

    def features(self, values: np.ndarray, prefix: str) -> dict:
        """Parameter-free transforms of the observations, computed once per fit."""
        seen = ~np.isnan(values)
        nonzero = seen & (values != 0)
        if self.logit:
            v = np.where(nonzero, values, 0.5)
            y = np.where(nonzero, _logit(v), 0.0)
            log_jac = np.where(nonzero, -np.log(v * (1.0 - v)), 0.0)
        else:
            y = np.where(nonzero, values, 0.0)
            log_jac = np.zeros(values.shape)
        return {
            f"{prefix}seen": seen,
            f"{prefix}zero": seen & ~nonzero,
            f"{prefix}nonzero": nonzero,
            f"{prefix}y": y,
            f"{prefix}log_jac": log_jac,
        }

    def log_likelihood(self, feat: dict, prefix: str, p_zero, mu, var) -> np.ndarray:
        """``(T, K, N)`` from ``(T, N)`` features and ``(1, K, N)`` per-sequence parameters."""
        ll_nz = _normal_logpdf(feat[f"{prefix}y"][:, None, :], mu, var)
        ll_nz += np.log1p(-p_zero) + feat[f"{prefix}log_jac"][:, None, :]
        ll_zero = np.where(feat[f"{prefix}zero"][:, None, :], np.log(p_zero), 0.0)
        return np.where(feat[f"{prefix}nonzero"][:, None, :], ll_nz, ll_zero)

    def stats(self, gamma: np.ndarray, feat: dict, prefix: str, stack: Stack) -> dict:
        y = feat[f"{prefix}y"]
        return {
            "seen": _weighted(gamma, feat[f"{prefix}seen"].astype(float), stack),
            "zero": _weighted(gamma, feat[f"{prefix}zero"].astype(float), stack),
            "nonzero": _weighted(gamma, feat[f"{prefix}nonzero"].astype(float), stack),
            "sy": _weighted(gamma, y, stack),
            "syy": _weighted(gamma, y * y, stack),
        }

    def m_step(self, stats: dict, old_p_zero, old_mu, old_var):
        seen, nz = stats["seen"], stats["nonzero"]
        mu = stats["sy"] / np.maximum(nz, _TINY)
        var = np.maximum(stats["syy"] / np.maximum(nz, _TINY) - mu**2, self.min_var)
        p_zero = _clip(stats["zero"] / np.maximum(seen, _TINY))
        return (
            _keep_where_empty(p_zero, old_p_zero, seen),
            _keep_where_empty(mu, old_mu, nz),
            _keep_where_empty(var, old_var, nz),
        )

    def draw(self, p_zero, mu, var, rng: np.random.Generator) -> np.ndarray:
        """Values for per-cell parameter arrays (all of one shape)."""
        zero = rng.random(p_zero.shape) < p_zero
        y = mu + np.sqrt(var) * rng.standard_normal(p_zero.shape)
        if self.logit:
            y = 1.0 / (1.0 + np.exp(-y))
        return np.where(zero, 0.0, y)

    def mean(self, p_zero, mu, var) -> np.ndarray:
        """Expected value (the logit case by a 1-point approximation, logistic(mu))."""
        centre = 1.0 / (1.0 + np.exp(-mu)) if self.logit else mu
        return (1.0 - p_zero) * centre


class _Emission:
    params: tuple[str, ...] = ()
    observations: tuple[str, ...] = ()

    def _per_cell(self, params: dict, states: np.ndarray, model: np.ndarray) -> dict:
        """Each parameter at each ``(N, T)`` cell of state paths of sequences of ``model``."""
        return {name: params[name][model[:, None], states] for name in self.params}

    def occupancy(self, stats: dict) -> np.ndarray:
        """Expected weeks in each state (what degeneracy is judged on)."""
        return stats["n"]

    def n_observations(self, obs: dict, stack: Stack) -> np.ndarray:
        """``(M,)`` observed scalar values per model (the n of its BIC)."""
        counts = sum(~np.isnan(np.asarray(obs[name], dtype=float)) for name in self.observations)
        return stack.per_model(counts.sum(axis=0).astype(float))


class RelativePriceEmission(_Emission):
    """Relative log shelf price of the base-price HMM (zero-inflated normal, missing weeks allowed).

    Parameters
    ----------
    min_var
        Floor of the variance of a state's non-zero relative prices; 1e-4 is a 1% price sd.
    """

    params = ("p_zero", "mu", "var")
    observations = ("x",)

    def __init__(self, *, min_var: float = 1e-4):
        self.zin = ZeroInflatedNormal(logit=False, min_var=min_var)

    def prepare(self, obs: dict) -> dict:
        if "x_seen" in obs:
            return obs
        return {**obs, **self.zin.features(obs["x"], "x_")}

    def log_likelihood(self, params: dict, obs: dict, stack: Stack) -> np.ndarray:
        obs = self.prepare(obs)
        g = {name: stack.gather(params[name])[None] for name in self.params}
        return self.zin.log_likelihood(obs, "x_", g["p_zero"], g["mu"], g["var"])

    def stats(self, gamma: np.ndarray, obs: dict, stack: Stack) -> dict:
        obs = self.prepare(obs)
        stats = self.zin.stats(gamma, obs, "x_", stack)
        stats["n"] = stats["seen"]
        return stats

    def m_step(self, stats: dict, old: dict) -> dict:
        p_zero, mu, var = self.zin.m_step(stats, old["p_zero"], old["mu"], old["var"])
        return {"p_zero": p_zero, "mu": mu, "var": var}

    def initial(self, obs: dict, stack: Stack, n_states: int, rng: np.random.Generator) -> dict:
        """Non-zero means at spread quantiles of each model's observations, jittered per restart."""
        out = {
            "p_zero": np.full((stack.n_models, n_states), 0.5),
            "mu": np.zeros((stack.n_models, n_states)),
            "var": np.full((stack.n_models, n_states), 1e-2),
        }
        probs = np.linspace(0.05, 0.95, n_states)
        for m, cols in _columns_by_model(stack):
            x = obs["x"][:, cols]
            vals = x[~np.isnan(x) & (x != 0)]
            if vals.size == 0:
                vals = np.zeros(1)
            sd = max(float(vals.std()), np.sqrt(self.zin.min_var))
            out["mu"][m] = np.quantile(vals, probs) + rng.normal(0.0, 0.25 * sd, n_states)
            out["var"][m] = max(sd**2, self.zin.min_var)
            out["p_zero"][m] = _clip(rng.uniform(0.2, 0.9, n_states))
        return out

    def order_key(self, params: dict) -> np.ndarray:
        """Expected relative price: state 0 is the lowest regime."""
        return self.zin.mean(params["p_zero"], params["mu"], params["var"])

    def sample(self, params: dict, states: np.ndarray, model: np.ndarray, rng: np.random.Generator) -> dict:
        """Draws for ``(N, T)`` state paths of sequences of ``model``; arrays come back ``(N, T)``."""
        at = self._per_cell(params, states, model)
        return {"x": self.zin.draw(at["p_zero"], at["mu"], at["var"], rng)}


def mailer_param_names(n_calendar: int) -> tuple[str, ...]:
    """Names of the mailer probabilities: ``p_mailer`` for calendar state 0, ``p_mailer_cal{c}`` after."""
    return ("p_mailer", *(f"p_mailer_cal{c}" for c in range(1, n_calendar)))


class PromotionEmission(_Emission):
    """Display, mailer and depth emission of the promotion HMM, with missing depths.

    The mailer probability of a state depends on the week's chain-wide calendar
    state (the weekly mailer promotes many products at once): with C calendar
    states there are C mailer parameters per state.

    Parameters
    ----------
    calendar
        ``(T,)`` calendar state of each week of the observations (fitting,
        imputation). ``None``: one calendar state.
    n_calendar
        Number of calendar states (default: from ``calendar``).
    min_var
        Floor of the variance of logit(depth) within a state.
    """

    observations = ("display", "mailer", "depth")

    def __init__(self, *, calendar: np.ndarray | None = None, n_calendar: int | None = None, min_var: float = 1e-3):
        self.zin = ZeroInflatedNormal(logit=True, min_var=min_var)
        self.calendar = None if calendar is None else np.asarray(calendar, dtype=np.int64)
        if n_calendar is None:
            n_calendar = 1 if self.calendar is None else int(self.calendar.max()) + 1
        self.n_calendar = int(n_calendar)
        self.mailer_params = mailer_param_names(self.n_calendar)
        self.params = ("p_display", *self.mailer_params, "p_zero", "depth_mu", "depth_var")

    def _weeks(self, t_len: int) -> np.ndarray:
        if self.calendar is None:
            if self.n_calendar > 1:
                raise ValueError("a calendar path is needed with more than one calendar state")
            return np.zeros(t_len, dtype=np.int64)
        if self.calendar.shape != (t_len,):
            raise ValueError(f"calendar has {self.calendar.size} weeks, the observations {t_len}")
        return self.calendar

    def prepare(self, obs: dict) -> dict:
        if "depth_seen" in obs:
            return obs
        return {**obs, **self.zin.features(obs["depth"], "depth_")}

    def log_likelihood(self, params: dict, obs: dict, stack: Stack) -> np.ndarray:
        obs = self.prepare(obs)
        g = {name: stack.gather(params[name])[None] for name in self.params}
        weeks = self._weeks(obs["mailer"].shape[0])
        p_mailer = np.concatenate([g[name] for name in self.mailer_params])[weeks]
        ll = _bernoulli_loglik(obs["display"][:, None, :], g["p_display"])
        ll += _bernoulli_loglik(obs["mailer"][:, None, :], p_mailer)
        ll += self.zin.log_likelihood(obs, "depth_", g["p_zero"], g["depth_mu"], g["depth_var"])
        return ll

    def stats(self, gamma: np.ndarray, obs: dict, stack: Stack) -> dict:
        obs = self.prepare(obs)
        stats = self.zin.stats(gamma, obs, "depth_", stack)
        stats["n"] = stack.per_model(gamma.sum(axis=0))
        stats["display"] = _weighted(gamma, obs["display"].astype(float), stack)
        weeks = self._weeks(gamma.shape[0])
        mailer = obs["mailer"].astype(float)
        for c, name in enumerate(self.mailer_params):
            in_c = (weeks == c)[:, None, None]
            stats[f"n_{name}"] = stack.per_model((gamma * in_c).sum(axis=0))
            stats[name] = stack.per_model((gamma * (mailer[:, None, :] * in_c)).sum(axis=0))
        return stats

    def m_step(self, stats: dict, old: dict) -> dict:
        n = stats["n"]
        p_zero, mu, var = self.zin.m_step(stats, old["p_zero"], old["depth_mu"], old["depth_var"])
        out = {
            "p_display": _keep_where_empty(_clip(stats["display"] / np.maximum(n, _TINY)), old["p_display"], n),
            "p_zero": p_zero,
            "depth_mu": mu,
            "depth_var": var,
        }
        for name in self.mailer_params:
            n_c = stats[f"n_{name}"]
            out[name] = _keep_where_empty(_clip(stats[name] / np.maximum(n_c, _TINY)), old[name], n_c)
        return out

    def initial(self, obs: dict, stack: Stack, n_states: int, rng: np.random.Generator) -> dict:
        """State 0 starts as "no promotion", higher states deeper and more often flagged."""
        rank = np.linspace(0.0, 1.0, n_states) if n_states > 1 else np.zeros(1)
        out = {name: np.zeros((stack.n_models, n_states)) for name in self.params}
        for m, cols in _columns_by_model(stack):
            depth = obs["depth"][:, cols]
            pos = depth[~np.isnan(depth) & (depth > 0)]
            y = _logit(pos) if pos.size else np.array([_logit(0.2)])
            disp = float(obs["display"][:, cols].mean())
            mail = float(obs["mailer"][:, cols].mean())
            jitter = rng.uniform(0.8, 1.2, (4, n_states))
            out["p_display"][m] = _clip(np.clip(disp * (0.3 + 1.4 * rank), 0.01, 0.99) * jitter[0])
            for name in self.mailer_params:
                out[name][m] = _clip(np.clip(mail * (0.3 + 1.4 * rank), 0.005, 0.99) * jitter[1])
            out["p_zero"][m] = _clip(np.clip(0.9 - 0.75 * rank, 0.05, 0.95) * jitter[2])
            out["depth_mu"][m] = np.quantile(y, np.linspace(0.2, 0.8, n_states)) * jitter[3]
            out["depth_var"][m] = max(float(y.var()), self.zin.min_var)
        return out

    def order_key(self, params: dict) -> np.ndarray:
        """Expected depth of each state: state 0 is the shallowest (no promotion)."""
        return self.zin.mean(params["p_zero"], params["depth_mu"], params["depth_var"])

    def sample(
        self, params: dict, states: np.ndarray, model: np.ndarray, rng: np.random.Generator, calendar=None
    ) -> dict:
        """Draws for ``(N, T)`` state paths of sequences of ``model``; arrays come back ``(N, T)``.

        ``calendar`` is the ``(T,)`` calendar path of the simulated weeks (default: the emission's).
        """
        at = self._per_cell(params, states, model)
        weeks = self._weeks(states.shape[1]) if calendar is None else np.asarray(calendar, dtype=np.int64)
        p_mailer = np.stack([at[name] for name in self.mailer_params])
        p_mailer = np.take_along_axis(p_mailer, np.broadcast_to(weeks[None, None, :], (1, *states.shape)), axis=0)[0]
        display = rng.random(states.shape) < at["p_display"]
        mailer = rng.random(states.shape) < p_mailer
        depth = self.zin.draw(at["p_zero"], at["depth_mu"], at["depth_var"], rng)
        return {"display": display, "mailer": mailer, "depth": depth}

    def sample_depth(self, params: dict, states: np.ndarray, model: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Depth draws alone, P(d | state) (imputation)."""
        at = self._per_cell(params, states, model)
        return self.zin.draw(at["p_zero"], at["depth_mu"], at["depth_var"], rng)
