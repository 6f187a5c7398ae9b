"""Expected log predictive density: PSIS-LOO on the fitted cells and the exact value on held-out cells.

Both take a ``(draws, cells)`` matrix of pointwise log-likelihoods that a stage
computes for its own unit (the visit stage: household-weeks).

- :func:`loo_summary`: Pareto-smoothed importance-sampling leave-one-out
  (ArviZ), with the share of cells whose Pareto k exceeds 0.7 (where the
  estimate is unreliable) reported beside it;
- :func:`heldout_elpd`: for cells the fit did not see (a held-out block of
  weeks), ``sum log mean_s p(y | theta_s)`` needs no importance sampling.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
from scipy.special import logsumexp

#: Pareto k above which a cell's PSIS estimate is unreliable (ArviZ's threshold).
PARETO_K_MAX = 0.7


def loo_summary(loglik: np.ndarray, *, k_max: float = PARETO_K_MAX) -> dict:
    """PSIS-LOO of ``loglik`` ``(draws, cells)``: elpd, its standard error, p_loo and the Pareto k diagnostics."""
    loglik = _checked(loglik)
    idata = az.from_dict(posterior={"_": np.zeros((1, loglik.shape[0]))}, log_likelihood={"y": loglik[None]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the k diagnostics are reported, not warned about
        loo = az.loo(idata, pointwise=True)
    k = np.asarray(loo.pareto_k)
    return {
        "elpd_loo": float(loo.elpd_loo),
        "se": float(loo.se),
        "p_loo": float(loo.p_loo),
        "cells": int(loglik.shape[1]),
        "draws": int(loglik.shape[0]),
        "share_k_above_max": float(np.mean(k > k_max)),
        "max_k": float(k.max()),
        "k_max": k_max,
    }


def heldout_elpd(loglik: np.ndarray) -> dict:
    """``sum_i log mean_s exp(loglik[s, i])`` over held-out cells, with its standard error and the per-cell mean."""
    loglik = _checked(loglik)
    pointwise = logsumexp(loglik, axis=0) - np.log(loglik.shape[0])
    n = pointwise.size
    return {
        "elpd": float(pointwise.sum()),
        "se": float(np.sqrt(n) * pointwise.std(ddof=1)) if n > 1 else float("nan"),
        "elpd_per_cell": float(pointwise.mean()),
        "cells": int(n),
        "draws": int(loglik.shape[0]),
    }


def _checked(loglik: np.ndarray) -> np.ndarray:
    loglik = np.asarray(loglik, dtype=np.float64)
    if loglik.ndim != 2 or min(loglik.shape) < 1:
        raise ValueError(f"loglik must be (draws, cells) with at least one of each, got shape {loglik.shape}")
    if not np.isfinite(loglik).all():
        raise ValueError("loglik has non-finite entries")
    return loglik
