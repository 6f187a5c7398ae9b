"""How a week's purchases split between its trips: the trip-size plug-in of the simulator.

The category stage is fitted per household-week: a week of ``n`` trips buys
category c with probability ``1 - exp(-n exp(eta))`` (DESIGN.md §2), which says
nothing about which trips bought. Trips with equal weights (each buying with
``1 - exp(-exp(eta))``) make every trip of a week alike, while real weeks mix
a big shop with top-ups: on the embedded data the real trips carry 1/3/7/17/34
units at their 10-90% quantiles and equal trips 3/5/11/19/30.

The simulator gives a week's trips log-normal weights ``w_t`` summing to ``n``
(:func:`~bayes_retail.simulate._kernels.category_week`); the week's
probability stays exactly the fitted one. Their log sd is estimated here from
the real weeks with two trips: a category bought on one trip only lands on
the first with probability ``pi = w_1 / (w_1 + w_2)`` when its rate is small
(the first-order term of ``1 - exp(-w r)``), so the first trip's count among
the single-trip categories is binomial given ``pi``, and
``logit(pi) = e_1 - e_2 ~ N(0, 2 sd^2)``. The likelihood integrates ``pi``
out (Gauss-Hermite) and conditions on both trips having bought something (a
real trip is never empty). This is a point estimate (a plug-in, not a
posterior) and approximate: the small-rate step overstates how evenly a
frequently bought category splits, and weeks of three or more trips are
assumed to share the two-trip weeks' spread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special

#: Gauss-Hermite nodes for integrating a week's split share out.
QUADRATURE_NODES = 60
#: Upper bound of the log sd search (a trip 50 times another at one sd).
MAX_TRIP_WEIGHT_SD = 4.0


def two_trip_splits(transactions: pd.DataFrame, choice_sets: pd.DataFrame) -> np.ndarray:
    """``(n, 3)`` per household-week with exactly two trips: the categories bought on the first trip only,
    on the second only, and on both (weeks where no category was bought on one trip only are dropped).

    Trips are ``basket_id`` values; the first is the smaller id. Categories are the modelled ones
    (``choice_sets``' ``category_id`` of each product).
    """
    category = choice_sets.drop_duplicates("product_id").set_index("product_id")["category_id"]
    missing = ~transactions["product_id"].isin(category.index)
    if missing.any():
        raise ValueError(f"transactions: product_id {transactions.loc[missing, 'product_id'].iloc[0]} "
                         "is in no choice set")
    lines = pd.DataFrame({
        "household": transactions["household_id"].to_numpy(), "week": transactions["week"].to_numpy(),
        "basket": transactions["basket_id"].to_numpy(),
        "category": category.reindex(transactions["product_id"]).to_numpy(),
    }).drop_duplicates()
    week_key = ["household", "week"]
    n_trips = lines.groupby(week_key)["basket"].transform("nunique")
    lines = lines[n_trips.to_numpy() == 2]
    on_first = lines["basket"] == lines.groupby(week_key)["basket"].transform("min")
    per_category = on_first.groupby([lines["household"], lines["week"], lines["category"]]).agg(["sum", "count"])
    both = per_category["count"] == 2
    split = pd.DataFrame({
        "first": (~both) & (per_category["sum"] == 1),
        "second": (~both) & (per_category["sum"] == 0),
        "both": both,
    }).groupby(level=[0, 1]).sum()
    counts = split.to_numpy(np.int64)
    return counts[counts[:, 0] + counts[:, 1] > 0]


def split_log_likelihood(splits: np.ndarray, sd: float, *, nodes: int = QUADRATURE_NODES) -> float:
    """Log-likelihood of two-trip splits (:func:`two_trip_splits`) at trip-weight log sd ``sd``.

    Per week: ``E[pi^a (1 - pi)^b] / E[P(both trips bought | pi)]`` over
    ``logit(pi) ~ N(0, 2 sd^2)``, where a trip with no category bought on both
    trips is non-empty only if it got one of the ``a + b`` single-trip ones.
    """
    if not sd >= 0:
        raise ValueError(f"sd must be >= 0, got {sd!r}")
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    log_w = np.log(w / w.sum())
    logit = np.sqrt(2.0) * sd * z
    log_pi, log_rest = special.log_expit(logit), special.log_expit(-logit)
    first, second, both = (splits[:, k, None].astype(float) for k in range(3))
    numerator = special.logsumexp(first * log_pi + second * log_rest + log_w, axis=1)
    total = first + second
    one_sided = np.exp(total * log_pi) + np.exp(total * log_rest)  # every single-trip category on one trip
    non_empty = np.where(both > 0, 1.0, 1.0 - one_sided)
    return float(np.sum(numerator - np.log(non_empty @ np.exp(log_w))))


def trip_weight_sd(transactions: pd.DataFrame, choice_sets: pd.DataFrame) -> float:
    """Maximum-likelihood log sd of the trips' weights within a week (:func:`split_log_likelihood`).

    Returns 0 when the data have no week with two trips that split their categories.
    """
    splits = two_trip_splits(transactions, choice_sets)
    if splits.shape[0] == 0:
        return 0.0
    fit = optimize.minimize_scalar(lambda s: -split_log_likelihood(splits, s), bounds=(0.0, MAX_TRIP_WEIGHT_SD),
                                   method="bounded", options={"xatol": 1e-4})
    return float(fit.x)
