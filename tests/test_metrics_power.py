"""The metric suite tells a right model from a wrong one (issue: "the suite can tell good from bad").

Data simulated from known parameters play the real data. A second simulation
from the same parameters (other random stream: what a correct model's
replicate is) must score near the real-vs-real floor; one from a model without
household heterogeneity (every household given the population's mean
parameters) must lose on the metrics that heterogeneity shapes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from bayes_retail.metrics import compute_suite
from bayes_retail.metrics.tables import MetricTables
from bayes_retail.simulate import simulate_batch
from bayes_retail.simulate.synthetic import (
    synthetic_catalogue,
    synthetic_customers,
    synthetic_draw,
    synthetic_prices,
)

N_WEEKS = 30
#: Metrics shaped by how households differ: visit frequency, basket size and spend, breadth, loyalty.
HETEROGENEITY_METRICS = ("visit_probability", "basket_size", "revenue", "category_penetration", "loyalty")


def _product_categories(catalogue) -> np.ndarray:
    category = np.empty(catalogue.product_ids.size, dtype=np.int64)
    chosen = catalogue.item_product >= 0
    category[catalogue.item_product[chosen]] = catalogue.item_category[chosen]
    for c, (start, count) in enumerate(zip(catalogue.tail_start, catalogue.tail_count)):
        category[catalogue.tail_product[start:start + count]] = c
    return category


def _side(batch, catalogue, prices, name: str) -> MetricTables:
    """A batch's lines in the internal schema, with the catalogue's products and the prices' calendar."""
    lines = batch.line_columns
    product, week, quantity = lines["product"], lines["week"], lines["quantity"]
    shelf, depth = prices.shelf[product, week], prices.depth[product, week]
    transactions = pd.DataFrame({
        "household_id": lines["household_id"],
        "basket_id": (lines["customer"] * 100 + week) * 10 + lines["trip"],
        "product_id": catalogue.product_ids[product],
        "quantity": quantity,
        "sales_value": np.round(quantity * shelf * (1.0 - depth), 2),
        "retail_disc": np.round(quantity * shelf * depth, 2),
        "week": week + 1,
    })
    products = pd.DataFrame({"product_id": catalogue.product_ids,
                             "product_category": [f"C{c}" for c in _product_categories(catalogue)],
                             "department": "GROCERY"})
    p, w = np.nonzero((prices.display > 0) | (prices.mailer > 0))
    calendar = pd.DataFrame({"product_id": catalogue.product_ids[p], "week": w + 1,
                             "display": prices.display[p, w] > 0, "mailer": prices.mailer[p, w] > 0})
    return MetricTables(transactions, products, calendar, name=name)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(3)
    catalogue = synthetic_catalogue(rng, n_categories=8, items=6, tail=3)
    prices = synthetic_prices(rng, catalogue, N_WEEKS)
    draw = synthetic_draw(rng, catalogue, N_WEEKS)
    customers = synthetic_customers(rng, 1200, catalogue.n_categories, N_WEEKS)
    without_heterogeneity = dataclasses.replace(
        customers,
        visit=np.tile(customers.visit.mean(axis=0), (customers.index.size, 1)),
        category_preference=np.tile(customers.category_preference.mean(axis=0), (customers.index.size, 1)),
        basket=np.full_like(customers.basket, customers.basket.mean()),
    )

    def side(who, seed, name):
        return _side(simulate_batch(draw, who, catalogue, prices, seed=seed), catalogue, prices, name)

    real = side(customers, 1, "real")
    right = compute_suite(real, side(customers, 2, "right"), seed=0, floor=True)
    wrong = compute_suite(real, side(without_heterogeneity, 2, "wrong"), seed=0, floor=True)
    return right, wrong


def test_a_replicate_of_the_true_model_scores_near_the_real_vs_real_floor(scored):
    right, _ = scored
    for name, m in right.metrics.items():
        if min(m.n_real, m.n_synthetic) >= 500:  # entity metrics over 8 categories move in steps of 1/8
            assert m.ks <= m.floor_ks + 0.02, (name, m.ks, m.floor_ks)
    assert right.overall >= 0.95


def test_a_model_without_heterogeneity_loses_where_heterogeneity_matters(scored):
    right, wrong = scored
    for name in HETEROGENEITY_METRICS:
        good, bad = right.metrics[name].ks, wrong.metrics[name].ks
        assert bad >= max(3 * good, good + 0.04), (name, good, bad)
    assert wrong.overall <= right.overall - 0.05
