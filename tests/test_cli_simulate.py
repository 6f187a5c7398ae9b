"""``bayes-retail simulate`` end to end on tiny data: every stage fitted, then synthetic shoppers and their check."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bayes_retail.cli import main
from bayes_retail.data import load_data, load_side
from bayes_retail.simulate.run import MANIFEST_FILENAME, TRANSACTION_COLUMNS

def _cli(tmp, *args):
    return main(["--quiet", "--cache-dir", str(tmp / "cache"), *args])


@pytest.fixture(scope="module")
def fitted(tiny_fitted):
    return tiny_fitted


def _simulate(tmp, src, out, *extra):
    return _cli(tmp, "simulate", "--posterior", str(tmp / "models"), "--data", str(src), "--out", str(out), *extra)


def test_simulate_new_customers_writes_lines_the_check_reads(fitted, capsys):
    tmp, src = fitted
    out = tmp / "sim-new"
    assert _simulate(tmp, src, out, "--customers", "25", "--draws", "2", "--seed", "4") == 0
    manifest = json.loads((out / MANIFEST_FILENAME).read_text())
    assert manifest["complete"] and manifest["spec"]["mode"] == "new" and len(manifest["spec"]["draws"]) == 2
    assert set(manifest["provenance"]["traces"]) == {"visit", "category", "product", "quantity", "pricing"}
    assert all(manifest["provenance"]["traces"].values())
    configs = manifest["provenance"]["configs"]  # the configuration each stage was fitted with
    assert set(configs) == {"visit", "category", "product", "quantity"} and all(configs.values())
    lines = pd.read_parquet(out / "transactions")
    assert list(lines.columns) == list(TRANSACTION_COLUMNS) and len(lines) == manifest["lines"] > 0
    data = load_data(src, cache_dir=tmp / "cache")
    assert set(lines["product_id"]) <= set(data.products["product_id"])
    assert set(lines["week"]) <= set(data.weeks)
    draw = manifest["spec"]["draws"][1]
    side = load_side(out, name="synthetic", reference=data, cache_dir=tmp / "cache", draw=draw)
    assert (side.transactions["draw"] == draw).all() and side.meta["calendar"] == "own promo_weeks table"
    assert "draw" not in side.promo_weeks.columns
    capsys.readouterr()
    assert _cli(tmp, "check", "--synthetic", str(out), "--real", str(src), "--draw", str(draw),
                "--out", str(tmp / "report")) == 0
    assert "tier" in capsys.readouterr().out.lower()


def test_replay_simulates_the_fitted_households_with_observed_prices(fitted):
    tmp, src = fitted
    out = tmp / "sim-replay"
    data = load_data(src, cache_dir=tmp / "cache")
    n = len(data.households)
    assert _simulate(tmp, src, out, "--mode", "replay", "--prices", "observed", "--customers", str(n)) == 0
    lines = pd.read_parquet(out / "transactions")
    assert set(lines["household_id"]) <= set(data.households["household_id"])
    # a replayed household shops from its own first week on
    first = lines.groupby("household_id")["week"].min()
    entry = data.households.set_index("household_id")["first_week"]
    assert (first >= entry.reindex(first.index)).all()
    # observed prices: the lines' shelf prices of choice-set products are the panel's
    pw = data.product_weeks.set_index(["product_id", "week"])["shelf_price"]
    on_panel = lines.join(pw, on=["product_id", "week"], how="inner")
    assert len(on_panel) > 0
    np.testing.assert_allclose(on_panel["base_price"], on_panel["shelf_price"])
    # and every line's display / mailer flags are the observed calendar's, tail products' included
    flags = data.promo_weeks[["product_id", "week", "display", "mailer"]].rename(
        columns={"display": "display_observed", "mailer": "mailer_observed"})
    observed = lines.merge(flags, on=["product_id", "week"], how="left")
    for flag in ("display", "mailer"):
        np.testing.assert_array_equal(observed[flag], observed[f"{flag}_observed"].fillna(False).astype(bool))


def test_a_local_cluster_writes_the_same_files_as_the_in_process_run(fitted, tmp_path):
    pytest.importorskip("dask.distributed")
    tmp, src = fitted
    args = ("--customers", "30", "--draws", "2", "--batch-size", "12", "--seed", "5")
    assert _simulate(tmp, src, tmp_path / "here", *args) == 0
    assert _simulate(tmp, src, tmp_path / "cluster", *args, "--scheduler", "local") == 0
    parts = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*.parquet"))
    assert sum(p.parts[0] == "transactions" for p in parts) == 6  # 2 draws x 3 batches
    assert parts == sorted(p.relative_to(tmp_path / "cluster") for p in (tmp_path / "cluster").rglob("*.parquet"))
    assert all((tmp_path / "here" / p).read_bytes() == (tmp_path / "cluster" / p).read_bytes() for p in parts)


def test_the_promotion_timing_is_chosen_and_recorded(fitted, tmp_path):
    from bayes_retail.simulate.run import SimulationSpec

    tmp, src = fitted  # (the tilt itself: tests/test_pricing_timing.py)
    assert _simulate(tmp, src, tmp_path / "s", "--customers", "10") == 0
    assert _simulate(tmp, src, tmp_path / "h", "--customers", "10", "--promotion-timing", "homogeneous") == 0
    spec = json.loads((tmp_path / "s" / MANIFEST_FILENAME).read_text())["spec"]
    assert spec["promotion_timing"] == "seasonal"  # the default
    assert json.loads((tmp_path / "h" / MANIFEST_FILENAME).read_text())["spec"]["promotion_timing"] == "homogeneous"
    with pytest.raises(ValueError, match="promotion_timing must be one of"):
        SimulationSpec(customers=1, draws=(0,), promotion_timing="weekly")


def test_horizon_positions_repeat_the_seasons():
    from bayes_retail.simulate.world import horizon_positions

    positions = horizon_positions(52, 130)
    np.testing.assert_array_equal(positions[:52], np.arange(52))
    np.testing.assert_array_equal(positions[52:104], np.arange(52))  # week 52 + t takes week t's values
    np.testing.assert_array_equal(positions[104:], np.arange(26))
    np.testing.assert_array_equal(horizon_positions(53, 54), np.r_[np.arange(53), 1])  # a 52-week year
    np.testing.assert_array_equal(horizon_positions(52, 5), np.arange(5))  # a prefix
    np.testing.assert_array_equal(horizon_positions(8, 12), np.r_[np.arange(8), np.arange(4)])  # under a year
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        horizon_positions(52, 0)


def test_a_horizon_is_a_prefix_of_the_data_or_repeats_its_seasons(fitted, tmp_path, capsys):
    from bayes_retail.simulate.run import _folder_worlds

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    weeks = np.asarray(data.weeks)
    n = len(data.households)
    # fewer weeks under observed prices: exactly the first weeks of the full run (streams are keyed by week)
    replay = ("--mode", "replay", "--prices", "observed", "--customers", str(n), "--seed", "3")
    assert _simulate(tmp, src, tmp_path / "full", *replay) == 0
    assert _simulate(tmp, src, tmp_path / "prefix", *replay, "--weeks", "3") == 0
    full = pd.read_parquet(tmp_path / "full" / "transactions")
    prefix = pd.read_parquet(tmp_path / "prefix" / "transactions")
    assert set(prefix["week"]) <= set(weeks[:3]) and len(prefix) > 0
    head = full[full["week"].isin(weeks[:3])]
    columns = ["household_id", "week", "product_id", "quantity", "base_price", "depth", "display", "mailer"]
    pd.testing.assert_frame_equal(prefix[columns].reset_index(drop=True), head[columns].reset_index(drop=True))
    # more weeks than the data hold: HMM prices, the seasons repeated, every basket its own id
    horizon = 2 * weeks.size + 1
    assert _simulate(tmp, src, tmp_path / "long", "--customers", "40", "--weeks", str(horizon)) == 0
    long = pd.read_parquet(tmp_path / "long" / "transactions")
    assert long["week"].max() > weeks[-1] + weeks.size and long["week"].min() >= weeks[0]
    assert long.groupby("basket_id")[["household_id", "week"]].nunique().max().max() == 1
    calendar = pd.read_parquet(tmp_path / "long" / "promo_weeks.parquet")
    assert calendar["week"].max() <= weeks[0] + horizon - 1
    spec, catalogue, worlds, _ = _folder_worlds(tmp / "models", data, customers=40, draws=1, mode="new",
                                                prices="hmm", seed=0, batch_size=1000, weeks=horizon)
    world = worlds(spec.draws[0])
    assert spec.weeks == horizon and world.prices.n_weeks == horizon and world.week_numbers.size == horizon
    T = weeks.size
    for name in ("visit_week", "category_week"):
        values = np.asarray(getattr(world.draw, name))
        np.testing.assert_array_equal(values[T:2 * T], values[:T])
        assert values[2 * T] == values[0]
    np.testing.assert_array_equal(world.draw.category_season[:, T:2 * T], world.draw.category_season[:, :T])
    # observed prices end with the data
    capsys.readouterr()
    assert _simulate(tmp, src, tmp_path / "bad", *replay, "--weeks", str(T + 1)) == 2
    assert f"observed prices cover the data's {T} weeks; asked for {T + 1}" in capsys.readouterr().err
    assert _simulate(tmp, src, tmp_path / "bad2", "--weeks", "0") == 2
    assert "weeks must be an integer from 1 to 1023, got 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()


def test_simulate_refuses_bad_requests_with_clear_errors(fitted, tmp_path, capsys):
    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    too_many = str(len(data.households) + 1)
    assert _simulate(tmp, src, tmp_path / "a", "--mode", "replay", "--customers", too_many) == 2
    assert "replay simulates" in capsys.readouterr().err
    assert _simulate(tmp, src, tmp_path / "b", "--draws", "100000") == 2
    assert "draws must be between" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(tmp / "models", partial)
    shutil.rmtree(partial / "product")
    code = _cli(tmp, "simulate", "--posterior", str(partial), "--data", str(src), "--out", str(tmp_path / "c"))
    assert code == 2 and "fit --stage product" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_a_policy_file_overrides_promotions_and_a_bad_one_writes_nothing(fitted, tmp_path, capsys):
    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    product = int(data.product_weeks["product_id"].iloc[0])
    weeks = np.asarray(data.weeks)
    policy = tmp_path / "policy.csv"
    pd.DataFrame({"product_id": product, "week": weeks, "depth": 0.4, "display": 1}).to_csv(policy, index=False)
    out = tmp_path / "with-policy"
    assert _simulate(tmp, src, out, "--customers", "30", "--policy", str(policy)) == 0
    calendar = pd.read_parquet(out / "promo_weeks.parquet")
    assert set(calendar.loc[calendar["product_id"] == product, "week"]) == set(weeks)
    lines = pd.read_parquet(out / "transactions")
    assert (lines.loc[lines["product_id"] == product, "depth"] == 0.4).all()
    manifest = json.loads((out / MANIFEST_FILENAME).read_text())
    assert manifest["provenance"]["policy"] is not None
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"product_id": [product], "week": [99], "depth": [0.4]}).to_csv(bad, index=False)
    assert _simulate(tmp, src, tmp_path / "bad-out", "--policy", str(bad)) == 2
    assert "week 99" in capsys.readouterr().err and not (tmp_path / "bad-out").exists()


def test_a_trace_of_another_stage_or_other_data_is_refused(fitted, tmp_path, capsys):
    tmp, src = fitted
    swapped = tmp_path / "swapped"
    shutil.copytree(tmp / "models", swapped)
    shutil.copy(swapped / "category" / "trace.nc", swapped / "visit" / "trace.nc")
    code = _cli(tmp, "simulate", "--posterior", str(swapped), "--data", str(src), "--out", str(tmp_path / "a"))
    assert code == 2 and "a 'category' trace, not 'visit'" in capsys.readouterr().err
    # the embedded data are not the data these posteriors were fitted on
    code = _cli(tmp, "simulate", "--posterior", str(tmp / "models"), "--out", str(tmp_path / "b"))
    assert code == 2 and "fitted on other data" in capsys.readouterr().err
    # a trace written by another model version of its stage
    import h5py

    older = tmp_path / "older"
    shutil.copytree(tmp / "models", older)
    with h5py.File(older / "quantity" / "trace.nc", "r+") as trace:
        trace["posterior"].attrs["model_version"] = "0"
    code = _cli(tmp, "simulate", "--posterior", str(older), "--data", str(src), "--out", str(tmp_path / "c"))
    err = capsys.readouterr().err
    assert code == 2 and "fitted with quantity model version 0" in err and "refit the stage" in err
    assert str(older / "quantity" / "trace.nc") in err
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


def test_the_pipeline_reuses_current_artifacts_and_scores_a_synthetic_panel(fitted, tmp_path, capsys):
    from bayes_retail.pipeline import run_pipeline, stage_is_current
    from bayes_retail.config import load_config

    tmp, src = fitted
    messages = []
    models = tmp_path / "models"
    shutil.copytree(tmp / "models", models)
    # the fixture fitted pricing with `quick`: under the small configuration it is stale and gets refitted
    data = load_data(src, cache_dir=tmp / "cache")
    config = load_config(tmp / "small.toml")
    assert stage_is_current(models, "visit", data, config) == (True, "current")
    assert not stage_is_current(models, "pricing", data, config)[0]
    result, path, ppc = run_pipeline(source=src, models=models, synthetic=tmp_path / "syn", reports=tmp_path / "rep",
                                     config_name=str(tmp / "small.toml"), cache_dir=str(tmp / "cache"),
                                     progress=messages.append)
    assert ppc is None and not (tmp_path / "rep" / "ppc.json").exists()  # ppc_draws = 0: no check
    assert path.exists() and json.loads(path.read_text())["overall"] == pytest.approx(result.overall)
    assert any(m.startswith("pricing: fitting") for m in messages)
    assert all(f"{s}: reusing" in " ".join(messages) for s in ("visit", "category", "product", "quantity"))
    lines = pd.read_parquet(tmp_path / "syn" / "run" / "transactions")
    assert lines["household_id"].nunique() <= len(data.households)
    # a second run, from the command line, reuses everything, including the synthetic panel, and scores the same;
    # it adds the posterior predictive check and ends with the scores, the check's goals and the report
    from bayes_retail.cli import main

    code = main(["--cache-dir", str(tmp / "cache"), "run", "--data", str(src), "--config", str(tmp / "small.toml"),
                 "--models", str(models), "--synthetic", str(tmp_path / "syn"), "--out", str(tmp_path / "rep"),
                 "--ppc-draws", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and "fitting" not in err and "reusing" in err
    assert f"{'overall':<30}{result.overall:>8.4f}" in out
    assert "posterior predictive check (2 draws, in sample;" in out and out.rstrip().endswith("report.html")
    tables = json.loads((tmp_path / "rep" / "ppc.json").read_text())
    assert {row["draws"] for row in tables["scores"]} == {2} and tables["goals"]
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Goals (DESIGN.md" in html and "Not run" not in html[html.index('<h2 id="ppc">'):]
    assert main(["run", "--ppc-draws", "-1", "--data", str(src), "--models", str(models)]) == 2
    # a run without the check does not show the older ppc.json lying beside its metrics
    assert main(["--quiet", "--cache-dir", str(tmp / "cache"), "run", "--data", str(src), "--config",
                 str(tmp / "small.toml"), "--models", str(models), "--synthetic", str(tmp_path / "syn"),
                 "--out", str(tmp_path / "rep"), "--ppc-draws", "0"]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Not run" in html[html.index('<h2 id="ppc">'):] and (tmp_path / "rep" / "ppc.json").exists()
    assert stage_is_current(models, "visit", data, load_config("default"))[1].startswith("fitted with configuration")


def test_a_stage_fitted_with_other_settings_is_stale(fitted):
    from bayes_retail.config import load_config
    from bayes_retail.pipeline import stage_is_current

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    config = load_config(tmp / "small.toml")
    config["sections"]["visit"] = {"weight_weeks": 9}
    current, why = stage_is_current(tmp / "models", "visit", data, config)
    assert not current and "weight_weeks" in why
    config["sections"]["visit"] = {"weight_weeks": 8}  # the default, spelled out: still current
    assert stage_is_current(tmp / "models", "visit", data, config) == (True, "current")


def test_each_draw_gets_its_own_class_membership(fitted):
    from bayes_retail.models import product
    from bayes_retail.pricing.artifacts import load_imputations
    from bayes_retail.pricing.model import PricingPanel
    from bayes_retail.simulate.population import Posteriors, draw_class_membership, product_stage_data, template_ids

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    posteriors = Posteriors.load(tmp / "models", data_hash=data.data_hash)
    depth = load_imputations(tmp / "models" / "pricing", PricingPanel.from_product_weeks(data.product_weeks))[0]
    pdata = product_stage_data(posteriors, data, depth)
    ids = template_ids(posteriors)[::-1]  # any order: rows follow ids
    first = draw_class_membership(posteriors, pdata, 0, ids)
    last = draw_class_membership(posteriors, pdata, 59, ids)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    assert not np.allclose(first, last)
    n_draws = posteriors.product.sizes["draw"]
    direct = product.class_membership(product.posterior_params(posteriors.product, pdata, 59 // n_draws, 59 % n_draws), pdata)
    np.testing.assert_allclose(last, direct[pd.Index(pdata.households).get_indexer(ids)])


def test_the_simulator_takes_the_state_memory_and_the_weekly_shock_from_the_traces(fitted):
    from bayes_retail.simulate.population import Posteriors, stage_draw
    from bayes_retail.simulate.world import catalogue_from_data

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    posteriors = Posteriors.load(tmp / "models", data_hash=data.data_hash)
    catalogue = catalogue_from_data(data)
    draw = stage_draw(posteriors, catalogue, 0)
    assert draw.state_memory == "both"  # the tiny config's [product] state
    assert draw.class_coefficients.shape[1] == 4 + catalogue.attributes.shape[1]  # its previous-occasion column
    sigma = posteriors.category["sigma_household_week"].values.ravel()[0]
    assert draw.household_week_sigma == pytest.approx(sigma) and sigma > 0  # [category] household_week_effect
    assert "household_week_raw" not in posteriors.category  # one shock per visited week: not stored
    loading = posteriors.category["shock_loading"].values.reshape(-1, catalogue.n_categories)[0]
    np.testing.assert_allclose(draw.shock_loading, loading)  # [category] shock_loadings
    assert np.log(loading).sum() == pytest.approx(0.0, abs=1e-6) and np.ptp(loading) > 0
    gamma = posteriors.category["trips_elasticity"].values.ravel()[0]
    assert draw.trips_elasticity == pytest.approx(gamma) and gamma != 1.0  # [category] trips_elasticity
    attrs = dict(posteriors.product.attrs)
    config = json.loads(attrs["stage_config"])
    del config["state"]  # a trace from before the setting: its state term was "last"
    posteriors.product.attrs["stage_config"] = json.dumps(config)
    try:
        assert stage_draw(posteriors, catalogue, 0).state_memory == "last"
    finally:
        posteriors.product.attrs.update(attrs)


def test_the_worlds_trips_get_sizes_estimated_from_the_data_or_given(fitted):
    from bayes_retail.simulate.run import _folder_worlds
    from bayes_retail.simulate.trips import trip_weight_sd

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    _, _, worlds, _ = _folder_worlds(tmp / "models", data, customers=5, draws=1, mode="new", prices="observed",
                                     seed=0, batch_size=5)
    estimate = trip_weight_sd(data.transactions, data.choice_sets)
    assert estimate > 0 and worlds(0).draw.trip_weight_sd == pytest.approx(estimate)  # the tiny data's two-trip week


def test_a_stage_fitted_on_other_weeks_or_households_is_stale(fitted):
    from bayes_retail.config import load_config
    from bayes_retail.pipeline import stage_is_current

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    config = load_config(tmp / "small.toml")
    for section in ({"weeks": "3-5"}, {"fit_share": 0.5}, {"fit_share": 0.5, "split_seed": 3}):
        config["sections"]["data"] = section
        assert stage_is_current(tmp / "models", "quantity", data, config) == (
            False, "fitted on other weeks or households ([data])"), section
    config["sections"]["data"] = {"weeks": "all", "fit_share": 1.0, "split_seed": 7}  # every household: seed moot
    assert stage_is_current(tmp / "models", "quantity", data, config) == (True, "current")


def test_hmm_prices_give_the_most_promoted_products_the_most_promoted_paths(fitted):
    import dataclasses

    from bayes_retail.pricing.artifacts import load_pricing
    from bayes_retail.simulate.world import catalogue_from_data, hmm_prices, price_basis

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    basis = price_basis(data, catalogue_from_data(data))
    model = load_pricing(tmp / "models" / "pricing")
    # the tiny data promotes every product equally: give one product of the two-product category more weeks
    pair = np.flatnonzero(basis.product_category == np.bincount(basis.product_category).argmax())[:2]
    promoted = np.zeros_like(basis.promoted_share)
    promoted[pair[0]] = 0.8
    basis = dataclasses.replace(basis, promoted_share=promoted)
    n = basis.columns.size
    ahead = {}
    for propensity in ("observed", "exchangeable"):
        gaps = []
        for seed in range(40):
            grid = hmm_prices(basis, model, np.random.default_rng(seed), promotion_propensity=propensity)
            drawn = ((grid.display[:n] > 0) | (grid.mailer[:n] > 0)).sum(axis=1)
            gaps.append(drawn[pair[0]] - drawn[pair[1]])
        ahead[propensity] = np.array(gaps)
    assert (ahead["observed"] >= 0).all() and (ahead["observed"] > 0).any()
    assert (ahead["exchangeable"] < 0).any()  # without matching the more promoted product is sometimes behind
    with pytest.raises(ValueError, match="promotion_propensity must be one of"):
        hmm_prices(basis, model, np.random.default_rng(3), promotion_propensity="sorted")
    with pytest.raises(ValueError, match="joint path matching needs the products' discounted shares"):
        hmm_prices(basis, model, np.random.default_rng(3))  # the default; this basis was built without depths


def test_seasonal_timing_solves_on_the_fitted_panel_and_names_the_way_out_on_another(fitted):
    import dataclasses

    from bayes_retail.pricing.artifacts import load_pricing
    from bayes_retail.simulate.world import catalogue_from_data, price_basis, seasonal_timing

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    basis = price_basis(data, catalogue_from_data(data))
    model = load_pricing(tmp / "models" / "pricing")
    timing, tilt, _ = seasonal_timing(basis, model)
    assert timing.share.shape[1] == basis.panel.weeks.size and np.isfinite(tilt).all()
    shorter = dataclasses.replace(basis.panel, weeks=basis.panel.weeks[:-1])
    with pytest.raises(ValueError, match="seasonal promotion timing needs the data the pricing model was fitted on.*"
                                         "promotion_timing='homogeneous'"):
        seasonal_timing(dataclasses.replace(basis, panel=shorter), model)


def test_joint_matching_assigns_paths_by_promoted_and_discounted_shares_together():
    from bayes_retail.simulate.world import matched_rows

    # one category of three products; path profiles (promoted, discounted share of weeks)
    drawn = np.array([[0.9, 0.1], [0.1, 0.1], [0.8, 0.8]])
    observed = np.array([[0.85, 0.75], [0.9, 0.05], [0.0, 0.2]])
    source = matched_rows(drawn, observed, np.zeros(3, int), np.random.default_rng(0))
    # by promoted share alone products 0 and 1 could swap; together, product 0 (often discounted) takes path 2
    np.testing.assert_array_equal(source, [2, 0, 1])
    # categories never exchange paths, ties go either way
    twice = matched_rows(np.zeros((4, 2)), np.zeros((4, 2)), np.array([0, 0, 1, 1]), np.random.default_rng(1))
    assert set(twice[:2]) == {0, 1} and set(twice[2:]) == {2, 3}
    picks = {tuple(matched_rows(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2, int), np.random.default_rng(s)))
             for s in range(20)}
    assert picks == {(0, 1), (1, 0)}


def test_prices_under_span_availability_keep_products_off_the_shelf_unpromoted(fitted):
    import dataclasses

    from bayes_retail.models.product import item_table
    from bayes_retail.pricing.artifacts import load_imputations, load_pricing
    from bayes_retail.simulate.world import catalogue_from_data, hmm_prices, observed_prices, price_basis

    tmp, src = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    items = item_table(data.choice_sets)
    last = items["category_id"].ne(items["category_id"].shift(-1))
    pid = int(items.loc[items["product_id"].notna() & ~last, "product_id"].iloc[0])
    # the product is neither sold nor promoted in the first two weeks: off the shelf there
    pw = data.product_weeks.copy()
    early = (pw["product_id"] == pid) & pw["week"].isin(data.weeks[:2])
    pw.loc[early, ["lines", "units"]] = 0
    pw.loc[early, ["display", "mailer"]] = False
    data = dataclasses.replace(data, product_weeks=pw)
    catalogue = catalogue_from_data(data)
    from bayes_retail.pricing.model import PricingPanel

    completed = load_imputations(tmp / "models" / "pricing", PricingPanel.from_product_weeks(pw))[0]
    basis = price_basis(data, catalogue, availability="span", depth=completed)
    row = int(np.flatnonzero(catalogue.product_ids == pid)[0])
    # a product's discounted share counts its shelf weeks only
    on_sale = (completed[:, basis.columns].T > 0) & basis.available
    np.testing.assert_allclose(basis.discounted_share, on_sale.sum(axis=1) / basis.available.sum(axis=1))
    np.testing.assert_array_equal(basis.available[row], data.weeks >= data.weeks[2])
    assert basis.available.sum() == basis.available.size - 2
    model = load_pricing(tmp / "models" / "pricing")
    for seed in range(10):
        grid = hmm_prices(basis, model, np.random.default_rng(seed))
        np.testing.assert_array_equal(grid.available[: basis.available.shape[0]], basis.available)
        assert grid.available[basis.available.shape[0]:].all()  # tail products
        for name in ("depth", "display", "mailer"):
            assert not getattr(grid, name)[row, :2].any()
    depth = load_imputations(tmp / "models" / "pricing", basis.panel)
    observed = observed_prices(basis, depth[0], np.random.default_rng(0))
    np.testing.assert_array_equal(observed.available, grid.available)
    assert price_basis(data, catalogue).available is None
    with pytest.raises(ValueError, match="availability must be"):
        price_basis(data, catalogue, availability="weekly")
