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


def marginal_loglik(params: dict, inputs: tuple, deal_sd: float, locations: np.ndarray, *, week_sd: float = 0.0,
                    week_points: int = 0, week_inputs: tuple | None = None) -> float:
    """The choices' log-likelihood with the K x G effective classes marginalised per household (equal weights).

    ``params`` as :func:`~bayes_retail.models.product.posterior_params` gives
    them without deal proneness (``theta`` the K classes), ``inputs`` its
    :func:`~bayes_retail.models.product.kernel_inputs`. ``week_sd`` and
    ``week_points`` add the deal-hunting week deviation (:func:`household_logliks`).
    """
    theta = expand_classes(params["theta"], deal_sd, locations)
    per_class = household_logliks(params["t"], theta, *promo_coefficients(params), inputs, week_sd=week_sd,
                                  week_points=week_points, week_inputs=week_inputs)
    return float((logsumexp(per_class, axis=1) - np.log(theta.shape[0])).sum())


def _bounded_max(loglik, lower: float, upper: float, xatol: float) -> tuple[float, float]:
    """``(argmax, max)`` of a function of one variable on ``[lower, upper]`` (bounded Brent)."""
    result = minimize_scalar(lambda x: -loglik(x), bounds=(lower, upper), method="bounded", options={"xatol": xatol})
    return float(result.x), -float(result.fun)


def estimate_sd(params: dict, inputs: tuple, *, n_points: int = 7, upper: float = 5.0,
                xatol: float = 0.005) -> tuple[float, float]:
    """The plug-in ``deal_sd`` of one draw and its log-likelihood gain over ``deal_sd = 0``.

    Bounded Brent search on ``[0, upper]``; an optimum that does not beat 0
    returns 0 (the classes alone).
    """
    sd, gain, _ = _estimate_sd(params, inputs, n_points=n_points, upper=upper, xatol=xatol)
    return sd, gain


def _estimate_sd(params: dict, inputs: tuple, *, n_points: int, upper: float,
                 xatol: float) -> tuple[float, float, float]:
    """:func:`estimate_sd` and the log-likelihood at ``deal_sd = 0`` it measured the gain from."""
    if upper <= 0:
        raise ValueError(f"upper must be positive, got {upper!r}")
    locations = grid_locations(n_points)
    base = marginal_loglik(params, inputs, 0.0, locations)
    sd, best = _bounded_max(lambda x: marginal_loglik(params, inputs, x, locations), 0.0, upper, xatol)
    gain = best - base
    return ((sd, gain) if gain > 0 else (0.0, 0.0)) + (base,)


def estimate_sds(params: dict, inputs: tuple, *, n_points: int = 7, week_points: int = 0, upper: float = 5.0,
                 xatol: float = 0.005, week_xatol: float = 0.01, refine: float = 0.3,
                 week_inputs: tuple | None = None) -> tuple[float, float, float]:
    """The plug-in ``(deal_sd, week_sd, gain)`` of one draw: household and household-week deviations.

    One pass of coordinate ascent on the marginal likelihood: ``deal_sd``
    alone (:func:`estimate_sd`), ``week_sd`` on ``[0, upper]`` given it,
    then ``deal_sd`` again given ``week_sd``, within ``refine`` of its first
    value (``refine = 0`` keeps it). ``gain`` is the log-likelihood gain over
    no deviation at all. Fewer than 2 ``week_points``: ``week_sd`` is 0 and
    this is :func:`estimate_sd`.
    """
    deal_sd, gain, base = _estimate_sd(params, inputs, n_points=n_points, upper=upper, xatol=xatol)
    if week_points < 2:
        return deal_sd, 0.0, gain
    locations = grid_locations(n_points)
    week_inputs = household_week_inputs(inputs) if week_inputs is None else week_inputs

    def loglik(d: float, w: float) -> float:
        return marginal_loglik(params, inputs, d, locations, week_sd=w, week_points=week_points,
                               week_inputs=week_inputs)

    week_sd, best = _bounded_max(lambda w: loglik(deal_sd, w), 0.0, upper, week_xatol)
    if refine > 0:
        deal_sd, best = _bounded_max(lambda d: loglik(d, week_sd), max(0.0, deal_sd - refine), deal_sd + refine,
                                     week_xatol)
    gain = best - base
    return (deal_sd, week_sd, gain) if gain > 0 else (0.0, 0.0, 0.0)


# --- deal-hunting weeks: a household-week deviation of the discount coefficient -------------------------------

#: Name of the plug-in sd of the household-week deviation (one value per stored draw).
WEEK_VARIABLE = "deal_week_sd"
#: The plug-in sds (household, household-week).
SD_VARIABLES = (VARIABLE, WEEK_VARIABLE)
#: Every variable the plug-in step adds to a trace (dropped before it is redone).
PLUG_IN_VARIABLES = (*SD_VARIABLES, "deal_loglik_gain")


def household_week_inputs(inputs: tuple) -> tuple[tuple, np.ndarray]:
    """Kernel inputs whose occasions are labelled by household-week instead of household, and each label's household.

    The fused kernel multiplies a "household's" occasions under each class;
    relabelled, it returns one row per household-week, which the week
    deviation is marginalised over before the weeks of a household are
    multiplied. The state items are part of the occasions' data, so they are
    unchanged.
    """
    from bayes_retail.models._choice_kernel import ChoiceLoglik

    at_household = ChoiceLoglik.data_names.index("occ_household")
    at_week = ChoiceLoglik.data_names.index("occ_week")
    n_weeks = inputs[ChoiceLoglik.data_names.index("price")].shape[0]
    key = inputs[at_household] * n_weeks + inputs[at_week]
    unique, label = np.unique(key, return_inverse=True)
    relabelled = list(inputs)
    relabelled[at_household] = label.astype(np.int64)
    return tuple(relabelled), (unique // n_weeks).astype(np.int64)


#: Bytes of the kernel's dense ``(W, G, k)`` utilities one call may hold: classes beyond it go in further calls.
CLASS_CHUNK_BYTES = 256 * 2**20


def class_chunks(n_classes: int, n_weeks: int, n_items: int, threads: int, *,
                 chunk_bytes: int | None = None) -> list[np.ndarray]:
    """Rows of ``theta`` per kernel call: at least ``threads`` calls, each within ``chunk_bytes`` of utilities.

    The kernel holds ``exp(v)`` for every week, item and class of a call at
    once (8 bytes each), so with thousands of items and hundreds of effective
    classes one call over all of them needs gigabytes (1.5 GB for the shipped
    fit's 168 on the real catalogue); calls on fewer classes need less, and
    give the same columns (classes are independent). ``chunk_bytes`` defaults
    to :data:`CLASS_CHUNK_BYTES`; a single class is one call whatever its size.
    """
    per_class = max(1, 8 * int(n_weeks) * int(n_items))
    most = max(1, int(CLASS_CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // per_class)
    n_calls = max(min(int(threads), n_classes), -(-n_classes // most), 1)
    return np.array_split(np.arange(n_classes), n_calls)


def _class_logliks(t, theta, display_c, mailer_c, depth_c, inputs: tuple, threads: int) -> np.ndarray:
    """The kernel's ``(H, K)`` per-class log-likelihoods, the rows of ``theta`` in chunks over ``threads`` threads.

    Classes are independent in the kernel (which releases the GIL), so each
    chunk's columns are exactly those of one call on every class; chunks
    (:func:`class_chunks`) bound the memory of each call.
    """
    from concurrent.futures import ThreadPoolExecutor

    from bayes_retail.models._choice_kernel import ChoiceLoglik, household_class_loglik

    theta = np.asarray(theta, dtype=np.float64)
    threads = max(1, int(threads))
    n_weeks, n_items = inputs[ChoiceLoglik.data_names.index("price")].shape
    chunks = class_chunks(theta.shape[0], n_weeks, n_items, threads)

    def call(rows: np.ndarray) -> np.ndarray:
        return household_class_loglik(t, np.ascontiguousarray(theta[rows]), display_c, mailer_c, depth_c, *inputs)

    if len(chunks) == 1:
        return call(chunks[0])
    with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
        return np.concatenate(list(pool.map(call, chunks)), axis=1)


def household_logliks(t, theta, display_c, mailer_c, depth_c, inputs: tuple, *, week_sd: float = 0.0,
                      week_points: int = 0, week_inputs: tuple | None = None, threads: int = 1) -> np.ndarray:
    """``(H, K)`` each household's choice log-likelihood under each row of ``theta``.

    Without a week deviation (``week_sd`` 0 or fewer than 2 ``week_points``)
    the kernel's :func:`~bayes_retail.models._choice_kernel.household_class_loglik`.
    With one, every household-week's choices are averaged over the
    ``week_points`` equal-weight points ``week_sd * eta_w`` added to the
    discount coefficient, then multiplied over the household's weeks: the
    household's class and deal proneness persist, the week's deviation is
    drawn afresh each week. ``week_inputs`` is :func:`household_week_inputs`
    of ``inputs`` when a caller already has it. ``threads`` splits the
    classes over that many threads (same result).
    """
    if not week_sd or week_points < 2:
        return _class_logliks(t, theta, display_c, mailer_c, depth_c, inputs, threads)
    relabelled, week_household = household_week_inputs(inputs) if week_inputs is None else week_inputs
    theta = np.asarray(theta, dtype=np.float64)
    per_week = _class_logliks(t, expand_classes(theta, week_sd, grid_locations(week_points)), display_c, mailer_c,
                              depth_c, relabelled, threads)
    per_week = logsumexp(per_week.reshape(per_week.shape[0], theta.shape[0], week_points), axis=2)
    out = np.zeros((int(week_household.max()) + 1 if week_household.size else 0, theta.shape[0]))
    np.add.at(out, week_household, per_week - np.log(week_points))
    return out


def params_household_logliks(params: dict, inputs: tuple, *, week_inputs: tuple | None = None,
                             threads: int = 1) -> np.ndarray:
    """:func:`household_logliks` of a parameter dict (its ``deal_week_sd`` / ``deal_week_points`` when present)."""
    return household_logliks(params["t"], params["theta"], *promo_coefficients(params), inputs,
                             week_sd=params.get("deal_week_sd", 0.0), week_points=params.get("deal_week_points", 0),
                             week_inputs=week_inputs, threads=threads)


def promo_coefficients(params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(display, mailer, depth)`` category coefficients of a product-stage parameter dict, in the kernels' order.

    ``depth`` is zeros for a fit without a per-category depth response. Here
    rather than in :mod:`~bayes_retail.models.product` (which re-exports it)
    because that module imports this one.
    """
    depth = params.get("depth")
    return params["display"], params["mailer"], np.zeros_like(params["display"]) if depth is None else depth
