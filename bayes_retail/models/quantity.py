"""Stage 4: quantity given a product purchase (DESIGN.md §2).

    q - 1 ~ NegBinomial(mean = exp(l_j + kappa_c * depth + basket_h), dispersion alpha)

- ``l_j`` item intercepts, partially pooled within their category
  (``l_j = m_c + tau_item * z_j``, non-centred: most items have a
  handful of purchases), category means ``m_c ~ N(mu_item, tau_category)``.
  ``j`` runs over the product stage's items (choice-set products and one
  "other" item per category), the space the simulator draws in: the tail
  products of a category share its "other" intercept (an approximation for
  ~1/5 of a category's lines at most; see docs/models/quantity.md);
- ``kappa_c`` the stockpiling response to the discount depth of the line,
  partially pooled: centred for categories with at least
  ``kappa_centred_min_lines`` discounted lines, non-centred for the rest;
- ``basket_h`` household basket-size propensity, centred (hundreds of lines per
  household); ``alpha`` one dispersion, or one per category pooled
  (``dispersion = "category"``).

Exact aggregation. With ``y = q - 1`` the NB log-pmf is

    lgamma(y + a) - lgamma(a) - lgamma(y + 1) + a log a + y log mu - (a + y) log(a + mu),

so the lgamma terms need only the histogram of ``y`` over all lines (a few
dozen distinct values), and the rest only, per distinct (household, item,
depth) pattern, its number of lines ``n`` and its sum of ``y``. Tested equal
to the row-level log-pmf. The pattern sum (~1M terms on the full data) is one
fused numba kernel with its gradient (``_kernels.negbin_pattern_loglik``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from bayes_retail.models._kernels import negbin_pattern_loglik_op
from bayes_retail.models.artifacts import evenly_spaced
from bayes_retail.models.pooling import partially_centred

STAGE = "quantity"
MODEL_VERSION = 1
DISPERSIONS = ("global", "category")


@dataclass(frozen=True)
class QuantityConfig:
    """The ``[quantity]`` section of a configuration (prior scales)."""

    item_sigma: float = 1.0
    kappa_sigma: float = 1.0
    basket_sigma: float = 0.5
    alpha_log_sigma: float = 1.5
    #: "global": one NB dispersion; "category": one per category, pooled (log scale, sd ``alpha_category_sigma``)
    dispersion: str = "global"
    alpha_category_sigma: float = 0.5
    #: items with at least this many lines get a centred intercept, the others a non-centred one
    centred_min_lines: int = 10
    #: categories with at least this many discounted lines get a centred kappa
    kappa_centred_min_lines: int = 100

    def __post_init__(self) -> None:
        if self.dispersion not in DISPERSIONS:
            raise ValueError(f"dispersion must be one of {', '.join(DISPERSIONS)}, got {self.dispersion!r}")
        for name, value in asdict(self).items():
            if name == "dispersion":
                continue
            if not float(value) > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name in ("centred_min_lines", "kappa_centred_min_lines"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ValueError(f"{name} must be a whole number, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QuantityData:
    """Sufficient statistics of the quantity stage.

    Attributes
    ----------
    households, items, categories
        Indices (0-based) of the households, items and categories.
    item_category
        ``(J,)`` category index of each item.
    pattern_household, pattern_item, pattern_depth
        One entry per distinct (household, item, depth) pattern.
    pattern_lines, pattern_extra
        Lines in the pattern and their sum of ``q - 1``.
    extra_values, extra_counts
        Histogram of ``q - 1`` over all lines.
    value_category, value_extra, value_count
        Histogram of ``q - 1`` per category (one entry per category and value seen).
    household_ids, category_ids
        Ids behind the household and category indices, when known (the model's coordinates).
    """

    households: np.ndarray
    items: np.ndarray
    categories: np.ndarray
    item_category: np.ndarray
    pattern_household: np.ndarray
    pattern_item: np.ndarray
    pattern_depth: np.ndarray
    pattern_lines: np.ndarray
    pattern_extra: np.ndarray
    extra_values: np.ndarray
    extra_counts: np.ndarray
    value_category: np.ndarray
    value_extra: np.ndarray
    value_count: np.ndarray
    household_ids: np.ndarray | None = None
    category_ids: np.ndarray | None = None

    @property
    def n_lines(self) -> int:
        return int(self.extra_counts.sum())

    @property
    def item_lines(self) -> np.ndarray:
        """``(J,)`` lines per item."""
        return np.bincount(self.pattern_item, weights=self.pattern_lines, minlength=self.items.size)


def quantity_data_from_lines(lines: pd.DataFrame) -> QuantityData:
    """Aggregate purchase lines (``household``, ``item``, ``category``, ``depth``, ``quantity``; 0-based indices).

    Every line needs ``quantity >= 1`` and ``0 <= depth < 1``; an item must sit
    in one category.
    """
    required = ["household", "item", "category", "depth", "quantity"]
    missing = [c for c in required if c not in lines.columns]
    if missing:
        raise ValueError(f"quantity lines lack column(s): {', '.join(missing)}")
    if (lines["quantity"] < 1).any():
        raise ValueError(f"quantity must be >= 1, found {int(lines['quantity'].min())}")
    if ((lines["depth"] < 0) | (lines["depth"] >= 1)).any():
        raise ValueError("depth must be in [0, 1)")
    cats = lines.groupby("item")["category"].nunique()
    if (cats > 1).any():
        raise ValueError(f"item {int(cats.index[cats > 1][0])} appears in more than one category")
    extra = lines["quantity"].to_numpy() - 1
    patterns = (
        lines.assign(extra=extra)
        .groupby(["household", "item", "depth"], sort=True)["extra"]
        .agg(["size", "sum"])
        .reset_index()
    )
    n_items = int(lines["item"].max()) + 1
    item_category = np.zeros(n_items, dtype=np.int64)
    first = lines.drop_duplicates("item")
    item_category[first["item"].to_numpy()] = first["category"].to_numpy()
    values, counts = np.unique(extra, return_counts=True)
    per_category = lines.assign(extra=extra).groupby(["category", "extra"], sort=True).size().reset_index(name="n")
    return QuantityData(
        households=np.arange(int(lines["household"].max()) + 1),
        items=np.arange(n_items),
        categories=np.arange(int(lines["category"].max()) + 1),
        item_category=item_category,
        pattern_household=patterns["household"].to_numpy(np.int64),
        pattern_item=patterns["item"].to_numpy(np.int64),
        pattern_depth=patterns["depth"].to_numpy(float),
        pattern_lines=patterns["size"].to_numpy(float),
        pattern_extra=patterns["sum"].to_numpy(float),
        extra_values=values.astype(float),
        extra_counts=counts.astype(float),
        value_category=per_category["category"].to_numpy(np.int64),
        value_extra=per_category["extra"].to_numpy(float),
        value_count=per_category["n"].to_numpy(float),
    )


def line_depth(choices: pd.DataFrame) -> np.ndarray:
    """The depth of each line: its own discount share ``retail_disc / (spend + retail_disc)``, capped at 0.99."""
    shelf = choices["spend"] + choices["retail_disc"]
    depth = np.where(shelf > 0, choices["retail_disc"] / shelf.where(shelf > 0, 1.0), 0.0)
    return np.round(np.clip(depth, 0.0, 0.99), 6)


def _lines(data, households=None, weeks=None, *, household_index: pd.Index | None = None):
    """The purchase lines in the stage's indices (``household``, ``item``, ``category``, ``depth``, ``quantity``, ``week``).

    Households are indexed by ``household_index`` when given (lines of other
    households dropped), else by their sorted ids. Returns the lines, the item
    table, the category ids and the household index.
    """
    from bayes_retail.models.product import item_table

    ch = data.choices
    if households is not None:
        ch = ch.loc[ch["household_id"].isin(households)]
    if household_index is not None:
        ch = ch.loc[ch["household_id"].isin(household_index)]
    if weeks is not None:
        ch = ch.loc[ch["week"].isin(weeks)]
    if ch.empty:
        raise ValueError("no purchase lines for the selected households and weeks")
    items = item_table(data.choice_sets)
    categories = pd.Index(np.sort(items["category_id"].unique()))
    item_index = pd.Series(items["g"].to_numpy(), index=pd.MultiIndex.from_frame(items[["category_id", "item"]]))
    hh = pd.Index(np.sort(ch["household_id"].unique())) if household_index is None else pd.Index(household_index)
    lines = pd.DataFrame(
        {
            "household": hh.get_indexer(ch["household_id"]),
            "item": item_index.reindex(pd.MultiIndex.from_frame(ch[["category_id", "item"]])).to_numpy(),
            "category": categories.get_indexer(ch["category_id"]),
            "depth": line_depth(ch),
            "quantity": ch["units"].to_numpy(),
            "week": ch["week"].to_numpy(),
        }
    )
    if lines["item"].isna().any():
        raise ValueError("a purchase line's (category_id, item) is missing from the choice sets")
    lines["item"] = lines["item"].astype(np.int64)
    return lines, items, categories, hh


def build_quantity_data(data, households=None, weeks=None) -> tuple[QuantityData, pd.DataFrame, pd.Index]:
    """Quantity-stage data from a :class:`~bayes_retail.data.RetailData` (its choices panel).

    A line is one household-week-product with its units. Its depth is the
    discount the shopper faced (:func:`line_depth`). ``households`` (ids) and
    ``weeks`` (week numbers) restrict the lines (all when ``None``). Returns
    the data, the item table
    (:func:`~bayes_retail.models.product.item_table`: ``category_id``, ``item``,
    ``product_id``) and the household ids behind the household index.
    """
    lines, items, categories, hh = _lines(data, households, weeks)
    qd = quantity_data_from_lines(lines.drop(columns="week"))
    # every item and category keeps its index even when the selected households never bought it
    qd.items = items["g"].to_numpy()
    qd.categories = np.arange(categories.size)
    qd.item_category = categories.get_indexer(items["category_id"]).astype(np.int64)
    qd.household_ids, qd.category_ids = hh.to_numpy(), categories.to_numpy()
    return qd, items[["category_id", "item", "product_id"]], hh


def coords(qd: QuantityData) -> dict:
    """Named dims: households and categories by id when known, items by their global index."""
    return {
        "household": qd.households if qd.household_ids is None else qd.household_ids,
        "item": qd.items,
        "category": qd.categories if qd.category_ids is None else qd.category_ids,
    }


def log_mean(l, kappa, basket, qd: QuantityData):
    """Log mean of ``q - 1`` per pattern (numpy)."""
    j = qd.pattern_item
    return l[j] + kappa[qd.item_category[j]] * qd.pattern_depth + basket[qd.pattern_household]


def centred_items(qd: QuantityData, min_lines: int) -> np.ndarray:
    """Items whose intercept is centred: those with at least ``min_lines`` lines.

    Measured on the full data: with every item non-centred, the mean of a
    category with two data-rich items (15,148 and 2,643 lines) sat on a ridge
    with their ``z`` (R-hat 1.95 after 2 x 150 draws); with items split at 10
    lines, ``mu_kappa`` did the same with the ``z`` of data-rich categories
    (R-hat 1.44), hence the same split for ``kappa`` (at 100 discounted lines).
    Then the worst pair was a centred ``kappa_c`` and the intercept of an item
    sold mostly on deal (R-hat 1.10, bulk ESS 19 after 2 x 200 draws): centred
    intercepts are sampled at the item's mean depth (``shift`` of
    :func:`~bayes_retail.models.pooling.partially_centred`).
    """
    return qd.item_lines >= min_lines


def discounted_lines(qd: QuantityData) -> np.ndarray:
    """``(C,)`` lines bought at a discount (depth > 0) per category: the information on ``kappa_c``."""
    on_deal = qd.pattern_depth > 0
    per_item = np.bincount(qd.pattern_item[on_deal], weights=qd.pattern_lines[on_deal], minlength=qd.items.size)
    return np.bincount(qd.item_category, weights=per_item, minlength=qd.categories.size)


def item_mean_depth(qd: QuantityData) -> np.ndarray:
    """``(J,)`` mean depth of each item's lines (0 for an item without lines)."""
    lines = qd.item_lines
    depth = np.bincount(qd.pattern_item, weights=qd.pattern_lines * qd.pattern_depth, minlength=qd.items.size)
    return np.divide(depth, lines, out=np.zeros_like(depth), where=lines > 0)


def _log_dispersion(qd: QuantityData, config: QuantityConfig):
    """``(C,)`` log NB dispersion per category: one shared value, or pooled per category.

    Per category: ``log alpha_c ~ N(mu_log_alpha, sigma_log_alpha)``, centred
    where the category has at least ``kappa_centred_min_lines`` lines (every
    line informs the dispersion), non-centred elsewhere. ``alpha`` is stored
    (scalar or by category).
    """
    n_c = qd.categories.size
    if config.dispersion == "global":
        log_alpha = pm.Normal("log_alpha", 0.0, config.alpha_log_sigma)
        pm.Deterministic("alpha", pt.exp(log_alpha))
        return pt.zeros(n_c) + log_alpha
    mu = pm.Normal("mu_log_alpha", 0.0, config.alpha_log_sigma)
    sigma = pm.HalfNormal("sigma_log_alpha", config.alpha_category_sigma)
    lines = np.bincount(qd.item_category, weights=qd.item_lines, minlength=n_c)
    rich = lines >= config.kappa_centred_min_lines
    log_alpha = partially_centred("log_alpha", pt.repeat(mu, n_c), sigma, rich, coords(qd)["category"], "category")
    pm.Deterministic("alpha", pt.exp(log_alpha), dims="category")
    return log_alpha


def build_model(qd: QuantityData, config: QuantityConfig | None = None) -> pm.Model:
    """The PyMC model of the quantity stage (see the module docstring)."""
    config = config or QuantityConfig()
    with pm.Model(coords=coords(qd)) as model:
        mu_item = pm.Normal("mu_item", -1.5, 1.5)
        tau_category = pm.HalfNormal("tau_category", config.item_sigma)
        tau_item = pm.HalfNormal("tau_item", config.item_sigma)
        m = pm.Normal("m", mu_item, tau_category, dims="category")
        mu_kappa = pm.Normal("mu_kappa", 0.0, config.kappa_sigma)
        sigma_kappa = pm.HalfNormal("sigma_kappa", config.kappa_sigma)
        rich = discounted_lines(qd) >= config.kappa_centred_min_lines
        kappa = partially_centred("kappa", pt.repeat(mu_kappa, qd.categories.size), sigma_kappa, rich, coords(qd)["category"], "category")
        l = partially_centred(
            "l", m[qd.item_category], tau_item, centred_items(qd, config.centred_min_lines), qd.items, "item",
            shift=kappa[qd.item_category] * item_mean_depth(qd),
        )
        sigma_basket = pm.HalfNormal("sigma_basket", config.basket_sigma)
        basket = pm.Normal("basket", 0.0, sigma_basket, dims="household")
        log_alpha = _log_dispersion(qd, config)  # (C,)
        per_pattern = negbin_pattern_loglik_op(
            l, kappa, basket, log_alpha, qd.pattern_item, qd.item_category, qd.pattern_household,
            qd.pattern_depth, qd.pattern_lines, qd.pattern_extra,
        )
        a = pt.exp(log_alpha)[qd.value_category]
        per_value = qd.value_count * (pt.gammaln(qd.value_extra + a) - pt.gammaln(a))
        pm.Potential("quantity_loglik", per_pattern + per_value.sum())
    return model


def data_constant(qd: QuantityData) -> float:
    """``-sum log(y!)`` over all lines: the term the model drops (it does not depend on parameters)."""
    from scipy.special import gammaln

    return float(-(qd.extra_counts * gammaln(qd.extra_values + 1.0)).sum())


def simulate(log_mu: np.ndarray, alpha, rng: np.random.Generator) -> np.ndarray:
    """Forward sampler: quantities ``1 + NB(exp(log_mu), alpha)`` as a gamma-Poisson mixture (``alpha`` scalar or per line)."""
    mu = np.exp(np.asarray(log_mu, dtype=float))
    return 1 + rng.poisson(rng.gamma(alpha, mu / alpha))


def summary_statistics(extra_values: np.ndarray, extra_counts: np.ndarray) -> dict[str, float]:
    """Share of lines with quantity 1 and mean quantity (what the prior predictive check compares)."""
    total = extra_counts.sum()
    return {
        "share_of_ones": float(extra_counts[extra_values == 0].sum() / total),
        "mean_quantity": float(1.0 + (extra_values * extra_counts).sum() / total),
    }


#: What the forward sampler needs from a draw.
PARAMETER_NAMES = ["l", "kappa", "basket", "alpha"]


def pattern_dispersion(alpha, qd: QuantityData) -> np.ndarray:
    """The NB dispersion of each pattern, from a shared ``alpha`` or one per category."""
    alpha = np.asarray(alpha, dtype=float)
    if alpha.ndim == 0:
        return np.full(qd.pattern_item.size, float(alpha))
    return alpha[qd.item_category[qd.pattern_item]]


def _simulated_summaries(qd: QuantityData, params: dict, rng: np.random.Generator) -> dict[str, float]:
    """Summaries of lines simulated on the data's patterns from one draw's parameters."""
    repeats = qd.pattern_lines.astype(np.int64)
    eta = np.repeat(log_mean(params["l"], params["kappa"], params["basket"], qd), repeats)
    extra = simulate(eta, np.repeat(pattern_dispersion(params["alpha"], qd), repeats), rng) - 1
    values, counts = np.unique(extra, return_counts=True)
    return summary_statistics(values.astype(float), counts.astype(float))


def prior_predictive(qd: QuantityData, config: QuantityConfig | None = None, *, draws: int = 100, seed: int = 0) -> pd.DataFrame:
    """Prior predictive check: quantity summaries of lines simulated from prior draws on the data's patterns."""
    import warnings

    config = config or QuantityConfig()
    rng = np.random.default_rng(seed)
    model = build_model(qd, config)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=PARAMETER_NAMES, random_seed=rng).prior
    return pd.DataFrame([_simulated_summaries(qd, {n: prior[n].values[0, k] for n in PARAMETER_NAMES}, rng) for k in range(draws)])


def posterior_predictive(qd: QuantityData, posterior, *, draws: int = 20, rng: np.random.Generator) -> pd.DataFrame:
    """Quantity summaries of lines replayed on the data's patterns from ``draws`` evenly spaced posterior draws."""
    stacked = posterior[PARAMETER_NAMES].stack(sample=("chain", "draw"))
    n = stacked.sizes["sample"]
    rows = []
    for k in evenly_spaced(n, draws):
        params = {name: stacked[name].isel(sample=int(k)).values for name in PARAMETER_NAMES}
        rows.append(_simulated_summaries(qd, params, rng))
    return pd.DataFrame(rows)


def negbin_logpmf(y: np.ndarray, log_mu: np.ndarray, alpha) -> np.ndarray:
    """``log NB(y | mean exp(log_mu), dispersion alpha)`` per element (the model's likelihood, constants included)."""
    from scipy.special import gammaln

    alpha = np.asarray(alpha, dtype=np.float64)
    return (gammaln(y + alpha) - gammaln(alpha) - gammaln(y + 1.0) + alpha * np.log(alpha) + y * log_mu
            - (alpha + y) * np.logaddexp(np.log(alpha), log_mu))


def household_week_loglik_draws(data, posterior, *, weeks=None, draws: int = 100) -> tuple[np.ndarray, int]:
    """``(S, N)`` log-likelihood of each household-week's purchase quantities under ``S`` evenly spaced draws.

    A household-week's log-likelihood is the sum over its lines of the NB
    log-pmf of ``q - 1``: the unit PSIS-LOO (fitted weeks) and the held-out
    log predictive density (weeks the fit left out) are computed on, as for
    the visit stage. ``weeks`` (week numbers) selects the lines (all when
    ``None``); households the posterior does not hold are left out, and
    their number of lines is returned beside the matrix.
    """
    ids = pd.Index(posterior["household"].values)
    lines, _, _, _ = _lines(data, weeks=weeks, household_index=ids)
    n_all = len(data.choices) if weeks is None else int(data.choices["week"].isin(weeks).sum())
    unit = np.unique(lines["household"].to_numpy() * 1000 + lines["week"].to_numpy(), return_inverse=True)[1]
    h, j, c = (lines[k].to_numpy() for k in ("household", "item", "category"))
    depth, y = lines["depth"].to_numpy(), lines["quantity"].to_numpy() - 1.0
    stacked = posterior[PARAMETER_NAMES].stack(sample=("chain", "draw"))
    out = []
    for k in evenly_spaced(stacked.sizes["sample"], draws):
        p = {name: stacked[name].isel(sample=int(k)).values.astype(np.float64) for name in PARAMETER_NAMES}
        alpha = p["alpha"] if p["alpha"].ndim == 0 else p["alpha"][c]
        ll = negbin_logpmf(y, p["l"][j] + p["kappa"][c] * depth + p["basket"][h], alpha)
        out.append(np.bincount(unit, weights=ll))
    return np.stack(out), n_all - len(lines)
