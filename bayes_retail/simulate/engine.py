"""The simulator's engine: one batch of customers under one posterior draw, week by week.

Each week runs the four stages in order (visit and trips; category purchases
and the trips that made them; distinct items with the customer's state;
products behind "other" and quantities) and appends the week's lines.
Memory is the batch's state (``customers x categories x 16`` item slots and
4 tail-product slots) plus its lines: nothing grows with customers x products x weeks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_retail.models import deal
from bayes_retail.simulate import _kernels
from bayes_retail.simulate.inputs import Catalogue, Customers, PriceGrid, StageDraw
from bayes_retail.simulate.streams import customer_keys

#: Columns of a batch's lines, in order.
LINE_COLUMNS = ("customer", "household_id", "week", "trip", "product", "quantity")
#: Columns of a batch's visits (customer-weeks with at least one trip), in order.
VISIT_COLUMNS = ("customer", "household_id", "week", "trips")


@dataclass(frozen=True)
class Batch:
    """What one batch produced: purchased lines and visited customer-weeks (a visit may buy nothing).

    Columns are kept as numpy arrays (``line_columns``, ``visit_columns``);
    ``lines`` and ``visits`` build the tables on demand.
    """

    line_columns: dict
    visit_columns: dict

    @property
    def lines(self) -> pd.DataFrame:
        return pd.DataFrame(self.line_columns, columns=list(LINE_COLUMNS))

    @property
    def visits(self) -> pd.DataFrame:
        return pd.DataFrame(self.visit_columns, columns=list(VISIT_COLUMNS))


def _week_common(draw: StageDraw, catalogue: Catalogue, covariates: tuple[np.ndarray, ...], week: int) -> np.ndarray:
    """``(G,)`` the part of the week's utilities every class shares: intercept, display, mailer (and depth) terms."""
    _, discount, display, mailer = (x[:, week] for x in covariates)
    c = catalogue.item_category
    common = draw.item_intercept + draw.display[c] * display + draw.mailer[c] * mailer
    if draw.depth is not None:
        common = common + draw.depth[c] * discount
    return common


def _static_utilities(draw: StageDraw, catalogue: Catalogue) -> np.ndarray:
    """``(K, G)`` the attribute part of the class utilities: the same every week."""
    return np.ascontiguousarray(draw.class_coefficients[:, draw.n_core:] @ catalogue.attributes.T)


def class_utilities_week(draw: StageDraw, catalogue: Catalogue, covariates: tuple[np.ndarray, ...], week: int,
                         available: np.ndarray | None = None) -> np.ndarray:
    """``(K, G)`` utilities of every item for every latent class in one week (no state term).

    ``available`` (``(G, W)``, :meth:`PriceGrid.item_available`): items off the shelf get ``-inf``.
    """
    price, discount = covariates[0][:, week], covariates[1][:, week]
    theta = draw.class_coefficients
    utility = (
        _week_common(draw, catalogue, covariates, week)[None, :]
        + theta[:, 0, None] * price[None, :]
        + theta[:, 1, None] * discount[None, :]
        + _static_utilities(draw, catalogue)
    )
    return utility if available is None else np.where(available[None, :, week], utility, -np.inf)


def _week_tables_arguments(draw: StageDraw, catalogue: Catalogue, prices: PriceGrid):
    """A function of the week giving the compiled week-table kernels their utility arguments."""
    covariates = prices.item_covariates(catalogue)
    available = prices.item_available(catalogue)
    always = np.ones(catalogue.item_category.size, dtype=bool)
    static = _static_utilities(draw, catalogue)
    theta_price = np.ascontiguousarray(draw.class_coefficients[:, 0], dtype=np.float64)
    theta_discount = np.ascontiguousarray(draw.class_coefficients[:, 1], dtype=np.float64)

    def arguments(week: int) -> tuple:
        return (
            np.ascontiguousarray(_week_common(draw, catalogue, covariates, week), dtype=np.float64),
            np.ascontiguousarray(covariates[0][:, week]), np.ascontiguousarray(covariates[1][:, week]),
            theta_price, theta_discount, static,
            always if available is None else np.ascontiguousarray(available[:, week]),
            catalogue.category_start, catalogue.category_items,
        )

    return arguments


def choice_tables(draw: StageDraw, catalogue: Catalogue, prices: PriceGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per week and class: the running sums of the within-category choice probabilities ``(W, K, G)`` and the category values ``(W, K, C)``.

    They depend on the draw and the prices only: computed once and shared by
    every batch. The category values come from the same utilities as the
    choices, so a promotion moves both. The running sums are single
    precision (an item's probability is the difference of two; the
    categories' sums end at exactly 1): weeks x classes x items is the
    largest thing a draw holds (the shipped fit: 52 x 56 effective classes x
    21,959 items, 240 MB; first writes to fresh memory, not arithmetic, are
    most of its cost).
    """
    n_k, g = draw.class_coefficients.shape[0], catalogue.item_category.size
    cumulative = np.empty((prices.n_weeks, n_k, g), dtype=np.float32)
    values = np.empty((prices.n_weeks, n_k, catalogue.n_categories))
    arguments = _week_tables_arguments(draw, catalogue, prices)
    for w in range(prices.n_weeks):
        _kernels.week_choice_tables(*arguments(w), cumulative[w], values[w])
    return cumulative, values


def fitted_category_value_centre(draw: StageDraw, catalogue: Catalogue, observed: PriceGrid) -> np.ndarray:
    """``(K, C)`` mean over weeks of the draw's category values under the observed prices.

    The category stage centred its values this way (per class and category,
    over the fitted weeks), so a simulated week's value enters as its departure
    from the fitted world's average: a policy that deepens every week's
    discounts moves it.
    """
    values = np.empty((observed.n_weeks, draw.class_coefficients.shape[0], catalogue.n_categories))
    arguments = _week_tables_arguments(draw, catalogue, observed)
    for w in range(observed.n_weeks):
        _kernels.week_category_values(*arguments(w), values[w])
    return values.mean(axis=0)


def tail_lines(keys, week, line_customer, line_item, line_trip, catalogue: Catalogue):
    """Lines with each chosen "other" item repeated once per tail product it becomes, and each line's slot."""
    reps = _kernels.tail_line_counts(
        keys, week, line_customer, line_item, catalogue.item_product, catalogue.item_category, catalogue.tail_count,
        catalogue.tail_size_table,
    )
    if reps.size == 0 or reps.max() == 1:
        return line_customer, line_item, line_trip, np.zeros(line_item.size, dtype=np.int64)
    slot = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    return np.repeat(line_customer, reps), np.repeat(line_item, reps), np.repeat(line_trip, reps), slot


def category_rates(draw: StageDraw, values: np.ndarray, week: int) -> np.ndarray:
    """``(K, C)`` ``exp(b_c + s_w + d_cw [+ k_c (CV_kcw - centre_kc)])``: the week's category rates of each class."""
    rate = np.exp(draw.category_intercept + draw.category_week[week] + draw.category_season[:, week])
    if draw.category_value_response is None:
        return np.ascontiguousarray(np.broadcast_to(rate, values.shape[1:]))
    offset = draw.category_value_response[None, :] * (values[week] - draw.category_value_centre)
    return rate[None, :] * np.exp(offset)


def deal_week_arguments(draw: StageDraw, catalogue: Catalogue, prices: PriceGrid, keys: np.ndarray):
    """A function of the week giving :func:`_kernels.choose_week` its ``(discount_shift, discount)``.

    Each customer's deal-hunting deviation that week and the items' discount
    covariate; empty arrays when the draw has no deal-hunting weeks (the
    choice tables are then used as they are).
    """
    if not (draw.deal_week_sd > 0 and draw.deal_week_points >= 2):
        empty = np.zeros(0)
        return lambda _week: (empty, empty)
    locations = deal.grid_locations(draw.deal_week_points)
    discount = prices.item_covariates(catalogue)[1]
    return lambda week: (_kernels.deal_week_shifts(keys, week, float(draw.deal_week_sd), locations),
                         np.ascontiguousarray(discount[:, week], dtype=np.float64))


def simulate_batch(
    draw: StageDraw,
    customers: Customers,
    catalogue: Catalogue,
    prices: PriceGrid,
    *,
    seed: int,
    draw_index: int = 0,
    tables: tuple[np.ndarray, np.ndarray] | None = None,
) -> Batch:
    """Simulate one batch of customers over every week of ``prices``.

    Parameters
    ----------
    draw
        Population-level values of one posterior draw.
    customers
        The batch's customers and their own parameters under that draw.
    catalogue, prices
        Items and products; prices and promotions per product-week.
    seed, draw_index
        The run's seed and the draw's index: with a customer's global index
        they key its random stream, so the result does not depend on the batch.
    tables
        :func:`choice_tables` of this draw and these prices, when the caller
        shares them between batches (computed here otherwise).

    Returns
    -------
    Batch
        ``lines`` with columns :data:`LINE_COLUMNS`: ``customer`` (global index),
        ``household_id``, ``week`` (position), ``trip`` (0-based within the week),
        ``product`` (row of ``catalogue.product_ids``) and ``quantity``, ordered by
        customer, week, category and draw order; ``visits`` with :data:`VISIT_COLUMNS`,
        ordered by customer and week.
    """
    n_weeks = prices.n_weeks
    draw.check(catalogue, n_weeks)
    if customers.signal.shape[1] != n_weeks:
        raise ValueError(f"signal must have {n_weeks} weeks, got {customers.signal.shape[1]}")
    if customers.category_preference.shape[1] != catalogue.n_categories:
        raise ValueError(f"category_preference must have {catalogue.n_categories} categories")
    n_classes = draw.class_coefficients.shape[0]
    if customers.size and (customers.product_class.min() < 0 or customers.product_class.max() >= n_classes):
        raise ValueError(f"product_class must lie in 0..{n_classes - 1}")
    keys = customer_keys(seed, draw_index, customers.index)
    cum_weeks, value_weeks = choice_tables(draw, catalogue, prices) if tables is None else tables
    on_shelf = prices.items_on_shelf(catalogue)  # caps an occasion's distinct items
    n, n_c = customers.size, catalogue.n_categories
    state_items = np.zeros((n, n_c, _kernels.MAX_STATE_ITEMS), dtype=np.int64)
    state_count = np.zeros((n, n_c), dtype=np.int64)
    previous_count = np.zeros((n, n_c), dtype=np.int64)
    memory = _kernels.MEMORY_CODE[draw.state_memory]
    tail_memory = np.zeros((n, n_c, _kernels.MAX_TAIL_MEMORY), dtype=np.int32)  # product rows
    tail_memory_count = np.zeros((n, n_c), dtype=np.int64)
    tail_repeat = catalogue.tail_repeat_table
    tail_promotion = catalogue.tail_promotion_table
    previous = np.zeros(n)
    visit = np.ascontiguousarray(customers.visit, dtype=float)
    preference_rate = np.exp(np.ascontiguousarray(customers.category_preference, dtype=float))
    entry = np.asarray(customers.entry_week, dtype=np.int64)
    klass = np.asarray(customers.product_class, dtype=np.int64)
    alpha = np.asarray(draw.alpha, dtype=float)
    deal_week = deal_week_arguments(draw, catalogue, prices, keys)
    # empty: every category takes the week's shock whole (no exp per category)
    shock_loading = np.zeros(0) if draw.shock_loading is None else np.ascontiguousarray(draw.shock_loading, dtype=float)
    weeks, visits = [], []
    for w in range(n_weeks):
        trips = _kernels.visit_week(
            keys, w, visit, np.ascontiguousarray(customers.signal[:, w], dtype=float), previous, entry,
            float(draw.rho), float(draw.visit_week[w]),
        )
        previous = (trips > 0).astype(float)
        visited = np.flatnonzero(trips)
        visits.append((visited, np.full(visited.size, w), trips[visited]))
        rate = category_rates(draw, value_weeks, w)
        occ_customer, occ_category, occ_trips = _kernels.category_week(
            keys, w, trips, preference_rate, rate, klass, float(draw.household_week_sigma),
            float(draw.trip_weight_sd), float(draw.trips_elasticity), shock_loading,
        )
        counts = _kernels.item_counts(
            keys, w, occ_customer, occ_category, draw.log_extra_rate, np.ascontiguousarray(on_shelf[:, w])
        )
        line_start = np.concatenate([[0], np.cumsum(counts)])
        line_item, line_trip = _kernels.choose_week(
            keys, w, occ_customer, occ_category, occ_trips, counts, line_start, klass,
            draw.class_coefficients, cum_weeks[w], catalogue.category_start, catalogue.category_items,
            state_items, state_count, previous_count, memory, *deal_week(w),
        )
        line_customer = np.repeat(occ_customer, counts)
        line_customer, line_item, line_trip, line_slot = tail_lines(keys, w, line_customer, line_item, line_trip, catalogue)
        _kernels.fill_empty_trips(keys, w, line_customer, line_trip, trips)
        product, quantity = _kernels.line_products_and_quantities(
            keys, w, line_customer, line_item, line_slot, catalogue.item_category, catalogue.item_product,
            catalogue.tail_start, catalogue.tail_product, catalogue.tail_cumshare, catalogue.tail_count,
            np.ascontiguousarray(prices.depth[:, w]), draw.quantity_intercept, draw.kappa, alpha,
            np.asarray(customers.basket, dtype=float), tail_repeat, tail_memory, tail_memory_count,
            tail_promotion, ((prices.display[:, w] > 0) | (prices.mailer[:, w] > 0)).astype(np.float64),
        )
        weeks.append((line_customer, np.full(line_item.size, w), line_trip, product, quantity))
    customer, week, trip, product, quantity = (np.concatenate(parts) for parts in zip(*weeks))
    visit_customer, visit_week, visit_trips = (np.concatenate(parts) for parts in zip(*visits))
    # week-major as generated; a stable sort by customer makes the order (customer, week, category, draw order),
    # which does not depend on the other customers of the batch
    order = np.argsort(customers.index[customer], kind="stable")
    visit_order = np.argsort(customers.index[visit_customer], kind="stable")
    line_columns = {
        "customer": customers.index[customer][order],
        "household_id": customers.household_id[customer][order],
        "week": week[order],
        "trip": trip[order],
        "product": product[order],
        "quantity": quantity[order],
    }
    visit_columns = {
        "customer": customers.index[visit_customer][visit_order],
        "household_id": customers.household_id[visit_customer][visit_order],
        "week": visit_week[visit_order],
        "trips": visit_trips[visit_order],
    }
    return Batch(line_columns=line_columns, visit_columns=visit_columns)
