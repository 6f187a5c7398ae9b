"""Deal proneness: household spread of the product stage's discount coefficient beyond its latent classes.

The product stage's K classes sit at fixed standardised locations in all D
coefficients at once (:func:`~bayes_retail.models.product.class_locations`),
so a class's discount coefficient is tied to its price, state and attribute
weights. On the embedded data the sampler let the discount coefficient's
class sd collapse (~0.001) although households differ widely in how much of
what they buy is on deal: the household sd of the share of lines on
promotion is 0.106 in the data and 0.049 in a replay of that fit.

Each class k is crossed with G equal-weight points ``eta_g`` (standardised
normal quantiles) of a deal-proneness deviation:

    gamma_kg = gamma_k + deal_sd * eta_g,

so the household's discount coefficient is a class value plus a normal
deviation discretised like the classes, and the K x G "effective classes"
stay equally weighted: every function that marginalises or draws classes
(membership, category values, the simulator) works on them unchanged.

``deal_sd`` is a PLUG-IN estimate, not sampled: for each stored posterior
draw, with every other parameter at that draw's values, the ``deal_sd``
maximising the marginal likelihood of the choices (households' classes and
deviations marginalised) on ``[0, upper]``. This is a cut (empirical Bayes)
approximation: the class parameters were fitted without the deviation and do
not adjust to it, and the spread of ``deal_sd`` across draws carries those
draws' uncertainty, not the sd's own. docs/models/product.md, "Deal proneness".
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from scipy.stats import norm

#: Column of the class coefficients the deviation shifts (price, discount, state, ...).
DISCOUNT_COLUMN = 1
#: Name of the plug-in sd in a product trace's posterior (one value per stored draw).
VARIABLE = "deal_sd"


def grid_locations(n_points: int) -> np.ndarray:
    """``(G,)`` equal-weight points of a standard normal: its ``(g - 1/2) / G`` quantiles, rescaled to unit variance.

    One point is ``[0.0]`` (no deviation).
    """
    if int(n_points) != n_points or n_points < 1:
        raise ValueError(f"deal-proneness points must be a positive integer, got {n_points!r}")
    if n_points == 1:
        return np.zeros(1)
    points = norm.ppf((np.arange(n_points) + 0.5) / n_points)
    return points / np.sqrt(np.mean(points**2))


def expand_classes(theta: np.ndarray, deal_sd: float, locations: np.ndarray) -> np.ndarray:
    """``(K * G, D)`` effective classes: row ``k * G + g`` is class k with discount coefficient + ``deal_sd * eta_g``."""
    theta = np.asarray(theta, dtype=np.float64)
    locations = np.asarray(locations, dtype=np.float64)
    out = np.repeat(theta, locations.size, axis=0)
    out[:, DISCOUNT_COLUMN] += float(deal_sd) * np.tile(locations, theta.shape[0])
    return out


def class_coefficients(theta: np.ndarray, deal_sd: float | None, n_points: int | None) -> np.ndarray:
    """``theta`` expanded when a trace carries a deal-proneness sd (``None``: unchanged)."""
    if deal_sd is None or n_points is None:
        return np.asarray(theta, dtype=np.float64)
    return expand_classes(theta, deal_sd, grid_locations(int(n_points)))


def marginal_loglik(params: dict, inputs: tuple, deal_sd: float, locations: np.ndarray) -> float:
    """The choices' log-likelihood with the K x G effective classes marginalised per household (equal weights).

    ``params`` as :func:`~bayes_retail.models.product.posterior_params` gives
    them without deal proneness (``theta`` the K classes), ``inputs`` its
    :func:`~bayes_retail.models.product.kernel_inputs`.
    """
    from bayes_retail.models._choice_kernel import household_class_loglik

    theta = expand_classes(params["theta"], deal_sd, locations)
    per_class = household_class_loglik(params["t"], theta, params["display"], params["mailer"], *inputs)
    return float((logsumexp(per_class, axis=1) - np.log(theta.shape[0])).sum())


def estimate_sd(params: dict, inputs: tuple, *, n_points: int = 7, upper: float = 5.0,
                xatol: float = 0.005) -> tuple[float, float]:
    """The plug-in ``deal_sd`` of one draw and its log-likelihood gain over ``deal_sd = 0``.

    Bounded Brent search on ``[0, upper]``; an optimum that does not beat 0
    returns 0 (the classes alone).
    """
    if upper <= 0:
        raise ValueError(f"upper must be positive, got {upper!r}")
    locations = grid_locations(n_points)
    base = marginal_loglik(params, inputs, 0.0, locations)
    result = minimize_scalar(lambda sd: -marginal_loglik(params, inputs, sd, locations), bounds=(0.0, upper),
                             method="bounded", options={"xatol": xatol})
    gain = -float(result.fun) - base
    return (float(result.x), gain) if gain > 0 else (0.0, 0.0)
