"""Synthetic catalogues, prices, draws and customers of a chosen size: for simulation studies and benchmarks."""

from __future__ import annotations

import numpy as np

from bayes_retail.simulate.inputs import Catalogue, Customers, PriceGrid, StageDraw


def synthetic_catalogue(
    rng: np.random.Generator, *, n_categories: int = 5, items: int = 6, tail: int = 3, n_attributes: int = 3
) -> Catalogue:
    """``n_categories`` categories of ``items`` choice-set items, the last an "other" item over ``tail`` products.

    Product rows: every category's ``items - 1`` choice-set products, then all tail products.
    """
    if items < 2 or tail < 1:
        raise ValueError("need at least 2 items (one is 'other') and 1 tail product per category")
    n_real = n_categories * (items - 1)
    item_category = np.repeat(np.arange(n_categories), items)
    item_product = np.full(item_category.size, -1)
    real = np.tile(np.r_[np.ones(items - 1, bool), False], n_categories)
    item_product[real] = np.arange(n_real)
    attributes = rng.standard_normal((item_category.size, n_attributes))
    attributes[~real] = 0.0
    shares = rng.dirichlet(np.ones(tail), size=n_categories)
    cumshare = np.cumsum(shares, axis=1)
    cumshare[:, -1] = 1.0
    return Catalogue(
        item_category=item_category,
        item_product=item_product,
        attributes=attributes,
        tail_start=np.arange(n_categories) * tail,
        tail_count=np.full(n_categories, tail),
        tail_product=n_real + np.arange(n_categories * tail),
        tail_cumshare=cumshare.ravel(),
        product_ids=1000 + np.arange(n_real + n_categories * tail),
    )


def synthetic_prices(rng: np.random.Generator, catalogue: Catalogue, n_weeks: int, *, promo_rate: float = 0.2) -> PriceGrid:
    """Random shelf prices around 1-5, with ``promo_rate`` of product-weeks discounted 10-50% and flagged."""
    n_p = catalogue.product_ids.size
    base = rng.uniform(1.0, 5.0, n_p)
    shelf = base[:, None] * np.exp(rng.normal(0, 0.05, (n_p, n_weeks)))
    promoted = rng.random((n_p, n_weeks)) < promo_rate
    depth = np.where(promoted, rng.uniform(0.1, 0.5, (n_p, n_weeks)), 0.0)
    centre = np.zeros(catalogue.item_product.size)
    real = catalogue.item_product >= 0
    centre[real] = np.log(shelf[catalogue.item_product[real]]).mean(axis=1)
    return PriceGrid(
        shelf=shelf, depth=depth, display=(promoted & (rng.random(promoted.shape) < 0.5)).astype(float),
        mailer=(promoted & (rng.random(promoted.shape) < 0.5)).astype(float), log_shelf_centre=centre,
    )


def synthetic_draw(
    rng: np.random.Generator, catalogue: Catalogue, n_weeks: int, *, n_classes: int = 4, state: float = 0.5
) -> StageDraw:
    """Population values of plausible size (a visit most weeks, a few categories per visit, small quantities)."""
    n_c, g = catalogue.n_categories, catalogue.item_category.size
    theta = np.column_stack([
        # negative on log(1 - depth): a deeper discount raises utility, as the fitted stage finds
        rng.normal(-2.0, 0.5, n_classes), rng.normal(-2.0, 0.5, n_classes), np.full(n_classes, state),
        rng.normal(0, 0.3, (n_classes, catalogue.attributes.shape[1])),
    ])
    return StageDraw(
        rho=0.5, visit_week=rng.normal(0, 0.2, n_weeks),
        category_intercept=rng.normal(-1.5, 0.5, n_c), category_week=rng.normal(0, 0.1, n_weeks),
        category_season=rng.normal(0, 0.1, (n_c, n_weeks)),
        item_intercept=rng.normal(0, 1, g), class_coefficients=theta,
        display=rng.normal(0.5, 0.2, n_c), mailer=rng.normal(0.3, 0.2, n_c), log_extra_rate=rng.normal(-1.2, 0.3, n_c),
        quantity_intercept=rng.normal(-1.5, 0.5, g), kappa=rng.normal(1.0, 0.3, n_c), alpha=np.full(n_c, 2.0),
    )


def synthetic_customers(
    rng: np.random.Generator, n: int, n_categories: int, n_weeks: int, *, n_classes: int = 4, start: int = 0
) -> Customers:
    """``n`` customers with global indices ``start..start+n-1`` and parameters from simple population laws."""
    return Customers(
        index=np.arange(start, start + n),
        entry_week=rng.integers(0, max(1, n_weeks // 4), n),
        visit=np.column_stack([rng.normal(0.5, 1.0, n), rng.normal(0.2, 0.1, n), rng.normal(0.0, 0.5, n)]),
        signal=rng.standard_normal((n, n_weeks)),
        category_preference=rng.normal(0, 0.5, (n, 1)) + rng.normal(0, 0.5, (n, n_categories)),
        product_class=rng.integers(0, n_classes, n),
        basket=rng.normal(0, 0.3, n),
        household_id=np.arange(start, start + n) + 1,
    )


def synthetic_templates(rng: np.random.Generator, n: int, n_categories: int, n_weeks: int, *, n_classes: int = 4):
    """``n`` template households (what the fitted households provide) with simple population laws."""
    from bayes_retail.simulate.population import Templates

    weights = rng.dirichlet(np.ones(n_categories), size=n)
    return Templates(
        household_id=np.arange(n) * 3 + 7,
        entry_week=rng.integers(0, max(1, n_weeks // 4), n),
        visit=np.column_stack([rng.normal(0.5, 1.0, n), rng.normal(0.2, 0.1, n), rng.normal(0.0, 0.5, n)]),
        category_preference=rng.normal(0, 0.5, (n, 1)) + rng.normal(0, 0.5, (n, n_categories)),
        class_probabilities=rng.dirichlet(np.ones(n_classes), size=n),
        basket=rng.normal(0, 0.3, n),
        category_weights=weights,
        signal_household_mean=np.full(n, 0.2),
        store_id=rng.integers(300, 310, n),
        population={"visit_mu": np.array([0.5, 0.2, 0.0]), "visit_sigma": np.array([1.0, 0.1, 0.5]), "visit_corr": 0.4,
                    "household_sd": 0.5, "loadings": rng.normal(0, 0.5, (n_categories, 2)), "basket_sd": 0.3},
    )


def placeholder_prices(catalogue: Catalogue, week_numbers: np.ndarray) -> PriceGrid:
    """Unit prices, no promotions: a grid of the right shape to check a policy's products and weeks against."""
    shape = (catalogue.product_ids.size, np.asarray(week_numbers).size)
    zeros = np.zeros(shape)
    return PriceGrid(shelf=np.ones(shape), depth=zeros, display=zeros, mailer=zeros,
                     log_shelf_centre=np.zeros(catalogue.item_product.size))
