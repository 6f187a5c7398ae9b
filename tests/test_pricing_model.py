"""The pricing model (bayes_retail.pricing.model): panel, BIC choice, degenerate input, imputation, simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_retail.pricing.emissions import PromotionEmission, RelativePriceEmission
from bayes_retail.pricing.hmm import Stack, forward_backward
from bayes_retail.pricing.hmmlearn_models import MISSING
from bayes_retail.pricing.model import (
    MAX_DEPTH,
    CalendarHMM,
    HMMSet,
    PricingConfig,
    PricingModel,
    PricingPanel,
    _hold_within_visits,
    fit_calendar,
    fit_pricing,
)
from bayes_retail.pricing.validate import co_promotion_share, observed_panel, promo_run_lengths

WEEKS = np.arange(1, 53)


def _logit(p):
    return np.log(p / (1 - p))


def long_frame(product_id, category_id, shelf, observed, depth, display, mailer, weeks=WEEKS) -> pd.DataFrame:
    """A ``product_weeks`` table from (T, N) arrays (the data layer's columns)."""
    n, t_len = len(product_id), len(weeks)
    return pd.DataFrame(
        {
            "product_id": np.repeat(product_id, t_len),
            "category_id": np.repeat(category_id, t_len),
            "item": np.repeat(np.arange(n), t_len),
            "week": np.tile(weeks, n),
            "shelf_price": shelf.T.ravel(),
            "shelf_observed": observed.T.ravel(),
            "depth": depth.T.ravel(),
            "display": display.T.ravel(),
            "mailer": mailer.T.ravel(),
        }
    )


def chain(rng, start, trans_by_step, n):
    """(T, N) states; ``trans_by_step[t - 1]`` is the (K, K) matrix of the step into week t."""
    t_len = len(trans_by_step) + 1
    s = np.empty((t_len, n), dtype=np.int64)
    s[0] = (rng.random(n)[:, None] > np.cumsum(start)).sum(axis=1)
    for t in range(1, t_len):
        s[t] = (rng.random(n)[:, None] > np.cumsum(trans_by_step[t - 1][s[t - 1]], axis=1)).sum(axis=1)
    return np.minimum(s, len(start) - 1)


def synthetic_product_weeks(rng, n_move=12, n_flat=6) -> pd.DataFrame:
    """Category 0: two promotion regimes and two base-price levels; category 1: one price, never promoted."""
    t_len = WEEKS.size
    promo_a = np.array([[0.9, 0.1], [0.5, 0.5]])
    ps = chain(rng, np.array([0.8, 0.2]), np.tile(promo_a, (t_len - 1, 1, 1)), n_move)
    display = rng.random(ps.shape) < np.array([0.03, 0.7])[ps]
    mailer = rng.random(ps.shape) < np.array([0.02, 0.8])[ps]
    y = np.array([_logit(0.1), _logit(0.3)])[ps] + 0.3 * rng.standard_normal(ps.shape)
    depth = np.where(rng.random(ps.shape) < np.array([0.95, 0.1])[ps], 0.0, np.round(1 / (1 + np.exp(-y)), 2))
    bs = chain(rng, np.array([0.5, 0.5]), np.tile([[0.95, 0.05], [0.05, 0.95]], (t_len - 1, 1, 1)), n_move)
    shelf = np.round(rng.uniform(1, 5, n_move) * np.where(bs == 1, 1.0, 0.85), 2)
    seen = rng.random(shelf.shape) < 0.6
    moving = long_frame(
        np.arange(100, 100 + n_move), np.zeros(n_move, int), shelf, seen, np.where(seen, depth, np.nan), display, mailer
    )
    flat_seen = rng.random((t_len, n_flat)) < 0.6
    no = np.zeros((t_len, n_flat), dtype=bool)
    flat = long_frame(
        np.arange(200, 200 + n_flat), np.ones(n_flat, int), np.full((t_len, n_flat), 3.49), flat_seen,
        np.where(flat_seen, 0.0, np.nan), no, no,
    )
    return pd.concat([moving, flat], ignore_index=True)


@pytest.fixture(scope="module")
def fitted():
    pw = synthetic_product_weeks(np.random.default_rng(0))
    config = PricingConfig(n_base_states=3, n_promo_states=3, n_calendar_states=2, restarts=2, max_iter=100)
    model = fit_pricing(pw, config=config, rng=np.random.default_rng(1))
    return pw, model


# --------------------------------------------------------------------------- config and panel


@pytest.mark.parametrize(
    "bad",
    [{"restarts": 0}, {"n_promo_states": 0}, {"max_iter": 0}, {"n_imputations": 0}, {"min_occupancy": 1.0}, {"min_occupancy": -0.1}],
)
def test_pricing_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        PricingConfig(**bad)


def test_panel_reshapes_product_weeks_into_week_by_product_arrays():
    pw = synthetic_product_weeks(np.random.default_rng(2), n_move=3, n_flat=2)
    shuffled = pw.sample(frac=1.0, random_state=0)
    panel = PricingPanel.from_product_weeks(shuffled)
    assert panel.shelf.shape == (52, 5)
    np.testing.assert_array_equal(panel.weeks, WEEKS)
    np.testing.assert_array_equal(panel.products["product_id"], [100, 101, 102, 200, 201])
    np.testing.assert_array_equal(panel.products["category_id"], [0, 0, 0, 1, 1])
    one = pw[pw["product_id"] == 101].sort_values("week")
    seen = one["shelf_observed"].to_numpy()
    median = np.median(one["shelf_price"].to_numpy()[seen])
    assert panel.products["median_shelf"][1] == median
    # x: log relative shelf price where observed, NaN where the shelf price was carried
    np.testing.assert_allclose(panel.x[seen, 1], np.log(one["shelf_price"].to_numpy()[seen] / median))
    assert np.isnan(panel.x[~seen, 1]).all()
    np.testing.assert_array_equal(panel.depth[:, 1], one["depth"].to_numpy())
    np.testing.assert_array_equal(panel.display[:, 1], one["display"].to_numpy())
    np.testing.assert_array_equal(panel.stack.model, [0, 0, 0, 1, 1])


def test_panel_rejects_a_grid_with_a_missing_product_week():
    pw = synthetic_product_weeks(np.random.default_rng(2), n_move=3, n_flat=2)
    with pytest.raises(ValueError, match="dense"):
        PricingPanel.from_product_weeks(pw.drop(index=7))


def _calendar_panel(mailer):
    t_len, n = mailer.shape
    z = np.zeros((t_len, n))
    return PricingPanel(
        products=pd.DataFrame({"product_id": np.arange(n), "category_id": np.zeros(n, int), "median_shelf": np.ones(n)}),
        weeks=np.arange(1, t_len + 1), shelf=z + 1, shelf_observed=np.ones((t_len, n), bool), x=z,
        display=np.zeros((t_len, n), bool), mailer=mailer, depth=z,
    )


def test_calendar_hmm_finds_the_big_mailer_weeks_and_sorts_them_last():
    rng = np.random.default_rng(0)
    heavy = np.zeros(52, dtype=bool)
    heavy[[4, 5, 12, 13, 20, 21, 22, 33, 34, 45, 46]] = True
    # 4% of 150 products in the mailer in ordinary weeks, 30% in the big-mailer weeks
    mailer = rng.random((52, 150)) < np.where(heavy, 0.3, 0.04)[:, None]
    cal = fit_calendar(_calendar_panel(mailer), n_states=2, rng=np.random.default_rng(1))
    assert cal.n_states == 2
    np.testing.assert_array_equal(cal.path, heavy.astype(int))
    assert cal.means[1, 0] > cal.means[0, 0]
    np.testing.assert_array_equal(cal.transitions(), cal.path[1:])
    np.testing.assert_allclose(cal.transmat.sum(axis=1), 1.0)


# --------------------------------------------------------------------------- fitting and BIC


def _arrays(hmm: HMMSet):
    yield "startprob", hmm.startprob
    yield "transmat", hmm.transmat
    yield "loglik", hmm.loglik
    yield "occupancy", hmm.occupancy
    yield from hmm.params.items()


def test_degenerate_category_ends_with_one_state_and_no_nan(fitted):
    # category 1: one shelf price, never on display or in the mailer, depth 0 or missing:
    # extra states only copy the one state, so BIC must keep K = 1
    _, model = fitted
    assert model.base.n_states[1] == 1
    assert model.promo.n_states[1] == 1
    for hmm in (model.base, model.promo):
        for name, value in _arrays(hmm):
            assert np.isfinite(value).all(), (hmm.kind, name)
        # the one-state fit always qualifies: its BIC is recorded
        assert np.isfinite(hmm.bic[1, 0])
    assert model.promo.params["p_zero"][1, 0] > 0.999
    assert model.promo.params["p_display"][1, 0] < 1e-3


def test_bic_keeps_the_regimes_of_a_category_that_has_them(fitted):
    # category 0: two base levels (x in {0, +-0.16} around each product's median) and two promotion regimes
    _, model = fitted
    assert model.base.n_states[0] >= 2
    assert model.promo.n_states[0] == 2
    for hmm in (model.base, model.promo):
        bic = hmm.bic[0]
        assert hmm.n_states[0] - 1 == np.nanargmin(bic)  # the kept K is the one with the lowest BIC
        # padded states: start probability 0, never entered, parameters finite
        k = hmm.n_states[0]
        assert np.all(hmm.startprob[0, k:] == 0)
        assert np.all(hmm.transmat[0, :, :k, k:] == 0)
        np.testing.assert_allclose(hmm.transmat[0].sum(axis=-1), 1.0)


def test_fit_pricing_is_reproducible_from_its_generator(fitted):
    pw, model = fitted
    config = model.config
    again = fit_pricing(pw, config=config, rng=np.random.default_rng(1))
    for a, b in ((model.base, again.base), (model.promo, again.promo)):
        for (name, x), (_, y) in zip(_arrays(a), _arrays(b)):
            np.testing.assert_array_equal(x, y, err_msg=name)
    np.testing.assert_array_equal(model.calendar.path, again.calendar.path)


# --------------------------------------------------------------------------- simulation


def test_simulation_of_the_degenerate_category_is_flat(fitted):
    _, model = fitted
    sim = model.simulate(WEEKS, np.random.default_rng(3))
    flat = sim[sim["category_id"] == 1]
    assert len(flat) == 6 * 52
    # each product's price is its median shelf price every week, never discounted or promoted
    assert (flat["base_price"] == 3.49).all()
    assert (flat.groupby("product_id")["price"].median() == 3.49).all()
    assert (flat["depth"] == 0).all()
    assert not flat["display"].any() and not flat["mailer"].any()


def test_simulate_is_reproducible_and_prices_are_base_times_one_minus_depth(fitted):
    _, model = fitted
    a = model.simulate(WEEKS, np.random.default_rng(4))
    b = model.simulate(WEEKS, np.random.default_rng(4))
    pd.testing.assert_frame_equal(a, b)
    c = model.simulate(WEEKS, np.random.default_rng(5))
    assert not a["depth"].equals(c["depth"])
    assert list(a.columns) == ["product_id", "category_id", "week", "base_price", "depth", "price", "display", "mailer"]
    assert len(a) == 18 * 52
    np.testing.assert_array_equal(a["price"], np.round(a["base_price"] * (1 - a["depth"]), 2))
    assert a["depth"].between(0, MAX_DEPTH).all()
    np.testing.assert_array_equal(a["depth"], np.round(a["depth"], 2))  # hundredths, as in the data
    assert (a["base_price"] >= 0.01).all()
    # the moving category is actually promoted
    moving = a[a["category_id"] == 0]
    assert (moving["depth"] > 0).mean() > 0.05 and moving["display"].mean() > 0.05


def test_base_price_holds_within_a_regime_visit():
    states = np.array([[0, 0, 1, 1, 1, 0, 2, 2], [1, 1, 1, 1, 1, 1, 1, 1]])
    x = np.arange(16.0).reshape(2, 8)
    held = _hold_within_visits(x, states)
    # each visit takes its first week's draw; a return to a state is a new visit
    np.testing.assert_array_equal(held[0], [0, 0, 2, 2, 2, 5, 6, 6])
    np.testing.assert_array_equal(held[1], np.full(8, 8.0))


def test_simulated_base_price_changes_only_with_the_base_state():
    # a one-state base HMM with p_zero 0.5: one visit, so each product keeps one level all year
    model = hand_model(n=40, base_params={"p_zero": [[0.5]], "mu": [[0.1]], "var": [[0.01]]})
    sim = model.simulate(WEEKS, np.random.default_rng(6))
    per_product = sim.groupby("product_id")["base_price"]
    assert (per_product.nunique() == 1).all()
    # ... and the levels are the emission's: about half exactly the median (2.00), the others spread
    level = per_product.first()
    assert 0.3 < (level == 2.0).mean() < 0.7
    assert level[level != 2.0].nunique() > 5


# --------------------------------------------------------------------------- imputation


TRUE_A = np.array(
    [
        [[0.85, 0.1, 0.05], [0.25, 0.65, 0.1], [0.2, 0.1, 0.7]],  # ordinary weeks
        [[0.6, 0.25, 0.15], [0.15, 0.7, 0.15], [0.1, 0.1, 0.8]],  # big-mailer weeks
    ]
)
TRUE_START = np.array([0.6, 0.25, 0.15])
TRUE_PROMO = {
    "p_display": np.array([0.02, 0.3, 0.8]),
    "p_mailer": np.array([0.01, 0.2, 0.7]),
    "p_mailer_cal1": np.array([0.05, 0.5, 0.9]),
    "p_zero": np.array([0.9, 0.3, 0.05]),
    "depth_mu": _logit(np.array([0.1, 0.15, 0.4])),
    "depth_var": np.array([0.3, 0.1, 0.1]),
}
CAL_PATH = (np.arange(52) % 6 >= 4).astype(np.int64)  # two big-mailer weeks in every six


def hmmset(kind, start, trans, params):
    start = np.array(start, dtype=float)  # copies: tests edit a model's arrays
    m, k = start.shape
    return HMMSet(
        kind=kind, n_states=np.full(m, k), startprob=start, transmat=np.array(trans, dtype=float),
        params={name: np.array(v, dtype=float) for name, v in params.items()},
        loglik=np.zeros(m), n_iter=np.ones(m, dtype=np.int64), converged=np.ones(m, dtype=bool),
        occupancy=np.ones((m, k)), restart_loglik=np.zeros((m, 1)), bic=np.zeros((m, k)),
    )


def hand_model(n, base_params=None, weeks=WEEKS):
    """A PricingModel with known parameters: one category of ``n`` products, a two-state calendar."""
    base_params = base_params or {"p_zero": [[0.9]], "mu": [[0.0]], "var": [[1e-3]]}
    promo = hmmset("promotion", TRUE_START[None], TRUE_A[None], {k: v[None] for k, v in TRUE_PROMO.items()})
    base = hmmset("base_price", [[1.0]], [[[[1.0]]]], base_params)
    calendar = CalendarHMM(
        startprob=np.array([0.7, 0.3]), transmat=np.array([[0.75, 0.25], [0.5, 0.5]]),
        means=np.array([[-3.0], [-1.0]]), variances=np.array([[0.1], [0.1]]),
        path=CAL_PATH[: weeks.size], weeks=weeks, loglik=0.0,
    )
    catalogue = pd.DataFrame({"product_id": np.arange(n), "category_id": np.zeros(n, int), "median_shelf": np.full(n, 2.0)})
    return PricingModel(base, promo, calendar, catalogue, PricingConfig())


def promotion_panel(rng, n, hide=0.5):
    """Data drawn from the hand model's promotion HMM; returns the panel and the complete (T, N) depths."""
    s = chain(rng, TRUE_START, TRUE_A[CAL_PATH[1:]], n)
    display = rng.random(s.shape) < TRUE_PROMO["p_display"][s]
    p_mailer = np.where(CAL_PATH[:, None] == 1, TRUE_PROMO["p_mailer_cal1"][s], TRUE_PROMO["p_mailer"][s])
    mailer = rng.random(s.shape) < p_mailer
    y = TRUE_PROMO["depth_mu"][s] + np.sqrt(TRUE_PROMO["depth_var"][s]) * rng.standard_normal(s.shape)
    depth = np.where(rng.random(s.shape) < TRUE_PROMO["p_zero"][s], 0.0, 1 / (1 + np.exp(-y)))
    depth = np.clip(np.round(depth, 2), 0.0, MAX_DEPTH)
    hidden = rng.random(s.shape) < hide
    pw = long_frame(
        np.arange(n), np.zeros(n, int), np.full(s.shape, 2.0), ~hidden, np.where(hidden, np.nan, depth), display, mailer
    )
    return PricingPanel.from_product_weeks(pw), depth


def test_imputed_depths_are_calibrated_for_the_hidden_weeks():
    model = hand_model(200)
    panel, truth = promotion_panel(np.random.default_rng(0), 200)
    draws = model.impute_depths(panel, np.random.default_rng(1), m=200)
    hidden = np.isnan(panel.depth)
    assert 0.4 < hidden.mean() < 0.6  # ~5200 hidden cells
    # central 90% interval of the 200 draws; ties at 0 make it cover a true 0 whenever P(0) > 5%,
    # so coverage sits a little above 0.90 (binomial sd over 5200 cells: 0.004)
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    covered = (truth >= lo) & (truth <= hi)
    assert 0.88 <= covered[hidden].mean() <= 0.97
    assert 0.85 <= covered[hidden & (truth > 0)].mean() <= 0.95
    # the share of zeros: over the hidden cells, and separately where the product was on display
    # (where the imputation must have used the flags); sd ~ 0.007 overall, ~0.02 on display
    for cells, tol in ((hidden, 0.025), (hidden & panel.display, 0.06), (hidden & ~panel.display, 0.025)):
        assert (draws[:, cells] == 0).mean() == pytest.approx((truth[cells] == 0).mean(), abs=tol)
    # power: a model with the wrong zero probabilities misses the zero share by far more than that
    wrong = hand_model(200)
    wrong.promo.params["p_zero"][:] = 0.6
    bad = wrong.impute_depths(panel, np.random.default_rng(1), m=20)
    assert abs((bad[:, hidden] == 0).mean() - (truth[hidden] == 0).mean()) > 0.06


def test_imputed_zero_share_follows_the_smoothing_posterior_with_the_calendar():
    # n copies of one product: each copy's imputation is an independent draw, so per week the share
    # of imputed zeros estimates P(depth = 0 | data) = sum_k gamma_t(k) p_zero_k exactly.
    # Big-mailer weeks send every product to the deep state, so ignoring the calendar is visible.
    t_len, n = 12, 4000
    weeks = WEEKS[:t_len]
    model = hand_model(n, weeks=weeks)
    model.promo.transmat[0, 1] = [[0.02, 0.03, 0.95]] * 3
    display = np.array([0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    depth = np.array([0.0, np.nan, np.nan, 0.0, np.nan, 0.35, np.nan, np.nan, 0.1, np.nan, np.nan, np.nan])
    pw = long_frame(
        np.arange(n), np.zeros(n, int), np.full((t_len, n), 2.0), np.tile(~np.isnan(depth)[:, None], n),
        np.tile(depth[:, None], n), np.tile(display[:, None], n), np.zeros((t_len, n), bool), weeks=weeks,
    )
    panel = PricingPanel.from_product_weeks(pw)
    draws = model.impute_depths(panel, np.random.default_rng(7), m=1)[0]

    emission = PromotionEmission(calendar=model.calendar.path, n_calendar=2)
    one = Stack(np.zeros(1, dtype=np.int64), 1)
    obs = {"display": display[:, None], "mailer": np.zeros((t_len, 1), bool), "depth": depth[:, None]}
    post = forward_backward(
        emission.log_likelihood(model.promo.params, obs, one), one.gather(model.promo.startprob),
        one.gather(model.promo.transmat), model.calendar.transitions(),
    )
    p_zero = post.gamma[:, :, 0] @ model.promo.params["p_zero"][0]
    hidden = np.isnan(depth)
    # binomial sd <= sqrt(0.25 / 4000) = 0.008: 0.035 is > 4 sd
    np.testing.assert_allclose((draws[hidden] == 0).mean(axis=1), p_zero[hidden], atol=0.035)
    assert p_zero[hidden].max() - p_zero[hidden].min() > 0.3  # the weeks really differ


def test_imputation_keeps_observed_depths_and_rounds_like_the_data():
    model = hand_model(30)
    panel, _ = promotion_panel(np.random.default_rng(2), 30)
    draws = model.impute_depths(panel, np.random.default_rng(3), m=7)
    assert draws.shape == (7, 52, 30)
    seen = ~np.isnan(panel.depth)
    for d in draws:
        np.testing.assert_array_equal(d[seen], panel.depth[seen])
    assert not np.isnan(draws).any()
    assert np.all((draws >= 0) & (draws <= MAX_DEPTH))
    np.testing.assert_array_equal(draws, np.round(draws, 2))
    # default M is the config's; same generator state -> same draws
    assert model.impute_depths(panel, np.random.default_rng(3)).shape[0] == model.config.n_imputations
    np.testing.assert_array_equal(model.impute_depths(panel, np.random.default_rng(3), m=7), draws)


def test_imputation_refuses_a_panel_of_other_products_or_weeks():
    model = hand_model(30)
    panel, _ = promotion_panel(np.random.default_rng(2), 31)
    with pytest.raises(ValueError, match="products"):
        model.impute_depths(panel, np.random.default_rng(0), m=1)
    short = hand_model(30, weeks=WEEKS[:40])
    panel, _ = promotion_panel(np.random.default_rng(2), 30)
    with pytest.raises(ValueError, match="weeks"):
        short.impute_depths(panel, np.random.default_rng(0), m=1)


# --------------------------------------------------------------------------- hmmlearn view


def test_category_hmm_scores_a_sequence_like_the_batched_engine(fitted):
    pw, model = fitted
    panel = PricingPanel.from_product_weeks(pw)
    n_cal = model.calendar.n_states
    j = 0  # a product of category 0
    one = Stack(np.zeros(1, dtype=np.int64), model.base.n_models)
    obs = {"display": panel.display[:, [j]], "mailer": panel.mailer[:, [j]], "depth": panel.depth[:, [j]]}
    coded_depth = np.where(np.isnan(obs["depth"][:, 0]), MISSING, obs["depth"][:, 0])
    X = np.column_stack([obs["display"][:, 0], obs["mailer"][:, 0], coded_depth])
    for c in range(n_cal):
        # the hmmlearn view has the transitions and the mailer probability of calendar state c:
        # the engine with that calendar state in every week is the same model
        path = np.full(52, c)
        emission = PromotionEmission(calendar=path, n_calendar=n_cal)
        post = forward_backward(
            emission.log_likelihood(model.promo.params, obs, one),
            one.gather(model.promo.startprob),
            one.gather(model.promo.transmat),
            path[1:],
        )
        hmm = model.category_hmm("promotion", 0, calendar_state=c)
        assert hmm.n_components == model.promo.n_states[0]
        assert hmm.score(X.astype(float)) == pytest.approx(post.loglik[0], rel=1e-10)
    x = panel.x[:, [j]]
    post = forward_backward(
        RelativePriceEmission().log_likelihood(model.base.params, {"x": x}, one),
        one.gather(model.base.startprob),
        one.gather(model.base.transmat),
    )
    base = model.category_hmm("base_price", 0)
    assert base.score(np.where(np.isnan(x), MISSING, x)) == pytest.approx(post.loglik[0], rel=1e-10)
    with pytest.raises(ValueError, match="kind"):
        model.category_hmm("calendar", 0)


# --------------------------------------------------------------------------- validation helpers


def _panel(rows):
    return pd.DataFrame(rows, columns=["product_id", "category_id", "week", "display", "mailer"])


def test_promo_run_lengths_count_consecutive_promoted_weeks_per_product():
    # product 1: weeks 1-2 promoted, 4 promoted; product 2: weeks 1-4 (a run must not join across products)
    rows = [(1, 0, w, w in (1, 2), w == 4) for w in range(1, 5)] + [(2, 0, w, True, False) for w in range(1, 5)]
    df = _panel(rows).sample(frac=1.0, random_state=1)
    np.testing.assert_array_equal(np.sort(promo_run_lengths(df)), [1, 2, 4])
    assert promo_run_lengths(_panel([(1, 0, 1, False, False)])).size == 0


def test_co_promotion_share_by_hand():
    # category 0, week 1: 2 of 3 promoted -> 2 * 1 / (2 * 2); week 2: 1 of 3 -> 0 / (1 * 2)
    rows = [(1, 0, 1, True, False), (2, 0, 1, False, True), (3, 0, 1, False, False)]
    rows += [(1, 0, 2, True, False), (2, 0, 2, False, False), (3, 0, 2, False, False)]
    assert co_promotion_share(_panel(rows)) == pytest.approx(2 / 6)
    assert np.isnan(co_promotion_share(_panel([(1, 0, 1, False, False)])))


def test_observed_panel_reports_carried_shelf_prices_as_missing(fitted):
    pw, _ = fitted
    panel = PricingPanel.from_product_weeks(pw)
    long = observed_panel(panel)
    assert len(long) == panel.shelf.size
    seen = panel.shelf_observed.T.ravel()
    assert long["base_price"][~seen].isna().all()
    np.testing.assert_array_equal(long["base_price"][seen], panel.shelf.T.ravel()[seen])
    np.testing.assert_array_equal(long["shelf_carried"], panel.shelf.T.ravel())
    filled = np.nan_to_num(panel.depth)
    np.testing.assert_array_equal(observed_panel(panel, filled)["depth"], filled.T.ravel())


def test_replay_uses_the_observed_prices_and_the_given_imputation(fitted):
    pw, model = fitted
    panel = PricingPanel.from_product_weeks(pw)
    depths = model.impute_depths(panel, np.random.default_rng(8), m=2)
    replay = panel.replay(depths[1])
    assert list(replay.columns) == list(model.simulate(panel.weeks, np.random.default_rng(0)).columns)
    merged = replay.merge(pw, on=["product_id", "week"])
    # the carried shelf price is the base price; observed depths are kept, missing ones imputed
    np.testing.assert_array_equal(merged["base_price"], merged["shelf_price"])
    seen = merged["depth_y"].notna()
    np.testing.assert_array_equal(merged.loc[seen, "depth_x"], merged.loc[seen, "depth_y"])
    np.testing.assert_allclose(replay["price"], np.round(replay["base_price"] * (1 - replay["depth"]), 2))
    with pytest.raises(ValueError, match="missing values"):
        panel.replay(panel.depth)
