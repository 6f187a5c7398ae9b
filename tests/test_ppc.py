"""Posterior predictive checks over draws: scores with intervals beside the floor, Bayesian p-values."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from bayes_retail.data import load_data
from bayes_retail.metrics import METRICS
from bayes_retail.ppc import (
    bayesian_p_values,
    column_nanquantiles,
    posterior_predictive_suite,
    summarise_draws,
    summary_statistics,
)


def test_replayed_households_are_scored_per_draw_beside_the_floor(tiny_fitted, tmp_path):
    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    out = posterior_predictive_suite(tmp / "models", data, tmp_path / "ppc", draws=3, cache_dir=str(tmp / "cache"))
    scores, per_draw, p_values = out["scores"], out["per_draw"], out["p_values"]
    assert per_draw["draw"].nunique() == 3
    assert set(scores["metric"]) <= set(METRICS) and (scores["draws"] == 3).all()
    assert (scores["score_q0.05"] <= scores["score_median"]).all() and (scores["score_median"] <= scores["score_q0.95"]).all()
    assert scores["floor_score"].between(0, 1).all()
    assert list(p_values["statistic"]) == [
        "mean_basket_size", "visit_rate", "units_per_product_week", "promo_share",
        "units_per_trip_median", "small_trip_share", "visits_basket_spearman", "copurchase_lift_median", "copurchase_share_above_1",
        "copurchase_lift_between_households", "week_size_correlation_mean", "week_size_correlation_sd",
        "repeat_previous_purchase", "repeat_any_earlier_purchase", "category_count_dispersion",
        "discount_share_household_sd", "discount_share_visit_dispersion", "discount_share_week_dispersion",
    ]
    assert p_values["p_value"].between(0, 1).all()
    entities = out["entities"]
    assert list(entities.columns) == ["metric", "entities", "coverage", "sales_weighted_coverage", "prob"]
    assert {"category_purchase", "product_purchase"} <= set(entities["metric"])
    assert entities["coverage"].between(0, 1).all() and (entities["entities"] > 0).all()
    households = out["households"]
    assert list(households["statistic"]) == ["spend", "visits"]
    assert list(households.columns) == ["statistic", "households", "coverage_50", "coverage_90", "pit_mean", "pit_ks"]
    assert (households["coverage_50"] <= households["coverage_90"]).all()
    assert households["households"].eq(data.transactions["household_id"].nunique()).all()
    pit = out["pit"]
    np.testing.assert_allclose(pit.groupby("statistic")["share"].sum(), 1.0)
    replicates = out["replicates"]  # 3 draws: one pair
    assert (replicates["pairs"] == 1).all() and set(replicates["metric"]) == set(scores["metric"])
    assert replicates["share_inside"].between(0, 1).all()
    lift = out["promo_lift"]  # every category with a real promotion lift, each against the draws that define one
    real_lift = entities.set_index("metric").loc["promo_response", "entities"]
    assert len(lift) == real_lift and lift["draws"].between(0, 3).all()
    judged = lift[lift["draws"] > 0]
    assert (judged["q05"] <= judged["median"]).all() and judged["pit"].between(0, 1).all()


def test_new_customers_get_no_household_calibration(tiny_fitted, tmp_path):
    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    out = posterior_predictive_suite(tmp / "models", data, tmp_path / "ppc", draws=2, mode="new", prices="observed",
                                     cache_dir=str(tmp / "cache"))
    assert set(out) == {"scores", "per_draw", "p_values", "entities", "promo_lift", "replicates", "goals", "spec"}
    assert not out["goals"]["goal"].str.contains("households inside").any()  # no household goals without replay
    # customers drawn parameter by parameter from the population laws are checked the same way
    population = posterior_predictive_suite(tmp / "models", data, tmp_path / "pop", draws=2, mode="population",
                                            prices="observed", cache_dir=str(tmp / "cache"))
    assert set(population) == set(out) and population["spec"]["mode"].iloc[0] == "population"
    assert (population["scores"]["draws"] == 2).all()
    assert not population["per_draw"].equals(out["per_draw"])  # other customers, other scores


def test_replicate_calibration_by_hand():
    from bayes_retail.ppc import replicate_calibration

    per_draw = pd.DataFrame({"metric": "quantity", "ks": [0.02, 0.03, 0.10, 0.04]})
    pairs = pd.DataFrame({"metric": "quantity", "ks": [0.01, 0.02, 0.03, 0.05, 0.04]})
    row = replicate_calibration(per_draw, pairs).iloc[0]
    # replicate 95% quantile of 0.01..0.05 = 0.048; real median 0.035 inside; 3 of 4 draws at or below
    assert row["ks_replicate_q0.95"] == pytest.approx(0.048) and row["ks_real_median"] == pytest.approx(0.035)
    assert row["calibrated"] and row["share_inside"] == 0.75 and row["pairs"] == 5
    far = replicate_calibration(per_draw.assign(ks=[0.2, 0.3, 0.25, 0.22]), pairs).iloc[0]
    assert not far["calibrated"] and far["share_inside"] == 0.0


def test_entity_coverage_and_household_calibration_by_hand():
    from bayes_retail.ppc import entity_coverage, household_calibration

    real = {"category_size": pd.DataFrame({"value": [2.0, 5.0, 9.0], "sales_value": [1.0, 3.0, 6.0]},
                                          index=["A", "B", "C"])}
    draws = [{"category_size": pd.DataFrame({"value": [v, v + 3, 1.0]}, index=["A", "B", "C"])} for v in range(5)]
    row = entity_coverage(real, draws).iloc[0]
    # A: 2 inside 0.2..3.8; B: 5 inside 3.2..6.8; C: 9 outside [1, 1]
    assert row["coverage"] == pytest.approx(2 / 3) and row["sales_weighted_coverage"] == pytest.approx(0.4)
    real_totals = pd.DataFrame({"spend": [1.0, 100.0], "visits": [2.0, 3.0]})
    draw_totals = [pd.DataFrame({"spend": [s, s], "visits": [2.0, 3.0]}) for s in (0.0, 1.0, 2.0, 3.0)]
    coverage, pit = household_calibration(real_totals, draw_totals)
    spend = coverage.set_index("statistic").loc["spend"]
    assert spend["coverage_90"] == 0.5 and spend["pit_mean"] == pytest.approx((0.25 + 0.125 + 1.0) / 2)
    assert coverage.set_index("statistic").loc["visits", "coverage_50"] == 1.0
    shares = pit[pit["statistic"] == "visits"].set_index("bin")["share"]
    assert shares[5] == 1.0  # every visit PIT is 0.5 (all ties)


def test_summary_statistics_on_a_hand_computed_table():
    # household 1 week 1 in two trips (2 units, then 1), its week 2 one trip of 3; household 2 one trip of 4
    lines = pd.DataFrame({"household_id": [1, 1, 1, 2], "week": [1, 1, 2, 1], "product_id": [10, 11, 10, 10],
                          "quantity": [2, 1, 3, 4], "retail_disc": [0.0, 0.5, 0.0, 1.0], "basket_id": [7, 8, 9, 5]})
    stats = summary_statistics(lines, n_weeks=4)
    assert stats["mean_basket_size"] == pytest.approx((3 + 3 + 4) / 3)
    assert stats["visit_rate"] == pytest.approx(3 / (2 * 4))
    assert stats["units_per_product_week"] == pytest.approx((6 + 1 + 3) / 3)
    assert stats["promo_share"] == pytest.approx(0.5)
    assert stats["units_per_trip_median"] == pytest.approx(2.5)  # trips of 1, 2, 3, 4 units
    assert stats["small_trip_share"] == pytest.approx(3 / 4)
    assert summary_statistics(lines, n_weeks=4, small_trip_units=1)["small_trip_share"] == pytest.approx(1 / 4)


def test_draw_summaries_and_p_values_by_hand():
    per_draw = pd.DataFrame({"draw": [0, 1, 2, 3], "metric": "quantity", "tier": 1, "score": [0.9, 0.8, 0.95, 0.85]})
    row = summarise_draws(per_draw, {"quantity": 0.02}).iloc[0]
    assert row["score_median"] == pytest.approx(0.875) and row["floor_score"] == pytest.approx(0.98)
    p = bayesian_p_values(pd.DataFrame({"visit_rate": [0.1, 0.2, 0.3, 0.4]}), {"visit_rate": 0.25}).iloc[0]
    assert p["p_value"] == 0.5 and p["median"] == pytest.approx(0.25)
    assert np.isnan(summarise_draws(per_draw, {}).iloc[0]["floor_score"])


def test_validation_goals_by_hand():
    from bayes_retail.ppc import validation_goals

    scores = pd.DataFrame({"metric": ["quantity", "recency", "revenue"], "tier": 1,
                           "score_median": [0.96, 0.90, 0.93], "floor_score": [0.98, 0.95, np.nan]})
    households = pd.DataFrame({"statistic": ["spend", "visits"], "coverage_90": [0.84, 0.90]})
    p_values = pd.DataFrame({"statistic": ["copurchase_lift_median"], "observed": [1.7], "q0.05": [1.2],
                             "q0.95": [1.6]})
    goals = validation_goals({"scores": scores, "households": households, "p_values": p_values})
    assert list(goals.columns) == ["goal", "value", "target", "passed"]
    # quantity: KS 0.04 <= max(0.05, 0.03); recency: 0.10 > max(0.05, 0.075); revenue (no floor): 0.07 > 0.05
    np.testing.assert_allclose(goals["value"].iloc[:3], [0.04, 0.10, 0.07])
    assert list(goals["target"].iloc[:3]) == ["<= 0.0500", "<= 0.0750", "<= 0.0500"]
    assert list(goals["passed"]) == [True, False, False, False, True, False]
    assert goals["goal"].iloc[3] == "spend: households inside their 90% interval"
    assert goals["target"].iloc[5] == "1.200-1.600"
    relaxed = validation_goals({"scores": scores}, floor_factor=2.5, ks_cap=0.06)  # recency 0.10 <= 0.125
    assert list(relaxed["passed"]) == [True, True, False] and len(relaxed) == 3
    with pytest.raises(ValueError, match="coverage_range"):
        validation_goals({"scores": scores}, coverage_range=(0.95, 0.85))


def test_the_ppc_command_writes_ppc_json_and_the_report_shows_it(tiny_fitted, tmp_path, capsys):
    from bayes_retail.cli import main
    from bayes_retail.ppc import read_ppc

    tmp, src = tiny_fitted
    cli = ["--quiet", "--cache-dir", str(tmp / "cache")]
    assert main([*cli, "ppc", "--posterior", str(tmp / "models"), "--data", str(src), "--draws", "2",
                 "--synthetic", str(tmp_path / "syn"), "--out", str(tmp_path / "rep")]) == 0
    tables = read_ppc(tmp_path / "rep" / "ppc.json")
    assert set(tables) == {"scores", "per_draw", "p_values", "entities", "promo_lift", "households", "pit", "replicates",
                           "goals", "spec"}
    assert (tables["scores"]["draws"] == 2).all()
    assert "score_median" in capsys.readouterr().out
    from bayes_retail.report import build_report

    html = build_report(tmp / "models", out=tmp_path / "rep", ppc=tmp_path / "rep" / "ppc.json").read_text()
    section = html[html.index('<h2 id="ppc">'):]
    assert "score_median" in section and "p_value" in section and "Not run" not in section
    assert "sales_weighted_coverage" in section and "coverage_90" in section
    assert '<img alt="household PIT histograms" src="data:image/png;base64,' in section
    assert "Calibration of promotion lift" in section and "pit_ks" in section
    goals = tables["goals"]
    assert ("every goal met" in section) == bool(goals["passed"].all())
    assert all(goal in section for goal in goals.loc[~goals["passed"], "goal"])
    spec = tables["spec"].iloc[0]
    assert (spec["mode"], spec["prices"], spec["draws"], spec["weeks"], spec["held_out"]) == (
        "replay", "observed", 2, "all", False)
    assert f"<h3>replay customers, observed prices, 2 draws, weeks all: {tmp / 'models'}</h3>" in section
    # several checks, each its own section, copied beside the page
    from bayes_retail.ppc import write_ppc

    other = dict(tables, spec=tables["spec"].assign(mode="new", weeks="27-36"))
    write_ppc(other, tmp_path / "other" / "ppc.json")
    html = build_report(tmp / "models", out=tmp_path / "both",
                        ppc=[tmp_path / "rep" / "ppc.json", tmp_path / "other" / "ppc.json"]).read_text()
    assert html.count("<h3>replay customers") == 1 and html.count("<h3>new customers, observed prices, 2 draws, "
                                                                 "weeks 27-36") == 1
    assert (tmp_path / "both" / "ppc-2.json").read_bytes() == (tmp_path / "other" / "ppc.json").read_bytes()
    assert main([*cli, "report", "--posterior", str(tmp / "models"), "--ppc", str(tmp_path / "nowhere.json"),
                 "--out", str(tmp_path / "none")]) == 2
    assert "no posterior predictive check at" in capsys.readouterr().err


def test_a_held_out_block_is_scored_on_its_weeks_only(tiny_fitted, tmp_path):
    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    out = posterior_predictive_suite(tmp / "models", data, tmp_path / "ppc", draws=2, cache_dir=str(tmp / "cache"),
                                     weeks="3-4")
    real = data.transactions[data.transactions["week"].isin([3, 4])]
    visits = real[["household_id", "week"]].drop_duplicates()
    observed = out["p_values"].set_index("statistic")["observed"]
    assert observed["visit_rate"] == pytest.approx(len(visits) / (real["household_id"].nunique() * 2))
    households = out["households"].set_index("statistic")
    assert (households["households"] == data.transactions["household_id"].nunique()).all()
    elpd = out["elpd"].iloc[0]
    assert elpd["stage"] == "visit" and elpd["weeks"] == "3-4" and np.isfinite(elpd["elpd"]) and elpd["elpd"] < 0
    # every household-week of weeks 3-4 after the household's entry week is a cell
    first = data.households.set_index("household_id")["first_week"]
    assert elpd["cells"] == sum(int(w > first[h]) for h in first.index for w in (3, 4))
    # the quantity stage: one cell per household-week with a purchase line in weeks 3-4
    units = out["elpd"].set_index("stage").loc["quantity"]
    lines = data.choices[data.choices["week"].isin([3, 4])]
    assert units["cells"] == len(lines.drop_duplicates(["household_id", "week"])) and units["elpd"] < 0
    assert units["lines_left_out"] == 0
    # the category stage: one cell per visited household-week of weeks 3-4 (its fitted households)
    cats = out["elpd"].set_index("stage").loc["category"]
    assert cats["cells"] == len(visits) and cats["elpd"] < 0
    # the product stage: one cell per fitted household with a scored occasion in weeks 3-4
    choices = out["elpd"].set_index("stage").loc["product"]
    assert 0 < choices["cells"] <= data.choices.loc[data.choices["week"].isin([3, 4]), "household_id"].nunique()
    assert np.isfinite(choices["elpd"])
    block = out["block"]  # the tiny fits saw every week: the block is in sample for each stage
    assert list(block["stage"]) == ["visit", "category", "product", "quantity"]
    assert (block["kind"] == "in sample").all() and (block["scored_share_fitted"] == 1.0).all()
    assert (block["scored_weeks"] == "3-4").all()
    with pytest.raises(ValueError, match="none of the weeks 90-95 is in the data"):
        posterior_predictive_suite(tmp / "models", data, tmp_path / "ppc2", draws=2, weeks="90-95")


def test_a_block_is_named_by_what_the_fit_saw():
    from bayes_retail.ppc import block_kind

    fitted = np.r_[2:27, 37:54]  # the holdout configuration
    assert block_kind(np.arange(27, 37), fitted) == "held out"
    assert block_kind(np.arange(41, 54), np.arange(1, 41)) == "seasonal extrapolation"  # the seasonal one
    assert block_kind(np.arange(20, 30), fitted) == "partly held out"
    assert block_kind(np.arange(3, 5), fitted) == "in sample"
    assert block_kind(np.arange(27, 37), None) == "in sample"


def test_promotion_lift_calibration_by_hand():
    from bayes_retail.ppc import promotion_lift_calibration
    from bayes_retail.report import promo_lift_summary

    real = pd.DataFrame({"value": [0.5, 1.0, 2.0], "sales_value": [1.0, 3.0, 6.0]}, index=["A", "B", "C"])
    # A: five draws define it; B: only two; C: none
    draws = [pd.DataFrame({"value": [v]}, index=["A"]) for v in (0.0, 0.2, 0.4, 0.6, 0.8)]
    draws[0] = pd.DataFrame({"value": [0.0, 0.9]}, index=["A", "B"])
    draws[1] = pd.DataFrame({"value": [0.2, 1.1]}, index=["A", "B"])
    table = promotion_lift_calibration(real, draws).set_index("category")
    a, b, c = table.loc["A"], table.loc["B"], table.loc["C"]
    # A: 0.0 0.2 0.4 0.6 0.8: median 0.4, 90% interval 0.04..0.76, 3 of 5 below 0.5
    assert a["median"] == pytest.approx(0.4) and a["q05"] == pytest.approx(0.04) and a["q95"] == pytest.approx(0.76)
    assert a["pit"] == pytest.approx(0.6) and a["covered"] and a["draws"] == 5
    # B: 0.9 and 1.1: interval 0.91..1.09 holds 1.0; one of two below
    assert b["pit"] == pytest.approx(0.5) and b["covered"] and b["draws"] == 2
    assert np.isnan(c["median"]) and not c["covered"] and c["draws"] == 0
    summary = promo_lift_summary(table.reset_index())
    assert summary["categories"] == 2 and summary["coverage_90"] == 1.0
    assert summary["sales_weighted_coverage_90"] == 1.0 and summary["pit_mean"] == pytest.approx(0.55)
    missed = promo_lift_summary(table.reset_index().assign(covered=[False, True, False]))
    assert missed["coverage_90"] == 0.5 and missed["sales_weighted_coverage_90"] == pytest.approx(0.75)


@pytest.mark.slow  # four tiny fits (~40 s); the block scoring itself is tested fast above
def test_a_fit_without_a_block_is_checked_on_it_as_held_out(tiny_fitted, tmp_path, capsys):
    import shutil

    from bayes_retail.cli import main

    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    weeks = np.asarray(data.weeks)
    block = f"{weeks[-2]}-{weeks[-2]}"
    fitted = f"{weeks[0]}-{weeks[-3]},{weeks[-1]}-{weeks[-1]}"
    models = tmp_path / "models"
    shutil.copytree(tmp / "models" / "pricing", models / "pricing")  # prices use every week in any configuration
    cli = ["--quiet", "--cache-dir", str(tmp / "cache")]
    for stage in ("visit", "product", "category", "quantity"):
        assert main([*cli, "fit", "--stage", stage, "--data", str(src), "--out", str(models),
                     "--config", str(tmp / "small.toml"), "--weeks", fitted]) == 0
    capsys.readouterr()
    assert main([*cli, "ppc", "--posterior", str(models), "--data", str(src), "--draws", "2", "--weeks", block,
                 "--synthetic", str(tmp_path / "syn"), "--out", str(tmp_path / "rep")]) == 0
    assert "held out" in capsys.readouterr().out
    from bayes_retail.ppc import read_ppc

    tables = read_ppc(tmp_path / "rep" / "ppc.json")
    assert (tables["block"]["kind"] == "held out").all() and (tables["block"]["scored_share_fitted"] == 0).all()
    assert (tables["block"]["fitted_weeks"] == fitted).all()
    assert (tables["elpd"]["cells"] > 0).all() and np.isfinite(tables["elpd"]["elpd"]).all()


def test_column_nanquantiles_match_numpys_nanquantile_column_by_column():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(21, 40))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 5] = np.nan  # a column without any value
    values[:20, 6], values[20, 6] = np.nan, 1.5  # a column with one value
    got = column_nanquantiles(values, [0.05, 0.5, 0.95])
    for j in range(values.shape[1]):
        column = values[:, j]
        if np.isnan(column).all():
            assert np.isnan(got[:, j]).all()
        else:
            np.testing.assert_allclose(got[:, j], np.nanquantile(column, [0.05, 0.5, 0.95]), rtol=1e-12, atol=1e-15)
    assert got[0, 6] == got[2, 6] == 1.5


def test_draws_come_as_simulated_errors_reach_the_caller_and_leaving_early_ends_the_thread():
    from bayes_retail.ppc import _SimulatedDraws

    def simulate(on_draw, fail=False):
        for d in (4, 9, 2):
            on_draw(d)
        if fail:
            raise ValueError("bad posterior")

    with _SimulatedDraws(simulate) as draws:
        assert list(draws) == [4, 9, 2]
    got = []
    with pytest.raises(ValueError, match="bad posterior"), _SimulatedDraws(lambda on_draw: simulate(on_draw, True)) as draws:
        for d in draws:
            got.append(d)
    assert got == [4, 9, 2]
    announced = []

    def counting(on_draw):
        for d in range(100):
            time.sleep(0.02)  # a draw takes a while
            on_draw(d)
            announced.append(d)

    with pytest.raises(RuntimeError, match="scoring failed"), _SimulatedDraws(counting) as draws:
        assert next(iter(draws)) == 0
        raise RuntimeError("scoring failed")  # the caller fails: the thread stops at its next draw and is joined
    assert len(announced) < 100
