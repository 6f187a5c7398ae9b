"""Observed versus simulated price panels: the checks the pricing HMMs must pass.

A price panel has one row per product-week with ``product_id``, ``category_id``,
``week``, ``base_price``, ``depth``, ``display``, ``mailer`` (as
:meth:`~bayes_retail.pricing.PricingModel.simulate` writes it and
:func:`observed_panel` builds it from the data). A product-week is *promoted*
when it is on display or in the mailer (fully observed, unlike the depth).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from bayes_retail.metrics.pricing import pricing_metrics
from bayes_retail.metrics.scoring import ks_statistic
from bayes_retail.pricing.model import PricingPanel


def observed_panel(panel: PricingPanel, depth: np.ndarray | None = None) -> pd.DataFrame:
    """The data's price panel in long form.

    Parameters
    ----------
    panel
        The product-week arrays.
    depth
        ``(T, N)`` depths to use (an imputed panel); default the observed ones
        (NaN where nobody bought).

    Returns
    -------
    DataFrame
        ``base_price`` is the observed shelf price (NaN where not observed:
        a carried price is not an observation); ``shelf_carried`` the carried one.
    """
    n = panel.products.shape[0]
    t_len = panel.weeks.size
    depth = panel.depth if depth is None else depth
    return pd.DataFrame(
        {
            "product_id": np.repeat(panel.products["product_id"].to_numpy(), t_len),
            "category_id": np.repeat(panel.products["category_id"].to_numpy(), t_len),
            "week": np.tile(panel.weeks, n),
            "base_price": np.where(panel.shelf_observed, panel.shelf, np.nan).T.ravel(),
            "shelf_carried": panel.shelf.T.ravel(),
            "depth": depth.T.ravel(),
            "display": panel.display.T.ravel(),
            "mailer": panel.mailer.T.ravel(),
        }
    )


@dataclass
class PricingValidation:
    """Observed-vs-simulated checks of the pricing HMMs.

    Attributes
    ----------
    base_price_ks, base_price_score
        KS (and 1 - KS) of the relative log base price (against each product's median).
    promo_discount_ks, promo_discount_score
        KS (and 1 - KS) of the positive depths.
    promo_frequency_observed, promo_frequency_simulated, promo_frequency_diff
        Share of product-weeks with depth > 0 (among those with a depth), and the
        difference simulated minus observed.
    display_share, mailer_share
        ``{"observed": ..., "simulated": ...}`` shares of product-weeks flagged.
    promoted_share
        The same for display or mailer.
    run_length_mean, run_length_ks
        Mean length (weeks) of runs of consecutive promoted weeks on each side,
        and the KS statistic of the two run-length distributions.
    co_promotion
        ``{"observed", "simulated"}``: P(another product of the same category is
        promoted the same week | a product is promoted).
    weekly_mailer_sd
        Standard deviation over weeks of the chain-wide share of products in the
        mailer: how strongly products are promoted together by the calendar.
    """

    base_price_ks: float | None
    base_price_score: float | None
    promo_discount_ks: float | None
    promo_discount_score: float | None
    promo_frequency_observed: float | None
    promo_frequency_simulated: float | None
    promo_frequency_diff: float | None
    display_share: dict
    mailer_share: dict
    promoted_share: dict
    run_length_mean: dict
    run_length_ks: float
    co_promotion: dict
    weekly_mailer_sd: dict

    def to_dict(self) -> dict:
        return asdict(self)


def validate_prices(observed: pd.DataFrame, simulated: pd.DataFrame) -> PricingValidation:
    """Compare an observed and a simulated price panel (see the module docstring for the columns)."""
    prices = pricing_metrics(
        observed.rename(columns={"base_price": "shelf_price"}),
        simulated.rename(columns={"base_price": "shelf_price"}),
    )
    runs_obs, runs_sim = promo_run_lengths(observed), promo_run_lengths(simulated)
    return PricingValidation(
        base_price_ks=prices.base_price_ks,
        base_price_score=prices.base_price_score,
        promo_discount_ks=prices.promo_discount_ks,
        promo_discount_score=prices.promo_discount_score,
        promo_frequency_observed=prices.promo_frequency_real,
        promo_frequency_simulated=prices.promo_frequency_synthetic,
        promo_frequency_diff=prices.promo_frequency_diff,
        display_share=_pair(observed["display"].mean(), simulated["display"].mean()),
        mailer_share=_pair(observed["mailer"].mean(), simulated["mailer"].mean()),
        promoted_share=_pair(_promoted(observed).mean(), _promoted(simulated).mean()),
        run_length_mean=_pair(runs_obs.mean() if runs_obs.size else 0.0, runs_sim.mean() if runs_sim.size else 0.0),
        run_length_ks=ks_statistic(runs_obs, runs_sim) if runs_obs.size and runs_sim.size else float("nan"),
        co_promotion=_pair(co_promotion_share(observed), co_promotion_share(simulated)),
        weekly_mailer_sd=_pair(_weekly_mailer_sd(observed), _weekly_mailer_sd(simulated)),
    )


def _weekly_mailer_sd(panel: pd.DataFrame) -> float:
    return float(panel.groupby("week")["mailer"].mean().std(ddof=0))


def _pair(observed: float, simulated: float) -> dict:
    return {"observed": float(observed), "simulated": float(simulated)}


def _promoted(panel: pd.DataFrame) -> np.ndarray:
    return (panel["display"].to_numpy(bool) | panel["mailer"].to_numpy(bool))


def promo_run_lengths(panel: pd.DataFrame) -> np.ndarray:
    """Lengths of the runs of consecutive promoted weeks of every product."""
    df = panel.sort_values(["product_id", "week"])
    on = _promoted(df)
    product = df["product_id"].to_numpy()
    new_product = np.ones(on.size, dtype=bool)
    new_product[1:] = product[1:] != product[:-1]
    starts = on & (new_product | ~np.concatenate([[False], on[:-1]]))
    run_id = np.cumsum(starts) - 1
    return np.bincount(run_id[on]).astype(float) if on.any() else np.zeros(0)


def co_promotion_share(panel: pd.DataFrame) -> float:
    """P(another product of the same category is promoted that week | a product is promoted).

    With n promoted of N products in a category-week, a promoted product has
    n - 1 promoted companions among N - 1: the share pools
    sum n (n - 1) / sum n (N - 1) over category-weeks.
    """
    g = pd.DataFrame({"c": panel["category_id"].to_numpy(), "w": panel["week"].to_numpy(), "on": _promoted(panel)})
    agg = g.groupby(["c", "w"])["on"].agg(["sum", "size"])
    n, size = agg["sum"].to_numpy(float), agg["size"].to_numpy(float)
    denominator = float((n * (size - 1)).sum())
    return float((n * (n - 1)).sum() / denominator) if denominator > 0 else float("nan")
