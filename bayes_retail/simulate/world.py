"""The simulated world from the real data: the catalogue and the prices customers face.

Product rows: the choice-set products in item order (the pricing panel's
products), then the tail products behind each category's "other" item.
Choice-set products get their prices from the pricing HMMs (``hmm``) or from
the observed panel completed with one imputation of the missing depths
(``observed``). Tail products have no price panel (they are too sparse for
one): each keeps its median observed shelf price, and in each week it is
discounted with its observed share of discounted purchases, at its mean
observed depth. Their display and mailer flags are the observed ones
(``observed``) or drawn week by week from each tail product's observed
frequencies of the four flag combinations (``hmm``). That is an
approximation: the tail's promotions are independent of its discounts, of one
another and of the HMMs' calendar.

The pricing HMMs are exchangeable within a category: every product of a
category draws its promotion path from the same chain, so a drawn path does
not know which product it belongs to. The data's retailer promotes its big
sellers more often, and the cross-sectional promotion lift the metric suite
measures depends on that. ``hmm`` prices therefore hand the category's drawn
promotion paths (depth, display and mailer together) to its products by rank:
the product with the k-th highest share of its shelf weeks promoted in the
data gets the path with the k-th most promoted weeks in the draw (ties at
random). Because the paths are exchangeable, this leaves the law of the
category's calendar unchanged and only decides which product carries which path.

When the product stage was fitted with ``availability = "span"``, a
choice-set product is on the shelf only from the first to the last week the
data sell or promote it (:func:`~bayes_retail.models.product.availability_span`):
the grid carries that availability, and ``hmm`` paths are ranked by the share
of a product's shelf weeks it is promoted and cleared of promotions off the
shelf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_retail.models.product import AVAILABILITIES, availability_span, item_availability, item_table
from bayes_retail.pricing.model import PricingPanel
from bayes_retail.simulate.inputs import Catalogue, PriceGrid


def catalogue_from_data(data, *, deal_frequency: bool = False) -> Catalogue:
    """The catalogue of a :class:`~bayes_retail.data.RetailData`: its choice sets and tail products by observed share.

    Choice-set item attributes come from the product stage's definitions
    (:func:`bayes_retail.models.product.build_product_data`), so the
    simulator's utilities are the fitted ones; ``deal_frequency`` adds the
    fourth attribute, as the product stage's ``[product] deal_frequency`` does.
    """
    from bayes_retail.models import product

    items = item_table(data.choice_sets)
    panel = PricingPanel.from_product_weeks(data.product_weeks)
    real = items["product_id"].notna().to_numpy()
    top_ids = items.loc[real, "product_id"].astype(np.int64).to_numpy()
    if not np.array_equal(np.sort(top_ids), np.sort(panel.products["product_id"].to_numpy())):
        raise ValueError("the choice-set products and the pricing panel's products differ")
    tail = data.choice_sets.loc[data.choice_sets["is_other"], ["category_id", "product_id", "tail_share"]]
    tail = tail.sort_values(["category_id", "tail_share"], ascending=[True, False], ignore_index=True)
    n_c = len(data.categories)
    counts = np.bincount(tail["category_id"].to_numpy(), minlength=n_c)
    starts = np.cumsum(counts) - counts
    promotion, base_share = tail_promotion_response(data.choices, tail, data.promo_weeks, n_c)
    cumshare = pd.Series(base_share).groupby(tail["category_id"]).cumsum().to_numpy(copy=True)
    cumshare[(starts + counts - 1)[counts > 0]] = 1.0
    item_product = np.full(len(items), -1, dtype=np.int64)
    item_product[real] = np.arange(real.sum())
    mean_log_shelf = np.zeros(len(items))
    mean_log_shelf[real] = _mean_log_shelf(panel, _top_columns(panel, top_ids))
    return Catalogue(
        item_category=items["category_id"].to_numpy(np.int64),
        item_product=item_product,
        attributes=product._item_attributes(
            items, data.products, mean_log_shelf, real,
            product.deal_frequency(data.product_weeks, items) if deal_frequency else None),
        tail_start=starts.astype(np.int64),
        tail_count=counts.astype(np.int64),
        tail_product=real.sum() + np.arange(len(tail), dtype=np.int64),
        tail_cumshare=cumshare,
        product_ids=np.concatenate([top_ids, tail["product_id"].to_numpy(np.int64)]),
        tail_size_cumprob=_cumulative(tail_size_distribution(data.choices, tail, n_c)),
        tail_repeat=tail_repeat_probability(data.choices, tail, n_c),
        tail_promotion=promotion,
    )


def _cumulative(probabilities: np.ndarray) -> np.ndarray:
    """Row-wise running sums that end at exactly 1 (a uniform never falls past the last entry)."""
    cum = np.cumsum(probabilities, axis=1)
    cum[:, -1] = 1.0
    return cum


#: Most distinct tail products one "other" item becomes (larger observed counts are counted here).
MAX_TAIL_SIZE = 8
#: Pseudo-occasions of the pooled distribution added to each category's own counts.
TAIL_SIZE_PRIOR_OCCASIONS = 10.0


def tail_size_distribution(
    choices: pd.DataFrame, tail: pd.DataFrame, n_categories: int, *,
    max_size: int = MAX_TAIL_SIZE, prior_occasions: float = TAIL_SIZE_PRIOR_OCCASIONS,
) -> np.ndarray:
    """``(C, max_size)`` probabilities that an occasion buying a category's tail buys 1, 2, ... distinct tail products.

    The product stage counts a category's tail products as one "other" item
    (bought or not per occasion); the real occasions that buy it buy 1.19
    distinct tail products on average. Per category, the observed counts over
    household-category-weeks with at least one tail product (counts above
    ``max_size`` counted at ``max_size``) plus ``prior_occasions`` occasions
    of the distribution pooled over categories, normalised; a category
    without such occasions gets the pooled distribution.
    """
    bought = choices.loc[choices["product_id"].isin(tail["product_id"]), ["household_id", "category_id", "week", "product_id"]]
    sizes = bought.drop_duplicates().groupby(["household_id", "category_id", "week"]).size()
    category = sizes.index.get_level_values("category_id").to_numpy(np.int64)
    size = np.minimum(sizes.to_numpy(np.int64), max_size)
    counts = np.zeros((n_categories, max_size))
    np.add.at(counts, (category, size - 1), 1.0)
    total = counts.sum()
    pooled = counts.sum(axis=0) / total if total > 0 else np.eye(max_size)[0]
    return (counts + prior_occasions * pooled) / (counts.sum(axis=1, keepdims=True) + prior_occasions)


#: Pseudo-lines of the pooled repeat probability added to each category's own tail lines.
TAIL_REPEAT_PRIOR_LINES = 20.0


def tail_repeat_probability(
    choices: pd.DataFrame, tail: pd.DataFrame, n_categories: int, *, prior_lines: float = TAIL_REPEAT_PRIOR_LINES,
) -> np.ndarray:
    """``(C,)`` probability that a tail product is bought again from the previous occasion's tail products.

    The product stage's state dependence makes "other" follow "other"; which
    tail product it becomes is beyond the model. Real households buy a tail
    product of their previous occasion in the category far more often than
    draws by share would (on the embedded data 17% of tail lines against 1.5%
    replayed by share). The simulator's rule: with probability ``r_c`` one of
    the previous occasion's tail products still free, otherwise one by share.
    A tail line whose previous occasion bought tail products ``T`` then
    repeats with probability ``r + (1 - r) s`` (``s``: the observed shares of
    ``T``), so over those lines the moment estimate is

        r = (sum hits - sum s) / (sum (1 - s)),

    pooled over categories, and per category the same sums plus
    ``prior_lines`` lines at the pooled value; clipped to [0, 1]. A plug-in
    point estimate (approximate: no uncertainty, and it ignores that an
    occasion's tail products are distinct). ``choices`` has one row per
    household-category-week-product; ``tail`` the tail products with their
    ``category_id`` and ``tail_share``.
    """
    share = tail.set_index("product_id")["tail_share"] / tail.groupby("category_id")["tail_share"].transform("sum").to_numpy()
    keys = ["household_id", "category_id"]
    weeks = choices[keys + ["week"]].drop_duplicates().sort_values(keys + ["week"])
    weeks["previous"] = weeks.groupby(keys)["week"].shift(fill_value=-1)  # -1: a first occasion, matches nothing
    bought = choices.loc[choices["product_id"].isin(share.index), keys + ["week", "product_id"]].drop_duplicates()
    lines = bought.merge(weeks, on=keys + ["week"])
    before = bought.rename(columns={"week": "previous"}).assign(share=lambda f: f["product_id"].map(share).to_numpy())
    mass = before.groupby(keys + ["previous"], as_index=False)["share"].sum()
    lines = lines.merge(mass, on=keys + ["previous"])  # only lines whose previous occasion bought tail products
    hit = lines.merge(before[keys + ["previous", "product_id"]], on=keys + ["previous", "product_id"], how="left", indicator=True)
    category = lines["category_id"].to_numpy(np.int64)
    hits = np.bincount(category, weights=(hit["_merge"] == "both").to_numpy(float), minlength=n_categories)
    chance = np.bincount(category, weights=lines["share"].to_numpy(float), minlength=n_categories)
    room = np.bincount(category, weights=1.0 - lines["share"].to_numpy(float), minlength=n_categories)
    pooled = float(np.clip((hits.sum() - chance.sum()) / room.sum(), 0.0, 1.0)) if room.sum() > 0 else 0.0
    return np.clip((hits - chance + prior_lines * pooled) / (room + prior_lines), 0.0, 1.0)


#: Largest |log weight| of a promoted tail product (the sampler's rejection step slows as exp(bound)).
TAIL_PROMOTION_BOUND = 3.0
#: Smallest between-category sd of the tail promotion effect the shrinkage assumes.
TAIL_PROMOTION_MIN_SD = 0.1


def tail_promotion_response(
    choices: pd.DataFrame, tail: pd.DataFrame, promo_weeks: pd.DataFrame, n_categories: int, *,
    bound: float = TAIL_PROMOTION_BOUND, iterations: int = 2000, tol: float = 1e-9,
) -> tuple[np.ndarray, np.ndarray]:
    """``(C,)`` log weight of a promoted tail product and ``(T,)`` base shares of the tail products.

    The product stage gives "other" no promotion covariates, so which tail
    product an "other" item becomes is the simulator's business. Real tail
    products are chosen more often in the weeks they are on display or in the
    mailer (the metric suite's "promoted"); drawing them by overall share
    leaves a promoted tail product-week no busier than any other. The rule:
    an "other" item of category ``c`` in week ``w`` is tail product ``j`` with
    probability ``b_j exp(lambda_c on_jw) / sum_k b_k exp(lambda_c on_kw)``.

    Fitted by maximum likelihood on the tail lines of ``choices`` (one row per
    household-category-week-product): the base shares ``b`` by
    minorise-maximise updates, ``lambda_c`` by Newton steps (with a weak
    N(0, 3^2) penalty, so categories whose lines separate stay finite); then each
    ``lambda_c`` is shrunk toward the pooled estimate (one ``lambda`` for all
    categories) by normal-normal empirical Bayes with the between-category
    variance estimated by moments (DerSimonian-Laird, at least
    ``TAIL_PROMOTION_MIN_SD`` squared),
    clipped to ``[-bound, bound]``, and ``b`` refitted given it. Categories
    whose tail is never promoted get the pooled value (it never applies).
    A plug-in point estimate (approximate: no uncertainty; it ignores repeat
    buying and leaves the category's tail volume to the product stage, which
    does not see tail promotions). ``tail`` holds the tail products in
    catalogue order with their ``category_id``; ``promo_weeks`` the calendar.
    """
    ids = pd.Index(tail["product_id"].to_numpy(np.int64))
    category = tail["category_id"].to_numpy(np.int64)
    bought = choices.loc[choices["product_id"].isin(ids), ["product_id", "week"]]
    if bought.empty:
        return np.zeros(n_categories), _normalised(np.ones(len(ids)), category, n_categories)
    first, n_weeks = int(bought["week"].min()), int(bought["week"].max() - bought["week"].min() + 1)
    line_j, line_w = ids.get_indexer(bought["product_id"]), bought["week"].to_numpy(np.int64) - first
    display, mailer = tail_calendar(promo_weeks, ids.to_numpy(), first + np.arange(n_weeks))
    cal_j, cal_w = np.nonzero(display | mailer)
    problem = _TailPromotionProblem(category, n_categories, n_weeks, line_j, line_w, cal_j, cal_w)
    own, info, _ = problem.fit(np.zeros(n_categories), iterations=iterations, tol=tol)
    pooled, _, _ = problem.fit(np.zeros(n_categories), pooled=True, iterations=iterations, tol=tol)
    informed = info > 1e-8
    prior_precision = 1.0 / max(_between_variance(own[informed], info[informed]), TAIL_PROMOTION_MIN_SD**2)
    shrunk = np.where(informed, (info * own + prior_precision * pooled) / (info + prior_precision), pooled)
    shrunk = np.clip(shrunk, -bound, bound)
    _, _, base = problem.fit(shrunk, fixed=True, iterations=iterations, tol=tol)
    return shrunk, base


def _between_variance(estimates: np.ndarray, precision: np.ndarray) -> float:
    """DerSimonian-Laird moment estimate of the variance between estimates with the given precisions (0 if < 2)."""
    if estimates.size < 2:
        return 0.0
    total = precision.sum()
    centre = (precision * estimates).sum() / total
    q = (precision * (estimates - centre) ** 2).sum()
    return max(0.0, (q - (estimates.size - 1)) / (total - (precision**2).sum() / total))


def _normalised(weights: np.ndarray, category: np.ndarray, n_categories: int) -> np.ndarray:
    """Weights scaled to sum to 1 within each category (uniform in a category whose weights sum to 0)."""
    total = np.bincount(category, weights=weights, minlength=n_categories)[category]
    size = np.bincount(category, minlength=n_categories)[category]
    return np.where(total > 0, weights / np.where(total > 0, total, 1.0), 1.0 / np.maximum(size, 1))


class _TailPromotionProblem:
    """Sufficient statistics of the tail-choice likelihood: lines per product and per category-week, promoted pairs."""

    def __init__(self, category, n_categories, n_weeks, line_j, line_w, cal_j, cal_w):
        self.category, self.n_c, self.n_w = category, n_categories, n_weeks
        self.cal_j, self.cal_w = cal_j, cal_w
        self.cal_cw = category[cal_j] * n_weeks + cal_w
        cells = n_categories * n_weeks
        self.lines = np.bincount(line_j, minlength=category.size).astype(float)
        line_cw = category[line_j] * n_weeks + line_w
        self.per_week = np.bincount(line_cw, minlength=cells).reshape(n_categories, n_weeks).astype(float)
        promoted = np.zeros((category.size, n_weeks), dtype=bool)
        promoted[cal_j, cal_w] = True
        self.promoted_lines = np.bincount(line_cw, weights=promoted[line_j, line_w].astype(float),
                                          minlength=cells).reshape(n_categories, n_weeks)

    def _promoted_mass(self, base):
        return np.bincount(self.cal_cw, weights=base[self.cal_j], minlength=self.n_c * self.n_w).reshape(self.n_c, self.n_w)

    def fit(self, effect, *, pooled=False, fixed=False, iterations, tol):
        """Alternating updates from ``effect``; returns the effects, their Fisher information and the base shares."""
        effect = effect.astype(float).copy()
        base = _normalised(self.lines, self.category, self.n_c)
        info = np.zeros(self.n_c)
        for _ in range(iterations):
            lift = np.exp(effect)
            denominator = 1.0 + (lift[:, None] - 1.0) * self._promoted_mass(base)
            ratio = self.per_week / denominator
            promoted_ratio = np.bincount(self.cal_j, weights=ratio[self.category[self.cal_j], self.cal_w],
                                         minlength=self.category.size)
            exposure = ratio.sum(axis=1)[self.category] + (lift[self.category] - 1.0) * promoted_ratio
            # a category without lines has no exposure: its shares stay uniform
            new_base = _normalised(np.divide(self.lines, exposure, out=np.zeros_like(exposure), where=exposure > 0),
                                   self.category, self.n_c)
            change = np.max(np.abs(new_base - base)) if base.size else 0.0
            base = new_base
            if not fixed:
                mass = self._promoted_mass(base)
                share_on = lift[:, None] * mass / (1.0 + (lift[:, None] - 1.0) * mass)
                score = (self.promoted_lines - self.per_week * share_on).sum(axis=1)
                info = (self.per_week * share_on * (1.0 - share_on)).sum(axis=1)
                if pooled:
                    step = np.full(self.n_c, score.sum() / info.sum() if info.sum() > 0 else 0.0)
                else:  # a weak N(0, 3^2) penalty keeps a category whose lines separate (all on promoted weeks) finite
                    step = np.where(info > 1e-8, (score - effect / 9.0) / (info + 1.0 / 9.0), 0.0)
                moved = np.clip(effect + np.clip(step, -1.0, 1.0), -10.0, 10.0)
                change = max(change, float(np.max(np.abs(moved - effect))))
                effect = moved
            if change < tol:
                break
        return effect, info, base


def tail_price_table(data, catalogue: Catalogue) -> pd.DataFrame:
    """Per tail product (in catalogue order): median observed shelf price, share of discounted purchases, mean depth."""
    ids = catalogue.product_ids[catalogue.tail_product]
    ch = data.choices.loc[data.choices["product_id"].isin(ids)]
    shelf = (ch["spend"] + ch["retail_disc"]) / ch["units"]
    depth = np.where(shelf > 0, ch["retail_disc"] / (ch["spend"] + ch["retail_disc"]), 0.0)
    discounted = depth > 0
    frame = pd.DataFrame({"product_id": ch["product_id"].to_numpy(), "shelf": shelf.to_numpy(),
                          "discounted": discounted, "discount_depth": np.where(discounted, depth, 0.0)})
    grouped = frame.groupby("product_id")
    table = grouped.agg(shelf=("shelf", "median"), discounted=("discounted", "mean"))
    # mean depth over the discounted purchases only (0 when none was discounted)
    n_discounted = grouped["discounted"].sum()
    table["depth"] = (grouped["discount_depth"].sum() / n_discounted.where(n_discounted > 0)).fillna(0.0)
    table = table.reindex(ids)
    if table["shelf"].isna().any():
        missing = table.index[table["shelf"].isna()][:5].tolist()
        raise ValueError(f"tail products without purchases in the choices panel: {missing}")
    table["depth"] = table["depth"].clip(0.0, 0.99)
    return table.reset_index()


def tail_calendar(promo_weeks: pd.DataFrame, tail_ids: np.ndarray, weeks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, W)`` observed display and mailer flags of the tail products ``tail_ids`` in ``weeks`` (week numbers).

    A flag is set when any calendar row of the product-week sets it (missing flags count as not set).
    """
    rows = pd.Index(tail_ids).get_indexer(promo_weeks["product_id"])
    cols = pd.Index(weeks).get_indexer(promo_weeks["week"])
    keep = (rows >= 0) & (cols >= 0)
    flags = []
    for name in ("display", "mailer"):
        grid = np.zeros((tail_ids.size, weeks.size), dtype=bool)
        np.logical_or.at(grid, (rows[keep], cols[keep]), promo_weeks[name].fillna(False).to_numpy(bool)[keep])
        flags.append(grid)
    return flags[0], flags[1]


def _drawn_flags(display: np.ndarray, mailer: np.ndarray, rng: np.random.Generator,
                 n_weeks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flags drawn week by week from each row's observed frequencies of (both, display only, mailer only, neither).

    ``n_weeks`` drawn weeks (default: as many as observed).
    """
    both = (display & mailer).mean(axis=1)[:, None]
    display_only = (display & ~mailer).mean(axis=1)[:, None]
    mailer_only = (mailer & ~display).mean(axis=1)[:, None]
    u = rng.random((display.shape[0], display.shape[1] if n_weeks is None else n_weeks))
    drawn_display = u < both + display_only
    drawn_mailer = (u < both) | ((u >= both + display_only) & (u < both + display_only + mailer_only))
    return drawn_display, drawn_mailer


def _with_tail(top: dict, basis: "PriceBasis", n_weeks: int, rng: np.random.Generator, *, observed: bool) -> dict:
    tail = basis.tail
    discounted = rng.random((len(tail), n_weeks)) < tail["discounted"].to_numpy()[:, None]
    if observed:
        display, mailer = basis.tail_display, basis.tail_mailer
    else:
        display, mailer = _drawn_flags(basis.tail_display, basis.tail_mailer, rng, n_weeks)
    extra = {
        "shelf": np.repeat(tail["shelf"].to_numpy()[:, None], n_weeks, axis=1),
        "depth": np.where(discounted, tail["depth"].to_numpy()[:, None], 0.0),
        "display": display.astype(float),
        "mailer": mailer.astype(float),
    }
    return {name: np.vstack([top[name], extra[name]]) for name in extra}


def _top_columns(panel: PricingPanel, top_ids: np.ndarray) -> np.ndarray:
    """Panel columns of the choice-set products ``top_ids`` (the catalogue's rows ``0..N-1``)."""
    return pd.Index(panel.products["product_id"]).get_indexer(top_ids)


def _mean_log_shelf(panel: PricingPanel, columns: np.ndarray) -> np.ndarray:
    """Each product's mean log shelf price over the observed panel: the product stage's price centre."""
    return np.log(panel.shelf[:, columns]).mean(axis=0)


@dataclass(frozen=True)
class PriceBasis:
    """What every price path of one data set shares, computed once per run (not once per posterior draw).

    Attributes
    ----------
    panel
        The pricing panel of the data.
    columns
        Panel columns of the catalogue's choice-set product rows.
    log_shelf_centre
        ``(G,)`` the product stage's price centre per item (0 for "other").
    tail
        :func:`tail_price_table` of the catalogue.
    tail_display, tail_mailer
        ``(T, W)`` the tail products' observed flags over the panel's weeks (:func:`tail_calendar`).
    product_category
        ``(N,)`` category of each choice-set product row.
    promoted_share
        ``(N,)`` share of its weeks on the shelf each choice-set product row is on display or in the mailer
        in the data.
    available
        ``(N, W)`` whether each choice-set product row is on the shelf; ``None``: always.
    discounted_share
        ``(N,)`` share of its shelf weeks each choice-set product row is discounted in a
        completed depth panel (observed depths, the missing ones imputed); ``None``: not given.
    """

    panel: PricingPanel
    columns: np.ndarray
    log_shelf_centre: np.ndarray
    tail: pd.DataFrame
    tail_display: np.ndarray
    tail_mailer: np.ndarray
    product_category: np.ndarray
    promoted_share: np.ndarray
    available: np.ndarray | None = None
    discounted_share: np.ndarray | None = None

    def full_availability(self, n_weeks: int, positions: np.ndarray | None = None) -> np.ndarray | None:
        """``(P, W)`` availability of every product row (tail rows always on the shelf); ``None``: always.

        ``positions``: the data week each of the ``n_weeks`` weeks takes its availability from (default: the data's).
        """
        if self.available is None:
            return None
        top = self.available if positions is None else self.available[:, positions]
        return np.vstack([top, np.ones((len(self.tail), n_weeks), dtype=bool)])


def price_basis(data, catalogue: Catalogue, *, availability: str = "always",
                depth: np.ndarray | None = None) -> PriceBasis:
    """The :class:`PriceBasis` of ``data`` and its catalogue.

    ``availability``: the product stage's setting (``"always"`` or ``"span"``);
    ``depth``: a completed ``(T, N)`` depth panel of the pricing panel's products
    (for each product's discounted share).
    """
    panel = PricingPanel.from_product_weeks(data.product_weeks)
    real = catalogue.item_product >= 0
    columns = _top_columns(panel, catalogue.product_ids[: int(real.sum())])
    centre = np.zeros(catalogue.item_product.size)
    centre[real] = _mean_log_shelf(panel, columns)[catalogue.item_product[real]]
    display, mailer = tail_calendar(data.promo_weeks, catalogue.product_ids[catalogue.tail_product], panel.weeks)
    product_category = np.empty(columns.size, dtype=np.int64)
    product_category[catalogue.item_product[real]] = catalogue.item_category[real]
    promoted = (panel.display[:, columns] | panel.mailer[:, columns]).sum(axis=0).astype(float)
    if availability not in AVAILABILITIES:
        raise ValueError(f"availability must be one of {AVAILABILITIES}, got {availability!r}")
    available = None
    if availability == "span":
        items = item_availability(item_table(data.choice_sets), availability_span(data.product_weeks), panel.weeks)
        available = np.ones((columns.size, panel.weeks.size), dtype=bool)
        available[catalogue.item_product[real]] = items[real]
    shelf_weeks = panel.weeks.size if available is None else available.sum(axis=1)
    discounted = None
    if depth is not None:
        if depth.shape != panel.depth.shape:
            raise ValueError(f"depth must be a completed panel of shape {panel.depth.shape}, got {depth.shape}")
        on_sale = depth[:, columns].T > 0
        discounted = (on_sale if available is None else on_sale & available).sum(axis=1) / shelf_weeks
    return PriceBasis(panel=panel, columns=columns, log_shelf_centre=centre, tail=tail_price_table(data, catalogue),
                      tail_display=display, tail_mailer=mailer, product_category=product_category,
                      promoted_share=promoted / shelf_weeks, available=available, discounted_share=discounted)


def observed_prices(basis: PriceBasis, depth: np.ndarray, rng: np.random.Generator) -> PriceGrid:
    """Prices as observed: the panel's shelf prices and flags, ``depth`` a completed ``(T, N)`` depth panel.

    ``depth`` is the observed depths with one imputation of the missing ones
    (``load_imputations(...)[m]``), in the pricing panel's product order.
    ``rng`` draws the tail products' discounted weeks; their display and mailer flags are the observed ones.
    """
    panel, cols = basis.panel, basis.columns
    if depth.shape != panel.depth.shape or np.isnan(depth).any():
        raise ValueError(f"depth must be a completed panel of shape {panel.depth.shape}")
    top = {
        "shelf": panel.shelf[:, cols].T, "depth": np.clip(depth[:, cols].T, 0.0, 0.99),
        "display": panel.display[:, cols].T.astype(float), "mailer": panel.mailer[:, cols].T.astype(float),
    }
    grids = _with_tail(top, basis, panel.weeks.size, rng, observed=True)
    return PriceGrid(**grids, log_shelf_centre=basis.log_shelf_centre,
                     available=basis.full_availability(panel.weeks.size))


PROMOTION_PROPENSITIES = ("observed", "joint", "exchangeable")


def propensity_rows(drawn: np.ndarray, observed: np.ndarray, category: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Which drawn row each product takes: within a category, ranks of ``drawn`` matched to ``observed``.

    ``drawn``: a promotion intensity of each drawn path (promoted weeks);
    ``observed``: each product's in the data (its promoted share of shelf weeks).

    Returns ``source`` with ``source[i]`` the row whose drawn path product
    ``i`` takes; ``source`` permutes rows within each category only. Ties on
    either side are broken at random.
    """
    n = drawn.size
    drawn_order = np.lexsort((rng.random(n), drawn, category))
    observed_order = np.lexsort((rng.random(n), observed, category))
    source = np.empty(n, dtype=np.int64)
    source[observed_order] = drawn_order
    return source


def matched_rows(drawn: np.ndarray, observed: np.ndarray, category: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Which drawn row each product takes: within a category, the assignment closest in several profiles at once.

    ``drawn``, ``observed``: ``(N, F)`` profiles of the drawn paths and of the
    products (e.g. share of weeks promoted, share discounted). Within each
    category the paths are assigned to the products minimising the summed
    squared distance between the two profiles (the optimal assignment;
    :func:`propensity_rows` is its one-profile case). Ties are broken at random.
    Returns ``source`` as :func:`propensity_rows` does.
    """
    from scipy.optimize import linear_sum_assignment

    drawn, observed = np.asarray(drawn, dtype=float), np.asarray(observed, dtype=float)
    source = np.arange(drawn.shape[0])
    for c in np.unique(category):
        rows = np.flatnonzero(category == c)
        cost = ((observed[rows, None, :] - drawn[None, rows, :]) ** 2).sum(axis=2)
        cost += 1e-9 * rng.random(cost.shape)  # ties at random
        products, paths = linear_sum_assignment(cost)
        source[rows[products]] = rows[paths]
    return source


def horizon_positions(n_weeks: int, horizon: int, *, year: int = 52) -> np.ndarray:
    """The data week position each of ``horizon`` simulated weeks takes its week-indexed values from.

    The first ``n_weeks`` weeks are the data's; a later week takes the values
    of the week ``year`` weeks before it (a 52-week year: seasons repeat), or
    ``n_weeks`` before it when the data hold less than a year.
    """
    for name, value in (("n_weeks", n_weeks), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    period = year if n_weeks >= year else n_weeks
    positions = np.arange(horizon)
    for t in range(n_weeks, horizon):
        positions[t] = positions[t - period]
    return positions


#: Weeks over which the observed weekly promotion share is averaged for seasonal timing (weekly noise is not season).
TIMING_SMOOTH_WEEKS = 5
#: How the HMM promotion paths are timed: tilted toward each category's observed season, or the HMMs' own.
PROMOTION_TIMINGS = ("seasonal", "homogeneous")


def seasonal_timing(basis: PriceBasis, pricing_model, positions: np.ndarray | None = None):
    """The data's promotion timing for the pricing HMMs and the tilt solved for it, once per run.

    Returns ``(timing, tilt, info)``: :func:`~bayes_retail.pricing.timing.observed_timing`
    of the panel (each category's weekly share of products on display or in the
    mailer, averaged over ``TIMING_SMOOTH_WEEKS`` weeks, with the fitted
    calendar path), at ``positions`` for a horizon, and
    :meth:`~bayes_retail.pricing.model.PricingModel.promotion_tilt`'s weights.
    """
    from bayes_retail.pricing.timing import observed_timing

    panel = basis.panel
    try:  # the shares are per sequence of the model: same products, same weeks
        stack = pricing_model._check_panel(panel)
    except ValueError as err:
        raise ValueError(f"seasonal promotion timing needs the data the pricing model was fitted on: {err} "
                         "(promotion_timing='homogeneous' needs only that it prices every product)") from None
    timing = observed_timing(panel.display, panel.mailer, stack.model, stack.n_models, positions,
                             calendar=pricing_model.calendar.path, smooth_weeks=TIMING_SMOOTH_WEEKS)
    tilt, info = pricing_model.promotion_tilt(timing)
    return timing, tilt, info


def hmm_prices(basis: PriceBasis, pricing_model, rng: np.random.Generator, *,
               promotion_propensity: str = "joint", positions: np.ndarray | None = None,
               seasonal: tuple | None = None) -> PriceGrid:
    """Prices drawn from the fitted pricing HMMs over the data's weeks (one path per call).

    ``promotion_propensity="observed"`` hands each category's drawn promotion
    paths to its products by rank of promoted weeks (:func:`propensity_rows`);
    ``"joint"`` by their promoted and discounted shares together
    (:func:`matched_rows`; needs ``basis.discounted_share``);
    ``"exchangeable"`` keeps the HMM's own, arbitrary assignment. The tail
    products' flags are drawn week by week from their observed frequencies (:func:`_drawn_flags`).
    ``positions`` (:func:`horizon_positions`) draws as many weeks instead, each
    with the shelf availability of its data week. ``seasonal``: the
    ``(timing, tilt, info)`` of :func:`seasonal_timing` for the same weeks
    (promotion paths tilted toward each category's observed season); ``None``:
    the HMMs' own timing.
    """
    if promotion_propensity not in PROMOTION_PROPENSITIES:
        raise ValueError(f"promotion_propensity must be one of {PROMOTION_PROPENSITIES}, got {promotion_propensity!r}")
    panel = basis.panel
    weeks = panel.weeks if positions is None else panel.weeks[0] + np.arange(len(positions))
    if seasonal is None:
        sim = pricing_model.simulate(weeks, rng)
    else:
        sim = pricing_model.simulate(weeks, rng, timing=seasonal[0], tilt=seasonal[1])
    n_w = weeks.size
    order = pd.Index(sim["product_id"].to_numpy()[::n_w])
    rows = order.get_indexer(panel.products["product_id"].to_numpy()[basis.columns])
    if np.any(rows < 0):
        raise ValueError("the pricing model does not price every choice-set product (fit it on the same data)")

    def grid(name):
        return sim[name].to_numpy(dtype=float).reshape(-1, n_w)[rows]

    top = {"shelf": grid("base_price"), "depth": np.clip(grid("depth"), 0.0, 0.99),
           "display": grid("display"), "mailer": grid("mailer")}
    promoted = (top["display"] > 0) | (top["mailer"] > 0)
    source = None
    if promotion_propensity == "observed":
        source = propensity_rows(promoted.sum(axis=1), basis.promoted_share, basis.product_category, rng)
    elif promotion_propensity == "joint":
        if basis.discounted_share is None:
            raise ValueError("joint path matching needs the products' discounted shares (price_basis(..., depth=...))")
        drawn = np.column_stack([promoted.mean(axis=1), (top["depth"] > 0).mean(axis=1)])
        observed = np.column_stack([basis.promoted_share, basis.discounted_share])
        source = matched_rows(drawn, observed, basis.product_category, rng)
    if source is not None:
        top.update({name: top[name][source] for name in ("depth", "display", "mailer")})
    if basis.available is not None:  # no promotion for a product off the shelf
        on_shelf = basis.available if positions is None else basis.available[:, positions]
        top.update({name: np.where(on_shelf, top[name], 0.0) for name in ("depth", "display", "mailer")})
    grids = _with_tail(top, basis, n_w, rng, observed=False)
    return PriceGrid(**grids, log_shelf_centre=basis.log_shelf_centre,
                     available=basis.full_availability(n_w, positions))
