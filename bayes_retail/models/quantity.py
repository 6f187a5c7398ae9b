"""Stage 4: quantity given a product purchase (DESIGN.md §2).

    q - 1 ~ NegBinomial(mean = exp(l_j + kappa_c * depth + basket_h), dispersion alpha)

- ``l_j`` product intercepts, partially pooled within their category
  (``l_j = m_c + tau_product * z_j``, non-centred: most products have a
  handful of purchases), category means ``m_c ~ N(mu_product, tau_category)``;
- ``kappa_c`` the stockpiling response to the discount depth of the line,
  partially pooled (non-centred: a quarter of the categories have fewer than
  320 lines);
- ``basket_h`` household basket-size propensity, centred (hundreds of lines per
  household); ``alpha`` one dispersion.

Exact aggregation. With ``y = q - 1`` the NB log-pmf is

    lgamma(y + a) - lgamma(a) - lgamma(y + 1) + a log a + y log mu - (a + y) log(a + mu),

so the lgamma terms need only the histogram of ``y`` over all lines (a few
dozen distinct values), and the rest only, per distinct (household, product,
depth) pattern, its number of lines ``n`` and its sum of ``y``. Tested equal
to the row-level log-pmf.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

STAGE = "quantity"
MODEL_VERSION = 1


@dataclass(frozen=True)
class QuantityConfig:
    """The ``[quantity]`` section of a configuration (prior scales)."""

    product_sigma: float = 1.0
    kappa_sigma: float = 1.0
    basket_sigma: float = 0.5
    alpha_log_sigma: float = 1.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not float(value) > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QuantityData:
    """Sufficient statistics of the quantity stage.

    Attributes
    ----------
    households, products, categories
        Ids behind the indices.
    product_category
        ``(J,)`` category index of each product.
    pattern_household, pattern_product, pattern_depth
        One entry per distinct (household, product, depth) pattern.
    pattern_lines, pattern_extra
        Lines in the pattern and their sum of ``q - 1``.
    extra_values, extra_counts
        Histogram of ``q - 1`` over all lines.
    """

    households: np.ndarray
    products: np.ndarray
    categories: np.ndarray
    product_category: np.ndarray
    pattern_household: np.ndarray
    pattern_product: np.ndarray
    pattern_depth: np.ndarray
    pattern_lines: np.ndarray
    pattern_extra: np.ndarray
    extra_values: np.ndarray
    extra_counts: np.ndarray

    @property
    def n_lines(self) -> int:
        return int(self.extra_counts.sum())


def quantity_data_from_lines(lines: pd.DataFrame) -> QuantityData:
    """Aggregate purchase lines (``household``, ``product``, ``category``, ``depth``, ``quantity``; 0-based indices).

    Every line needs ``quantity >= 1`` and ``0 <= depth < 1``; a product must sit
    in one category.
    """
    required = ["household", "product", "category", "depth", "quantity"]
    missing = [c for c in required if c not in lines.columns]
    if missing:
        raise ValueError(f"quantity lines lack column(s): {', '.join(missing)}")
    if (lines["quantity"] < 1).any():
        raise ValueError(f"quantity must be >= 1, found {int(lines['quantity'].min())}")
    if ((lines["depth"] < 0) | (lines["depth"] >= 1)).any():
        raise ValueError("depth must be in [0, 1)")
    cats = lines.groupby("product")["category"].nunique()
    if (cats > 1).any():
        raise ValueError(f"product {int(cats.index[cats > 1][0])} appears in more than one category")
    extra = lines["quantity"].to_numpy() - 1
    patterns = (
        lines.assign(extra=extra)
        .groupby(["household", "product", "depth"], sort=True)["extra"]
        .agg(["size", "sum"])
        .reset_index()
    )
    n_products = int(lines["product"].max()) + 1
    product_category = np.zeros(n_products, dtype=np.int64)
    first = lines.drop_duplicates("product")
    product_category[first["product"].to_numpy()] = first["category"].to_numpy()
    values, counts = np.unique(extra, return_counts=True)
    return QuantityData(
        households=np.arange(int(lines["household"].max()) + 1),
        products=np.arange(n_products),
        categories=np.arange(int(lines["category"].max()) + 1),
        product_category=product_category,
        pattern_household=patterns["household"].to_numpy(),
        pattern_product=patterns["product"].to_numpy(),
        pattern_depth=patterns["depth"].to_numpy(float),
        pattern_lines=patterns["size"].to_numpy(float),
        pattern_extra=patterns["sum"].to_numpy(float),
        extra_values=values.astype(float),
        extra_counts=counts.astype(float),
    )


def build_quantity_data(data) -> tuple[QuantityData, pd.DataFrame]:
    """Quantity-stage data from a :class:`~bayes_retail.data.RetailData` (the choices panel).

    The depth of a line is its own discount share ``retail_disc / (spend +
    retail_disc)`` (the discount the shopper faced), capped below 1. Returns the
    data and the index tables (household, product) behind it.
    """
    ch = data.choices
    households = pd.Index(np.sort(ch["household_id"].unique()))
    products = pd.Index(np.sort(ch["product_id"].unique()))
    shelf = ch["spend"] + ch["retail_disc"]
    depth = np.where(shelf > 0, ch["retail_disc"] / shelf.where(shelf > 0, 1.0), 0.0).clip(0.0, 0.99)
    lines = pd.DataFrame(
        {
            "household": households.get_indexer(ch["household_id"]),
            "product": products.get_indexer(ch["product_id"]),
            "category": ch["category_id"].to_numpy(),
            "depth": np.round(depth, 6),
            "quantity": ch["units"].to_numpy(),
        }
    )
    return quantity_data_from_lines(lines), pd.DataFrame({"product_id": products})


def coords(qd: QuantityData) -> dict:
    return {"household": qd.households, "product": qd.products, "category": qd.categories}


def log_mean(l, kappa, basket, qd: QuantityData, lib=np):
    """Log mean of ``q - 1`` per pattern."""
    j = qd.pattern_product
    return l[j] + kappa[qd.product_category[j]] * qd.pattern_depth + basket[qd.pattern_household]


def build_model(qd: QuantityData, config: QuantityConfig | None = None) -> pm.Model:
    """The PyMC model of the quantity stage (see the module docstring)."""
    config = config or QuantityConfig()
    with pm.Model(coords=coords(qd)) as model:
        mu_product = pm.Normal("mu_product", -1.5, 1.5)
        tau_category = pm.HalfNormal("tau_category", config.product_sigma)
        tau_product = pm.HalfNormal("tau_product", config.product_sigma)
        m = pm.Normal("m", mu_product, tau_category, dims="category")
        z_product = pm.Normal("z_product", 0.0, 1.0, dims="product")
        l = m[qd.product_category] + tau_product * z_product
        mu_kappa = pm.Normal("mu_kappa", 0.0, config.kappa_sigma)
        sigma_kappa = pm.HalfNormal("sigma_kappa", config.kappa_sigma)
        z_kappa = pm.Normal("z_kappa", 0.0, 1.0, dims="category")
        kappa = mu_kappa + sigma_kappa * z_kappa
        sigma_basket = pm.HalfNormal("sigma_basket", config.basket_sigma)
        basket = pm.Normal("basket", 0.0, sigma_basket, dims="household")
        log_alpha = pm.Normal("log_alpha", 0.0, config.alpha_log_sigma)
        alpha = pt.exp(log_alpha)
        eta = log_mean(l, kappa, basket, qd)
        lines, extra = qd.pattern_lines, qd.pattern_extra
        per_pattern = lines * alpha * log_alpha + extra * eta - (lines * alpha + extra) * pt.log(alpha + pt.exp(eta))
        per_value = qd.extra_counts * (pt.gammaln(qd.extra_values + alpha) - pt.gammaln(alpha))
        pm.Potential("quantity_loglik", per_pattern.sum() + per_value.sum())
    return model


def data_constant(qd: QuantityData) -> float:
    """``-sum log(y!)`` over all lines: the term the model drops (it does not depend on parameters)."""
    from scipy.special import gammaln

    return float(-(qd.extra_counts * gammaln(qd.extra_values + 1.0)).sum())


def simulate(log_mu: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Forward sampler: quantities ``1 + NB(exp(log_mu), alpha)`` as a gamma-Poisson mixture."""
    mu = np.exp(np.asarray(log_mu, dtype=float))
    return 1 + rng.poisson(rng.gamma(alpha, mu / alpha))


def summary_statistics(extra_values: np.ndarray, extra_counts: np.ndarray) -> dict[str, float]:
    """Share of lines with quantity 1 and mean quantity (what the prior predictive check compares)."""
    total = extra_counts.sum()
    return {
        "share_of_ones": float(extra_counts[extra_values == 0].sum() / total),
        "mean_quantity": float(1.0 + (extra_values * extra_counts).sum() / total),
    }


def prior_predictive(qd: QuantityData, config: QuantityConfig | None = None, *, draws: int = 100, seed: int = 0) -> pd.DataFrame:
    """Prior predictive check: quantity summaries of lines simulated from prior draws on the data's patterns."""
    import warnings

    config = config or QuantityConfig()
    rng = np.random.default_rng(seed)
    model = build_model(qd, config)
    names = ["m", "tau_product", "z_product", "mu_kappa", "sigma_kappa", "z_kappa", "basket", "log_alpha"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=names, random_seed=rng).prior
    lines = qd.pattern_lines.astype(np.int64)
    rows = []
    for k in range(draws):
        v = {n: prior[n].values[0, k] for n in names}
        l = v["m"][qd.product_category] + v["tau_product"] * v["z_product"]
        kappa = v["mu_kappa"] + v["sigma_kappa"] * v["z_kappa"]
        eta = np.repeat(log_mean(l, kappa, v["basket"], qd), lines)
        extra = simulate(eta, float(np.exp(v["log_alpha"])), rng) - 1
        values, counts = np.unique(extra, return_counts=True)
        rows.append(summary_statistics(values.astype(float), counts.astype(float)))
    return pd.DataFrame(rows)
