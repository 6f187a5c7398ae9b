"""hmmlearn models of one category's pricing HMM, with missing-data emissions.

hmmlearn has no missing-data support: these :class:`hmmlearn.base.BaseHMM`
subclasses plug the emissions of :mod:`bayes_retail.pricing.emissions` (where a
missing value is uninformative) into hmmlearn's forward-backward, Viterbi,
sampling and EM. They fit one category with hmmlearn's own (per-sequence) loop;
the package fits every category at once with :mod:`bayes_retail.pricing.em`,
which gives the same parameters from the same starting values (a test checks it).
:meth:`bayes_retail.pricing.PricingModel.category_hmm` returns a fitted one.

``X`` columns: :class:`RelativePriceHMM` takes one column, the relative log
shelf price; :class:`PromotionHMM` takes three, display (0/1), mailer (0/1) and
depth. hmmlearn's input checks reject NaN, so an unobserved value is written as
:data:`MISSING` (-999, far outside any log relative price or depth).
"""

from __future__ import annotations

import numpy as np
from hmmlearn.base import BaseHMM
from sklearn.utils import check_random_state

from bayes_retail.pricing.emissions import PromotionEmission, RelativePriceEmission
from bayes_retail.pricing.hmm import Stack

_ONE = Stack(np.zeros(1, dtype=np.int64), 1)

#: Code of an unobserved value in ``X`` (hmmlearn rejects NaN).
MISSING = -999.0


class _EmissionHMM(BaseHMM):
    """A BaseHMM whose emission is one of the batched emission models, on one sequence at a time.

    ``params`` / ``init_params`` letters: ``s`` start, ``t`` transitions, ``e`` emission.
    An unobserved value is coded :data:`MISSING` in ``X``.
    """

    _columns: tuple[str, ...] = ()

    def __init__(
        self,
        n_components=1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        verbose=False,
        params="ste",
        init_params="ste",
        implementation="log",
        min_var=None,
    ):
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
        )
        self.min_var = min_var

    # -- the emission and its parameters
    def _emission(self):
        raise NotImplementedError

    def _param_dict(self) -> dict:
        return {name: np.asarray(getattr(self, f"{name}_"), dtype=float)[None] for name in self._emission().params}

    def _set_params(self, params: dict) -> None:
        for name, value in params.items():
            setattr(self, f"{name}_", np.asarray(value)[0])

    def _obs(self, X) -> dict:
        X = np.asarray(X, dtype=float)
        X = np.where(X == MISSING, np.nan, X)
        return {name: X[:, [i]] for i, name in enumerate(self._columns)}

    # -- hmmlearn hooks
    def _check_and_set_n_features(self, X):
        self.n_features = len(self._columns)

    def _get_n_fit_scalars_per_param(self):
        k = self.n_components
        return {"s": k - 1, "t": k * (k - 1), "e": k * len(self._emission().params)}

    def _init(self, X, lengths=None):
        super()._init(X, lengths)
        if self._needs_init("e", f"{self._emission().params[0]}_"):
            rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
            self._set_params(self._emission().initial(self._obs(X), _ONE, self.n_components, rng))

    def _check(self):
        super()._check()
        for name in self._emission().params:
            value = np.asarray(getattr(self, f"{name}_"))
            if value.shape != (self.n_components,):
                raise ValueError(f"{name}_ must have shape ({self.n_components},), got {value.shape}")

    def _compute_log_likelihood(self, X):
        return self._emission().log_likelihood(self._param_dict(), self._obs(X), _ONE)[:, :, 0]

    def _initialize_sufficient_statistics(self):
        stats = super()._initialize_sufficient_statistics()
        stats["emission"] = None
        return stats

    def _accumulate_sufficient_statistics(self, stats, X, lattice, posteriors, fwdlattice, bwdlattice):
        super()._accumulate_sufficient_statistics(stats, X, lattice, posteriors, fwdlattice, bwdlattice)
        if "e" in self.params:
            new = self._emission().stats(posteriors[:, :, None], self._obs(X), _ONE)
            old = stats["emission"]
            stats["emission"] = new if old is None else {k: old[k] + new[k] for k in new}

    def _do_mstep(self, stats):
        super()._do_mstep(stats)
        if "e" in self.params and stats["emission"] is not None:
            self._set_params(self._emission().m_step(stats["emission"], self._param_dict()))

    def _generate_sample_from_state(self, state, random_state):
        rng = np.random.default_rng(check_random_state(random_state).randint(2**31))
        draw = self._emission().sample(self._param_dict(), np.array([[state]]), np.zeros(1, dtype=np.int64), rng)
        return np.array([float(draw[name][0, 0]) for name in self._columns])


class RelativePriceHMM(_EmissionHMM):
    """Base-price regimes: Gaussian relative log shelf price (``mean_``, ``var_``), NaN = unobserved."""

    _columns = ("x",)

    def _emission(self):
        return RelativePriceEmission(**({} if self.min_var is None else {"min_var": self.min_var}))


class PromotionHMM(_EmissionHMM):
    """Promotion regimes: display, mailer and depth (NaN = unobserved depth).

    Parameters per state: ``p_display_``, ``p_mailer_``, ``p_zero_`` (P(depth = 0)),
    ``depth_mu_`` and ``depth_var_`` (logit of a positive depth).
    """

    _columns = ("display", "mailer", "depth")

    def _emission(self):
        return PromotionEmission(**({} if self.min_var is None else {"min_var": self.min_var}))
