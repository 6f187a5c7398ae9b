"""Stage 3: product choice given a category purchase (DESIGN.md §2).

On a purchase occasion o (household h buys in category c in week w) the
household buys ``m_o = 1 + Poisson(exp(rho_c))`` distinct items of the
category's choice set, drawn without replacement from a multinomial logit:

    v_kjw = t_j + beta_k * price_jw + (gamma_k + delta_c) * log(1 - depth_jw)
          + display_c * display_jw + mailer_c * mailer_jw + z_k . x_j + lambda_k * last_hj

- ``t_j`` item intercepts (they absorb the attribute main effects); each
  category's last item is the reference (``t = 0``): its "other" item (the
  tail products together, no covariates), or its last real item in the few
  categories without a tail;
- ``price_jw`` the log shelf price centred within the item (within-item price
  variation identifies ``beta``), ``depth_jw`` the offered discount (observed
  or one imputed panel of the pricing stage), ``display``/``mailer`` the
  calendar flags with category coefficients partially pooled (non-centred,
  or centred in categories with enough informative occasions:
  ``promo_centred_min_occasions``);
- ``delta_c`` the category's depth response: with ``category_depth = true`` a
  zero-mean deviation from the classes' discount coefficient, partially
  pooled (``delta_c = tau_depth * z_c``, non-centred); otherwise 0, every
  category responding to a discount as the household's class does;
- ``x_j`` item attributes (national brand, pack-size tier, price tier within
  the category) whose weights ``z_k`` vary across households only (their mean
  is in ``t_j``);
- the choice set of week w holds the items on the shelf that week
  (``availability = "span"``: a choice-set product from the first to the last
  week it is sold or promoted in the data; "other" and each category's
  reference item always; ``"always"``: every item every week);
- ``last_hj = 1`` if the household bought item j on its previous occasion in
  the category (state dependence; ``state = "ever"``: on any earlier
  occasion there, a reduced-form loyalty term). Occasions in the first
  ``burn_in_weeks`` weeks set the state and are not scored.

Heterogeneity: latent classes at fixed standardised locations. The class
coefficients are ``theta_k = mu + sigma * xi_k`` with ``xi_k`` K fixed points
of mean 0 and unit variance per coefficient (moment-matched quasi-random
normal points) and equal weights, so ``mu`` and ``sigma`` are the population
hyperparameters and there is no label switching. This is a K-point
discretisation of normal heterogeneity: APPROXIMATE (it cannot represent
correlations between coefficients, and a household's coefficients take only
K values). Membership is marginalised per household:

    log L_h = logsumexp_k [ -log K + sum_{o of h} log P_k(S_o) ].

The log-sum-exp over the choice set depends on (class, category, week) only,
plus a correction for the few items in the household's last purchase:
``S_hkcw = S_kcw + (exp(lambda_k) - 1) * sum_{j in last} exp(v_kjw)``.

Set probabilities: the order in which an occasion's m items were drawn is
not observed, so ``P(S)`` sums over orders: exact for m <= 8 by a recursion
over subsets (99.8% of scored occasions on the embedded data), and for
m >= 9 the exponential-clock integral
``int_0^inf e^-s prod_j (1 - exp(-a_j s)) ds`` with
``a_j = p_j / (1 - sum_S p)`` by 48-point Gauss-Laguerre quadrature.

The model evaluates the likelihood and its gradient with the fused kernel of
:mod:`bayes_retail.models._choice_kernel`; the numpy functions below are the
readable reference it is tested against.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
from dataclasses import asdict, dataclass

import numba
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

from bayes_retail.models import deal
from bayes_retail.models._choice_kernel import (
    EXACT_MAX_ITEMS,
    QUADRATURE_NODES,
    choice_loglik_op,
)
from bayes_retail.models._household_choice_kernel import household_choice_loglik_op
from bayes_retail.models._state import EVER_STATE_ITEMS, STATE_MEMORIES, ever_state_step
from bayes_retail.models.artifacts import evenly_spaced
from bayes_retail.models.deal import promo_coefficients
from bayes_retail.models.pooling import joined, partially_centred

STAGE = "product"
MODEL_VERSION = 1

#: Coefficients with class-level heterogeneity, before the attribute weights.
CORE_COEFFICIENTS = ("price", "discount", "state")
#: The ``"both"`` state memory's own coefficient (after ``state``): the extra pull of the previous occasion's items.
PREVIOUS_COEFFICIENT = "previous"
#: Item attributes (columns of ``ProductData.attributes``).
ATTRIBUTES = ("national_brand", "pack_size", "price_tier", "deal_frequency")
#: Discount depth above which a purchase week counts as discounted (the item's deal frequency).
DEAL_DEPTH = 0.005
#: Pseudo-weeks at the category's rate added to each item's observed weeks (its deal frequency).
DEAL_FREQUENCY_PRIOR_WEEKS = 2.0
#: What the free item intercepts are shrunk toward: the reference item's 0, a centre per category, or
#: centres per category partially pooled across categories.
INTERCEPT_CENTRES = ("reference", "category", "pooled")
#: How household heterogeneity in the coefficients is represented (ProductConfig.coefficients).
COEFFICIENT_FORMS = ("classes", "household")
#: Which weeks an item is in its category's choice set (ProductConfig.availability).
AVAILABILITIES = ("always", "span")


@dataclass(frozen=True)
class ProductConfig:
    """The ``[product]`` section of a configuration.

    Attributes
    ----------
    n_classes
        Latent classes K (DESIGN.md §2: 8-16).
    heterogeneity
        False fixes every class at the population mean (``sigma = 0``): the
        deliberately wrong model without preference heterogeneity, under which
        heterogeneity reads as false state dependence (kept for that check).
    burn_in_weeks
        Leading weeks that only set each household's state (not scored).
    state
        What ``last_hj`` marks: ``"last"`` (DESIGN.md §2) the items of the
        household's previous occasion in the category; ``"ever"`` the items it
        bought on any earlier occasion there (the :data:`EVER_STATE_ITEMS` most
        recent distinct ones). ``"ever"`` is a reduced-form loyalty term: it
        also absorbs household-specific product preferences that K classes
        cannot hold, so its coefficient is not causal state dependence
        (docs/models/product.md). ``"both"``: the ``"ever"`` state with a
        second class-level coefficient, ``previous``, added for the items of
        the previous occasion (they gain ``state + previous``), so rebuying
        last time's items and returning to older ones are fitted separately.
    households
        Fit on this many households drawn at random with the fit's seed (0 =
        every household). Every item keeps its intercept; a subset gives the
        posterior those households' purchases support (wider intervals).
    intercept_centre
        What the free item intercepts are shrunk toward. ``"reference"``: 0,
        the category's reference item (its "other"), the form the shipped
        trace was fitted with; ``"category"``: a free centre per category,
        ``t_j ~ N(item_centre_c, sigma_item)``. The reference is usually the
        category's most bought item (its tail products together), so shrinking
        rarely bought items toward it raises them toward its level: on the
        embedded data the shipped fit, replaying its own households with their
        observed states, predicts 0.81 times as many "other" choices as they
        made and 1.10 times as many of the items ranked past 20 (docs/models/product.md).
        ``"pooled"``: the category centres themselves partially pooled,
        ``item_centre_c ~ N(mu_item_centre, tau_item_centre)`` (centred in
        categories with at least ``promo_centred_min_occasions`` choice-scored
        occasions, non-centred elsewhere). With free centres a category whose
        few occasions never chose its reference has a centre that only its
        N(0, ``centre_sigma``) prior bounds: on the embedded data those centres
        had R-hat up to 2.6 (docs/models/product.md), and a simulated "other"
        share there swings from 0 to 1 across draws.
    centre_sigma
        Prior sd of the category centres (``intercept_centre = "category"``),
        or of their population mean (``"pooled"``, whose category sd has the
        prior scale ``centre_sigma / 2``).
    coefficients
        ``"classes"``: the K latent classes at fixed locations (APPROXIMATE:
        a K-point discretisation without correlations); ``"household"``:
        every household its own coefficient vector, ``theta_h = mu + L z_h``
        with ``L`` the Cholesky factor of an LKJ(``lkj_eta``) correlation
        scaled by HalfNormal(``scale_sigma``) sds, non-centred (the `full`
        configuration; its likelihood is
        :mod:`~bayes_retail.models._household_choice_kernel`).
    lkj_eta
        LKJ concentration of the household coefficients' correlations.
    promo_centred_min_occasions
        The category vectors ``display``, ``mailer`` and ``log_extra_rate``
        (and ``item_centre`` under ``intercept_centre = "pooled"``) are
        centred in categories with at least this many informative scored
        occasions (:func:`informative_occasions`) and non-centred in the rest;
        0 keeps every category non-centred (the form the shipped trace was
        fitted with). On the shipped fit's 300 households the posterior sd of
        a category's effect falls below half the category sd from ~100 such
        occasions on (docs/models/product.md), where non-centred draws sit on a ridge
        with ``tau``.
    intercept_centred_min_purchases
        Free item intercepts of items chosen at least this many times on
        scored occasions are centred (and preconditioned), the others
        non-centred around their centre; 0 centres every one (the form the
        shipped trace was fitted with). 39% of the free items are never chosen
        by the shipped fit's 300 households and 65% at most twice: their
        intercepts rest on the prior, and centred they move with the category
        centre (``intercept_centre = "category"``) or ``sigma_item``.
    availability
        Which weeks an item is on the shelf. ``"always"``: every item every
        week (the form the shipped trace was fitted with); ``"span"``: a
        choice-set product from the first to the last week the data sell it
        or put it on display or in the mailer (:func:`availability_span`),
        "other" and each category's reference item every week. On the
        embedded data a quarter of the choice-set products span 33 weeks or
        fewer: treated as always on the shelf, their weeks off it count as
        offered and not chosen (docs/models/product.md).
    depth_panels
        How many of the pricing stage's imputed depth panels the fit pools,
        one group of chains each (``[sampler] chains`` must be a multiple):
        the multiple-imputation posterior, approximated by this many panels at
        no extra sampling cost (:mod:`~bayes_retail.models.imputation`). 1
        (the form the shipped trace was fitted with) uses the first panel only.
    deal_points
        Deal proneness (:mod:`~bayes_retail.models.deal`): 0 (the default)
        leaves the K classes alone; G >= 2 crosses each class with G
        equal-weight points of a household deviation of the discount
        coefficient whose sd is a plug-in estimate per stored draw, made after
        sampling (APPROXIMATE: a cut, the classes do not adjust to it).
        Only with ``coefficients = "classes"``.
    category_depth
        A depth response per category (``delta_c``, trace variable ``depth``):
        a zero-mean deviation from the classes' discount coefficient with a
        pooled sd ``tau_depth ~ HalfNormal(promo_sigma / 2)``. Off (the
        default, the form the shipped trace was fitted with): 0.
    deal_week_points
        Deal-hunting weeks (:mod:`~bayes_retail.models.deal`): 0 (the
        default) none; W >= 2 adds a household-week deviation of the discount
        coefficient on W equal-weight points, its sd a plug-in per stored draw
        estimated with ``deal_sd`` (the same cut). Needs ``deal_points``.
    deal_frequency
        A fourth item attribute, the item's deal frequency
        (:func:`deal_frequency`: the share of its purchase weeks at a
        discount, shrunk toward its category's, as a z-score within the
        category), whose class-level weight lets households differ in how
        much of what they buy is habitually promoted. Like the other
        attributes its mean is in the item intercepts. Off (the default, the
        form the shipped trace was fitted with): three attributes. On the
        embedded data the mean deal frequency of a household's items explains
        61% of the between-household variance of its discounted share of
        lines, yet the fitted class sd of the weight was 0.012: the K joint
        class locations leave no room for it (docs/models/product.md).
    intercept_sigma, coefficient_sigma, scale_sigma, promo_sigma, extra_sigma
        Prior scales: item intercepts, population means of price / discount /
        state, heterogeneity sds, display/mailer (mean and category sd), the
        log extra-item rate.
    """

    n_classes: int = 8
    burn_in_weeks: int = 8
    heterogeneity: bool = True
    state: str = "last"
    households: int = 0
    intercept_sigma: float = 2.0
    coefficient_sigma: float = 2.0
    scale_sigma: float = 1.0
    promo_sigma: float = 1.0
    extra_sigma: float = 1.0
    intercept_centre: str = "reference"
    centre_sigma: float = 5.0
    coefficients: str = "classes"
    lkj_eta: float = 2.0
    promo_centred_min_occasions: int = 0
    intercept_centred_min_purchases: int = 0
    availability: str = "always"
    depth_panels: int = 1
    deal_points: int = 0
    deal_week_points: int = 0
    category_depth: bool = False
    deal_frequency: bool = False

    def __post_init__(self) -> None:
        for name, least in (("n_classes", 2), ("burn_in_weeks", 0), ("households", 0), ("depth_panels", 1),
                            ("deal_points", 0), ("deal_week_points", 0),
                            ("promo_centred_min_occasions", 0), ("intercept_centred_min_purchases", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if self.state not in STATE_MEMORIES:
            raise ValueError(f"state must be one of {STATE_MEMORIES}, got {self.state!r}")
        if self.intercept_centre not in INTERCEPT_CENTRES:
            raise ValueError(f"intercept_centre must be one of {INTERCEPT_CENTRES}, got {self.intercept_centre!r}")
        if self.availability not in AVAILABILITIES:
            raise ValueError(f"availability must be one of {AVAILABILITIES}, got {self.availability!r}")
        if self.coefficients not in COEFFICIENT_FORMS:
            raise ValueError(f"coefficients must be one of {COEFFICIENT_FORMS}, got {self.coefficients!r}")
        if self.coefficients == "household" and not self.heterogeneity:
            raise ValueError('coefficients = "household" is heterogeneity itself: it needs heterogeneity = true')
        if self.deal_points == 1 or (self.deal_points and self.coefficients != "classes"):
            raise ValueError(f'deal_points must be 0 (off) or >= 2 with coefficients = "classes", '
                             f'got {self.deal_points!r} with {self.coefficients!r}')
        if self.deal_week_points == 1 or (self.deal_week_points and not self.deal_points):
            raise ValueError(f"deal_week_points must be 0 (off) or >= 2 with deal_points >= 2, got "
                             f"{self.deal_week_points!r} with deal_points = {self.deal_points!r}")
        for name in ("intercept_sigma", "coefficient_sigma", "scale_sigma", "promo_sigma", "extra_sigma",
                     "centre_sigma", "lkj_eta"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def fitted_config(attrs) -> ProductConfig:
    """The :class:`ProductConfig` a product trace was fitted with: its attrs' ``stage_config`` (absent: the defaults)."""
    return ProductConfig(**json.loads(attrs.get("stage_config") or "{}"))


@dataclass
class ProductData:
    """Items, their week-level covariates and the purchase occasions of the product stage.

    Items are global indices ``g`` sorted by category; each category's last item
    is its reference (``t = 0``): the "other" item, or the last real item in a
    category whose products are all in the choice set.

    Attributes
    ----------
    households, categories, weeks
        Ids behind the axes.
    item_category
        ``(G,)`` category index of each item.
    price, discount, display, mailer
        ``(G, W)`` centred log shelf price, ``log(1 - depth)``, flags (0 for "other").
    attributes
        ``(G, A)`` item attributes (0 for "other").
    occasion_household, occasion_category, occasion_week
        ``(O,)`` purchase occasions.
    occasion_scored
        ``(O,)`` False for burn-in occasions (they only set the state).
    chosen_occasion, chosen_item
        Items bought on each occasion (distinct; sorted by occasion).
    last_occasion, last_item
        State pairs: the items ``last_hj`` marks on each occasion (those of the
        household's previous occasion in the category, or of every earlier one:
        :attr:`ProductConfig.state`).
    available
        ``(G, W)`` True where the item is in its category's choice set that
        week; ``None`` (the default): every item every week. Each category's
        reference item must be available every week and every chosen item in
        its occasion's week.
    """

    households: np.ndarray
    categories: np.ndarray
    weeks: np.ndarray
    item_category: np.ndarray
    price: np.ndarray
    discount: np.ndarray
    display: np.ndarray
    mailer: np.ndarray
    attributes: np.ndarray
    occasion_household: np.ndarray
    occasion_category: np.ndarray
    occasion_week: np.ndarray
    occasion_scored: np.ndarray
    chosen_occasion: np.ndarray
    chosen_item: np.ndarray
    last_occasion: np.ndarray
    last_item: np.ndarray
    available: np.ndarray | None = None

    def __post_init__(self) -> None:
        if np.any(np.diff(self.item_category) < 0):
            raise ValueError("items must be sorted by category")
        if self.available is None:
            self.available = np.ones(self.price.shape, dtype=bool)
        self.available = np.asarray(self.available, dtype=bool)
        if self.available.shape != self.price.shape:
            raise ValueError(f"available must have shape {self.price.shape}, got {self.available.shape}")
        if not self.available[self.reference_item].all():
            raise ValueError("each category's reference item must be available every week")
        off = ~self.available[self.chosen_item, self.occasion_week[self.chosen_occasion]]
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise ValueError(f"{int(off.sum())} chosen items are off the shelf in their occasion's week "
                             f"(first: item {int(self.chosen_item[i])}, week index "
                             f"{int(self.occasion_week[self.chosen_occasion[i]])})")
        if np.any(np.diff(self.chosen_occasion) < 0):
            raise ValueError("chosen items must be sorted by occasion")
        if np.any(self.item_category[self.chosen_item] != self.occasion_category[self.chosen_occasion]):
            raise ValueError("a chosen item lies outside the occasion's category")
        size = np.bincount(self.chosen_occasion, minlength=self.n_occasions)
        if np.any(size < 1):
            raise ValueError("every occasion needs at least one chosen item")

    def restricted_to(self, weeks) -> ProductData:
        """The same data with only occasions in ``weeks`` (week numbers) scored; ``None`` keeps every week.

        Occasions in other weeks still set the households' states.
        """
        if weeks is None:
            return self
        in_weeks = np.isin(self.weeks[self.occasion_week], np.asarray(weeks))
        return dataclasses.replace(self, occasion_scored=self.occasion_scored & in_weeks)

    def for_categories(self, categories) -> ProductData:
        """The same households and weeks with only ``categories`` (category indices), re-indexed.

        The stage on a smaller catalogue, for benchmarks of the sampler's
        geometry at a fraction of the cost. Not a factor of the full
        likelihood: a household's class membership is marginalised over all
        of its categories together.
        """
        keep_c = np.zeros(self.categories.size, dtype=bool)
        keep_c[np.asarray(categories)] = True
        new_c = np.cumsum(keep_c) - 1
        keep_g = keep_c[self.item_category]
        new_g = np.cumsum(keep_g) - 1
        keep_o = keep_c[self.occasion_category]
        new_o = np.cumsum(keep_o) - 1
        chosen = keep_o[self.chosen_occasion]
        last = keep_o[self.last_occasion]
        return dataclasses.replace(
            self, categories=self.categories[keep_c], item_category=new_c[self.item_category[keep_g]],
            price=self.price[keep_g], discount=self.discount[keep_g], display=self.display[keep_g],
            mailer=self.mailer[keep_g], attributes=self.attributes[keep_g], available=self.available[keep_g],
            occasion_household=self.occasion_household[keep_o], occasion_category=new_c[self.occasion_category[keep_o]],
            occasion_week=self.occasion_week[keep_o], occasion_scored=self.occasion_scored[keep_o],
            chosen_occasion=new_o[self.chosen_occasion[chosen]], chosen_item=new_g[self.chosen_item[chosen]],
            last_occasion=new_o[self.last_occasion[last]], last_item=new_g[self.last_item[last]],
        )

    @property
    def n_occasions(self) -> int:
        return int(self.occasion_household.size)

    @functools.cached_property
    def previous_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(occasion, item)``: the items of each occasion's previous occasion (same household and category)."""
        return last_items_from_choices(self.occasion_household, self.occasion_category, self.occasion_week,
                                       self.chosen_occasion, self.chosen_item)

    @functools.cached_property
    def last_is_previous(self) -> np.ndarray:
        """``(pairs,)`` 1.0 where a state pair's item was bought on the previous occasion (all of a ``"last"`` state).

        Derived from the choices, so every state memory's pairs carry it; only
        the ``"both"`` memory's ``previous`` coefficient reads it.
        """
        return is_pair_in(self.last_occasion, self.last_item, *self.previous_pairs)

    @property
    def set_size(self) -> np.ndarray:
        """``(O,)`` distinct items bought per occasion."""
        return np.bincount(self.chosen_occasion, minlength=self.n_occasions)

    @property
    def category_items(self) -> np.ndarray:
        """``(C,)`` items per category (choice-set size, "other" included)."""
        return np.bincount(self.item_category, minlength=self.categories.size)

    @property
    def category_start(self) -> np.ndarray:
        """``(C,)`` global index of each category's first item."""
        return np.cumsum(self.category_items) - self.category_items

    @property
    def available_items(self) -> np.ndarray:
        """``(C, W)`` items on the shelf per category and week ("other" included)."""
        return np.add.reduceat(self.available.astype(np.int64), self.category_start, axis=0)

    @property
    def reference_item(self) -> np.ndarray:
        """``(C,)`` global index of each category's reference item (its last: "other" where the category has one)."""
        return np.cumsum(self.category_items) - 1


# --------------------------------------------------------------------------- class locations


def class_locations(n_classes: int, n_coefficients: int) -> np.ndarray:
    """``(K, D)`` fixed standardised class locations: mean exactly 0, variance exactly 1 per column.

    Scrambled Sobol points (seed 0) mapped through the normal quantile, then
    moment matched; deterministic so that a trace's classes mean the same thing
    on every machine.
    """
    from scipy.stats import norm, qmc

    points = qmc.Sobol(n_coefficients, scramble=True, seed=0).random(n_classes)
    xi = norm.ppf(np.clip(points, 1e-6, 1 - 1e-6))
    xi = xi - xi.mean(axis=0)
    return xi / xi.std(axis=0)


def core_coefficients(state: str = "last") -> tuple[str, ...]:
    """The coefficients before the attribute weights under a state memory (``"both"`` adds ``previous``)."""
    return CORE_COEFFICIENTS + ((PREVIOUS_COEFFICIENT,) if state == "both" else ())


def n_coefficients(n_attributes: int, state: str = "last") -> int:
    return len(core_coefficients(state)) + n_attributes


def attribute_weights(theta: np.ndarray, n_attributes: int) -> np.ndarray:
    """The attribute weights, the last ``n_attributes`` entries of ``theta``'s last axis."""
    return theta[..., theta.shape[-1] - n_attributes:]


def previous_coefficient(theta: np.ndarray, n_attributes: int) -> np.ndarray:
    """The ``"both"`` memory's previous-occasion coefficient of ``theta`` (``(..., D)``); zeros under the others."""
    if theta.shape[-1] - n_attributes > len(CORE_COEFFICIENTS):
        return theta[..., len(CORE_COEFFICIENTS)]
    return np.zeros(theta.shape[:-1])


# --------------------------------------------------------------------------- the likelihood in numpy (reference)
# The model evaluates the same quantities with the fused kernel in
# ``_choice_kernel``; these readable numpy versions are what it is tested against.


def class_utilities(t, theta, display_c, mailer_c, pdata: ProductData, depth_c=None) -> np.ndarray:
    """``(K, G, W)`` utilities without the state term; ``-inf`` where an item is off the shelf.

    ``theta`` is ``(K, D)``: price, discount, state, then attribute weights;
    ``depth_c`` ``(C,)`` the categories' depth responses (``None``: 0).
    """
    cat = pdata.item_category
    base = t[:, None] + display_c[cat][:, None] * pdata.display + mailer_c[cat][:, None] * pdata.mailer
    if depth_c is not None:
        base = base + depth_c[cat][:, None] * pdata.discount
    attr = attribute_weights(theta, pdata.attributes.shape[1]) @ pdata.attributes.T  # (K, G)
    v = (
        base[None]
        + theta[:, 0, None, None] * pdata.price[None]
        + theta[:, 1, None, None] * pdata.discount[None]
        + attr[:, :, None]
    )
    return np.where(pdata.available[None], v, -np.inf)


def occasion_log_probabilities(v, theta, pdata: ProductData) -> np.ndarray:
    """Per chosen item and class: ``(P, K)`` log choice probabilities on the full choice set.

    The denominator includes the state term of the household's state items
    (``state``, plus ``previous`` for the previous occasion's under the
    ``"both"`` memory); :func:`set_log_probability` builds set probabilities
    from these.
    """
    lam = theta[:, 2]  # (K,)
    lam_previous = previous_coefficient(theta, pdata.attributes.shape[1])
    exp_v = np.exp(v)
    sums = np.add.reduceat(exp_v, pdata.category_start, axis=1)  # (K, C, W)
    occ_c, occ_w = pdata.occasion_category, pdata.occasion_week
    denom = sums[:, occ_c, occ_w]  # (K, O)
    # state correction on the state items: exp(lam + lam_previous * previous) - 1 each
    gain = np.expm1(lam[:, None] + lam_previous[:, None] * pdata.last_is_previous[None, :])  # (K, pairs)
    extra = np.zeros_like(denom)
    np.add.at(extra.T, pdata.last_occasion, (gain * exp_v[:, pdata.last_item, occ_w[pdata.last_occasion]]).T)
    denom = denom + extra
    num = (v[:, pdata.chosen_item, occ_w[pdata.chosen_occasion]] + lam[:, None] * _chosen_is_last(pdata)[None, :]
           + lam_previous[:, None] * _chosen_is_previous(pdata)[None, :])
    return (num - np.log(denom)[:, pdata.chosen_occasion]).T


def is_pair_in(occasion, item, among_occasion, among_item) -> np.ndarray:
    """``(N,)`` 1.0 where the pair ``(occasion[i], item[i])`` is one of the ``among`` pairs, else 0.0."""
    occasion, item, among_occasion, among_item = (np.asarray(x, dtype=np.int64)
                                                  for x in (occasion, item, among_occasion, among_item))
    width = int(max(item.max(initial=-1), among_item.max(initial=-1))) + 1
    return np.isin(occasion * width + item, among_occasion * width + among_item).astype(np.float64)


def _chosen_is_last(pdata: ProductData) -> np.ndarray:
    """``(P,)`` 1.0 where a chosen item is in its occasion's state."""
    return is_pair_in(pdata.chosen_occasion, pdata.chosen_item, pdata.last_occasion, pdata.last_item)


def _chosen_is_previous(pdata: ProductData) -> np.ndarray:
    """``(P,)`` 1.0 where a chosen item was bought on the household's previous occasion in the category."""
    return is_pair_in(pdata.chosen_occasion, pdata.chosen_item, *pdata.previous_pairs)


def set_log_probability(logp: np.ndarray, m: int) -> np.ndarray:
    """``log P(S)`` of drawing the set S (any order) without replacement: ``logp (N, m, K)`` -> ``(N, K)``.

    Exact for ``m <= EXACT_MAX_ITEMS`` (:func:`set_log_probability_exact`),
    Gauss-Laguerre quadrature above (:func:`set_log_probability_quadrature`).
    """
    if m == 1:
        return logp[:, 0]
    if m <= EXACT_MAX_ITEMS:
        return set_log_probability_exact(logp)
    return set_log_probability_quadrature(logp)


def set_log_probability_exact(logp: np.ndarray) -> np.ndarray:
    """The sum over the m! orders of the set, by a recursion over its subsets (``m 2^m`` terms).

    ``P(S) = prod_S p * g(S)`` with ``g(T) = sum_{j in T} g(T - j) / (1 - p(T - j))``
    and ``g({}) = 1``, i.e. the sum over orders of ``prod 1 / (1 - p(removed so far))``.
    """
    m = logp.shape[1]
    p = np.exp(logp)
    n = 1 << m
    removed = np.zeros((n, logp.shape[0], logp.shape[2]))
    g = np.ones_like(removed)
    for t in range(1, n):
        members = [j for j in range(m) if t >> j & 1]
        removed[t] = removed[t ^ (1 << members[0])] + p[:, members[0]]
        g[t] = sum(g[t ^ (1 << j)] / (1.0 - removed[t ^ (1 << j)]) for j in members)
    return logp.sum(axis=1) + np.log(g[n - 1])


def set_log_probability_quadrature(logp: np.ndarray) -> np.ndarray:
    """``log int_0^inf e^-s prod_j (1 - exp(-a_j s)) ds``, ``a_j = p_j / (1 - sum_S p)``, by Gauss-Laguerre.

    The exponential-clock form of sampling without replacement; relative error
    1e-13 typically, up to 4e-4 measured when the set holds almost all of the
    probability.
    """
    from scipy.special import logsumexp

    nodes, weights = np.polynomial.laguerre.laggauss(QUADRATURE_NODES)
    with np.errstate(divide="ignore"):
        log_rest = np.log(-np.expm1(logsumexp(logp, axis=1)))  # (N, K)
        a = np.exp(logp - log_rest[:, None, :])  # (N, m, K)
        log_terms = np.log(-np.expm1(-a[..., None] * nodes)).sum(axis=1)  # (N, K, Q)
    return logsumexp(log_terms + np.log(weights), axis=2)


def occasion_class_loglik(logp_chosen: np.ndarray, pdata: ProductData):
    """``(O_scored, K)`` log P_k(S_o) of the scored occasions, from ``(P, K)`` chosen log-probabilities.

    Occasions are bucketed by set size; returns the rows and the occasion index
    of each row.
    """
    occ = scored_occasions(pdata)
    size = pdata.set_size
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    parts, order = [], []
    for m in np.unique(size[occ]):
        bucket = occ[size[occ] == m]
        rows = start[bucket][:, None] + np.arange(m)[None, :]
        parts.append(set_log_probability(logp_chosen[rows.ravel()].reshape(bucket.size, m, -1), int(m)))
        order.append(bucket)
    if not parts:
        return np.zeros((0, logp_chosen.shape[1])), np.zeros(0, np.int64)
    return np.concatenate(parts, axis=0), np.concatenate(order)


def scored_occasions(pdata: ProductData) -> np.ndarray:
    """Indices of the occasions the likelihood scores: past the burn-in and not the whole choice set.

    A set that is the whole choice set (of the items on the shelf that week)
    has probability 1 whatever the parameters.
    """
    whole = pdata.set_size == pdata.available_items[pdata.occasion_category, pdata.occasion_week]
    return np.flatnonzero(pdata.occasion_scored & ~whole)


def kernel_inputs(pdata: ProductData) -> tuple[np.ndarray, ...]:
    """The data arguments of the fused choice kernel, in :class:`~bayes_retail.models._choice_kernel.ChoiceLoglik` order.

    Only the :func:`scored_occasions` are kept; chosen and last items become CSR rows.
    """
    occ = scored_occasions(pdata)
    # week-category order: the kernel's item-week arrays are week-major, so it sweeps them in memory order
    occ = occ[np.lexsort((pdata.occasion_category[occ], pdata.occasion_week[occ]))]
    position = np.full(pdata.n_occasions, -1)
    position[occ] = np.arange(occ.size)

    def rows(occasion, *columns):
        row = position[occasion]
        sel = row >= 0
        order = np.argsort(row[sel], kind="stable")
        start = np.concatenate([[0], np.cumsum(np.bincount(row[sel], minlength=occ.size))])
        return start.astype(np.int64), *(col[sel][order] for col in columns)

    chosen_start, chosen_item, chosen_is_last, chosen_is_previous = rows(
        pdata.chosen_occasion, pdata.chosen_item, _chosen_is_last(pdata), _chosen_is_previous(pdata)
    )
    last_start, last_item, last_is_previous = rows(pdata.last_occasion, pdata.last_item, pdata.last_is_previous)
    nodes, weights = np.polynomial.laguerre.laggauss(QUADRATURE_NODES)
    return (
        pdata.item_category.astype(np.int64),
        *(np.ascontiguousarray(grid.T) for grid in (pdata.price, pdata.discount, pdata.display, pdata.mailer)),
        np.ascontiguousarray(pdata.available.T, dtype=np.float64),
        pdata.attributes.astype(np.float64),
        pdata.occasion_household[occ].astype(np.int64), pdata.occasion_category[occ].astype(np.int64),
        pdata.occasion_week[occ].astype(np.int64),
        chosen_start, chosen_item.astype(np.int64), chosen_is_last, chosen_is_previous,
        last_start, last_item.astype(np.int64), last_is_previous, nodes, weights,
    )


def household_kernel_inputs(pdata: ProductData) -> tuple[np.ndarray, ...]:
    """The data arguments of the household-coefficient kernel (:mod:`~bayes_retail.models._household_choice_kernel`).

    :func:`kernel_inputs` with each category's first item (``C + 1`` bounds)
    in place of the item categories: a category's items are contiguous.
    """
    bounds = np.append(pdata.category_start, pdata.item_category.size).astype(np.int64)
    return (bounds, *kernel_inputs(pdata)[1:])


def household_loglik(occasion_ll: np.ndarray, occasion_index: np.ndarray, pdata: ProductData, n_classes: int) -> float:
    """Choice log-likelihood: classes marginalised per household (equal weights)."""
    from scipy.special import logsumexp

    per = np.zeros((pdata.households.size, n_classes))
    np.add.at(per, pdata.occasion_household[occasion_index], occasion_ll)
    return float((logsumexp(per, axis=1) - np.log(n_classes)).sum())


def household_logliks(params: dict, pdata: ProductData, *, inputs: tuple | None = None) -> np.ndarray:
    """``(H,)`` each household's log-likelihood: its choices with the classes marginalised, plus its set sizes.

    The unit PSIS-LOO is computed on (a household's occasions share its class,
    so the household, not the occasion, is the exchangeable unit). The
    households' sum is :func:`total_loglik`. ``inputs`` as in
    :func:`class_membership`.
    """
    from scipy.special import gammaln, logsumexp

    inputs = kernel_inputs(pdata) if inputs is None else inputs
    per_class = deal.params_household_logliks(params, inputs)
    out = np.zeros(pdata.households.size)
    out[: per_class.shape[0]] = logsumexp(per_class, axis=1) - np.log(per_class.shape[1])
    scored = np.flatnonzero(pdata.occasion_scored)
    extra = pdata.set_size[scored] - 1.0
    rate = np.asarray(params["log_extra_rate"], dtype=np.float64)[pdata.occasion_category[scored]]
    out += np.bincount(pdata.occasion_household[scored], weights=extra * rate - np.exp(rate) - gammaln(extra + 1.0),
                       minlength=pdata.households.size)
    return out


def household_loglik_draws(pdata: ProductData, posterior, *, draws: int = 100) -> np.ndarray:
    """``(S, N)`` :func:`household_logliks` of the ``N`` households with a scored occasion under ``S`` evenly spaced draws."""
    inputs = kernel_inputs(pdata)
    scored = np.zeros(pdata.households.size, dtype=bool)
    scored[pdata.occasion_household[pdata.occasion_scored]] = True
    return np.stack([household_logliks(params, pdata, inputs=inputs)[scored]
                     for params in evenly_spaced_params(posterior, pdata, draws)])


def class_membership(params: dict, pdata: ProductData, *, inputs: tuple | None = None, threads: int = 1) -> np.ndarray:
    """``(H, K)`` posterior class probabilities of each household given parameter values.

    Equal prior class weights, so this is the softmax over classes of each
    household's choice log-likelihood. Averaged over posterior draws it is
    the class-membership posterior the simulator replays households with.
    Households without a scored occasion get the prior, 1/K each.
    ``inputs`` is :func:`kernel_inputs` of ``pdata`` when a caller already has it
    (one per many draws); ``threads`` splits the classes over threads (same result).
    """
    from scipy.special import softmax

    if params.get("household_coefficients"):
        if params["theta"].shape[0] != pdata.households.size:
            raise ValueError(f"household coefficients for {params['theta'].shape[0]} households, "
                             f"the data hold {pdata.households.size}: rebuild them for the fitted households")
        return np.eye(pdata.households.size)
    inputs = kernel_inputs(pdata) if inputs is None else inputs
    loglik = deal.params_household_logliks(params, inputs, threads=threads)
    out = np.zeros((pdata.households.size, params["theta"].shape[0]))
    out[: loglik.shape[0]] = loglik
    return softmax(out, axis=1)


def posterior_params(posterior, pdata: ProductData, chain: int, draw: int) -> dict:
    """The parameter dict of one posterior draw (what :func:`class_membership` and the sampler take).

    A ``coefficients = "household"`` fit reads as K = H classes, one per
    fitted household (``theta`` = ``theta_household``, rows in ``pdata``'s
    household order), each household certainly in its own
    (``household_coefficients`` True: :func:`class_membership` is the identity).
    """
    point = posterior.isel(chain=chain, draw=draw)
    t = np.zeros(pdata.item_category.size)
    t[free_items(pdata)] = point["t_free"].values
    household = "theta_household" in point
    return {
        "t": t,
        "theta": point["theta_household"].values.astype(np.float64) if household else point_class_coefficients(point),
        "household_coefficients": household,
        **{name: point[name].values.astype(np.float64) for name in ("display", "mailer", "log_extra_rate")},
        **({"depth": point["depth"].values.astype(np.float64)} if "depth" in point else {}),
        **point_week_deviation(point),
    }


def point_class_coefficients(point) -> np.ndarray:
    """``(K, D)`` class coefficients of one posterior draw, or ``(K * G, D)`` with its deal proneness (:mod:`deal`)."""
    theta = point["theta"].values
    if deal.VARIABLE not in point:
        return theta.astype(np.float64)
    sd = point[deal.VARIABLE]
    return deal.class_coefficients(theta, float(sd.values), int(sd.attrs["points"]))


def point_week_deviation(point) -> dict:
    """``{"deal_week_sd", "deal_week_points"}`` of one posterior draw with deal-hunting weeks (:mod:`deal`), else ``{}``."""
    if deal.WEEK_VARIABLE not in point:
        return {}
    sd = point[deal.WEEK_VARIABLE]
    return {"deal_week_sd": float(sd.values), "deal_week_points": int(sd.attrs["points"])}


def evenly_spaced_params(posterior, pdata: ProductData, draws: int):
    """:func:`posterior_params` of about ``draws`` evenly spaced posterior draws (chains stacked), one at a time."""
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    for k in evenly_spaced(n_chain * n_draw, draws):
        yield posterior_params(posterior, pdata, int(k // n_draw), int(k % n_draw))


def category_values(params: dict, pdata: ProductData) -> np.ndarray:
    """``(K, C, W)`` category values: ``log sum_j exp(v_kjw)`` over each category's items, per class and week.

    The inclusive value of the choice set under class k's utilities with the
    week's prices and promotions (no state term: a household-level quantity the
    category stage does not see). It rises when a category's products are
    discounted or promoted, more for the classes that respond more; the
    category stage's ``k_c`` turns it into purchase incidence.
    """
    v = class_utilities(params["t"], params["theta"], params["display"], params["mailer"], pdata,
                        params.get("depth"))  # (K, G, W)
    start, cat = pdata.category_start, pdata.item_category
    top = np.maximum.reduceat(v, start, axis=1)  # (K, C, W)
    return top + np.log(np.add.reduceat(np.exp(v - top[:, cat]), start, axis=1))


#: Measures of :func:`share_responses`, in its output's column order.
SHARE_RESPONSES = ("own_price_elasticity", "discount_lift", "display_lift", "mailer_lift")


def share_responses(params: dict, pdata: ProductData, real: np.ndarray, *, depth: float = 0.2) -> np.ndarray:
    """``(C, 4)`` per category, one draw: how the choice share of a category's products responds.

    At a reference week (every price at its item's mean, no discount, display,
    mailer or state) with classes equally weighted, for each real product j
    (``real`` False for "other" items) and its population share
    ``P_j = mean_k p_kj``:

    - own-price elasticity ``d log P_j / d log price_j = mean_k(beta_k p_kj (1 - p_kj)) / P_j``;
    - discount lift ``P_j(depth) / P_j - 1`` when j alone is discounted by ``depth``;
    - display and mailer lifts: the same when j alone is on display / in the mailer.

    Each is averaged over the category's products weighted by ``P_j``
    (NaN for a category without a real product). These are responses of the
    share *within* a category purchase: the category-purchase and quantity
    responses to promotion are not in them.
    """
    t, theta = params["t"], params["theta"]
    cat, start = pdata.item_category, pdata.category_start
    v = t[None, :] + attribute_weights(theta, pdata.attributes.shape[1]) @ pdata.attributes.T  # (K, G)
    v = v - np.maximum.reduceat(v, start, axis=1)[:, cat]
    ev = np.exp(v)
    sums = np.add.reduceat(ev, start, axis=1)[:, cat]
    p = ev / sums  # (K, G)
    share = p.mean(axis=0)

    def lift(shift):  # (K, G) utility shifts of each item alone
        moved = ev * np.exp(shift)
        return (moved / (sums - ev + moved)).mean(axis=0) / share - 1.0

    gamma = (theta[:, 1:2] + promo_coefficients(params)[2][cat][None, :]) * np.log1p(-depth)
    per_item = np.stack([
        (theta[:, 0:1] * p * (1.0 - p)).mean(axis=0) / share,
        lift(np.broadcast_to(gamma, p.shape)),
        lift(np.broadcast_to(params["display"][cat], p.shape)),
        lift(np.broadcast_to(params["mailer"][cat], p.shape)),
    ], axis=1)  # (G, 4)
    weight = np.where(real, share, 0.0)
    n_c = pdata.categories.size
    total = np.bincount(cat, weights=weight, minlength=n_c)
    out = np.stack([np.bincount(cat, weights=weight * col, minlength=n_c) for col in per_item.T], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return out / total[:, None]


def extra_items_loglik(log_rate, pdata: ProductData):
    """Poisson log-likelihood of ``m - 1`` per scored occasion, aggregated per category (exact)."""
    exp = pt.exp if isinstance(log_rate, pt.TensorVariable) else np.exp
    scored = pdata.occasion_scored
    extra = pdata.set_size[scored] - 1
    cat = pdata.occasion_category[scored]
    n_c = pdata.categories.size
    count = np.bincount(cat, minlength=n_c).astype(float)
    total = np.bincount(cat, weights=extra, minlength=n_c)
    from scipy.special import gammaln

    const = -gammaln(extra + 1.0).sum()
    return (total * log_rate - count * exp(log_rate)).sum() + const


# --------------------------------------------------------------------------- the PyMC model


def coords(pdata: ProductData, n_classes: int, state: str = "last") -> dict:
    core = core_coefficients(state)
    return {
        "household": pdata.households,
        "category": pdata.categories,
        "item": np.arange(pdata.item_category.size),
        "coefficient": [*core, *ATTRIBUTES[: pdata.attributes.shape[1]]],
        "coefficient_other": [*core, *ATTRIBUTES[: pdata.attributes.shape[1]]],
        "core": list(core),
        "class": np.arange(n_classes),
    }


def free_items(pdata: ProductData) -> np.ndarray:
    """Indices of the items with a free intercept (all but each category's "other")."""
    mask = np.ones(pdata.item_category.size, dtype=bool)
    mask[pdata.reference_item] = False
    return np.flatnonzero(mask)


def build_model(pdata: ProductData, config: ProductConfig | None = None) -> pm.Model:
    """The PyMC model of the product stage (see the module docstring)."""
    config = config or ProductConfig()
    k, n_attr = config.n_classes, pdata.attributes.shape[1]
    d = n_coefficients(n_attr, config.state)
    xi = class_locations(k, d)
    free = free_items(pdata)
    with pm.Model(coords=coords(pdata, k, config.state)) as model:
        shift, scale = intercept_preconditioner(pdata)
        # started at the spread of the rough intercepts, not at the prior's scale
        sigma_t = pm.HalfNormal("sigma_item", config.intercept_sigma, initval=max(float(np.std(shift)), 0.1))
        rich = centred_categories(pdata, config.promo_centred_min_occasions)
        centre = 0.0
        if config.intercept_centre != "reference":
            centre = _category_centres(pdata, config, shift, rich["item_centre"])[pdata.item_category[free]]
        t_free = _free_intercepts(pdata, config, centre, sigma_t, shift, scale)
        t = pt.set_subtensor(pt.zeros(pdata.item_category.size)[free], t_free)
        mu_core = pm.Normal("mu", 0.0, config.coefficient_sigma, dims="core")
        mu = pt.concatenate([mu_core, pt.zeros(n_attr)])
        display_c = _pooled("display", pdata, config.promo_sigma, rich["display"])
        mailer_c = _pooled("mailer", pdata, config.promo_sigma, rich["mailer"])
        depth_c = _depth_deviations(config) if config.category_depth else pt.zeros(pdata.categories.size)
        log_rate = _pooled("log_extra_rate", pdata, config.extra_sigma, rich["log_extra_rate"], mean=-1.0)
        if config.coefficients == "household":
            theta = _household_coefficients(mu, config, d)
            pm.Potential("choice_loglik", household_choice_loglik_op(t, theta, display_c, mailer_c, depth_c,
                                                                     household_kernel_inputs(pdata)))
        else:
            if config.heterogeneity:
                sigma = pm.HalfNormal("sigma", config.scale_sigma, dims="coefficient")
            else:
                sigma = pt.zeros(d)
            theta = pm.Deterministic("theta", mu[None, :] + sigma[None, :] * xi, dims=("class", "coefficient"))
            pm.Potential("choice_loglik", choice_loglik_op(t, theta, display_c, mailer_c, depth_c, kernel_inputs(pdata)))
        pm.Potential("extra_items_loglik", extra_items_loglik(log_rate, pdata))
    return model


def _depth_deviations(config: ProductConfig):
    """``delta_c``: each category's depth response around the classes' discount coefficient (zero mean, pooled sd)."""
    # zero mean: the population mean of the discount response is mu["discount"] already
    tau = pm.HalfNormal("tau_depth", config.promo_sigma / 2)
    raw = pm.Normal("depth_raw", 0.0, 1.0, dims="category")
    return pm.Deterministic("depth", tau * raw, dims="category")


def _category_centres(pdata: ProductData, config: ProductConfig, shift: np.ndarray, rich: np.ndarray):
    """``(C,)`` centres of the free item intercepts: free per category, or pooled (centred where ``rich``)."""
    # started at each category's mean rough intercept
    start = _category_means(shift, pdata.item_category[free_items(pdata)], pdata.categories.size)
    if config.intercept_centre == "pooled":
        return _pooled("item_centre", pdata, config.centre_sigma, rich, start=start)
    return pm.Normal("item_centre", 0.0, config.centre_sigma, dims="category", initval=start)


def _household_coefficients(mu, config: ProductConfig, n_coef: int):
    """``(H, D)`` household coefficients ``mu + z_h L^T``, non-centred, with LKJ correlations (``coefficients = "household"``).

    Stored: ``sigma`` (the sds, as in the class form), ``correlation`` and
    ``theta_household`` (H x D: parameter-sized, not observation-sized).
    """
    chol, corr, sd = pm.LKJCholeskyCov("chol_household", n=n_coef, eta=config.lkj_eta,
                                       sd_dist=pm.HalfNormal.dist(config.scale_sigma, shape=n_coef),
                                       compute_corr=True)
    pm.Deterministic("sigma", sd, dims="coefficient")
    pm.Deterministic("correlation", corr, dims=("coefficient", "coefficient_other"))
    z = pm.Normal("z_household", 0.0, 1.0, dims=("household", "coefficient"))
    return pm.Deterministic("theta_household", mu[None, :] + z @ chol.T, dims=("household", "coefficient"))


def _free_intercepts(pdata: ProductData, config: ProductConfig, centre, sigma_t, shift, scale):
    """``(F,)`` free item intercepts ``t_j ~ N(centre_j, sigma_item)``: centred where bought often, else non-centred.

    Centred intercepts are sampled through :class:`Preconditioned` (free
    variable ``t_free``, or ``t_centred`` when some are non-centred); an item
    bought fewer than ``intercept_centred_min_purchases`` times is ``centre_j +
    sigma_item * z_t`` (free variable ``z_t``, started at its rough
    intercept's standardised value), and ``t_free`` is then the Deterministic
    of the whole vector (what the trace stores either way).
    """
    least = config.intercept_centred_min_purchases
    rich = item_purchases(pdata)[free_items(pdata)] >= least
    if rich.all():
        return pm.Normal("t_free", centre, sigma_t, shape=shift.size, transform=Preconditioned(shift, scale),
                         initval=shift)
    centre = pt.as_tensor(centre) * pt.ones(shift.size)
    on, off = np.flatnonzero(rich), np.flatnonzero(~rich)
    start = (shift[off] - _initial(centre[off])) / _initial(sigma_t)
    noncentred = centre[off] + sigma_t * pm.Normal("z_t", 0.0, 1.0, shape=off.size, initval=start)
    centred = None
    if on.size:
        centred = pm.Normal("t_centred", centre[on], sigma_t, shape=on.size,
                            transform=Preconditioned(shift[on], scale[on]), initval=shift[on])
    return pm.Deterministic("t_free", joined(rich, centred, noncentred))


def _initial(expr) -> np.ndarray:
    """The value of ``expr`` at the model's initial point (its free variables' ``initval``)."""
    model = pm.modelcontext(None)
    expr = model.replace_rvs_by_values([pt.as_tensor(expr)])[0]
    return model.compile_fn(expr, inputs=model.value_vars, on_unused_input="ignore")(model.initial_point())


def _category_means(values: np.ndarray, category: np.ndarray, n_categories: int) -> np.ndarray:
    """Mean of ``values`` per category (0 for a category without any)."""
    total = np.bincount(category, weights=values, minlength=n_categories)
    count = np.bincount(category, minlength=n_categories)
    return total / np.maximum(count, 1)


class Preconditioned(Transform):
    """The sampler sees ``(t - shift) / scale``: an exact affine change of variables (constant Jacobian).

    Item intercepts range from items bought thousands of times (posterior sd
    ~0.02) to items no household bought (sd ~1): in their own units NUTS
    starts with a step size set by the tightest and needs hundreds of
    leapfrog steps per draw until the mass matrix adapts. Rescaled by a
    rough data-based centre and spread, every coordinate starts near unit
    scale. The prior and the posterior are unchanged.
    """

    name = "preconditioned"
    ndim_supp = 0

    def __init__(self, shift: np.ndarray, scale: np.ndarray) -> None:
        self.shift = np.asarray(shift, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    def forward(self, value, *inputs):
        return (value - self.shift) / self.scale

    def backward(self, value, *inputs):
        return self.shift + self.scale * value

    def log_jac_det(self, value, *inputs):
        return pt.log(self.scale) + pt.zeros_like(value)


def item_purchases(pdata: ProductData) -> np.ndarray:
    """``(G,)`` times each item was chosen on a scored occasion (:func:`scored_occasions`)."""
    scored = np.zeros(pdata.n_occasions, dtype=bool)
    scored[scored_occasions(pdata)] = True
    return np.bincount(pdata.chosen_item[scored[pdata.chosen_occasion]], minlength=pdata.item_category.size)


def intercept_preconditioner(pdata: ProductData) -> tuple[np.ndarray, np.ndarray]:
    """Centre and spread of the free item intercepts from purchase counts (for :class:`Preconditioned`).

    ``log((n_j + 1/2) / (n_ref + 1/2))``, the item's log share against its
    category's reference item, and ``sqrt(1 / (n_j + 1) + 1 / (n_ref + 1))``,
    roughly the sd of that log ratio; ``n`` counts chosen items on scored
    occasions.
    """
    counts = item_purchases(pdata)
    reference = counts[pdata.reference_item][pdata.item_category]
    free = free_items(pdata)
    shift = np.log((counts[free] + 0.5) / (reference[free] + 0.5))
    scale = np.sqrt(1.0 / (counts[free] + 1.0) + 1.0 / (reference[free] + 1.0))
    return shift, scale


def informative_occasions(pdata: ProductData) -> dict[str, np.ndarray]:
    """``(C,)`` scored occasions per category that inform each pooled category vector.

    ``display`` / ``mailer``: the choice-scored occasions (:func:`scored_occasions`)
    in a category-week with at least one item of the category on display / in
    the mailer (elsewhere the effect does not enter the utilities);
    ``log_extra_rate``: every scored occasion (each one's set size counts);
    ``item_centre``: the choice-scored occasions (each compares the category's
    items with its reference).
    """
    n_c = pdata.categories.size
    occ = scored_occasions(pdata)
    category, week = pdata.occasion_category[occ], pdata.occasion_week[occ]
    out = {}
    for name, flags in (("display", pdata.display), ("mailer", pdata.mailer)):
        flagged = np.zeros((n_c, pdata.weeks.size), dtype=bool)
        np.logical_or.at(flagged, pdata.item_category, flags > 0)
        out[name] = np.bincount(category[flagged[category, week]], minlength=n_c)
    out["log_extra_rate"] = np.bincount(pdata.occasion_category[pdata.occasion_scored], minlength=n_c)
    out["item_centre"] = np.bincount(category, minlength=n_c)
    return out


def centred_categories(pdata: ProductData, least: int) -> dict[str, np.ndarray]:
    """``(C,)`` masks of the categories each pooled vector centres: at least ``least`` informative occasions (0: none)."""
    threshold = least or np.inf
    return {name: n >= threshold for name, n in informative_occasions(pdata).items()}


def _pooled(name: str, pdata: ProductData, scale: float, rich: np.ndarray, *, mean: float = 0.0,
            start: np.ndarray | None = None):
    """A category coefficient partially pooled: centred in the ``rich`` categories, non-centred elsewhere.

    With no rich category it is the non-centred form the shipped trace was
    fitted with (free variable ``{name}_raw``). ``start`` (optional, per
    category): initial values; the population mean starts at their mean.
    """
    mu = pm.Normal(f"mu_{name}", mean, scale, initval=None if start is None else float(np.mean(start)))
    tau = pm.HalfNormal(f"tau_{name}", scale / 2)
    if rich.any():
        return partially_centred(name, pt.repeat(mu, pdata.categories.size), tau, rich, pdata.categories, "category",
                                 start=start)
    raw = pm.Normal(f"{name}_raw", 0.0, 1.0, dims="category")
    return pm.Deterministic(name, mu + tau * raw, dims="category")


# --------------------------------------------------------------------------- row-level reference and sampler


def total_loglik(params: dict, pdata: ProductData) -> float:
    """The stage's log-likelihood from parameter values (numpy): what the model's potentials add up to."""
    v = class_utilities(params["t"], params["theta"], params["display"], params["mailer"], pdata, params.get("depth"))
    logp = occasion_log_probabilities(v, params["theta"], pdata)
    occasion_ll, order = occasion_class_loglik(logp, pdata)
    choice = household_loglik(occasion_ll, order, pdata, params["theta"].shape[0])
    return float(choice + extra_items_loglik(params["log_extra_rate"], pdata))


def brute_force_loglik(params: dict, pdata: ProductData) -> float:
    """Occasion by occasion, order by order (small data only): the reference the tests compare with."""
    theta = params["theta"]
    k = theta.shape[0]
    per = np.zeros((pdata.households.size, k))
    chosen = pd.Series(pdata.chosen_item).groupby(pdata.chosen_occasion).apply(list)
    last = pd.Series(pdata.last_item).groupby(pdata.last_occasion).apply(set)
    from scipy.special import gammaln

    lam_previous = previous_coefficient(theta, pdata.attributes.shape[1])
    extra_ll = 0.0
    for o in np.flatnonzero(pdata.occasion_scored):
        c, w, h = pdata.occasion_category[o], pdata.occasion_week[o], pdata.occasion_household[o]
        items = np.flatnonzero((pdata.item_category == c) & pdata.available[:, w])
        state = np.array([j in last.get(o, set()) for j in items], dtype=float)
        # the household's latest earlier occasion in the category
        earlier = np.flatnonzero((pdata.occasion_household == h) & (pdata.occasion_category == c)
                                 & (pdata.occasion_week < w))
        bought_before = set()
        if earlier.size:
            before = earlier[np.argmax(pdata.occasion_week[earlier])]
            bought_before = set(chosen[before])
        previous = np.array([j in bought_before for j in items], dtype=float)
        for kk in range(k):
            util = (np.array([_utility(params, pdata, kk, j, w) for j in items]) + theta[kk, 2] * state
                    + lam_previous[kk] * previous)
            p = np.exp(util - np.log(np.exp(util).sum()))
            pos = [int(np.flatnonzero(items == j)[0]) for j in chosen[o]]
            total = 0.0
            for perm in itertools.permutations(pos):
                prob, rest = 1.0, 1.0
                for j in perm:
                    prob *= p[j] / rest
                    rest -= p[j]
                total += prob
            per[h, kk] += np.log(total)
        mu = np.exp(params["log_extra_rate"][c])
        n = len(chosen[o]) - 1
        extra_ll += n * np.log(mu) - mu - gammaln(n + 1)
    top = per.max(axis=1)
    return float((top + np.log(np.exp(per - top[:, None]).sum(axis=1)) - np.log(k)).sum() + extra_ll)


def _utility(params, pdata, k, j, w):
    theta = params["theta"][k]
    c = pdata.item_category[j]
    return (
        params["t"][j]
        + theta[0] * pdata.price[j, w]
        + (theta[1] + promo_coefficients(params)[2][c]) * pdata.discount[j, w]
        + params["display"][c] * pdata.display[j, w]
        + params["mailer"][c] * pdata.mailer[j, w]
        + attribute_weights(theta, pdata.attributes.shape[1]) @ pdata.attributes[j]
    )


def simulate_occasions(
    params: dict,
    pdata: ProductData,
    household_class: np.ndarray,
    rng: np.random.Generator,
    *,
    state: str = "last",
    week_discount: np.ndarray | None = None,
) -> ProductData:
    """Forward sampler: new chosen items for every occasion of ``pdata`` (its households, categories, weeks).

    Occasions are visited in week order per household and category so that each
    one's state is the previous simulated purchase (``state="ever"`` or
    ``"both"``: every earlier one, as :func:`next_ever_state` keeps it, and
    with ``"both"`` the previous one's items also gain ``previous``); the number of items is
    ``1 + Poisson(exp(rho_c))`` (capped at the items on the shelf that week) and the items
    are the top m of utilities plus Gumbel noise (exactly sequential draws
    without replacement from the logit). ``household_class`` ``(H,)`` gives each
    household's class. ``week_discount`` ``(H, W)`` adds a household-week
    deviation to the discount coefficient (deal-hunting weeks, :mod:`deal`).
    Returns a copy of ``pdata`` with the simulated choices and states.
    """
    if state not in STATE_MEMORIES:
        raise ValueError(f"state must be one of {STATE_MEMORIES}, got {state!r}")
    theta = params["theta"]
    lam_previous = previous_coefficient(theta, pdata.attributes.shape[1])
    v = class_utilities(params["t"], theta, params["display"], params["mailer"], pdata, params.get("depth"))
    starts = pdata.category_start
    sizes = pdata.category_items
    on_shelf = pdata.available_items
    order = np.lexsort((pdata.occasion_week, pdata.occasion_category, pdata.occasion_household))
    last: dict[tuple[int, int], np.ndarray] = {}
    bought: dict[tuple[int, int], np.ndarray] = {}  # the previous occasion's items
    chosen_rows: list[np.ndarray] = []
    last_rows: list[tuple[int, np.ndarray]] = []
    for o in order:
        h, c, w = pdata.occasion_household[o], pdata.occasion_category[o], pdata.occasion_week[o]
        k = household_class[h]
        items = np.arange(starts[c], starts[c] + sizes[c])
        util = v[k, items, w].copy()
        if week_discount is not None:
            util += week_discount[h, w] * pdata.discount[items, w]
        previous = last.get((h, c))  # "ever": most recent first
        if previous is not None:
            util[previous - starts[c]] += theta[k, 2]
            util[bought[(h, c)] - starts[c]] += lam_previous[k]
            last_rows.append((o, np.sort(previous)))
        m = min(1 + rng.poisson(np.exp(params["log_extra_rate"][c])), int(on_shelf[c, w]))
        pick = np.sort(items[np.argsort(-(util + rng.gumbel(size=util.size)))[:m]])
        chosen_rows.append((o, pick))
        bought[(h, c)] = pick
        last[(h, c)] = pick if state == "last" else next_ever_state(previous, pick)
    chosen_rows.sort(key=lambda r: r[0])
    last_rows.sort(key=lambda r: r[0])
    return _with_choices(pdata, chosen_rows, last_rows)


def set_statistics(pdata: ProductData) -> dict[str, float]:
    """Over the scored occasions: the share whose set holds the category's reference item, and the mean set size.

    The reference item is the one the intercept prior centres on under
    ``intercept_centre = "reference"`` (a category's "other" where it has
    one): its share is what that prior was seen to bias (docs/models/product.md).
    """
    occ = np.flatnonzero(pdata.occasion_scored)
    holds = np.zeros(pdata.n_occasions, dtype=bool)
    holds[pdata.chosen_occasion[np.isin(pdata.chosen_item, pdata.reference_item)]] = True
    return {"reference_share": float(holds[occ].mean()) if occ.size else float("nan"),
            "mean_items": float(pdata.set_size[occ].mean()) if occ.size else float("nan")}


def posterior_predictive(
    pdata: ProductData, posterior, *, draws: int, rng: np.random.Generator, state: str = "last"
) -> pd.DataFrame:
    """:func:`set_statistics` of ``draws`` replays of ``pdata``'s occasions, one per evenly spaced posterior draw.

    Each replay draws every household's class from its class-membership
    posterior at that draw and runs :func:`simulate_occasions` (its own
    states, not the observed ones), so it checks what the simulator will do.
    """
    inputs = kernel_inputs(pdata)
    rows = []
    for params in evenly_spaced_params(posterior, pdata, draws):
        membership = class_membership(params, pdata, inputs=inputs)
        cum = membership.cumsum(axis=1)
        classes = np.minimum((cum < rng.random((cum.shape[0], 1)) * cum[:, -1:]).sum(axis=1), cum.shape[1] - 1)
        rows.append(set_statistics(simulate_occasions(params, pdata, classes, rng, state=state,
                                                      week_discount=week_deviations(params, pdata, rng))))
    return pd.DataFrame(rows)


def week_deviations(params: dict, pdata: ProductData, rng: np.random.Generator) -> np.ndarray | None:
    """``(H, W)`` deal-hunting week deviations drawn on the fitted grid (:mod:`deal`), or ``None`` without them."""
    sd, points = params.get("deal_week_sd", 0.0), params.get("deal_week_points", 0)
    if not sd or points < 2:
        return None
    return sd * deal.grid_locations(points)[rng.integers(0, points, (pdata.households.size, pdata.price.shape[1]))]


#: Variables a prior (or posterior) draw needs for :func:`posterior_params`.
PARAMETER_NAMES = ("t_free", "theta", "display", "mailer", "log_extra_rate")


def prior_predictive(pdata: ProductData, config: ProductConfig | None = None, *, draws: int = 10,
                     seed: int = 0) -> pd.DataFrame:
    """Prior predictive check: :func:`set_statistics` of ``pdata``'s occasions replayed under prior draws.

    Each draw takes the model's parameters from the prior, gives every
    household a class uniformly at random (the prior class weights; with
    household coefficients, its own) and runs
    :func:`simulate_occasions` over the data's occasions, so it shows which
    reference-item shares and set sizes the priors allow before the data
    are seen.
    """
    import warnings

    config = config or ProductConfig()
    rng = np.random.default_rng(seed)
    household = config.coefficients == "household"
    names = [("theta_household" if household and name == "theta" else name) for name in PARAMETER_NAMES]
    names += ["depth"] if config.category_depth else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, model=build_model(pdata, config), var_names=names,
                                           random_seed=rng).prior
    rows = []
    for k in range(draws):
        params = posterior_params(prior, pdata, 0, k)
        classes = (np.arange(pdata.households.size) if household
                   else rng.integers(config.n_classes, size=pdata.households.size))
        rows.append(set_statistics(simulate_occasions(params, pdata, classes, rng, state=config.state)))
    return pd.DataFrame(rows)


def _with_choices(pdata, chosen_rows, last_rows) -> ProductData:
    def flat(rows):
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        occ = np.concatenate([np.full(len(items), o) for o, items in rows]).astype(np.int64)
        return occ, np.concatenate([items for _, items in rows]).astype(np.int64)

    chosen_occasion, chosen_item = flat(chosen_rows)
    last_occasion, last_item = flat(last_rows)
    return dataclasses.replace(
        pdata, chosen_occasion=chosen_occasion, chosen_item=chosen_item, last_occasion=last_occasion, last_item=last_item
    )


def next_ever_state(state: np.ndarray | None, bought: np.ndarray, max_items: int = EVER_STATE_ITEMS) -> np.ndarray:
    """An ``"ever"`` state after an occasion: ``bought`` (by item index), then the earlier state's other items.

    ``state`` is ordered most recent first; the result keeps the first
    ``max_items`` (the simulator's kernel keeps the same ones).
    """
    bought = np.sort(np.asarray(bought, dtype=np.int64))
    if state is None:
        return bought[:max_items]
    return np.concatenate([bought, state[~np.isin(state, bought)]])[:max_items]


def state_pairs(
    occasion_household, occasion_category, occasion_week, chosen_occasion, chosen_item, *, state: str = "last"
) -> tuple[np.ndarray, np.ndarray]:
    """State pairs ``(occasion, item)`` sorted by occasion and item, for either state memory.

    ``chosen_occasion`` must be sorted. ``"last"``: :func:`last_items_from_choices`;
    ``"ever"`` and ``"both"``: the items of every earlier occasion of the
    household in the category, the :data:`EVER_STATE_ITEMS` most recent
    distinct ones (which of them the previous occasion bought is
    :attr:`ProductData.last_is_previous`).
    """
    if state not in STATE_MEMORIES:
        raise ValueError(f"state must be one of {STATE_MEMORIES}, got {state!r}")
    if state == "last":
        return last_items_from_choices(occasion_household, occasion_category, occasion_week, chosen_occasion, chosen_item)
    household, category = (np.asarray(x, dtype=np.int64) for x in (occasion_household, occasion_category))
    bounds = np.searchsorted(chosen_occasion, np.arange(household.size + 1))
    order = np.lexsort((occasion_week, category, household))
    args = (order, household, category, bounds, np.asarray(chosen_item, dtype=np.int64), EVER_STATE_ITEMS)
    occ = np.empty(_ever_state_pairs(*args, np.empty(0, np.int64), np.empty(0, np.int64)), dtype=np.int64)
    item = np.empty_like(occ)
    _ever_state_pairs(*args, occ, item)
    by_occasion = np.lexsort((item, occ))
    return occ[by_occasion], item[by_occasion]


@numba.njit(cache=True)
def _ever_state_pairs(order, household, category, bounds, chosen_item, max_items, out_occasion, out_item):
    """:func:`ever_state_step` along each household-category's occasions; fills the outputs when they are
    large enough, and returns the number of pairs (call once with empty outputs to size them)."""
    write = out_occasion.size > 0
    current = np.empty(max_items, np.int64)
    following = np.empty(max_items, np.int64)
    n_current, n_pairs = 0, 0
    for idx in range(order.size):
        o = order[idx]
        if idx == 0 or household[o] != household[order[idx - 1]] or category[o] != category[order[idx - 1]]:
            n_current = 0
        if write:
            out_occasion[n_pairs:n_pairs + n_current] = o
            out_item[n_pairs:n_pairs + n_current] = current[:n_current]
        n_pairs += n_current
        n_current = ever_state_step(current, n_current, chosen_item[bounds[o]:bounds[o + 1]], following)
        current, following = following, current
    return n_pairs


def last_items_from_choices(
    occasion_household, occasion_category, occasion_week, chosen_occasion, chosen_item
) -> tuple[np.ndarray, np.ndarray]:
    """State pairs: for each occasion, the items of the same household's previous occasion in the category."""
    occ = pd.DataFrame({"h": occasion_household, "c": occasion_category, "w": occasion_week})
    occ["o"] = np.arange(len(occ))
    occ = occ.sort_values(["h", "c", "w"])
    same = (occ["h"].to_numpy()[1:] == occ["h"].to_numpy()[:-1]) & (occ["c"].to_numpy()[1:] == occ["c"].to_numpy()[:-1])
    previous = pd.Series(-1, index=occ["o"].to_numpy())
    previous.iloc[1:] = np.where(same, occ["o"].to_numpy()[:-1], -1)
    prev_of = previous.sort_index().to_numpy()
    pairs = pd.DataFrame({"prev": chosen_occasion, "item": chosen_item})
    targets = pd.DataFrame({"o": np.flatnonzero(prev_of >= 0), "prev": prev_of[prev_of >= 0]})
    merged = targets.merge(pairs, on="prev").sort_values(["o", "item"])
    return merged["o"].to_numpy(np.int64), merged["item"].to_numpy(np.int64)


# --------------------------------------------------------------------------- simulation studies


def draw_parameters(
    pdata: ProductData,
    rng: np.random.Generator,
    *,
    n_classes: int = 8,
    mu: tuple[float, ...] = (-2.0, 2.0, 0.0),
    sigma: tuple[float, ...] | None = None,
    intercept_sd: float = 1.0,
    intercept_mean: float = 0.0,
    display: float = 0.5,
    mailer: float = 0.3,
    log_extra_rate: float = -1.2,
    depth: np.ndarray | None = None,
) -> dict:
    """Parameter values of the stage's form for simulation studies (``mu`` = price, discount, state, and with
    four entries the ``"both"`` memory's previous-occasion coefficient).

    Free item intercepts are ``N(intercept_mean, intercept_sd)``; the reference items' are 0. ``depth``
    ``(C,)``: the categories' depth responses (left out: none).
    """
    n_attr = pdata.attributes.shape[1]
    if len(mu) not in (3, 4):
        raise ValueError(f"mu must hold 3 or 4 core coefficients, got {len(mu)}")
    d = len(mu) + n_attr
    sig = np.full(d, 0.5) if sigma is None else np.asarray(sigma, float)
    xi = class_locations(n_classes, d)
    theta = np.concatenate([np.asarray(mu, float), np.zeros(n_attr)])[None, :] + sig[None, :] * xi
    t = rng.normal(intercept_mean, intercept_sd, pdata.item_category.size)
    t[pdata.reference_item] = 0.0
    n_c = pdata.categories.size
    return {
        "t": t,
        "theta": theta,
        "display": np.full(n_c, display),
        "mailer": np.full(n_c, mailer),
        "log_extra_rate": np.full(n_c, log_extra_rate),
        "mu": np.asarray(mu, float),
        "sigma": sig,
        **({} if depth is None else {"depth": np.asarray(depth, float)}),
    }


def synthetic_design(
    rng: np.random.Generator,
    *,
    n_households: int = 60,
    n_categories: int = 3,
    items_per_category: int = 6,
    n_weeks: int = 20,
    occasion_rate: float = 0.5,
    burn_in_weeks: int = 4,
    n_attributes: int = 2,
    off_shelf: float = 0.0,
) -> ProductData:
    """A random item panel and occasion grid (chosen items are placeholders: fill with :func:`simulate_occasions`).

    ``off_shelf``: the share of non-reference items on the shelf only from a
    random first week to a random last week (the rest: every week).
    """
    n_c, n_w = n_categories, n_weeks
    item_category = np.repeat(np.arange(n_c), items_per_category)
    g = item_category.size
    other = np.cumsum(np.full(n_c, items_per_category)) - 1
    price = rng.normal(0, 0.1, (g, n_w))
    depth = np.where(rng.random((g, n_w)) < 0.25, rng.uniform(0.1, 0.5, (g, n_w)), 0.0)
    display = (rng.random((g, n_w)) < 0.15).astype(float)
    mailer = (rng.random((g, n_w)) < 0.15).astype(float)
    attributes = rng.normal(0, 1, (g, n_attributes))
    for grid in (price, display, mailer, attributes):
        grid[other] = 0.0
    discount = np.log1p(-depth)
    discount[other] = 0.0
    h, c, w = np.nonzero(rng.random((n_households, n_c, n_w)) < occasion_rate)
    order = np.lexsort((w, c, h))
    h, c, w = h[order], c[order], w[order]
    first = other[c] - (items_per_category - 1)  # placeholder: the category's first item
    available = None
    if off_shelf > 0:
        start = rng.integers(0, n_w, g)
        end = start + (rng.random(g) * (n_w - start)).astype(np.int64)
        span = (np.arange(n_w)[None, :] >= start[:, None]) & (np.arange(n_w)[None, :] <= end[:, None])
        available = np.where((rng.random(g) < off_shelf)[:, None], span, True)
        available[other] = True
        first = other[c]  # the placeholder must be on the shelf
    return ProductData(
        households=np.arange(n_households),
        categories=np.arange(n_c),
        weeks=np.arange(n_w),
        item_category=item_category,
        price=price,
        discount=discount,
        display=display,
        mailer=mailer,
        attributes=attributes,
        occasion_household=h,
        occasion_category=c,
        occasion_week=w,
        occasion_scored=w >= burn_in_weeks,
        chosen_occasion=np.arange(h.size),
        chosen_item=first,
        last_occasion=np.zeros(0, np.int64),
        last_item=np.zeros(0, np.int64),
        available=available,
    )


# --------------------------------------------------------------------------- real data


def parse_pack_size(text) -> float:
    """Package size in a common unit (ounces for weight, counts as given); NaN when unreadable."""
    if not isinstance(text, str):
        return float("nan")
    match = re.search(r"(\d+(?:\.\d+)?)\s*(LB|OZ|FZ|CT|GAL|QT|PK|L|ML|G)?", text.upper())
    if match is None:
        return float("nan")
    value = float(match.group(1))
    factor = {"LB": 16.0, "GAL": 128.0, "QT": 32.0, "L": 33.8, "ML": 0.0338, "G": 0.0353}.get(match.group(2) or "", 1.0)
    return value * factor if value > 0 else float("nan")


def build_product_data(
    data, depth: np.ndarray, config: ProductConfig | None = None, *, households=None
) -> ProductData:
    """Product-stage data from a :class:`~bayes_retail.data.RetailData` and one completed depth panel.

    ``depth`` is ``(W, N)`` in the order of
    ``PricingPanel.from_product_weeks(data.product_weeks)`` (observed depths plus
    one imputation of the pricing stage, e.g. ``load_imputations(...)[m]``).
    Items of each category: its choice-set products by rank, then its "other"
    item when it has tail products. Households follow ``data.households``;
    ``households`` (ids) keeps only those (every item keeps its index).
    """
    from bayes_retail.pricing.model import PricingPanel

    config = config or ProductConfig()
    panel = PricingPanel.from_product_weeks(data.product_weeks)
    if depth.shape != panel.depth.shape:
        raise ValueError(f"depth must have the pricing panel's shape {panel.depth.shape}, got {depth.shape}")
    if np.isnan(depth).any():
        raise ValueError("depth has missing values: pass a completed panel (observed plus one imputation)")
    items = item_table(data.choice_sets)
    n_w = panel.weeks.size
    g = len(items)
    column = pd.Series(np.arange(len(panel.products)), index=panel.products["product_id"].to_numpy())
    real = items["product_id"].notna().to_numpy()
    cols = column.reindex(items.loc[real, "product_id"].astype(np.int64)).to_numpy(dtype=float)
    if np.isnan(cols).any():
        raise ValueError("a choice-set product is missing from product_weeks")
    cols = cols.astype(np.int64)

    def grid(values):
        out = np.zeros((g, n_w))
        out[real] = values[:, cols].T
        return out

    log_shelf = np.log(panel.shelf)
    price = grid(log_shelf - log_shelf.mean(axis=0))
    discount = grid(np.log1p(-np.clip(depth, 0.0, 0.99)))
    display = grid(panel.display.astype(float))
    mailer = grid(panel.mailer.astype(float))
    frequency = deal_frequency(data.product_weeks, items) if config.deal_frequency else None
    attributes = _item_attributes(items, data.products, grid(log_shelf).mean(axis=1), real, frequency)
    available = None
    if config.availability == "span":
        available = item_availability(items, availability_span(data.product_weeks), panel.weeks)
    return _occasions(data, items, panel.weeks, config.burn_in_weeks, config.state, households, dict(
        item_category=items["category_id"].to_numpy(np.int64),
        price=price, discount=discount, display=display, mailer=mailer, attributes=attributes, available=available,
    ))


def availability_span(product_weeks: pd.DataFrame) -> pd.DataFrame:
    """Per choice-set product: ``first_week`` and ``last_week`` it is sold (a line) or on display or in the mailer.

    The data say nothing of the shelf in other weeks; a product absent from
    both ends of the year is taken as not stocked there. Indexed by ``product_id``.
    """
    def flag(name):
        return product_weeks[name].fillna(False).astype(bool)

    seen = product_weeks["lines"].gt(0) | flag("display") | flag("mailer")
    return product_weeks.loc[seen].groupby("product_id")["week"].agg(first_week="min", last_week="max")


def item_availability(items: pd.DataFrame, span: pd.DataFrame, weeks: np.ndarray) -> np.ndarray:
    """``(G, W)`` availability of the :func:`item_table` items over ``weeks``: each real item within its span.

    "Other" items and each category's reference item (its last) are available every week.
    """
    real = items["product_id"].notna().to_numpy()
    ids = items.loc[real, "product_id"].astype(np.int64)
    first = span["first_week"].reindex(ids).to_numpy(dtype=float)
    last = span["last_week"].reindex(ids).to_numpy(dtype=float)
    available = np.ones((len(items), weeks.size), dtype=bool)
    # a product the span table lacks (never seen) keeps the whole year rather than an empty choice set
    inside = (weeks[None, :] >= first[:, None]) & (weeks[None, :] <= last[:, None])
    available[real] = np.where(np.isnan(first)[:, None], True, inside)
    cat = items["category_id"].to_numpy()
    reference = np.flatnonzero(np.r_[cat[1:] != cat[:-1], True])
    available[reference] = True
    return available


def item_table(choice_sets: pd.DataFrame) -> pd.DataFrame:
    """One row per item: category, item index within it, product id (NaN for "other"), global index ``g``.

    The item space shared by the product and quantity stages (and the simulator).
    """
    top = choice_sets.loc[~choice_sets["is_other"], ["category_id", "item", "product_id"]]
    tail = choice_sets.loc[choice_sets["is_other"]].drop_duplicates("category_id")[["category_id", "item"]]
    items = pd.concat([top, tail.assign(product_id=np.nan)], ignore_index=True)
    items = items.sort_values(["category_id", "item"], ignore_index=True)
    items["g"] = np.arange(len(items))
    return items


def deal_frequency(product_weeks: pd.DataFrame, items: pd.DataFrame) -> np.ndarray:
    """``(G,)`` each choice-set item's share of purchase weeks at a discount; 0 for "other".

    A week counts as discounted when its depth exceeds :data:`DEAL_DEPTH`.
    Only weeks with a purchase show a depth (``product_weeks``' rule), so the
    share is over those, shrunk toward the category's share by
    :data:`DEAL_FREQUENCY_PRIOR_WEEKS` pseudo-weeks (an item bought once is
    not "always discounted"); an item never bought gets its category's share.
    """
    seen = product_weeks.loc[product_weeks["lines"].gt(0) & product_weeks["depth"].notna()]
    weeks = seen.groupby("product_id").size()
    deals = seen["depth"].gt(DEAL_DEPTH).groupby(seen["product_id"]).sum()
    category = seen.groupby("product_id")["category_id"].first()
    rate = deals.groupby(category).sum() / weeks.groupby(category).sum()
    real = items["product_id"].notna().to_numpy()
    ids = items.loc[real, "product_id"].astype(np.int64)
    prior = rate.reindex(items.loc[real, "category_id"]).fillna(0.0).to_numpy()
    n = weeks.reindex(ids).fillna(0).to_numpy(float)
    k = deals.reindex(ids).fillna(0).to_numpy(float)
    out = np.zeros(len(items))
    out[real] = (k + DEAL_FREQUENCY_PRIOR_WEEKS * prior) / (n + DEAL_FREQUENCY_PRIOR_WEEKS)
    return out


def _item_attributes(items, products, mean_log_shelf, real, frequency=None) -> np.ndarray:
    """``(G, 3)``: national brand (0/1), pack size and price tier (z-scores within the category); 0 for "other".

    With ``frequency`` (:func:`deal_frequency`) a fourth column: its z-score within the category.
    """
    info = products.set_index("product_id")
    ids = items.loc[real, "product_id"].astype(np.int64)
    national = np.zeros(len(items))
    national[real] = (info["brand"].reindex(ids).to_numpy() == "National").astype(float)
    size = np.full(len(items), np.nan)
    if "package_size" in info.columns:
        size[real] = np.log([parse_pack_size(x) for x in info["package_size"].reindex(ids)])
    tier = np.where(real, mean_log_shelf, np.nan)
    cat = items["category_id"].to_numpy()

    def zscore(x):
        frame = pd.Series(x).groupby(cat)
        z = (x - frame.transform("mean").to_numpy()) / frame.transform("std").replace(0, np.nan).to_numpy()
        return np.nan_to_num(z, nan=0.0)

    columns = [national, zscore(size), zscore(tier)]
    if frequency is not None:
        columns.append(np.where(real, zscore(np.where(real, frequency, np.nan)), 0.0))
    return np.column_stack(columns)


def _occasions(data, items, weeks, burn_in_weeks, state, selected, item_fields) -> ProductData:
    ch = data.choices
    households = data.households["household_id"].to_numpy()
    if selected is not None:
        unknown = np.setdiff1d(selected, households)
        if unknown.size:
            raise ValueError(f"unknown household ids: {unknown[:5].tolist()}")
        households = households[np.isin(households, selected)]
        ch = ch.loc[ch["household_id"].isin(households)]
    key = items.loc[items["product_id"].isna(), ["category_id", "g"]].set_index("category_id")["g"]
    top = items.dropna(subset=["product_id"]).astype({"product_id": np.int64}).set_index("product_id")["g"]
    g = ch["product_id"].map(top)
    g = g.fillna(ch["category_id"].map(key)).to_numpy(np.int64)
    frame = pd.DataFrame(
        {
            "h": pd.Index(households).get_indexer(ch["household_id"]),
            "c": ch["category_id"].to_numpy(np.int64),
            "w": np.searchsorted(weeks, ch["week"].to_numpy()),
            "g": g,
        }
    ).drop_duplicates().sort_values(["h", "c", "w", "g"], ignore_index=True)
    occ = frame.groupby(["h", "c", "w"], sort=False).ngroup().to_numpy()
    first = np.flatnonzero(np.r_[True, occ[1:] != occ[:-1]])
    oh, oc, ow = (frame[col].to_numpy()[first] for col in ("h", "c", "w"))
    last_occasion, last_item = state_pairs(oh, oc, ow, occ, frame["g"].to_numpy(), state=state)
    return ProductData(
        households=households,
        categories=np.arange(len(data.categories)),
        weeks=np.asarray(weeks),
        occasion_household=oh,
        occasion_category=oc,
        occasion_week=ow,
        occasion_scored=ow >= burn_in_weeks,
        chosen_occasion=occ.astype(np.int64),
        chosen_item=frame["g"].to_numpy(np.int64),
        last_occasion=last_occasion,
        last_item=last_item,
        **item_fields,
    )
