"""Simulation runs: the output folder, its schema, batch-size and resume invariance, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_retail.errors import ArtifactError
from bayes_retail.simulate.population import bootstrap_weights, choose_templates
from bayes_retail.simulate.run import (
    MANIFEST_FILENAME,
    PROMO_WEEKS_FILENAME,
    TRANSACTION_COLUMNS,
    SimulationSpec,
    draw_world,
    part_path,
    run_simulation,
)
from bayes_retail.simulate.synthetic import synthetic_catalogue, synthetic_draw, synthetic_prices, synthetic_templates

N_WEEKS = 12


@pytest.fixture(scope="module")
def setting():
    rng = np.random.default_rng(4)
    catalogue = synthetic_catalogue(rng, n_categories=4, items=5, tail=3)
    templates = synthetic_templates(rng, 40, catalogue.n_categories, N_WEEKS)
    draws = {d: (synthetic_draw(np.random.default_rng(100 + d), catalogue, N_WEEKS),
                 synthetic_prices(np.random.default_rng(200 + d), catalogue, N_WEEKS)) for d in range(3)}
    calls = []

    def worlds(d):
        calls.append(d)
        draw, prices = draws[d]
        return draw_world(d, draw, templates, prices, catalogue, signal_sd=1.0,
                          entry_weeks=np.arange(4), week_numbers=np.arange(N_WEEKS) + 2)

    return catalogue, templates, worlds, calls


def _read(out):
    table = pd.read_parquet(out / "transactions")
    return table.sort_values(["draw", "customer", "week", "basket_id", "product_id"], ignore_index=True)


def test_a_run_writes_the_transactions_schema_a_calendar_and_a_manifest(setting, tmp_path):
    catalogue, templates, worlds, _ = setting
    spec = SimulationSpec(customers=90, draws=(0, 2), seed=3, batch_size=40)
    manifest = run_simulation(worlds, catalogue, spec, tmp_path / "sim", provenance={"data_hash": "abc"})
    table = _read(tmp_path / "sim")
    assert manifest["complete"] and manifest["lines"] == len(table) > 0
    assert json.loads((tmp_path / "sim" / MANIFEST_FILENAME).read_text()) == json.loads(json.dumps(manifest))
    assert set(table.columns) == set(TRANSACTION_COLUMNS)
    direct = pd.read_parquet(part_path(tmp_path / "sim", 0, 0))
    assert list(direct.columns) == [c for c in TRANSACTION_COLUMNS if c != "draw"] + ["draw"]
    assert sorted(table["draw"].astype(int).unique()) == [0, 2]
    assert table["week"].between(2, N_WEEKS + 1).all() and table["quantity"].min() >= 1
    assert set(table["product_id"]) <= set(catalogue.product_ids)
    np.testing.assert_allclose(table["sales_value"], (table["quantity"] * table["base_price"] * (1 - table["depth"])).round(2))
    np.testing.assert_allclose(table["retail_disc"], (table["quantity"] * table["base_price"] * table["depth"]).round(2))
    # new customers get ids of their own; their store is their template's
    assert table["household_id"].between(1, 90).all()
    assert set(table["store_id"]) <= set(templates.store_id)
    # one basket id per (draw, customer, week, trip): never shared across customers or draws
    assert table.groupby("basket_id")[["customer", "week", "draw"]].nunique().max().max() == 1
    calendar = pd.read_parquet(tmp_path / "sim" / PROMO_WEEKS_FILENAME)
    assert list(calendar.columns) == ["product_id", "week", "display", "mailer", "draw"]
    assert (calendar["display"] | calendar["mailer"]).all() and sorted(calendar["draw"].unique()) == [0, 2]


def test_the_lines_do_not_depend_on_the_batch_size(setting, tmp_path):
    catalogue, _, worlds, _ = setting
    a = run_simulation(worlds, catalogue, SimulationSpec(customers=70, draws=(1,), seed=8, batch_size=70), tmp_path / "a")
    b = run_simulation(worlds, catalogue, SimulationSpec(customers=70, draws=(1,), seed=8, batch_size=9), tmp_path / "b")
    assert a["lines"] == b["lines"]
    pd.testing.assert_frame_equal(_read(tmp_path / "a"), _read(tmp_path / "b"))
    c = run_simulation(worlds, catalogue, SimulationSpec(customers=70, draws=(1,), seed=9, batch_size=70), tmp_path / "c")
    assert not _read(tmp_path / "c").equals(_read(tmp_path / "a")) or c["lines"] != a["lines"]
    # the same seed and batches again, one batch at a time and three side by side: the same files, byte for byte
    parts = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet"))
    assert sum(p.parts[0] == "transactions" for p in parts) == 8  # 70 customers in batches of 9, beside the calendars
    for threads in (1, 3):
        again = tmp_path / f"b{threads}"
        run_simulation(worlds, catalogue, SimulationSpec(customers=70, draws=(1,), seed=8, batch_size=9), again,
                       threads=threads)
        assert parts == sorted(p.relative_to(again) for p in again.rglob("*.parquet"))
        assert all((tmp_path / "b" / p).read_bytes() == (again / p).read_bytes() for p in parts)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        run_simulation(worlds, catalogue, SimulationSpec(customers=70, draws=(1,)), tmp_path / "t0", threads=0)
    assert not (tmp_path / "t0").exists()  # refused before anything is written


def test_an_interrupted_run_resumes_to_the_same_result(setting, tmp_path):
    catalogue, _, worlds, calls = setting
    spec = SimulationSpec(customers=60, draws=(0, 1), seed=2, batch_size=25)
    run_simulation(worlds, catalogue, spec, tmp_path / "whole")

    def failing(d):
        if d == 1:
            raise KeyboardInterrupt
        return worlds(d)

    with pytest.raises(KeyboardInterrupt):
        run_simulation(failing, catalogue, spec, tmp_path / "cut")
    manifest = json.loads((tmp_path / "cut" / MANIFEST_FILENAME).read_text())
    assert manifest["complete"] is False
    assert part_path(tmp_path / "cut", 0, 2).exists() and not part_path(tmp_path / "cut", 1, 0).exists()
    assert not [p for p in (tmp_path / "cut").rglob("*.tmp")]
    calls.clear()
    resumed = run_simulation(worlds, catalogue, spec, tmp_path / "cut")
    assert calls == [1]  # the finished draw is not simulated again
    assert resumed["complete"]
    pd.testing.assert_frame_equal(_read(tmp_path / "cut"), _read(tmp_path / "whole"))


def test_each_draw_is_announced_once_its_files_are_complete_and_a_raising_callback_stops_the_run(setting, tmp_path):
    catalogue, _, worlds, _ = setting
    spec = SimulationSpec(customers=30, draws=(2, 0, 1), seed=2, batch_size=20)
    seen = []

    def on_draw(d):
        assert part_path(tmp_path / "sim", d, 1).exists()
        assert (tmp_path / "sim" / "calendar" / f"draw-{d}.parquet").exists()
        seen.append(d)
        if d == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_simulation(worlds, catalogue, spec, tmp_path / "sim", on_draw=on_draw)
    assert seen == [2, 0] and not part_path(tmp_path / "sim", 1, 0).exists()
    seen.clear()
    run_simulation(worlds, catalogue, spec, tmp_path / "sim", on_draw=seen.append)  # resumed: finished draws too
    assert seen == [2, 0, 1]


def test_a_folder_with_another_run_or_other_files_is_refused(setting, tmp_path):
    catalogue, _, worlds, _ = setting
    run_simulation(worlds, catalogue, SimulationSpec(customers=10, draws=(0,)), tmp_path / "sim")
    with pytest.raises(ArtifactError, match="other arguments"):
        run_simulation(worlds, catalogue, SimulationSpec(customers=11, draws=(0,)), tmp_path / "sim")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not empty"):
        run_simulation(worlds, catalogue, SimulationSpec(customers=10, draws=(0,)), tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_folder_that_cannot_be_made_is_named(setting, tmp_path):
    catalogue, _, worlds, _ = setting
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ArtifactError, match="cannot write") as err:
        run_simulation(worlds, catalogue, SimulationSpec(customers=10, draws=(0,)), blocker / "sim")
    assert str(blocker / "sim") in str(err.value)


def test_bad_specs_are_named():
    for kwargs, word in (({"customers": 0}, "customers"), ({"mode": "clone"}, "mode"), ({"prices": "guess"}, "prices"),
                         ({"draws": ()}, "draws"), ({"seed": -2}, "seed"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=word):
            SimulationSpec(**{"customers": 5, "draws": (0,), **kwargs})


def test_new_customers_are_a_bayesian_bootstrap_of_the_templates(setting):
    _, templates, _, _ = setting
    customers = np.arange(20_000)
    rows, entry, klass = choose_templates(templates, customers, mode="new", seed=1, draw=0, entry_weeks=np.array([0, 0, 3]))
    weights = bootstrap_weights(1, 0, templates.size)
    share = np.bincount(rows, minlength=templates.size) / customers.size
    assert np.max(np.abs(share - weights)) < 5 * np.sqrt(weights.max() / customers.size)
    assert abs(np.mean(entry == 3) - 1 / 3) < 0.02 and set(np.unique(entry)) == {0, 3}
    expected = templates.class_probabilities[rows].mean(axis=0)
    assert np.max(np.abs(np.bincount(klass, minlength=expected.size) / customers.size - expected)) < 0.015
    # another draw resamples the weights
    assert not np.allclose(bootstrap_weights(1, 1, templates.size), weights)
    rows_replay, entry_replay, _ = choose_templates(templates, np.arange(5), mode="replay", seed=1, draw=0)
    assert np.array_equal(rows_replay, np.arange(5)) and np.array_equal(entry_replay, templates.entry_week[:5])
    with pytest.raises(ValueError, match="replay"):
        choose_templates(templates, np.array([templates.size]), mode="replay", seed=1, draw=0)


def test_dask_workers_write_the_same_files_as_the_in_process_run(setting, tmp_path):
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    catalogue, _, worlds, _ = setting
    spec = SimulationSpec(customers=80, draws=(0, 1), seed=6, batch_size=15)
    run_simulation(worlds, catalogue, spec, tmp_path / "here")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run_simulation(worlds, catalogue, spec, tmp_path / "dask", scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(_read(tmp_path / "dask"), _read(tmp_path / "here"))
    for d in spec.draws:
        for b in range(len(spec.batches())):
            assert part_path(tmp_path / "dask", d, b).read_bytes() == part_path(tmp_path / "here", d, b).read_bytes()


def test_population_customers_follow_the_population_distributions(setting):
    from bayes_retail.simulate.population import assemble_customers

    _, templates, _, _ = setting
    pop = templates.population
    n = 40_000
    customers, _ = assemble_customers(templates, np.arange(n), mode="population", seed=3, draw=1,
                                      intensity=np.zeros((4, N_WEEKS)), signal_sd=1.0, entry_weeks=np.arange(4))
    visit = customers.visit
    np.testing.assert_allclose(visit.mean(axis=0), pop["visit_mu"], atol=0.03)
    np.testing.assert_allclose(visit.std(axis=0), pop["visit_sigma"], rtol=0.03)
    assert abs(np.corrcoef(visit[:, 0], visit[:, 2])[0, 1] - pop["visit_corr"]) < 0.02
    assert abs(np.corrcoef(visit[:, 0], visit[:, 1])[0, 1]) < 0.02
    # preference covariance: household_sd^2 + L L^T
    expected = pop["household_sd"] ** 2 + pop["loadings"] @ pop["loadings"].T
    np.testing.assert_allclose(np.cov(customers.category_preference.T), expected, atol=0.03)
    assert abs(customers.basket.std() - pop["basket_sd"]) < 0.01
    share = np.bincount(customers.product_class, minlength=4) / n
    np.testing.assert_allclose(share, 0.25, atol=0.01)


def test_population_coefficients_follow_a_household_fits_population_law():
    import xarray as xr

    from bayes_retail.simulate.population import population_coefficients

    # two draws of a fit with 3 core coefficients and 2 attribute weights (mean 0); draw 1 is the one used
    sigma = np.array([0.5, 1.0, 0.3, 2.0, 0.8])
    corr = np.eye(5)
    corr[3, 4] = corr[4, 3] = -0.6
    corr[0, 1] = corr[1, 0] = 0.4
    posterior = xr.Dataset({
        "mu": (("chain", "draw", "core"), np.array([[[9.0, 9.0, 9.0], [-2.0, 1.5, 0.7]]])),
        "sigma": (("chain", "draw", "coefficient"), np.stack([np.ones(5), sigma])[None]),
        "correlation": (("chain", "draw", "coefficient", "coefficient_other"), np.stack([np.eye(5), corr])[None]),
    })
    theta = population_coefficients(posterior, 1, 50_000, np.random.default_rng(0))
    assert theta.shape == (50_000, 5)
    np.testing.assert_allclose(theta.mean(axis=0), [-2.0, 1.5, 0.7, 0.0, 0.0], atol=0.03)
    np.testing.assert_allclose(theta.std(axis=0), sigma, rtol=0.02)
    np.testing.assert_allclose(np.corrcoef(theta.T), corr, atol=0.02)
    again = population_coefficients(posterior, 1, 50_000, np.random.default_rng(0))
    np.testing.assert_array_equal(theta, again)


def test_tail_size_distribution_by_hand():
    from bayes_retail.simulate.world import tail_size_distribution

    tail = pd.DataFrame({"category_id": [0, 0, 1], "product_id": [10, 11, 20]})
    # category 0: two occasions with 1 tail product (one has a top product beside it), one with 2;
    # category 1: four with 1
    choices = pd.DataFrame({
        "household_id": [1, 1, 1, 2, 2, 1, 2, 3, 4],
        "category_id": [0, 0, 0, 0, 0, 1, 1, 1, 1],
        "week": [1, 1, 2, 1, 1, 1, 1, 1, 1],
        "product_id": [10, 99, 11, 10, 11, 20, 20, 20, 20],
    })
    got = tail_size_distribution(choices, tail, 3, max_size=2, prior_occasions=10.0)
    pooled = np.array([6, 1]) / 7
    np.testing.assert_allclose(got[0], (np.array([2, 1]) + 10 * pooled) / 13)
    np.testing.assert_allclose(got[1], (np.array([4, 0]) + 10 * pooled) / 14)
    np.testing.assert_allclose(got[2], pooled)  # no tail occasions: the pooled distribution


def test_tail_repeat_probability_by_hand():
    from bayes_retail.simulate.world import tail_repeat_probability

    # category 0: tail products 10 / 11 at shares 0.5 / 0.5; category 1: 20 / 21 at 0.25 / 0.75; 99 is a top product
    tail = pd.DataFrame({"category_id": [0, 0, 1, 1], "product_id": [10, 11, 20, 21], "tail_share": [1.0, 1.0, 1.0, 3.0]})
    choices = pd.DataFrame({
        "household_id": [1, 1, 1, 1, 1, 2, 2, 4, 4, 4, 3, 3],
        "category_id": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
        "week": [1, 2, 2, 3, 4, 1, 2, 1, 1, 2, 1, 4],
        "product_id": [10, 10, 99, 11, 11, 99, 11, 10, 11, 11, 20, 20],
    })
    # tail lines after an occasion with tail products (hit, share of that occasion's tail products):
    # category 0: household 1 weeks 2 (1, 0.5), 3 (0, 0.5), 4 (1, 0.5); household 4 week 2 (1, 1.0);
    # household 2's week 2 follows an occasion without tail products: not counted. Category 1: (1, 0.25)
    hits, chance, room = np.array([3.0, 1.0, 0.0]), np.array([2.5, 0.25, 0.0]), np.array([1.5, 0.75, 0.0])
    pooled = (4.0 - 2.75) / 2.25
    got = tail_repeat_probability(choices, tail, 3, prior_lines=3.0)
    np.testing.assert_allclose(got, (hits - chance + 3.0 * pooled) / (room + 3.0))
    np.testing.assert_allclose(got[2], pooled)  # no tail lines: the pooled value
    # repeats below chance: clipped at 0 (household 1 switches between 10 and 11 every week)
    alternating = pd.DataFrame({"household_id": 1, "category_id": 0, "week": [1, 2, 3, 4], "product_id": [10, 11, 10, 11]})
    np.testing.assert_array_equal(tail_repeat_probability(alternating, tail, 3, prior_lines=3.0), 0.0)


def _tail_choices(rng, shares, effects, promoted, lines_per_week):
    """Tail lines drawn from the tail-promotion rule: per category, week and line a product by share x exp(effect)."""
    rows = []
    for c, (share, effect, on) in enumerate(zip(shares, effects, promoted)):
        for w in range(on.shape[1]):
            weight = share * np.exp(effect * on[:, w])
            picks = rng.choice(share.size, size=lines_per_week, p=weight / weight.sum())
            rows += [(c, w + 1, 100 * c + j) for j in picks]
    return pd.DataFrame(rows, columns=["category_id", "week", "product_id"])


def test_tail_promotion_response_recovers_the_effect_and_the_base_shares():
    from bayes_retail.simulate.world import tail_promotion_response

    rng = np.random.default_rng(3)
    n_weeks, n_tail = 40, 5
    shares = [rng.dirichlet(np.full(n_tail, 3.0)) for _ in range(3)]
    promoted = [rng.random((n_tail, n_weeks)) < 0.25, rng.random((n_tail, n_weeks)) < 0.25, np.zeros((n_tail, n_weeks), bool)]
    truth = np.array([1.2, 0.0, 0.7])  # category 2 is never promoted: its effect is not identified
    choices = _tail_choices(rng, shares, truth, promoted, 150)
    tail = pd.DataFrame({"category_id": np.repeat(np.arange(3), n_tail),
                         "product_id": (100 * np.arange(3)[:, None] + np.arange(n_tail)).ravel()})
    j, w = np.nonzero(np.vstack(promoted))
    calendar = pd.DataFrame({"product_id": tail["product_id"].to_numpy()[j], "week": w + 1,
                             "display": True, "mailer": False})
    effect, base = tail_promotion_response(choices, tail, calendar, 4)
    assert effect[0] == pytest.approx(1.2, abs=0.1)
    assert effect[1] == pytest.approx(0.0, abs=0.1)
    # without promoted weeks (category 2) or without tail (category 3): the pooled value, between the two
    assert effect[2] == effect[3] and 0.1 < effect[2] < 1.1
    np.testing.assert_allclose(base, np.concatenate(shares), atol=0.02)
    np.testing.assert_allclose(np.bincount(tail["category_id"], weights=base), 1.0)
    # observed shares overstate the products promoted most: the base shares undo that
    frequent = np.argmax(promoted[0].mean(axis=1))
    observed = choices.loc[choices["category_id"] == 0, "product_id"].value_counts(normalize=True).get(frequent, 0.0)
    assert abs(base[frequent] - shares[0][frequent]) < abs(observed - shares[0][frequent])


def test_tail_promotion_response_keeps_a_separated_category_finite_and_bounded():
    from bayes_retail.simulate.world import TAIL_PROMOTION_BOUND, tail_promotion_response

    # category 0's tail is bought only in the weeks its first product is promoted, and only that product
    tail = pd.DataFrame({"category_id": [0, 0], "product_id": [1, 2]})
    choices = pd.DataFrame({"category_id": 0, "week": [1, 1, 3, 3, 2], "product_id": [1, 1, 1, 1, 2]})
    calendar = pd.DataFrame({"product_id": [1, 1], "week": [1, 3], "display": [True, None], "mailer": [None, True]})
    effect, base = tail_promotion_response(choices, tail, calendar, 1)
    assert np.isfinite(effect).all() and np.all(np.abs(effect) <= TAIL_PROMOTION_BOUND)
    assert effect[0] > 0 and np.isfinite(base).all()
    assert tail_promotion_response(choices.iloc[:0], tail, calendar, 1)[0].tolist() == [0.0]
    # a category whose tail products have no lines keeps uniform base shares
    wider = pd.DataFrame({"category_id": [0, 0, 1, 1], "product_id": [1, 2, 3, 4]})
    effect, base = tail_promotion_response(choices, wider, calendar, 2)
    np.testing.assert_allclose(base[2:], 0.5)
    assert np.isfinite(effect).all() and np.isfinite(base).all()


def test_tail_calendar_and_drawn_flags_keep_each_products_observed_frequencies():
    from bayes_retail.simulate.world import _drawn_flags, tail_calendar

    calendar = pd.DataFrame({"product_id": [7, 7, 8, 9], "week": [2, 3, 2, 40],
                             "display": [True, False, True, True], "mailer": [True, True, None, False]})
    display, mailer = tail_calendar(calendar, np.array([8, 7]), np.array([1, 2, 3]))
    np.testing.assert_array_equal(display, [[False, True, False], [False, True, False]])
    np.testing.assert_array_equal(mailer, [[False, False, False], [False, True, True]])
    rng = np.random.default_rng(0)
    observed_display = rng.random((3, 20_000)) < np.array([[0.3], [0.0], [0.6]])
    observed_mailer = np.where(np.arange(3)[:, None] == 2, observed_display, rng.random((3, 20_000)) < 0.2)
    drawn_display, drawn_mailer = _drawn_flags(observed_display, observed_mailer, np.random.default_rng(1))
    for observed, drawn in ((observed_display & observed_mailer, drawn_display & drawn_mailer),
                            (observed_display & ~observed_mailer, drawn_display & ~drawn_mailer),
                            (~observed_display & observed_mailer, ~drawn_display & drawn_mailer)):
        np.testing.assert_allclose(drawn.mean(axis=1), observed.mean(axis=1), atol=0.015)
    assert not drawn_display[1].any()  # a product never on display is never drawn on display


def test_propensity_rows_match_ranks_within_each_category_only():
    from bayes_retail.simulate.world import propensity_rows

    category = np.array([0, 0, 0, 1, 1, 1, 1])
    drawn = np.array([5, 0, 9, 2, 8, 4, 6])
    observed = np.array([1, 30, 12, 7, 0, 3, 20])
    source = propensity_rows(drawn, observed, category, np.random.default_rng(0))
    assert sorted(source) == list(range(7)) and (category[source] == category).all()
    # by hand: category 0's products in observed order 0, 2, 1 take the rows in drawn order 1, 0, 2;
    # category 1's products 4, 5, 3, 6 take rows 3, 5, 6, 4
    np.testing.assert_array_equal(source, [1, 2, 0, 6, 3, 5, 4])


def test_propensity_rows_break_ties_at_random():
    from bayes_retail.simulate.world import propensity_rows

    category = np.zeros(4, dtype=np.int64)
    drawn = np.array([3, 3, 3, 10])
    observed = np.array([2, 2, 7, 2])
    counts = np.zeros((4, 4))
    for seed in range(1200):
        source = propensity_rows(drawn, observed, category, np.random.default_rng(seed))
        counts[np.arange(4), source] += 1
    np.testing.assert_array_equal(counts[2], [0, 0, 0, 1200])  # the most promoted product takes the top row
    for product in (0, 1, 3):  # the three tied ones share the three tied rows evenly
        assert counts[product, 3] == 0
        assert np.all(np.abs(counts[product, :3] - 400) < 4 * np.sqrt(1200 / 3 * 2 / 3))
