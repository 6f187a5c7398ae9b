"""Posterior predictive checks over draws: scores with intervals beside the floor, Bayesian p-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_retail.data import load_data
from bayes_retail.metrics import METRICS
from bayes_retail.ppc import bayesian_p_values, posterior_predictive_suite, summarise_draws, summary_statistics


def test_replayed_households_are_scored_per_draw_beside_the_floor(tiny_fitted, tmp_path):
    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    out = posterior_predictive_suite(tmp / "models", data, tmp_path / "ppc", draws=3, cache_dir=str(tmp / "cache"))
    scores, per_draw, p_values = out["scores"], out["per_draw"], out["p_values"]
    assert per_draw["draw"].nunique() == 3
    assert set(scores["metric"]) <= set(METRICS) and (scores["draws"] == 3).all()
    assert (scores["score_q0.05"] <= scores["score_median"]).all() and (scores["score_median"] <= scores["score_q0.95"]).all()
    assert scores["floor_score"].between(0, 1).all()
    assert list(p_values["statistic"]) == ["mean_basket_size", "visit_rate", "units_per_product_week", "promo_share"]
    assert p_values["p_value"].between(0, 1).all()


def test_summary_statistics_on_a_hand_computed_table():
    lines = pd.DataFrame({"household_id": [1, 1, 1, 2], "week": [1, 1, 2, 1], "product_id": [10, 11, 10, 10],
                          "quantity": [2, 1, 3, 4], "retail_disc": [0.0, 0.5, 0.0, 1.0]})
    stats = summary_statistics(lines, n_weeks=4)
    assert stats["mean_basket_size"] == pytest.approx((3 + 3 + 4) / 3)
    assert stats["visit_rate"] == pytest.approx(3 / (2 * 4))
    assert stats["units_per_product_week"] == pytest.approx((6 + 1 + 3) / 3)
    assert stats["promo_share"] == pytest.approx(0.5)


def test_draw_summaries_and_p_values_by_hand():
    per_draw = pd.DataFrame({"draw": [0, 1, 2, 3], "metric": "quantity", "tier": 1, "score": [0.9, 0.8, 0.95, 0.85]})
    row = summarise_draws(per_draw, {"quantity": 0.02}).iloc[0]
    assert row["score_median"] == pytest.approx(0.875) and row["floor_score"] == pytest.approx(0.98)
    p = bayesian_p_values(pd.DataFrame({"visit_rate": [0.1, 0.2, 0.3, 0.4]}), {"visit_rate": 0.25}).iloc[0]
    assert p["p_value"] == 0.5 and p["median"] == pytest.approx(0.25)
    assert np.isnan(summarise_draws(per_draw, {}).iloc[0]["floor_score"])


def test_the_ppc_command_writes_ppc_json_and_the_report_shows_it(tiny_fitted, tmp_path, capsys):
    from bayes_retail.cli import main
    from bayes_retail.ppc import read_ppc

    tmp, src = tiny_fitted
    cli = ["--quiet", "--cache-dir", str(tmp / "cache")]
    assert main([*cli, "ppc", "--posterior", str(tmp / "models"), "--data", str(src), "--draws", "2",
                 "--synthetic", str(tmp_path / "syn"), "--out", str(tmp_path / "rep")]) == 0
    tables = read_ppc(tmp_path / "rep" / "ppc.json")
    assert set(tables) == {"scores", "per_draw", "p_values"} and (tables["scores"]["draws"] == 2).all()
    assert "score_median" in capsys.readouterr().out
    from bayes_retail.report import build_report

    html = build_report(tmp / "models", out=tmp_path / "rep", ppc=tmp_path / "rep" / "ppc.json").read_text()
    section = html[html.index('<h2 id="ppc">'):]
    assert "score_median" in section and "p_value" in section and "Not run" not in section
