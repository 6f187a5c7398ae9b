"""Posterior draws to simulator inputs: population values, the fitted households, and who is simulated.

The four stages are fitted separately (a cut posterior), each with its own
chains. Simulator draw ``d`` takes draw ``d`` (chains stacked, modulo the
stage's number of draws) of every stage; with the category value not yet
linking stages 2 and 3, the stages' draws are independent and any pairing is
a draw from the cut posterior.

*Template households* are the households fitted in every stage (the
category and product stages may fit a seeded subset): their joint parameter
vectors keep the cross-stage dependence (visit frequency x basket size ...).
``replay`` simulates them; ``new`` customers are a Bayesian bootstrap of them
(Dirichlet(1, ..., 1) weights per draw), each with an entry week drawn from
the observed entry distribution of all households. A template's product
class is drawn from its class-membership probabilities averaged over
posterior draws (``class_membership.csv``): an approximation, because it
does not follow the draw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_retail.errors import ArtifactError
from bayes_retail.simulate.inputs import Catalogue, Customers, StageDraw
from bayes_retail.simulate.streams import CLASS, ENTRY, POPULATION, TEMPLATE, customer_keys, uniforms

STAGES = ("visit", "category", "product", "quantity")


def _flat(posterior, name: str, index: int) -> np.ndarray:
    value = posterior[name].values
    flat = value.reshape(-1, *value.shape[2:])
    return np.asarray(flat[index % flat.shape[0]], dtype=float)


@dataclass(frozen=True)
class Posteriors:
    """The four shopper stages' posteriors (xarray datasets) and the product stage's class membership table."""

    visit: object
    category: object
    product: object
    quantity: object
    class_membership: pd.DataFrame

    @classmethod
    def load(cls, folder: str | os.PathLike = "models", *, data_hash: str | None = None) -> Posteriors:
        """Read ``folder/<stage>/trace.nc`` for every stage (checked) and the product stage's membership table."""
        from bayes_retail.models.artifacts import load_posterior
        from bayes_retail.models.stage import CLASS_MEMBERSHIP_FILENAME

        traces = {stage: load_posterior(folder, stage, data_hash=data_hash).posterior for stage in STAGES}
        path = Path(folder) / "product" / CLASS_MEMBERSHIP_FILENAME
        if not path.exists():
            raise ArtifactError("no class membership table (run `bayes-retail fit --stage product`)", file=str(path))
        return cls(**traces, class_membership=pd.read_csv(path))

    @property
    def n_draws(self) -> int:
        """Draws of the stage with the fewest (chains stacked)."""
        return min(int(p.sizes["chain"] * p.sizes["draw"]) for p in (self.visit, self.category, self.product, self.quantity))


def stage_draw(posteriors: Posteriors, catalogue: Catalogue, index: int) -> StageDraw:
    """Population-level values of simulator draw ``index``."""
    from bayes_retail.models import product

    v, c, p, q = posteriors.visit, posteriors.category, posteriors.product, posteriors.quantity
    n_c = catalogue.n_categories
    t = np.zeros(catalogue.item_category.size)
    free = np.ones(t.size, dtype=bool)
    free[catalogue.category_start + catalogue.category_items - 1] = False  # each category's reference item
    t[free] = _flat(p, "t_free", index)
    return StageDraw(
        rho=float(_flat(v, "rho", index)),
        visit_week=_flat(v, "s", index),
        category_intercept=_flat(c, "b", index),
        category_week=_flat(c, "s", index),
        category_season=_flat(c, "d", index),
        item_intercept=t,
        # a household-coefficient fit: one "class" per fitted household (its membership is the identity)
        class_coefficients=_class_coefficients(p, index),
        **_week_deviation(p, index),
        display=_flat(p, "display", index),
        mailer=_flat(p, "mailer", index),
        depth=_flat(p, "depth", index) if "depth" in p else None,
        log_extra_rate=_flat(p, "log_extra_rate", index),
        quantity_intercept=_flat(q, "l", index),
        kappa=_flat(q, "kappa", index),
        alpha=np.broadcast_to(_flat(q, "alpha", index), (n_c,)).copy(),
        state_memory=product.fitted_config(p.attrs).state,
        household_week_sigma=float(_flat(c, "sigma_household_week", index)) if "sigma_household_week" in c else 0.0,
        shock_loading=_flat(c, "shock_loading", index) if "shock_loading" in c else None,
        trips_elasticity=float(_flat(c, "trips_elasticity", index)) if "trips_elasticity" in c else 1.0,
    )


def _product_point(product_posterior, index: int):
    """The product posterior at simulator draw ``index`` (chains stacked, wrapping around)."""
    n_draw = int(product_posterior.sizes["draw"])
    flat = index % (int(product_posterior.sizes["chain"]) * n_draw)
    return product_posterior.isel(chain=flat // n_draw, draw=flat % n_draw)


def _class_coefficients(product_posterior, index: int) -> np.ndarray:
    """The product classes of draw ``index`` (:func:`~bayes_retail.models.product.point_class_coefficients`)."""
    from bayes_retail.models import product

    if "theta_household" in product_posterior:
        return _flat(product_posterior, "theta_household", index)
    return product.point_class_coefficients(_product_point(product_posterior, index))


def _week_deviation(product_posterior, index: int) -> dict:
    """The deal-hunting week deviation of draw ``index`` as :class:`StageDraw` fields (``{}`` without one)."""
    from bayes_retail.models import product

    return product.point_week_deviation(_product_point(product_posterior, index))


def population_coefficients(product_posterior, index: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, D)`` product-choice coefficient vectors drawn from a household-coefficient fit's population law.

    ``theta ~ N(mu, diag(sigma) R diag(sigma))`` under posterior draw ``index``
    (``mu`` over the core coefficients; the attribute weights have mean 0, as
    in the model). ``population`` customers of such a fit choose uniformly
    among these ``n`` vectors: each customer's vector is marginally a draw from
    the population law, but the draw's population has ``n`` distinct vectors
    (customers sharing one are alike), an approximation that shrinks as ``n`` grows.
    """
    mu_core = _flat(product_posterior, "mu", index)
    sigma = _flat(product_posterior, "sigma", index)
    chol = sigma[:, None] * np.linalg.cholesky(_flat(product_posterior, "correlation", index))
    mu = np.concatenate([mu_core, np.zeros(sigma.size - mu_core.size)])
    return mu + rng.standard_normal((int(n), sigma.size)) @ chol.T


def category_value_response(posteriors: Posteriors, index: int) -> np.ndarray:
    """``(C,)`` the category stage's response ``k`` to the category value in simulator draw ``index``."""
    return np.asarray(_flat(posteriors.category, "k", index), dtype=np.float64)


@dataclass(frozen=True)
class Templates:
    """The households fitted in every stage, with their own parameters under one draw.

    Attributes
    ----------
    household_id, entry_week
        ``(H,)`` ids and first-week positions.
    visit
        ``(H, 3)`` visit propensity, signal response, log extra-trip rate.
    category_preference
        ``(H, C)`` ``u_h + f_h . l_c``.
    class_probabilities
        ``(H, K)`` product-class membership.
    basket
        ``(H,)`` quantity basket effect.
    category_weights, signal_household_mean
        ``(H, C)`` and ``(H,)``: the visit stage's marketing-signal definition per household.
    store_id
        ``(H,)`` the store of most of the household's lines (-1 when unknown): written on its synthetic lines.
    population
        The draw's population distributions (``visit_mu``, ``visit_sigma`` (3,), ``visit_corr``,
        ``household_sd``, ``loadings`` (C, R), ``basket_sd``) for ``population`` customers; empty when unknown.
    """

    household_id: np.ndarray
    entry_week: np.ndarray
    visit: np.ndarray
    category_preference: np.ndarray
    class_probabilities: np.ndarray
    basket: np.ndarray
    category_weights: np.ndarray
    signal_household_mean: np.ndarray
    store_id: np.ndarray
    population: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.household_id.size)


def template_ids(posteriors: Posteriors) -> np.ndarray:
    """Ids of the households fitted in every stage (sorted)."""
    ids = [
        posteriors.visit["household"].values,
        posteriors.category["household"].values,
        posteriors.class_membership["household_id"].to_numpy(),
        posteriors.quantity["household"].values,
    ]
    common = ids[0]
    for other in ids[1:]:
        common = np.intersect1d(common, other)
    if common.size == 0:
        raise ArtifactError("no household is fitted in every stage: fit the stages on the same data and households")
    return common


def modal_stores(transactions: pd.DataFrame) -> pd.Series:
    """Each household's store with the most lines (ties: the lowest id), indexed by household id."""
    counts = transactions.groupby(["household_id", "store_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["household_id", "n", "store_id"], ascending=[True, False, True])
    return counts.drop_duplicates("household_id").set_index("household_id")["store_id"]


def product_stage_data(posteriors: Posteriors, data, depth: np.ndarray):
    """The product stage's data for the households its trace was fitted on (its settings from the trace)."""
    from bayes_retail.config import parse_weeks

    pdata = fitted_product_data(posteriors.product, posteriors.class_membership, data, depth)
    return pdata.restricted_to(parse_weeks(posteriors.product.attrs.get("weeks")))  # the weeks the fit scored


def fitted_product_data(product_posterior, class_membership: pd.DataFrame, data, depth: np.ndarray):
    """The product stage's data for its fitted households, every week scored (restrict it to the weeks wanted).

    The trace has no household axis (classes are marginalised): the fitted
    households are those of its ``class_membership.csv``; its settings come
    from the trace's ``stage_config``.
    """
    from bayes_retail.models import product

    return product.build_product_data(data, depth, product.fitted_config(product_posterior.attrs),
                                      households=class_membership["household_id"].to_numpy())


def draw_class_membership(posteriors: Posteriors, product_data, index: int, ids: np.ndarray, *, inputs=None) -> np.ndarray:
    """``(H, K)`` class probabilities of households ``ids`` under posterior draw ``index`` of the product stage.

    Each household's choices weighed by that draw's class utilities (the
    kernel's forward half), so the class follows the draw instead of an
    average over draws.
    """
    from bayes_retail.models import product

    post = posteriors.product
    n_draws = int(post.sizes["draw"])
    flat = index % (int(post.sizes["chain"]) * n_draws)
    params = product.posterior_params(post, product_data, flat // n_draws, flat % n_draws)
    membership = product.class_membership(params, product_data, inputs=inputs, threads=os.cpu_count() or 1)
    return membership[pd.Index(product_data.households).get_indexer(ids)]


def templates(
    posteriors: Posteriors, visit_data, index: int, *, stores: pd.Series | None = None,
    class_probabilities: np.ndarray | None = None,
) -> Templates:
    """The template households under simulator draw ``index``.

    ``visit_data`` is the visit stage's data (entry weeks, signal definition);
    ``stores`` maps household ids to their store (:func:`modal_stores`);
    ``class_probabilities`` (rows in :func:`template_ids` order) replaces the
    membership averaged over draws (``class_membership.csv``), e.g. with
    :func:`draw_class_membership` of this draw.
    """
    from bayes_retail.models import category as category_stage
    from bayes_retail.models import visit as visit_stage

    ids = template_ids(posteriors)

    def rows(coord) -> np.ndarray:
        return pd.Index(coord).get_indexer(ids)

    theta = visit_stage.household_parameters(posteriors.visit.isel(household=rows(posteriors.visit["household"].values)))
    flat_index = index % theta.shape[0]
    cat = posteriors.category.isel(household=rows(posteriors.category["household"].values))
    params = category_stage.posterior_parameters(cat, index % int(cat.sizes["chain"] * cat.sizes["draw"]))
    membership = (posteriors.class_membership.set_index("household_id").loc[ids].to_numpy(float)
                  if class_probabilities is None else np.asarray(class_probabilities, dtype=float))
    vrows = rows(visit_data.households)
    weeks = np.asarray(visit_data.weeks)
    return Templates(
        household_id=ids,
        entry_week=np.searchsorted(weeks, visit_data.entry_week[vrows]),
        visit=theta[flat_index],
        category_preference=params["u"][:, None] + params["f"] @ params["loadings"].T,
        class_probabilities=membership,
        basket=_flat(posteriors.quantity.isel(household=rows(posteriors.quantity["household"].values)), "basket", index),
        category_weights=visit_data.category_weights[vrows],
        signal_household_mean=visit_data.signal_household_mean[vrows],
        store_id=np.full(ids.size, -1) if stores is None else stores.reindex(ids).fillna(-1).to_numpy(np.int64),
        population={
            "visit_mu": _flat(posteriors.visit, "mu", index),
            "visit_sigma": _flat(posteriors.visit, "sigma", index),
            "visit_corr": float(_flat(posteriors.visit, "corr_visit_trips", index)),
            "household_sd": float(_flat(posteriors.category, "sigma_household", index)),
            "loadings": params["loadings"],
            "basket_sd": float(_flat(posteriors.quantity, "sigma_basket", index)),
        },
    )


def marketing_signal(templates_: Templates, rows: np.ndarray, intensity: np.ndarray, signal_sd: float) -> np.ndarray:
    """``(n, W)`` standardised marketing signal of the given templates under ``(C, W)`` promotion intensity."""
    raw = templates_.category_weights[rows] @ intensity
    return (raw - templates_.signal_household_mean[rows, None]) / signal_sd


def _pick(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Inverse CDF of a discrete law: for each uniform, the index whose cumulative weight first reaches it."""
    cumulative = np.cumsum(weights)
    return np.minimum(np.searchsorted(cumulative, u * cumulative[-1], side="right"), weights.size - 1)


#: Second spawn-key entries of the draw-level streams (customers use 0 .. 2^32 - 1, so they never collide).
DRAW_BOOTSTRAP, DRAW_PRICES, DRAW_COEFFICIENTS = 2**32, 2**32 + 1, 2**32 + 2


def draw_rng(seed: int, draw: int, purpose: int) -> np.random.Generator:
    """A generator for something a whole draw shares (bootstrap weights, a price path)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(draw), int(purpose))))


def bootstrap_weights(seed: int, draw: int, n_templates: int) -> np.ndarray:
    """Bayesian-bootstrap weights of the templates for one draw: Dirichlet(1, ..., 1) from the draw's own stream."""
    return draw_rng(seed, draw, DRAW_BOOTSTRAP).dirichlet(np.ones(n_templates))


def choose_templates(
    templates_: Templates, customers: np.ndarray, *, mode: str, seed: int, draw: int, entry_weeks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template row, entry week and product class of each customer (global indices ``customers``).

    ``replay``: customer ``i`` is template ``i``, entering when it did.
    ``new``: templates by Bayesian-bootstrap weights, entry weeks drawn from
    ``entry_weeks`` (the observed entry positions of all households). Classes
    are drawn from the template's membership probabilities. Every draw uses
    the customer's own stream, so a customer's choice does not depend on its batch.
    """
    customers = np.asarray(customers, dtype=np.int64)
    keys = customer_keys(seed, draw, customers)
    if mode == "replay":
        if customers.size and customers.max() >= templates_.size:
            raise ValueError(f"replay has {templates_.size} customers (the fitted households), asked for index {customers.max()}")
        rows, entry = customers, templates_.entry_week[customers]
    elif mode in ("new", "population"):
        if entry_weeks is None or np.size(entry_weeks) == 0:
            raise ValueError(f"{mode} customers need the observed entry weeks")
        rows = _pick(uniforms(keys, 0, TEMPLATE, 0, 0), bootstrap_weights(seed, draw, templates_.size))
        observed = np.sort(np.asarray(entry_weeks, dtype=np.int64))
        entry = observed[np.minimum((uniforms(keys, 0, ENTRY, 0, 0) * observed.size).astype(np.int64), observed.size - 1)]
    else:
        raise ValueError(f"mode must be 'new', 'population' or 'replay', got {mode!r}")
    u = uniforms(keys, 0, CLASS, 0, 0)
    if mode == "population":  # the prior class weights: equal
        n_classes = templates_.class_probabilities.shape[1]
        return rows, entry, np.minimum((u * n_classes).astype(np.int64), n_classes - 1)
    cumulative = np.cumsum(templates_.class_probabilities[rows], axis=1)
    klass = np.minimum((u[:, None] * cumulative[:, -1:] >= cumulative).sum(axis=1), cumulative.shape[1] - 1)
    return rows, entry, klass


def assemble_customers(
    templates_: Templates, customers: np.ndarray, *, mode: str, seed: int, draw: int,
    intensity: np.ndarray, signal_sd: float, entry_weeks: np.ndarray | None = None,
) -> tuple[Customers, np.ndarray]:
    """The :class:`Customers` of one batch under one draw, and their template rows (see :func:`choose_templates`)."""
    rows, entry, klass = choose_templates(templates_, customers, mode=mode, seed=seed, draw=draw, entry_weeks=entry_weeks)
    if mode == "population":
        visit, preference, basket = population_parameters(templates_.population, customers, seed=seed, draw=draw)
    else:
        visit, preference, basket = templates_.visit[rows], templates_.category_preference[rows], templates_.basket[rows]
    customers_ = Customers(
        index=np.asarray(customers, dtype=np.int64),
        entry_week=entry,
        visit=visit,
        signal=marketing_signal(templates_, rows, intensity, signal_sd),
        category_preference=preference,
        product_class=klass,
        basket=basket,
        household_id=templates_.household_id[rows] if mode == "replay" else np.asarray(customers, dtype=np.int64) + 1,
    )
    return customers_, rows


def population_parameters(population: dict, customers: np.ndarray, *, seed: int, draw: int):
    """Each customer's own parameters drawn from the draw's population distributions, stage by stage.

    Visit ``(a, g, b)`` from the visit stage's population law (``a, b``
    correlated); category preference ``u + f . l_c`` with ``u ~ N(0, sigma)``,
    ``f ~ N(0, I)``; basket ``~ N(0, sigma_basket)``. Stages are independent of
    each other here (the bootstrap keeps their dependence). Normals come from
    the customer's stream by the inverse normal CDF.
    """
    from scipy.special import ndtri

    from bayes_retail.models.visit import households_from_normals

    if not population:
        raise ValueError("these templates carry no population distributions")
    keys = customer_keys(seed, draw, np.asarray(customers, dtype=np.int64))
    rank = population["loadings"].shape[1]
    z = ndtri(np.column_stack([uniforms(keys, 0, POPULATION, j, 0) for j in range(5 + rank)]))

    visit = households_from_normals(population["visit_mu"], population["visit_sigma"], population["visit_corr"], z[:, :3])
    u = population["household_sd"] * z[:, 3]
    preference = u[:, None] + z[:, 5:5 + rank] @ population["loadings"].T
    return visit, preference, population["basket_sd"] * z[:, 4]
