"""The HTML report: every section, images embedded, the verdict shown loudly."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

from bayes_retail.cli import main
from bayes_retail.report import convergence_table


def test_the_report_has_every_section_and_embeds_its_images(tiny_fitted, tmp_path, capsys):
    tmp, src = tiny_fitted
    models = tmp / "models"
    cli = ["--quiet", "--cache-dir", str(tmp / "cache")]
    assert main([*cli, "simulate", "--posterior", str(models), "--data", str(src), "--customers", "20",
                 "--out", str(tmp_path / "syn")]) == 0
    assert main([*cli, "check", "--synthetic", str(tmp_path / "syn"), "--real", str(src), "--floor",
                 "--out", str(tmp_path / "rep")]) == 0
    capsys.readouterr()
    assert main([*cli, "report", "--posterior", str(models), "--metrics", str(tmp_path / "rep" / "metrics.json"),
                 "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    for section in ("convergence", "visit", "category", "product", "quantity", "metrics"):
        assert f'<h2 id="{section}">' in html
    # self-contained: every image is an embedded PNG, nothing is fetched
    sources = re.findall(r'src="([^"]+)"', html)
    assert len(sources) >= 12 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert html.count("<h3>household heterogeneity") == 3  # visit, category, quantity
    assert html.count("<h3>latent classes: coefficients") == 1  # the product stage's heterogeneity
    assert html.count("<h3>Prior and posterior predictive checks") >= 3 and "observed prior quantile" in html
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    assert "http://" not in html and "https://" not in html
    # the tiny fits do not converge: the page says so up front
    assert 'class="warning"' in html and "did NOT converge" in html and 'class="fail"' in html
    assert "Overall" in html and "visit_probability" in html
    assert "Beside published scores" in html and "RetailSynth" in html and "items per visit" in html
    assert '<img alt="tier-1 distributions" src="data:image/png;base64,' in html
    # a report written elsewhere carries the numbers it shows
    assert main([*cli, "report", "--posterior", str(models), "--metrics", str(tmp_path / "rep" / "metrics.json"),
                 "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "metrics.json").read_bytes() == (tmp_path / "rep" / "metrics.json").read_bytes()
    assert not (tmp_path / "elsewhere" / "ppc.json").exists()  # there was no check to show


def test_published_scores_sit_beside_ours_by_metric():
    from bayes_retail.metrics.anchors import PUBLISHED_SCORES, anchor_table

    table = anchor_table({"metrics": {"basket_size": {"ks": 0.1}, "visit_probability": {"ks": 0.05}}})
    assert len(table) == len(PUBLISHED_SCORES)
    basket = table[table["our_metric"] == "basket_size"].set_index("their_metric")
    assert basket.loc["items per visit", "our_score"] == pytest.approx(0.9)
    assert basket.loc["items per visit", "difference"] == pytest.approx(0.9 - 0.49)
    assert basket.loc["basket", "difference"] == pytest.approx(0.9 - 0.71)
    assert table.loc[table["our_metric"] == "recency", "our_score"].isna().all()  # not in this run
    from bayes_retail.metrics import METRICS

    assert set(table["our_metric"]) <= set(METRICS)


def test_the_convergence_table_lists_unfitted_stages(tmp_path):
    table = convergence_table(tmp_path)
    assert list(table["stage"]) == ["visit", "category", "product", "quantity"]
    assert (table["verdict"] == "not fitted").all()


def test_the_convergence_table_shows_chain_groups_and_the_between_group_share(tmp_path):
    import json

    verdict = {"passed": True, "max_rhat": 1.004, "min_ess_bulk": 900, "min_ess_tail": 800, "divergences": 0,
               "min_bfmi": 0.8, "n_scalars": 12, "failures": []}
    (tmp_path / "visit").mkdir()
    (tmp_path / "visit" / "fit_summary.json").write_text(json.dumps({"convergence": verdict, "method": "nutpie"}))
    (tmp_path / "product").mkdir()
    (tmp_path / "product" / "fit_summary.json").write_text(json.dumps({
        "convergence": {**verdict, "chain_groups": 2}, "method": "nutpie",
        "imputation": {"chain_groups": 2, "max_between_share": 0.12, "worst": "mu[1]"}}))
    table = convergence_table(tmp_path).set_index("stage")
    assert table.loc["visit", "chain groups"] == 1 and pd.isna(table.loc["visit", "max between-group share"])
    assert table.loc["product", "chain groups"] == 2 and table.loc["product", "max between-group share"] == 0.12
    assert table.loc["category", "verdict"] == "not fitted"


def test_predictive_check_table_joins_prior_and_posterior_checks(tmp_path):
    import json

    from bayes_retail.report import predictive_check_table

    assert predictive_check_table(tmp_path) is None
    (tmp_path / "prior_predictive.json").write_text(json.dumps({"draws": 50, "statistics": {
        "purchase_rate": {"observed": 0.05, "prior_q05": 0.1, "prior_median": 0.2, "prior_q95": 0.3,
                          "observed_prior_quantile": 0.0}}}))
    (tmp_path / "fit_summary.json").write_text(json.dumps({"posterior_predictive": {"draws": 20, "statistics": {
        "purchase_rate": {"observed": 0.05, "posterior_q05": 0.04, "posterior_median": 0.05, "posterior_q95": 0.06,
                          "observed_posterior_quantile": 0.5}}}}))
    row = predictive_check_table(tmp_path).iloc[0]
    assert row["statistic"] == "purchase_rate" and row["observed"] == 0.05
    assert row["prior q95"] == 0.3 and row["observed prior quantile"] == 0.0
    assert row["posterior median"] == 0.05 and row["observed posterior quantile"] == 0.5


def test_the_promotion_table_gathers_every_stages_responses(tiny_fitted, tmp_path):
    import pandas as pd

    from bayes_retail.models.tables import PROMOTION_COLUMNS, promotion_responses
    from bayes_retail.report import write_promotion_table

    tmp, _ = tiny_fitted
    table = pd.read_csv(write_promotion_table(tmp / "models", tmp_path))
    assert list(table.columns) == PROMOTION_COLUMNS
    responses = set(zip(table["stage"], table["response"]))
    assert {("product", "display"), ("product", "mailer"), ("product", "discount_lift"),
            ("product", "own_price_elasticity"), ("quantity", "stockpiling_kappa"), ("category", "k")} <= responses
    categories = table["category_id"].nunique()
    assert (table.groupby(["stage", "response"]).size() == categories).all()  # one row per category and response
    assert (table["q0.05"] <= table["q0.95"]).all()
    assert promotion_responses(tmp_path / "nothing").empty
