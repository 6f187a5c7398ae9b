"""What one simulation batch reads: a posterior draw's population values, the customers, the catalogue, the prices.

Plain dataclasses of numpy arrays with validated shapes, so the engine's
compiled loops never see a ragged or mistyped input. Index conventions follow
the fitted stages: categories ``c`` in ``0..C-1``, items ``g`` in the shared
item space (:func:`bayes_retail.models.product.item_table`: each category's
choice-set products, then its "other" item), weeks as positions ``0..W-1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from bayes_retail.models._state import STATE_MEMORIES

#: Columns of ``StageDraw.class_coefficients`` before the attribute weights (as in the product stage); the
#: ``"both"`` state memory adds PREVIOUS.
PRICE, DISCOUNT, STATE, PREVIOUS = 0, 1, 2, 3


def _shape(name: str, value: np.ndarray, shape: tuple) -> None:
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {value.shape}")


@dataclass(frozen=True)
class Catalogue:
    """Items, categories and the real products the simulator names.

    Attributes
    ----------
    item_category
        ``(G,)`` category of each item, sorted (items of a category are contiguous).
    item_product
        ``(G,)`` row in the product table of each choice-set item; -1 for a category's "other" item.
    attributes
        ``(G, A)`` item attributes (0 for "other"), as in the product stage.
    tail_start, tail_count
        ``(C,)`` each category's slice of ``tail_product`` / ``tail_cumshare`` (count 0: no "other" item).
    tail_product
        Product rows of the tail products behind "other", grouped by category.
    tail_cumshare
        Cumulative observed line shares of the tail products within their category (each group ends at 1).
    product_ids
        ``(P,)`` product id of each product row.
    tail_size_cumprob
        ``(C, S)`` per category the cumulative probabilities that a chosen
        "other" item is 1, 2, ..., S distinct tail products (capped by the
        category's tail); ``None``: always one.
    tail_repeat
        ``(C,)`` per category the probability that a tail product is one the
        customer bought on its previous occasion in the category (when one is
        left to buy); ``None``: never (every tail product by share).
    tail_promotion
        ``(C,)`` per category the log weight of a tail product in the weeks it
        is on display or in the mailer, on top of its share; ``None``: 0
        (tail products by share whatever the calendar).
    """

    item_category: np.ndarray
    item_product: np.ndarray
    attributes: np.ndarray
    tail_start: np.ndarray
    tail_count: np.ndarray
    tail_product: np.ndarray
    tail_cumshare: np.ndarray
    product_ids: np.ndarray
    tail_size_cumprob: np.ndarray | None = None
    tail_repeat: np.ndarray | None = None
    tail_promotion: np.ndarray | None = None
    category_start: np.ndarray = field(init=False)
    category_items: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        g = self.item_category.size
        if np.any(np.diff(self.item_category) < 0):
            raise ValueError("items must be sorted by category")
        _shape("item_product", self.item_product, (g,))
        if self.attributes.ndim != 2 or self.attributes.shape[0] != g:
            raise ValueError(f"attributes must have shape ({g}, A), got {self.attributes.shape}")
        n_c = int(self.item_category.max()) + 1 if g else 0
        items = np.bincount(self.item_category, minlength=n_c)
        object.__setattr__(self, "category_items", items)
        object.__setattr__(self, "category_start", np.cumsum(items) - items)
        _shape("tail_start", self.tail_start, (n_c,))
        _shape("tail_count", self.tail_count, (n_c,))
        other = np.zeros(n_c, dtype=bool)
        other[self.item_category[self.item_product < 0]] = True
        if np.any(other != (self.tail_count > 0)):
            raise ValueError("a category has an 'other' item exactly when it has tail products")
        if np.any(self.item_product >= self.product_ids.size) or np.any(self.tail_product >= self.product_ids.size):
            raise ValueError("a product row lies outside product_ids")
        ends = self.tail_cumshare[self.tail_start[other] + self.tail_count[other] - 1]
        if not np.allclose(ends, 1.0):
            raise ValueError("each category's tail_cumshare must end at 1")
        if self.tail_size_cumprob is not None:
            cum = np.asarray(self.tail_size_cumprob, dtype=np.float64)
            if cum.ndim != 2 or cum.shape[0] != n_c or cum.shape[1] < 1:
                raise ValueError(f"tail_size_cumprob must have shape ({n_c}, S), got {cum.shape}")
            if np.any(np.diff(cum, axis=1) < 0) or np.any(cum < 0) or not np.allclose(cum[:, -1], 1.0):
                raise ValueError("each row of tail_size_cumprob must rise to 1")
        if self.tail_repeat is not None:
            repeat = np.asarray(self.tail_repeat)
            _shape("tail_repeat", repeat, (n_c,))
            if np.any(~((repeat >= 0) & (repeat <= 1))):
                raise ValueError("tail_repeat must lie in [0, 1]")
        if self.tail_promotion is not None:
            promotion = np.asarray(self.tail_promotion)
            _shape("tail_promotion", promotion, (n_c,))
            if not np.all(np.isfinite(promotion)):
                raise ValueError("tail_promotion must be finite")

    @property
    def tail_size_table(self) -> np.ndarray:
        """``tail_size_cumprob`` as the kernels take it: ``(C, 0)`` when every "other" item is one product."""
        if self.tail_size_cumprob is None:
            return np.zeros((self.n_categories, 0))
        return np.ascontiguousarray(self.tail_size_cumprob, dtype=np.float64)

    def _per_category(self, values: np.ndarray | None) -> np.ndarray:
        """An optional ``(C,)`` table as the kernels take it: contiguous float64, zeros when absent."""
        if values is None:
            return np.zeros(self.n_categories)
        return np.ascontiguousarray(values, dtype=np.float64)

    @property
    def tail_repeat_table(self) -> np.ndarray:
        """``tail_repeat`` as the kernels take it: zeros when tail products are never bought again on purpose."""
        return self._per_category(self.tail_repeat)

    @property
    def tail_promotion_table(self) -> np.ndarray:
        """``tail_promotion`` as the kernels take it: zeros when promotions do not move the tail."""
        return self._per_category(self.tail_promotion)

    @property
    def n_categories(self) -> int:
        return int(self.category_items.size)

    def product_item(self) -> np.ndarray:
        """``(P,)`` item of each product row: its choice-set item, or its category's "other" item (-1: neither)."""
        out = np.full(self.product_ids.size, -1, dtype=np.int64)
        real = self.item_product >= 0
        out[self.item_product[real]] = np.flatnonzero(real)
        for g in np.flatnonzero(~real):
            c = self.item_category[g]
            out[self.tail_product[self.tail_start[c]:self.tail_start[c] + self.tail_count[c]]] = g
        return out


@dataclass(frozen=True)
class PriceGrid:
    """Prices and promotions per product-week, and the product stage's price covariate per item-week.

    Attributes
    ----------
    shelf, depth, display, mailer
        ``(P, W)`` offered shelf price, discount depth in [0, 1), display and mailer flags of every product row.
    log_shelf_centre
        ``(G,)`` the centre the product stage subtracted from each item's log shelf price when it was fitted
        (fitted values, so simulated prices move the covariate exactly as the data did).
    available
        ``(P, W)`` whether each product row is on the shelf (the product stage's
        ``availability``); ``None``: every product every week.
    """

    shelf: np.ndarray
    depth: np.ndarray
    display: np.ndarray
    mailer: np.ndarray
    log_shelf_centre: np.ndarray
    available: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("depth", "display", "mailer"):
            _shape(name, getattr(self, name), self.shelf.shape)
        if self.available is not None:
            _shape("available", self.available, self.shelf.shape)
        if np.any(~(self.shelf > 0)):
            raise ValueError("shelf prices must be positive")
        if np.any((self.depth < 0) | (self.depth >= 1)):
            raise ValueError("depths must lie in [0, 1)")

    @property
    def n_weeks(self) -> int:
        return int(self.shelf.shape[1])

    def at_weeks(self, positions: np.ndarray) -> "PriceGrid":
        """The grid over the weeks at ``positions`` (a slice or a repetition of its weeks)."""
        pick = np.asarray(positions)
        return dataclasses.replace(
            self, shelf=self.shelf[:, pick], depth=self.depth[:, pick], display=self.display[:, pick],
            mailer=self.mailer[:, pick], available=None if self.available is None else self.available[:, pick])

    def item_covariates(self, catalogue: Catalogue) -> tuple[np.ndarray, ...]:
        """``(G, W)`` centred log price, ``log(1 - depth)``, display, mailer of each item (0 for "other")."""
        real = catalogue.item_product >= 0
        rows = catalogue.item_product[real]
        out = [np.zeros((catalogue.item_product.size, self.n_weeks)) for _ in range(4)]
        out[0][real] = np.log(self.shelf[rows]) - self.log_shelf_centre[real, None]
        out[1][real] = np.log1p(-self.depth[rows])
        out[2][real] = self.display[rows]
        out[3][real] = self.mailer[rows]
        return tuple(out)

    def item_available(self, catalogue: Catalogue) -> np.ndarray | None:
        """``(G, W)`` whether each item is on the shelf ("other" always); ``None``: every item every week."""
        if self.available is None:
            return None
        real = catalogue.item_product >= 0
        out = np.ones((catalogue.item_product.size, self.n_weeks), dtype=bool)
        out[real] = self.available[catalogue.item_product[real]]
        return out

    def items_on_shelf(self, catalogue: Catalogue) -> np.ndarray:
        """``(C, W)`` items on the shelf per category and week ("other" included).

        Raises
        ------
        ValueError
            If a category has no item on the shelf in some week.
        """
        available = self.item_available(catalogue)
        if available is None:
            return np.repeat(catalogue.category_items[:, None], self.n_weeks, axis=1).astype(np.int64)
        out = np.zeros((catalogue.n_categories, self.n_weeks), dtype=np.int64)
        np.add.at(out, catalogue.item_category, available.astype(np.int64))
        empty = np.argwhere((out == 0) & (catalogue.category_items[:, None] > 0))
        if empty.size:
            raise ValueError(f"category {int(empty[0, 0])} has no item on the shelf in week position {int(empty[0, 1])}")
        return out


@dataclass(frozen=True)
class StageDraw:
    """Population-level values of one posterior draw, shared by every customer.

    Attributes
    ----------
    rho, visit_week
        Visit stage: state dependence on last week's visit and ``(W,)`` week effects.
    category_intercept, category_week, category_season
        Category stage: ``(C,)`` intercepts ``b``, ``(W,)`` global week effects ``s``, ``(C, W)`` deviations ``d``.
    item_intercept, class_coefficients, display, mailer, log_extra_rate
        Product stage: ``(G,)`` intercepts ``t``, ``(K, n_core + A)`` coefficients of each latent class
        (price, discount, state, with the ``"both"`` memory the previous-occasion state, then attribute
        weights), ``(C,)`` display and mailer effects, ``(C,)`` log rate of extra distinct items.
    quantity_intercept, kappa, alpha
        Quantity stage: ``(G,)`` item intercepts ``l``, ``(C,)`` stockpiling response, ``(C,)`` NB dispersion.
    household_week_sigma
        Category stage: sd of the household-week shock shared by a week's
        categories (0: the stage has none).
    shock_loading
        Category stage: ``(C,)`` each category's weight on that shock
        (``None``: 1 for every category, the shared shock).
    trips_elasticity
        Category stage: ``gamma`` of the week's exposure ``n^gamma`` to its
        ``n`` trips (1: the plain trips offset).
    trip_weight_sd
        Log sd of the trips' sizes within a week (0: the trips are alike). The
        category stage is fitted per week, so this is not in its posterior: a
        plug-in from the real trips (:func:`~bayes_retail.simulate.trips.trip_weight_sd`).
    state_memory
        What the product stage's state term remembers: ``"last"`` (the previous
        occasion's items), ``"ever"`` (every earlier item, the most recent
        ones) or ``"both"`` (``"ever"``, the previous occasion's items gaining
        the ``PREVIOUS`` coefficient too); the product stage's ``state`` setting.
    category_value_response, category_value_centre
        With a category-value term: ``(C,)`` response ``k`` and ``(K, C)`` the
        category values' mean over the fitted weeks under the observed prices
        (what the category stage centred them by); ``None`` without one.
    depth
        Product stage: ``(C,)`` each category's depth response, a deviation
        from the classes' discount coefficient (``None``: the fit has none).
    deal_week_sd, deal_week_points
        Product stage: the deal-hunting week deviation of the discount
        coefficient, ``deal_week_sd`` times one of ``deal_week_points``
        equal-weight standardised points drawn per customer-week
        (:mod:`~bayes_retail.models.deal`; sd 0: none).
    """

    rho: float
    visit_week: np.ndarray
    category_intercept: np.ndarray
    category_week: np.ndarray
    category_season: np.ndarray
    item_intercept: np.ndarray
    class_coefficients: np.ndarray
    display: np.ndarray
    mailer: np.ndarray
    log_extra_rate: np.ndarray
    quantity_intercept: np.ndarray
    kappa: np.ndarray
    alpha: np.ndarray
    category_value_response: np.ndarray | None = None
    category_value_centre: np.ndarray | None = None
    state_memory: str = "last"
    household_week_sigma: float = 0.0
    trip_weight_sd: float = 0.0
    trips_elasticity: float = 1.0
    deal_week_sd: float = 0.0
    deal_week_points: int = 0
    depth: np.ndarray | None = None
    shock_loading: np.ndarray | None = None

    def at_weeks(self, positions: np.ndarray) -> "StageDraw":
        """The draw with its week-indexed values (visit and category week effects, seasons) at ``positions``."""
        pick = np.asarray(positions)
        return dataclasses.replace(self, visit_week=np.asarray(self.visit_week)[pick],
                                   category_week=np.asarray(self.category_week)[pick],
                                   category_season=np.asarray(self.category_season)[:, pick])

    @property
    def n_core(self) -> int:
        """Columns of ``class_coefficients`` before the attribute weights."""
        return 4 if self.state_memory == "both" else 3

    def check(self, catalogue: Catalogue, n_weeks: int) -> None:
        """Raise ``ValueError`` naming the first array whose shape disagrees with the catalogue or weeks."""
        if self.state_memory not in STATE_MEMORIES:
            raise ValueError(f"state_memory must be one of {STATE_MEMORIES}, got {self.state_memory!r}")
        n_c, g = catalogue.n_categories, catalogue.item_category.size
        n_coef = self.n_core + catalogue.attributes.shape[1]
        expected = {
            "visit_week": (n_weeks,), "category_intercept": (n_c,), "category_week": (n_weeks,),
            "category_season": (n_c, n_weeks), "item_intercept": (g,), "display": (n_c,), "mailer": (n_c,),
            "log_extra_rate": (n_c,), "quantity_intercept": (g,), "kappa": (n_c,), "alpha": (n_c,),
        }
        if self.depth is not None:
            expected["depth"] = (n_c,)
        if self.shock_loading is not None:
            expected["shock_loading"] = (n_c,)
        for name, shape in expected.items():
            _shape(name, np.asarray(getattr(self, name)), shape)
        if self.class_coefficients.ndim != 2 or self.class_coefficients.shape[1] != n_coef:
            raise ValueError(f"class_coefficients must have shape (K, {n_coef}), got {self.class_coefficients.shape}")
        if not float(self.household_week_sigma) >= 0:
            raise ValueError(f"household_week_sigma must be >= 0, got {self.household_week_sigma!r}")
        if not np.isfinite(float(self.trips_elasticity)):
            raise ValueError(f"trips_elasticity must be finite, got {self.trips_elasticity!r}")
        if not float(self.trip_weight_sd) >= 0:
            raise ValueError(f"trip_weight_sd must be >= 0, got {self.trip_weight_sd!r}")
        if not float(self.deal_week_sd) >= 0 or self.deal_week_points == 1 or self.deal_week_points < 0:
            raise ValueError(f"deal_week_sd must be >= 0 and deal_week_points 0 or >= 2, got "
                             f"{self.deal_week_sd!r} on {self.deal_week_points!r} points")
        if np.any(~(np.asarray(self.alpha) > 0)):
            raise ValueError("alpha (NB dispersion) must be positive")
        if (self.category_value_response is None) != (self.category_value_centre is None):
            raise ValueError("category_value_response and category_value_centre go together")
        if self.category_value_response is not None:
            _shape("category_value_response", np.asarray(self.category_value_response), (n_c,))
            _shape("category_value_centre", np.asarray(self.category_value_centre),
                   (self.class_coefficients.shape[0], n_c))


@dataclass(frozen=True)
class Customers:
    """The customers of one batch and their own parameters under one posterior draw.

    Attributes
    ----------
    index
        ``(n,)`` global customer indices (they key the random streams).
    entry_week
        ``(n,)`` week position of each customer's first visit (nothing happens before it).
    visit
        ``(n, 3)`` visit propensity ``a``, marketing-signal response ``g`` and log extra-trip rate ``b``.
    signal
        ``(n, W)`` standardised marketing signal (as the visit stage defines it).
    category_preference
        ``(n, C)`` household propensity plus preference factors, ``u_h + f_h . l_c``.
    product_class
        ``(n,)`` latent class of each customer in the product stage.
    basket
        ``(n,)`` basket-size effect of the quantity stage.
    household_id
        ``(n,)`` id written to the output (the customer's own id; e.g. its template household for replay).
    """

    index: np.ndarray
    entry_week: np.ndarray
    visit: np.ndarray
    signal: np.ndarray
    category_preference: np.ndarray
    product_class: np.ndarray
    basket: np.ndarray
    household_id: np.ndarray

    def __post_init__(self) -> None:
        n = self.index.size
        for name in ("entry_week", "product_class", "basket", "household_id"):
            _shape(name, np.asarray(getattr(self, name)), (n,))
        _shape("visit", self.visit, (n, 3))
        if self.signal.ndim != 2 or self.signal.shape[0] != n:
            raise ValueError(f"signal must have shape ({n}, W), got {self.signal.shape}")
        if self.category_preference.ndim != 2 or self.category_preference.shape[0] != n:
            raise ValueError(f"category_preference must have shape ({n}, C), got {self.category_preference.shape}")

    @property
    def size(self) -> int:
        return int(self.index.size)
