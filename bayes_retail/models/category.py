"""Stage 2: category purchase given a visit, complementary log-log with a trips offset (DESIGN.md §2).

A household that makes ``n_hw`` trips in week ``w`` buys in category ``c`` on
each trip as a Poisson process of rate ``exp(eta_hcw)``, so over the week

    P(y_hcw = 1) = 1 - exp(-n_hw * exp(eta_hcw))
    eta_hcw = b_c + u_h + f_h . l_c + s_w + d_cw

- ``b_c`` category intercepts; ``u_h`` the household's overall category
  propensity (centred: ~50 weeks x ~300 categories per household);
- ``f_h . l_c`` a rank-R household x category preference (household x category
  intercepts are not identified: median 2 purchase weeks per pair); ``f_h ~
  N(0, I)`` and the loadings ``l_c`` carry the scale. Each loading column sums
  to zero over categories (otherwise a factor with constant loadings is the
  household level ``u_h`` again: measured, u and the loadings did not mix).
  Rotations of (f, l) leave the likelihood unchanged, so the loading matrix is
  lower triangular; its diagonal is either constrained positive
  (``loading_signs = "positive_diagonal"``, the usual identification of factor
  models) or sampled on the whole line and each draw's column signs folded
  afterwards (``"folded"``, :func:`fold_loading_signs`). The rotation-free
  quantity is the category covariance ``L L^T``, which is what a user should read;
- ``s_w`` a ZeroSumNormal global week effect, ``d_cw`` category deviations
  (zero-sum over weeks per category) partially pooled with scale
  ``sigma_season``: seasonal indices pooled toward the global week effect.
  With ``season_scales = "category"`` each category has its own scale
  ``sigma_c = sigma_season * exp(tau_season * z_c)``, ``z_c ~ N(0, 1)``: one
  common scale shrank the seasonal categories (Easter, Halloween) to a flat
  year, because the many categories without a season set it near 0.12.

- with ``category_value = true``, ``+ k_c * CV_{z_h c w}``: the category value
  (the log-sum-exp of the product stage's utilities, centred over weeks) of
  the household's latent class ``z_h`` in week w, ``k_c`` partially pooled.
  Because the value varies by class rather than by household, the dense sum
  below splits into one matrix product per class and stays exact. The values
  and classes come from one posterior draw of the product stage (a cut
  posterior: the category stage does not feed back into the product stage).

- with ``household_week_effect = true``, ``+ e_hw``, ``e_hw ~ N(0,
  sigma_household_week)`` for every visited household-week (non-centred;
  centred with ``household_week_centred = true``): a
  shock shared by all categories of one week's shopping ("big shop" against
  "top-up" weeks), which the other terms cannot make (they vary by household,
  by week or by category-week, never by household-week). Its draws are left
  out of the trace; the simulator draws new shocks from the fitted sd.
  With ``shock_loadings = true`` category c takes the shock as
  ``lambda_c e_hw``, ``log lambda_c = tau_shock_loading z_c`` (zero-sum over
  categories, so ``sigma_household_week`` is the shock's sd at the loadings'
  geometric mean): some categories ride on a big week more than others.
  With ``shock_loading_groups = G`` the categories share G loadings, one per
  group of categories with alike observed week-size slopes
  (:func:`week_size_groups`, a pilot of the data like the anchor order): the
  dense sum is then one matrix product G times as wide instead of an
  ``(H, C, W)`` tensor. With ``shock_loading_pilot = true`` the G loadings
  are not sampled but fixed at the pilot's values
  (:func:`pilot_group_loadings`: a plug-in, approximate).

- with ``trips_elasticity = true``, the exposure ``n_hw`` becomes
  ``n_hw^gamma`` (``gamma`` estimated, prior ``N(1, trips_elasticity_sigma)``;
  ``gamma = 1`` is the offset above): a week's later trips are top-ups that add
  fewer categories than the first (real categories per visited week on the
  embedded data: 9.6, 14.8, 18.9, 20.9 with 1-4 trips, about ``n^0.6``). With
  ``gamma`` fixed at 1 the household-week shock absorbed that curvature as
  spread. ``n^gamma exp(eta) = n exp(eta + (gamma - 1) log n)``, so it is one
  more per-cell offset.

Exact aggregation (the cloglog factorisation): the log-likelihood is

    sum over purchased cells of [log(1 - exp(-r_hcw)) + r_hcw]  -  sum over all visited (h, c, w) of r_hcw,
    r_hcw = n_hw exp(eta_hcw),

and the second sum is ``sum_hw n_hw exp(u_h + s_w) sum_c exp(f_h . l_c) exp(b_c + d_cw)``:
one dense (H x C) @ (C x W) product, so only purchased cells are touched one
by one. Tested equal to the row-level Bernoulli log-likelihood.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from bayes_retail.config import week_mask
from bayes_retail.models._kernels import cloglog_cells_loglik_op
from bayes_retail.models.artifacts import evenly_spaced

STAGE = "category"
MODEL_VERSION = 1
#: How the sign of each preference factor is identified (:class:`CategoryConfig`).
LOADING_SIGNS = ("positive_diagonal", "folded")
#: Forms of the seasonal deviations' scale: one for every category, or one per category (log-normal, pooled).
SEASON_SCALES = ("common", "category")


@dataclass(frozen=True)
class CategoryConfig:
    """The ``[category]`` section of a configuration.

    Attributes
    ----------
    rank
        Number of household x category preference factors (2-3 in DESIGN.md §2;
        0 = none, an ablation without co-purchase structure that also fits
        data with very few categories).
    intercept_sigma, household_sigma, loading_sigma, week_sigma, season_sigma
        Prior scales: category intercepts (around ``intercept_mean``), the household
        propensity sd, the loadings, the global week-effect sd, the category
        seasonal-deviation sd.
    intercept_mean
        Prior mean of the category intercepts (log purchases per trip).
    season_centred
        Centred (True) or non-centred category-week deviations ``d``. Measured
        on 300 households (docs/models/category.md): centred gave BFMI 0.05 and
        ``sigma_season`` an ESS of 62 in 4 x 1000 draws.
    season_scales
        ``"common"``: one scale ``sigma_season`` for every category's
        deviations. ``"category"``: a scale per category, log-normal around
        ``sigma_season`` with sd ``tau_season`` (non-centred, so it needs
        ``season_centred = false``); ``season_scale`` in the trace.
    season_scale_sigma
        Prior scale of ``tau_season`` (HalfNormal).
    households
        Fit on this many households drawn at random with the fit's seed (0 =
        all). The same seed and size draw the same households as the product
        stage's ``households``, so both stages' posteriors describe one panel.
    loading_signs
        ``"positive_diagonal"``: the anchors' loadings are HalfNormal. A chain
        that starts in the mirror orientation of a factor cannot flip the whole
        column, so it presses the anchor's loading against 0 (a false mode:
        measured on 300 households, the diagonal loading's chains disagreed,
        R-hat 1.55-1.63). ``"folded"``: the anchors' loadings are Normal, the
        posterior then has 2^rank mirror modes of equal mass, and after sampling
        each draw's factor k (its loadings and every household's score) is
        multiplied by the sign of its loadings' projection on a data-based
        direction (:func:`pilot_directions`). That map picks one mirror image
        per draw, so the folded draws are draws of the sign-identified posterior
        whichever mode each chain visited.
    category_value
        Add ``k_c * CV_{z_h c w}``: the category value of the household's class
        in that week (the product stage's log-sum-exp, :attr:`CategoryData.value`),
        with ``k_c`` partially pooled (non-centred) under ``mu_value`` and
        ``tau_value``. Off: ``k_c = 0``.
    value_sigma
        Prior sd of ``mu_value`` (and twice the prior scale of ``tau_value``).
    value_draws
        With ``category_value``: how many product-stage posterior draws the
        cut posterior pools, one group of chains each (``[sampler] chains``
        must be a multiple; :mod:`~bayes_retail.models.imputation`). 1 (the
        form the shipped trace was fitted with) conditions on one draw, and
        its intervals ignore the product stage's uncertainty.
    household_week_effect
        Add ``e_hw ~ N(0, sigma_household_week)`` per visited household-week
        (non-centred), shared by every category of that week.
    household_week_sigma
        Prior scale of ``sigma_household_week`` (HalfNormal).
    household_week_centred
        Sample the shocks centred, ``e_hw ~ N(0, sigma_household_week)``,
        instead of ``sigma_household_week * N(0, 1)``: each shock is informed
        by every category of its week, which favours the centred form when
        the loadings make the week's categories disagree about it.
    shock_loadings
        With ``household_week_effect``: category c takes the week's shock as
        ``lambda_c e_hw``, log-loadings zero-sum over categories with sd
        ``tau_shock_loading`` (non-centred); ``shock_loading`` in the trace.
        The dense sum then no longer factorises into a matrix product: an
        ``(H, C, W)`` tensor per gradient.
    shock_loading_sigma
        Prior scale of ``tau_shock_loading`` (HalfNormal).
    shock_loading_groups
        With ``shock_loadings``: 0 gives every category its own loading; G >= 2
        gives G loadings, one per group of categories cut at quantiles of their
        observed week-size slope (:func:`week_size_groups`), log-loadings
        zero-sum over groups. The dense sum is one matrix product G times as
        wide as the shared shock's, not a tensor. The grouping reads the data
        it is fitted to (a pilot, approximate: the intervals do not carry the
        grouping's uncertainty).
    shock_loading_pilot
        With ``shock_loading_groups``: fix the group loadings at the pilot's
        values (:func:`pilot_group_loadings`) instead of sampling them. A
        plug-in, approximate: the intervals of everything else condition on
        loadings read off the data. Neither this nor the sampled loadings
        finished warmup on the ``default`` households (docs/models/category.md).
    trips_elasticity
        Estimate ``gamma`` in the exposure ``n_hw^gamma`` (off: ``gamma = 1``,
        the plain ``log(trips)`` offset).
    trips_elasticity_sigma
        Prior sd of ``gamma`` around 1.
    """

    rank: int = 2
    intercept_mean: float = -4.0
    intercept_sigma: float = 2.0
    household_sigma: float = 1.0
    loading_sigma: float = 1.0
    week_sigma: float = 0.5
    season_sigma: float = 0.3
    season_centred: bool = True
    season_scales: str = "common"
    season_scale_sigma: float = 1.0
    households: int = 0
    loading_signs: str = "positive_diagonal"
    category_value: bool = False
    value_sigma: float = 1.0
    value_draws: int = 1
    household_week_effect: bool = False
    household_week_sigma: float = 1.0
    household_week_centred: bool = False
    shock_loadings: bool = False
    shock_loading_sigma: float = 0.5
    shock_loading_groups: int = 0
    shock_loading_pilot: bool = False
    trips_elasticity: bool = False
    trips_elasticity_sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.loading_signs not in LOADING_SIGNS:
            raise ValueError(f"loading_signs must be one of {', '.join(LOADING_SIGNS)}, got {self.loading_signs!r}")
        for name in ("rank", "households", "shock_loading_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.season_scales not in SEASON_SCALES:
            raise ValueError(f"season_scales must be one of {', '.join(SEASON_SCALES)}, got {self.season_scales!r}")
        if self.season_scales == "category" and self.season_centred:
            raise ValueError("season_scales = 'category' scales non-centred deviations: set season_centred = false")
        draws = self.value_draws
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"value_draws must be a positive integer, got {draws!r}")
        if draws > 1 and not self.category_value:
            raise ValueError(f"value_draws = {draws} pools product draws of the category value: "
                             "it needs category_value = true")
        if self.household_week_centred and not self.household_week_effect:
            raise ValueError("household_week_centred = true parametrises the household-week shock: "
                             "it needs household_week_effect = true")
        if self.shock_loadings and not self.household_week_effect:
            raise ValueError("shock_loadings = true weights the household-week shock by category: "
                             "it needs household_week_effect = true")
        if self.shock_loading_groups == 1 or (self.shock_loading_groups and not self.shock_loadings):
            raise ValueError(f"shock_loading_groups = {self.shock_loading_groups}: 0 (a loading per category) or "
                             ">= 2 groups, with shock_loadings = true")
        if self.shock_loading_pilot and not self.shock_loading_groups:
            raise ValueError("shock_loading_pilot = true fixes the loadings of groups of categories: "
                             "it needs shock_loadings = true and shock_loading_groups >= 2")
        for name in ("intercept_sigma", "household_sigma", "loading_sigma", "week_sigma", "season_sigma", "value_sigma",
                     "household_week_sigma", "trips_elasticity_sigma", "season_scale_sigma", "shock_loading_sigma"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CategoryData:
    """Sufficient data of the category stage.

    Attributes
    ----------
    households, categories, weeks
        Ids behind the axes.
    trips
        ``(H, W)`` trips per household-week (0 = no visit: no category can be bought).
    cell_household, cell_category, cell_week
        Indices of the purchased household-category-weeks (one entry each).
    value, household_class
        Optional category values ``(K, C, W)`` per product-stage class and the
        class ``(H,)`` of each household (:func:`with_category_value`).
    """

    households: np.ndarray
    categories: np.ndarray
    weeks: np.ndarray
    trips: np.ndarray
    cell_household: np.ndarray
    cell_category: np.ndarray
    cell_week: np.ndarray
    value: np.ndarray | None = None
    household_class: np.ndarray | None = None

    def __post_init__(self) -> None:
        if np.any(self.trips[self.cell_household, self.cell_week] <= 0):
            raise ValueError("a category purchase in a household-week without trips")
        if (self.value is None) != (self.household_class is None):
            raise ValueError("value and household_class go together")
        if self.value is not None:
            shape = (self.categories.size, self.weeks.size)
            if self.value.ndim != 3 or self.value.shape[1:] != shape:
                raise ValueError(f"value must be (classes, {shape[0]}, {shape[1]}), got {self.value.shape}")
            if not np.isfinite(self.value).all():
                raise ValueError("value has non-finite entries")
            z = self.household_class
            if z.shape != self.households.shape or z.min(initial=0) < 0 or z.max(initial=0) >= self.value.shape[0]:
                raise ValueError(f"household_class must give each of {self.households.size} households a class "
                                 f"in 0..{self.value.shape[0] - 1}")

    @property
    def n_cells(self) -> int:
        return int(self.cell_household.size)

    def restricted_to(self, weeks) -> "CategoryData":
        """The same data scoring only ``weeks`` (week numbers; ``None`` = all): other weeks count as unvisited."""
        if weeks is None:
            return self
        keep = week_mask(self.weeks, weeks)
        cells = keep[self.cell_week]
        return CategoryData(
            households=self.households,
            categories=self.categories,
            weeks=self.weeks,
            trips=np.where(keep[None, :], self.trips, 0),
            cell_household=self.cell_household[cells],
            cell_category=self.cell_category[cells],
            cell_week=self.cell_week[cells],
            value=self.value,
            household_class=self.household_class,
        )

    def purchase_grid(self) -> np.ndarray:
        """``(H, C, W)`` 0/1 purchases (dense: small data only)."""
        y = np.zeros((self.households.size, self.categories.size, self.weeks.size), dtype=np.int8)
        y[self.cell_household, self.cell_category, self.cell_week] = 1
        return y


def with_category_value(cd: CategoryData, value: np.ndarray, household_class: np.ndarray) -> CategoryData:
    """``cd`` with category values ``(K, C, W)`` and each household's class ``(H,)`` (validated)."""
    return replace(cd, value=np.asarray(value, dtype=np.float64),
                   household_class=np.asarray(household_class, dtype=np.int64))


def build_category_data(data, trips: np.ndarray, households: np.ndarray, weeks: np.ndarray) -> CategoryData:
    """Category-stage data from a :class:`~bayes_retail.data.RetailData` and the visit stage's trips grid.

    ``households`` (the rows of ``trips``) may be a subset of the data's
    households: the others' purchases are left out.
    """
    cw = data.category_weeks
    rows = pd.Index(households).get_indexer(cw["household_id"])
    cw, rows = cw[rows >= 0], rows[rows >= 0]
    cols = np.searchsorted(weeks, cw["week"].to_numpy())
    categories = np.arange(len(data.categories))
    return CategoryData(
        households=np.asarray(households),
        categories=categories,
        weeks=np.asarray(weeks),
        trips=np.asarray(trips),
        cell_household=rows,
        cell_category=cw["category_id"].to_numpy(),
        cell_week=cols,
    )


def coords(cd: CategoryData, rank: int) -> dict:
    return {
        "household": cd.households,
        "category": cd.categories,
        "week": cd.weeks,
        "factor": [f"f{k + 1}" for k in range(rank)],
        "household_week": np.arange(int((cd.trips > 0).sum())),
    }


def _household_week_effect(cd: CategoryData, config: CategoryConfig):
    """``(H, W)`` ``e_hw``: normal shocks on the visited household-weeks (non-centred by default), 0 elsewhere."""
    visited = np.flatnonzero(cd.trips.ravel() > 0)
    sigma = pm.HalfNormal("sigma_household_week", config.household_week_sigma)
    if config.household_week_centred:
        shock = pm.Normal("household_week_shock", 0.0, sigma, dims="household_week")
    else:
        shock = sigma * pm.Normal("household_week_raw", 0.0, 1.0, dims="household_week")
    return pt.zeros(cd.trips.size)[visited].set(shock).reshape(cd.trips.shape)


def _shock_loadings(config: CategoryConfig, groups: np.ndarray | None, cd: CategoryData):
    """``(C,)`` ``lambda_c = exp(tau z_c)``, ``z`` zero-sum: each category's weight on the week's shock.

    With ``groups`` (``(C,)`` group of each category) ``z`` is one value per
    group, zero-sum over groups; with ``shock_loading_pilot`` the group
    loadings are the pilot's constants. Also returns the loadings the dense
    sum takes: the ``(G,)`` group loadings, or the per-category ones without groups.
    """
    if config.shock_loading_pilot:
        fixed = pilot_group_loadings(cd, groups)
        return pm.Deterministic("shock_loading", pt.as_tensor(fixed[groups]), dims="category"), pt.as_tensor(fixed)
    tau = pm.HalfNormal("tau_shock_loading", config.shock_loading_sigma)
    if groups is None:
        raw = pm.ZeroSumNormal("shock_loading_raw", sigma=1.0, dims="category")
        loading = pm.Deterministic("shock_loading", pt.exp(tau * raw), dims="category")
        return loading, loading
    raw = pm.ZeroSumNormal("shock_group_loading_raw", sigma=1.0, dims="shock_group")
    group_loading = pt.exp(tau * raw)
    return pm.Deterministic("shock_loading", group_loading[groups], dims="category"), group_loading


def week_size_slope(cd: CategoryData) -> np.ndarray:
    """``(C,)`` per category, how its purchase rises with the size of the household's week, on the cloglog scale.

    Over visited household-weeks, both sides centred on each household's
    mean: the least-squares slope of the 0/1 purchase of the category on the
    number of other categories bought that week, divided by the derivative
    of ``P`` in ``cloglog(P)`` at the category's purchase rate,
    ``-(1 - p) log(1 - p)``. In the model a loading ``lambda_c`` makes
    ``cloglog(P)`` move by ``lambda_c`` per unit of shock, so this ranks
    categories by loading; the plain correlation (as
    :func:`bayes_retail.metrics.joint.week_size_correlations`) mostly ranks
    them by how often they are bought. NaN where a side has no variation.
    """
    from bayes_retail.metrics.joint import week_size_moments

    visited = np.flatnonzero(cd.trips.ravel() > 0)
    row = np.full(cd.trips.size, -1)
    row[visited] = np.arange(visited.size)
    visit_of = row[cd.cell_household * cd.trips.shape[1] + cd.cell_week]
    n_c = cd.categories.size
    cross, _, others = week_size_moments(visit_of, cd.cell_category, np.bincount(visit_of, minlength=visited.size),
                                         visited // cd.trips.shape[1], cd.trips.shape[0], n_c)
    rate = np.bincount(cd.cell_category, minlength=n_c) / visited.size
    with np.errstate(invalid="ignore", divide="ignore"):
        return cross / others / (-(1.0 - rate) * np.log1p(-rate))


def week_size_groups(cd: CategoryData, n_groups: int, *, min_cells: int = 30) -> np.ndarray:
    """``(C,)`` group 0..G-1 of each category: G near-equal groups by rank of :func:`week_size_slope`.

    Group 0 rides least on the week's size. A category with fewer than
    ``min_cells`` purchased household-weeks, or no slope, goes to the middle
    group (its slope is mostly noise, and its loading moves little).
    """
    n_c = cd.categories.size
    if not 2 <= n_groups <= n_c:
        raise ValueError(f"shock_loading_groups = {n_groups} needs between 2 and {n_c} (the categories) groups")
    slope, known = _ranked_slopes(cd, min_cells)
    groups = np.full(n_c, n_groups // 2)
    rank = np.argsort(np.argsort(slope[known], kind="stable"), kind="stable")
    groups[known] = rank * n_groups // max(int(known.sum()), 1)
    return groups


def _ranked_slopes(cd: CategoryData, min_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`week_size_slope` and where it is ranked: finite, with at least ``min_cells`` purchased weeks."""
    slope = week_size_slope(cd)
    return slope, np.isfinite(slope) & (np.bincount(cd.cell_category, minlength=cd.categories.size) >= min_cells)


def pilot_group_loadings(cd: CategoryData, groups: np.ndarray, *, min_cells: int = 30) -> np.ndarray:
    """``(G,)`` plug-in shock loadings: each group's mean :func:`week_size_slope`, over their geometric mean.

    The mean is over the group's ranked categories (as in
    :func:`week_size_groups`). In the linearised model the slope is
    proportional to the loading, so the ratios are the loadings'; dividing by
    the geometric mean keeps ``sigma_household_week`` the shock's sd at the
    loadings' geometric mean, as the sampled loadings' zero-sum does.
    Approximate: the week's trips and season also tie a category to the
    week's size, at loading 1, which pulls the ratios towards 1; ranking noisy
    slopes pushes the outer groups apart.
    """
    slope, known = _ranked_slopes(cd, min_cells)
    n_groups = int(groups.max()) + 1
    with np.errstate(invalid="ignore"):  # a group without ranked categories: NaN, refused below
        means = (np.bincount(groups[known], weights=slope[known], minlength=n_groups)
                 / np.bincount(groups[known], minlength=n_groups))
    if not np.all(means > 0):
        raise ValueError(f"shock_loading_pilot needs a positive mean week-size slope in every group, got "
                         f"{np.round(means, 4).tolist()}: use fewer shock_loading_groups or sample the loadings")
    return means / np.exp(np.log(means).mean())


def _dense_expected(household_week, preference, category_week, loading, shock, group_mask=None):
    """``sum_hcw n_hw exp(... + eta_hcw)`` over every visited cell of some households.

    ``household_week`` ``(H, W)`` holds ``n_hw exp(u_h + s_w + ...)``,
    ``preference`` ``(H, C)``, ``category_week`` ``(C, W)`` the category
    terms. Without loadings (``loading`` None) the shock is already in
    ``household_week``, ``shock`` is unused and the sum is one matrix product;
    with them (``(C,)`` ``loading``, ``(H, W)`` ``shock``) it is an
    ``(H, C, W)`` tensor. With grouped loadings (``(G,)`` ``loading``,
    ``group_mask`` the ``(C, G)`` one-hot group of each category) it is one
    ``(H x C) @ (C x G W)`` product whose right side holds each category's
    week terms in its group's block: G times the shared shock's products, in
    as few graph nodes (one product per group and class made numba's compile
    run past half an hour on the ``default`` data).
    """
    if loading is None:
        return (household_week * (pt.exp(preference) @ pt.exp(category_week))).sum()
    if group_mask is not None:
        (n_c, n_g), n_w = group_mask.shape, category_week.shape[1]
        spread = (group_mask[:, :, None] * pt.exp(category_week)[:, None, :]).reshape((n_c, n_g * n_w))
        by_group = (pt.exp(preference) @ spread).reshape((preference.shape[0], n_g, n_w))
        return (household_week[:, None, :] * pt.exp(loading[None, :, None] * shock[:, None, :]) * by_group).sum()
    eta = preference[:, :, None] + category_week[None, :, :] + loading[None, :, None] * shock[:, None, :]
    return (household_week[:, None, :] * pt.exp(eta)).sum()


def free_loading_mask(n_categories: int, rank: int) -> np.ndarray:
    """``(C, R)`` True where a loading is free, in anchor order: below the diagonal, above the last row."""
    mask = np.tril(np.ones((n_categories, rank), dtype=bool), k=-1)
    mask[-1] = False
    return mask


def anchor_order(cd: CategoryData, rank: int) -> np.ndarray:
    """A category order for the loading constraints, chosen from a pilot of the data.

    The triangular zeros and positive diagonal are set on the first ``rank``
    rows of this order (the anchors) and the zero-sum constraint on its last
    row. With anchors picked by id, a weak anchor put the positive-diagonal
    bound near its mode and the loadings did not mix (measured, R-hat 2.6 on
    300 households x 60 categories). Here the anchors are the categories that
    load most independently on the leading factors of the double-centred
    log purchase-rate matrix (column-pivoted QR of its leading right singular
    vectors), and the constrained last row is the most purchased other category.
    """
    from scipy.linalg import qr

    _, vt, sv = _pilot_svd(cd)
    _, _, pivots = qr(vt[:rank] * sv[:rank, None], pivoting=True)
    anchors = [int(k) for k in pivots[:rank]]
    n_c = cd.categories.size
    rest = np.setdiff1d(np.arange(n_c), anchors)
    counts = np.bincount(cd.cell_category, minlength=n_c)
    last = int(rest[np.argmax(counts[rest])])
    middle = rest[rest != last]
    return np.concatenate([anchors, middle, [last]]).astype(np.int64)


def _pilot_svd(cd: CategoryData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The double-centred log purchase-rate matrix ``(H, C)`` and its right singular vectors and values."""
    n_h, n_c = cd.households.size, cd.categories.size
    counts = np.zeros((n_h, n_c))
    np.add.at(counts, (cd.cell_household, cd.cell_category), 1.0)
    visited = (cd.trips > 0).sum(axis=1, keepdims=True)
    x = np.log((counts + 0.5) / (visited + 1.0))
    x = x - x.mean(axis=0, keepdims=True) - x.mean(axis=1, keepdims=True) + x.mean()
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    return x, vt, sv


def pilot_directions(cd: CategoryData, rank: int) -> np.ndarray:
    """``(C, R)`` reference directions that fix each factor's sign under ``loading_signs = "folded"``.

    Factor k's direction is its pilot loading column: the data matrix of
    :func:`anchor_order` regressed on the leading ``rank`` left singular
    vectors, then rotated to the loadings' triangular pattern (a QR
    decomposition of the pilot loadings in anchor order), so it points where
    the model's column k points, up to sign.
    """
    _, vt, sv = _pilot_svd(cd)
    pilot = (vt[:rank] * sv[:rank, None]).T  # (C, R) pilot loadings, any rotation
    order = anchor_order(cd, rank)
    # pilot[order] = L Q^T with L lower triangular (QR of its transpose): the model's rotation
    q, _ = np.linalg.qr(pilot[order].T)
    lower = pilot[order] @ q
    lower = lower * np.where(np.diag(lower) < 0, -1.0, 1.0)  # positive anchors, as "positive_diagonal"
    out = np.empty_like(lower)
    out[order] = lower
    return out


def fold_loading_signs(posterior, directions: np.ndarray):
    """The posterior with each draw's factor k mirrored so that its loadings point along ``directions[:, k]``.

    Multiplies ``loadings[:, k]``, ``f[:, k]``, ``loading_diagonal[k]`` and the
    free loadings of column k by ``sign(loadings[:, k] . directions[:, k])``
    (+1 on an exact 0). The likelihood depends on ``f @ loadings.T`` only, and
    the prior is symmetric, so each draw keeps its density; draws of mirror
    modes land on one image.
    """
    import xarray as xr

    loadings = posterior["loadings"]
    rank = loadings.sizes["factor"]
    n_c = loadings.sizes["category"]
    projection = xr.dot(loadings, xr.DataArray(directions, dims=("category", "factor")), dim="category")
    sign = xr.where(projection < 0, -1.0, 1.0)  # (chain, draw, factor)
    out = posterior.copy()
    out["loadings"] = loadings * sign
    out["f"] = posterior["f"] * sign
    out["loading_diagonal"] = posterior["loading_diagonal"] * sign
    _, cols = np.nonzero(free_loading_mask(n_c, rank))
    below = posterior["loading_below"]
    below_dim = [d for d in below.dims if d not in ("chain", "draw")][0]
    column_sign = sign.isel(factor=xr.DataArray(cols, dims=below_dim))
    out["loading_below"] = below * column_sign.drop_vars("factor", errors="ignore")
    return out


def loading_matrix(raw_below, diagonal, n_categories: int, rank: int, order=None):
    """``(C, R)`` loadings from free parameters (PyTensor or numpy).

    In anchor order (``order``, default the identity), column k is zero above
    row k, ``diagonal[k]`` on row k (positive unless the signs are folded), free below, and its last row makes the
    column sum to zero. Zero-sum columns keep ``f_h . l_c`` apart from the
    household level ``u_h`` (a factor with constant loadings IS a household
    level: measured on the embedded data, without this constraint u and the
    loadings did not mix, R-hat 2.0); the triangular zeros and positive
    diagonal fix the rotation and sign. Rows are returned in category order.
    """
    if n_categories <= rank + 1:
        raise ValueError(f"rank {rank} needs more than {rank + 1} categories, got {n_categories}")
    rows, cols = np.nonzero(free_loading_mask(n_categories, rank))
    diag = np.arange(rank)
    back = np.argsort(np.arange(n_categories) if order is None else np.asarray(order))
    if not (isinstance(raw_below, pt.TensorVariable) or isinstance(diagonal, pt.TensorVariable)):
        out = np.zeros((n_categories, rank))
        out[rows, cols] = raw_below
        out[diag, diag] = diagonal
        out[-1] = -out[:-1].sum(axis=0)
        return out[back]
    out = pt.zeros((n_categories, rank))
    out = pt.set_subtensor(out[rows, cols], raw_below)
    out = pt.set_subtensor(out[diag, diag], diagonal)
    return pt.set_subtensor(out[-1], -out[:-1].sum(axis=0))[back]


def _season_deviations(config: CategoryConfig):
    """``d`` ``(category, week)``, zero-sum over weeks, with one scale or one scale per category."""
    sigma_d = pm.HalfNormal("sigma_season", config.season_sigma)
    if config.season_centred:
        return pm.ZeroSumNormal("d", sigma=sigma_d, dims=("category", "week"), n_zerosum_axes=1)
    if config.season_scales == "category":
        tau = pm.HalfNormal("tau_season", config.season_scale_sigma)
        raw = pm.Normal("season_scale_raw", 0.0, 1.0, dims="category")
        sigma_d = pm.Deterministic("season_scale", sigma_d * pt.exp(tau * raw), dims="category")[:, None]
    # few purchases per category-week (a household subset): the centred form is a funnel
    d_raw = pm.ZeroSumNormal("d_raw", sigma=1.0, dims=("category", "week"), n_zerosum_axes=1)
    return pm.Deterministic("d", sigma_d * d_raw, dims=("category", "week"))


def build_model(cd: CategoryData, config: CategoryConfig | None = None) -> pm.Model:
    """The PyMC model of the category stage (see the module docstring)."""
    config = config or CategoryConfig()
    n_c, rank = cd.categories.size, config.rank
    if rank and n_c <= rank + 1:
        raise ValueError(f"rank {rank} needs more than {rank + 1} categories, got {n_c}")
    h, c, w = cd.cell_household, cd.cell_category, cd.cell_week
    cell_trips = cd.trips[h, w].astype(np.float64)
    n_groups = config.shock_loading_groups if config.shock_loadings else 0
    groups = week_size_groups(cd, n_groups) if n_groups else None
    model_coords = coords(cd, rank) | ({"shock_group": np.arange(n_groups)} if n_groups else {})
    with pm.Model(coords=model_coords) as model:
        b = pm.Normal("b", config.intercept_mean, config.intercept_sigma, dims="category")
        sigma_u = pm.HalfNormal("sigma_household", config.household_sigma)
        u = pm.Normal("u", 0.0, sigma_u, dims="household")
        preference = _preference(cd, config) if rank else pt.zeros((cd.households.size, n_c))  # (H, C)
        sigma_s = pm.HalfNormal("sigma_week", config.week_sigma)
        s = pm.ZeroSumNormal("s", sigma=sigma_s, dims="week")
        d = _season_deviations(config)
        shock = _household_week_effect(cd, config) if config.household_week_effect else pt.zeros(cd.trips.shape)
        log_trips = np.log(np.maximum(cd.trips, 1)).astype(np.float64)  # 0 where no trips (their exposure is 0)
        # n^gamma = n exp((gamma - 1) log n): one more offset of the week
        curvature = ((pm.Normal("trips_elasticity", 1.0, config.trips_elasticity_sigma) - 1.0) * log_trips
                     if config.trips_elasticity else 0.0)
        loading, dense_loading = _shock_loadings(config, groups, cd) if config.shock_loadings else (None, None)
        group_mask = None if groups is None else np.eye(n_groups)[groups]
        household_week = pm.Data("trips", cd.trips.astype(np.float64)) * pt.exp(
            u[:, None] + s[None, :] + curvature + (shock if loading is None else 0.0)
        )
        if config.category_value:
            k = _category_value_response(cd, config)
            z = cd.household_class
            offset = k[c] * cd.value[z[h], c, w]
            # every visited (h, c, w): one dense (H_k x C) @ (C x W) product per class
            expected = sum(
                _dense_expected(household_week[rows], preference[rows], b[:, None] + d + k[:, None] * cd.value[j],
                                dense_loading, shock[rows], group_mask)
                for j in range(cd.value.shape[0]) if (rows := np.flatnonzero(z == j)).size
            )
        else:
            offset = pt.zeros(h.size)
            # every visited (h, c, w): one dense (H x C) @ (C x W) product
            expected = _dense_expected(household_week, preference, b[:, None] + d, dense_loading, shock, group_mask)
        if config.household_week_effect:
            offset = offset + (shock[h, w] if loading is None else loading[c] * shock[h, w])
        if config.trips_elasticity:
            offset = offset + curvature[h, w]
        # purchased cells, one by one (one fused kernel: value and gradient in one pass)
        purchased = cloglog_cells_loglik_op(b, u, preference, s, d, offset, h, c, w, cell_trips)
        pm.Potential("category_loglik", purchased - expected)
    return model


def _category_value_response(cd: CategoryData, config: CategoryConfig):
    """``k_c``: the response to the category value, partially pooled, non-centred (many categories are small)."""
    if cd.value is None:
        raise ValueError("category_value = true needs the product stage's category values (with_category_value)")
    mu = pm.Normal("mu_value", 0.0, config.value_sigma)
    tau = pm.HalfNormal("tau_value", config.value_sigma / 2)
    raw = pm.Normal("value_raw", 0.0, 1.0, dims="category")
    return pm.Deterministic("k", mu + tau * raw, dims="category")


def _preference(cd: CategoryData, config: CategoryConfig):
    """``f_h . l_c`` as an (H, C) PyTensor matrix, with the factor and loading variables it needs."""
    n_c, rank = cd.categories.size, config.rank
    f = pm.Normal("f", 0.0, 1.0, dims=("household", "factor"))
    below = pm.Normal("loading_below", 0.0, config.loading_sigma, shape=int(free_loading_mask(n_c, rank).sum()))
    if config.loading_signs == "folded":  # mirror modes, folded after sampling (fold_loading_signs)
        diagonal = pm.Normal("loading_diagonal", 0.0, config.loading_sigma, dims="factor")
    else:
        diagonal = pm.HalfNormal("loading_diagonal", config.loading_sigma, dims="factor")
    # (C, R): small, stored so that draws need no knowledge of the anchor order
    loadings = pm.Deterministic(
        "loadings", loading_matrix(below, diagonal, n_c, rank, anchor_order(cd, rank)), dims=("category", "factor")
    )
    return f @ loadings.T


def linear_predictor(params: dict, cd: CategoryData | None = None, *, categories=slice(None)) -> np.ndarray:
    """``(H, C, W)`` eta for given parameter values (dense: small data only), for ``categories`` (a slice).

    ``params`` holds ``b (C,)``, ``u (H,)``, ``f (H, R)``, ``loadings (C, R)``,
    ``s (W,)``, ``d (C, W)``, with a category value ``k (C,)``,
    ``value (K, C, W)`` and ``household_class (H,)``, and with household-week
    shocks their ``(H, W)`` grid ``household_week`` (each category's share of
    it ``shock_loading (C,)`` when present, else 1).
    """
    pref = params["f"] @ params["loadings"][categories].T
    eta = (
        params["b"][categories][None, :, None]
        + params["u"][:, None, None]
        + pref[:, :, None]
        + params["s"][None, None, :]
        + params["d"][categories][None, :, :]
    )
    if "k" in params:
        eta = eta + params["k"][categories][None, :, None] * params["value"][:, categories][params["household_class"]]
    if "household_week" in params:
        eta = eta + params["household_week"][:, None, :] * shock_loading(params, categories)[None, :, None]
    return eta


def shock_loading(params: dict, categories=slice(None)) -> np.ndarray:
    """``(C,)`` each category's weight on the household-week shock (ones without ``shock_loading``)."""
    if "shock_loading" in params:
        return np.asarray(params["shock_loading"], dtype=np.float64)[categories]
    return np.ones(params["b"].size)[categories]


def exposure(params: dict, trips: np.ndarray) -> np.ndarray:
    """``n^gamma`` per household-week (0 without trips): the trips' exposure, ``gamma = 1`` without ``trips_elasticity``."""
    trips = np.asarray(trips, dtype=np.float64)
    gamma = float(params.get("trips_elasticity", 1.0))
    return trips if gamma == 1.0 else np.where(trips > 0, np.maximum(trips, 1.0) ** gamma, 0.0)


def pointwise_loglik(params: dict, cd: CategoryData) -> np.ndarray:
    """Row-level Bernoulli log-likelihood of every visited household-category-week (NaN where no trips)."""
    eta = linear_predictor(params, cd)
    rate = exposure(params, cd.trips)[:, None, :] * np.exp(eta)
    y = cd.purchase_grid()
    # log P(y=1) = log(1 - exp(-rate)); log P(y=0) = -rate
    log_buy = np.log(-np.expm1(-np.where(rate > 0, rate, 1.0)))
    ll = np.where(y == 1, log_buy, -rate)
    return np.where(cd.trips[:, None, :] > 0, ll, np.nan)


def household_week_loglik(params: dict, cd: CategoryData, *, chunk: int = 16) -> np.ndarray:
    """``(H, W)`` log-likelihood of each visited household-week's purchases over all categories (NaN where no trips).

    The sum over categories of :func:`pointwise_loglik`, ``chunk`` categories
    at a time. With ``sigma_household_week`` and no drawn shocks in ``params``
    the week's shock is shared by its categories, so it is integrated out of
    the week's joint likelihood (:data:`SHOCK_NODES`-point Gauss-Hermite): the
    unit PSIS-LOO and held-out densities are computed on.
    """
    from scipy.special import logsumexp

    shifts, weights = shock_quadrature(params)
    log_weights = np.log(weights)
    visited = cd.trips > 0
    y = cd.purchase_grid().astype(bool)
    total = np.zeros((shifts.size, *cd.trips.shape))
    weight = exposure(params, cd.trips)[:, None, :]
    for lo in range(0, cd.categories.size, chunk):
        hi = min(lo + chunk, cd.categories.size)
        base = weight * np.exp(linear_predictor(params, cd, categories=slice(lo, hi)))
        bought = y[:, lo:hi]
        loading = shock_loading(params, slice(lo, hi))[None, :, None]
        for n, shift in enumerate(shifts):
            rate = base * np.exp(shift * loading)
            log_buy = np.log(-np.expm1(-np.where(bought, rate, 1.0)))
            total[n] += np.where(bought, log_buy, -rate).sum(axis=1)
    return np.where(visited, logsumexp(total + log_weights[:, None, None], axis=0), np.nan)


def household_week_loglik_draws(cd: CategoryData, posterior, *, draws: int = 100) -> np.ndarray:
    """``(S, N)`` :func:`household_week_loglik` of the ``N`` visited household-weeks under ``S`` evenly spaced draws."""
    visited = cd.trips > 0
    n = posterior["b"].shape[0] * posterior["b"].shape[1]
    return np.stack([household_week_loglik(posterior_parameters(posterior, int(k), cd), cd)[visited]
                     for k in evenly_spaced(n, draws)])


def simulate(params: dict, trips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Forward sampler: ``(H, C, W)`` 0/1 category purchases given the trips grid (the fitted process).

    ``params`` as :func:`linear_predictor`. Each trip buys in category c with
    probability ``1 - exp(-exp(eta))``; a week buys if any of its trips does
    (with ``trips_elasticity`` in ``params``: ``1 - exp(-n^gamma exp(eta))``).
    """
    eta = linear_predictor(params)
    p = -np.expm1(-exposure(params, trips)[:, None, :] * np.exp(eta))
    return (rng.random(p.shape) < p).astype(np.int8)


def draw_parameters(
    n_households: int,
    n_categories: int,
    n_weeks: int,
    rng: np.random.Generator,
    *,
    rank: int = 2,
    intercept_mean: float = -1.5,
    intercept_sd: float = 0.8,
    household_sd: float = 0.5,
    loading_sd: float = 0.6,
    week_sd: float = 0.2,
    season_sd: float | np.ndarray = 0.2,
    household_week_sd: float = 0.0,
    trips_elasticity: float | None = None,
    shock_loading: np.ndarray | None = None,
) -> dict:
    """Parameter values of the stage's form (lower-triangular loadings, zero-sum week effects), for simulation studies.

    ``trips_elasticity`` (``gamma``) makes the exposure ``n^gamma``; ``None`` leaves it out (``gamma = 1``).

    ``season_sd`` is one scale of the seasonal deviations or one per category.

    ``household_week_sd > 0`` adds a drawn ``(H, W)`` grid of household-week shocks and their sd;
    ``shock_loading`` ``(C,)`` each category's weight on them.
    """
    n_below = int(free_loading_mask(n_categories, rank).sum())
    s = rng.normal(0, week_sd, n_weeks)
    d = rng.normal(0, np.broadcast_to(np.asarray(season_sd, dtype=float), (n_categories,))[:, None],
                   (n_categories, n_weeks))
    params = {
        "b": rng.normal(intercept_mean, intercept_sd, n_categories),
        "u": rng.normal(0, household_sd, n_households),
        "f": rng.standard_normal((n_households, rank)),
        "loadings": loading_matrix(
            rng.normal(0, loading_sd, n_below), np.abs(rng.normal(0, loading_sd, rank)) + 0.3, n_categories, rank
        ),
        "s": s - s.mean(),
        "d": d - d.mean(axis=1, keepdims=True),
    }
    if household_week_sd > 0:
        params.update(household_week=rng.normal(0, household_week_sd, (n_households, n_weeks)),
                      sigma_household_week=household_week_sd)
    if trips_elasticity is not None:
        params["trips_elasticity"] = float(trips_elasticity)
    if shock_loading is not None:
        params["shock_loading"] = np.asarray(shock_loading, dtype=np.float64)
    return params


def category_data_from_arrays(purchases: np.ndarray, trips: np.ndarray) -> CategoryData:
    """Stage data from a ``(H, C, W)`` purchase grid and its ``(H, W)`` trips (simulation studies)."""
    h, c, w = np.nonzero(purchases)
    n_h, n_c, n_w = purchases.shape
    return CategoryData(
        households=np.arange(n_h),
        categories=np.arange(n_c),
        weeks=np.arange(n_w),
        trips=np.asarray(trips),
        cell_household=h,
        cell_category=c,
        cell_week=w,
    )


def posterior_parameters(posterior, draw: int, cd: CategoryData | None = None) -> dict:
    """Parameter values of one posterior draw (chains stacked), in the form :func:`simulate` takes.

    With a category-value response in the posterior, ``cd`` supplies the
    values and household classes the draw goes with; without ``cd`` the
    response is left out (for callers that need the household parameters only).
    """

    def flat(name):
        value = posterior[name].values
        return value.reshape(-1, *value.shape[2:])[draw]

    params = {name: flat(name) for name in ("b", "u", "s", "d")}
    if "loadings" in posterior:
        params.update(f=flat("f"), loadings=flat("loadings"))
    else:  # rank 0: no preference factors
        params.update(f=np.zeros((params["u"].size, 0)), loadings=np.zeros((params["b"].size, 0)))
    if "sigma_household_week" in posterior:  # the shocks themselves are not stored: expectations integrate them out
        params["sigma_household_week"] = float(flat("sigma_household_week"))
    if "trips_elasticity" in posterior:
        params["trips_elasticity"] = float(flat("trips_elasticity"))
    if "shock_loading" in posterior:
        params["shock_loading"] = flat("shock_loading")
    if "k" in posterior and cd is not None:
        if cd.value is None:
            raise ValueError("this posterior has a category-value response: pass the CategoryData with its values")
        params.update(k=flat("k"), value=cd.value, household_class=cd.household_class)
    return params


def summary_statistics(purchase_cells: int, trips: np.ndarray, n_categories: int) -> dict[str, float]:
    """Share of visited household-category-weeks with a purchase (what the prior predictive check compares)."""
    visited = int((trips > 0).sum()) * n_categories
    return {"purchase_rate": purchase_cells / visited if visited else float("nan")}


def prior_predictive(cd: CategoryData, config: CategoryConfig | None = None, *, draws: int = 50, seed: int = 0) -> pd.DataFrame:
    """Prior predictive check: expected purchase rates on the data's trips under prior draws.

    The expectation per draw (see :func:`posterior_predictive`), computed
    ``chunk`` categories at a time, so it runs on the full data.
    """
    import warnings

    config = config or CategoryConfig()
    rng = np.random.default_rng(seed)
    model = build_model(cd, config)
    names = (["b", "u", "s", "d"] + (["f", "loadings"] if config.rank else []) + (["k"] if config.category_value else [])
             + (["sigma_household_week"] if config.household_week_effect else [])
             + (["shock_loading"] if config.shock_loadings else [])
             + (["trips_elasticity"] if config.trips_elasticity else []))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=names, random_seed=rng).prior
    visited = int((cd.trips > 0).sum()) * cd.categories.size
    rows = [
        {"purchase_rate": float(expected_purchases(posterior_parameters(prior, k, cd), cd.trips).sum() / visited)}
        for k in range(draws)
    ]
    return pd.DataFrame(rows)


#: Gauss-Hermite nodes that integrate a household-week shock out of expected purchases (a smooth integrand).
SHOCK_NODES = 12
#: Most Gauss-Hermite nodes :func:`shock_quadrature` uses, whatever the loadings.
MAX_SHOCK_NODES = 60
#: Largest linear predictor exponentiated in :func:`expected_purchases` (exp(700) ~ 1e304, finite).
EXP_CAP = 700.0


def shock_quadrature(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Shock values and weights that integrate the household-week shock out (one point of weight 1 without one).

    Gauss-Hermite on :data:`SHOCK_NODES` points, times the largest shock
    loading rounded up: a category with loading 3 sees a shock three times as
    wide (measured on a 5-category week likelihood with sd 0.7: 12 nodes
    0.5% off, 36 about 1e-4). At most :data:`MAX_SHOCK_NODES`, so a wide
    prior draw (a loading of 20) keeps the prior predictive check affordable.
    """
    if "sigma_household_week" not in params or "household_week" in params:
        return np.zeros(1), np.ones(1)
    widest = max(1.0, float(np.max(shock_loading(params))))
    nodes, weights = np.polynomial.hermite.hermgauss(min(SHOCK_NODES * int(np.ceil(widest)), MAX_SHOCK_NODES))
    return np.sqrt(2.0) * params["sigma_household_week"] * nodes, weights / np.sqrt(np.pi)


def expected_purchases(params: dict, trips: np.ndarray, *, chunk: int = 16) -> np.ndarray:
    """``(C, W)`` expected number of purchasing households per category-week, given the trips grid.

    Sums ``1 - exp(-n_hw exp(eta_hcw))`` over households, ``chunk`` categories
    at a time so memory stays ``H x chunk x W``. With ``sigma_household_week``
    and no drawn shocks in ``params``, the shock is integrated out by
    :data:`SHOCK_NODES`-point Gauss-Hermite quadrature.
    """
    n_c = params["b"].size
    out = np.zeros((n_c, trips.shape[1]))
    shifts, weights = shock_quadrature(params)
    weight = exposure(params, trips)[:, None, :]
    for lo in range(0, n_c, chunk):
        hi = min(lo + chunk, n_c)
        # a wide prior's draw can put eta past exp's range: capped, rate stays finite (0 x inf would be NaN)
        rate = weight * np.exp(np.minimum(linear_predictor(params, categories=slice(lo, hi)), EXP_CAP))
        loading = shock_loading(params, slice(lo, hi))[None, :, None]
        with np.errstate(over="ignore"):  # rate x e^shift may reach inf: a sure purchase, 1 - e^-inf = 1
            out[lo:hi] = sum(wt * (-np.expm1(-rate * np.exp(shift * loading))).sum(axis=0)
                             for shift, wt in zip(shifts, weights))
    return out


def expected_purchase_draws(cd: CategoryData, posterior, *, draws: int = 20) -> np.ndarray:
    """``(D, C, W)`` :func:`expected_purchases` under ``draws`` evenly spaced posterior draws (chains stacked)."""
    n = posterior["b"].shape[0] * posterior["b"].shape[1]
    return np.stack([
        expected_purchases(posterior_parameters(posterior, int(k), cd), cd.trips) for k in evenly_spaced(n, draws)
    ])


def seasonal_indices(cd: CategoryData, expected: np.ndarray, *, scored_weeks=None) -> pd.DataFrame:
    """Seasonal index per category-week: expected purchases relative to the category's average scored week.

    ``expected`` is :func:`expected_purchase_draws`: posterior predictive,
    given the observed trips (so the index includes the weeks' visit levels,
    as a planner sees demand). Mean and 90% band over the draws, beside the
    observed ratio. ``exp(d_cw)`` is not reported: under the cloglog link it is
    a rate ratio per trip, not an index of purchases. Unscored weeks
    (``scored_weeks``) get NaN.
    """
    scored = np.ones(cd.weeks.size, bool) if scored_weeks is None else np.isin(cd.weeks, np.asarray(scored_weeks))
    indices = expected / expected[:, :, scored].mean(axis=2, keepdims=True)
    observed = np.zeros((cd.categories.size, cd.weeks.size))
    np.add.at(observed, (cd.cell_category, cd.cell_week), 1.0)
    mean_obs = observed[:, scored].mean(axis=1, keepdims=True)
    observed = np.divide(observed, mean_obs, out=np.full_like(observed, np.nan), where=mean_obs > 0)
    c, w = np.meshgrid(np.arange(cd.categories.size), np.arange(cd.weeks.size), indexing="ij")
    table = pd.DataFrame(
        {
            "category_id": cd.categories[c.ravel()],
            "week": cd.weeks[w.ravel()],
            "index_mean": indices.mean(axis=0).ravel(),
            "q0.05": np.quantile(indices, 0.05, axis=0).ravel(),
            "q0.95": np.quantile(indices, 0.95, axis=0).ravel(),
            "observed": observed.ravel(),
        }
    )
    table.loc[~scored[w.ravel()], ["index_mean", "q0.05", "q0.95", "observed"]] = np.nan
    return table


def posterior_predictive(cd: CategoryData, expected: np.ndarray) -> pd.DataFrame:
    """Expected purchase rate on the data's trips per draw of ``expected`` (:func:`expected_purchase_draws`).

    The expectation, not a Bernoulli replay: over millions of visited cells the
    sampling noise of the rate (relative sd ~ 1e-3) is negligible beside the
    posterior spread, and the dense replay would cost an ``(H, C, W)`` grid per
    draw.
    """
    visited = int((cd.trips > 0).sum()) * cd.categories.size
    return pd.DataFrame({"purchase_rate": expected.sum(axis=(1, 2)) / visited})
