"""``bayes-retail fit --stage category``: artifacts, provenance, tables and checks (tiny data, rank 0)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny_data import write_internal

from bayes_retail.cli import main
from bayes_retail.data import load_data
from bayes_retail.models import category
from bayes_retail.models.artifacts import load_posterior
from bayes_retail.models.stage import (
    household_subset,
    CATEGORY_EFFECTS_FILENAME,
    HYPERPRIORS_FILENAME,
    PRIOR_CHECK_FILENAME,
    SEASONAL_FILENAME,
    SUMMARY_FILENAME,
)

# the tiny data have two categories: no room for preference factors
CONFIG = """
[sampler]
chains = 2
draws = 100
tune = 150

[category]
rank = 0
"""


def _fit(tmp, src, *extra):
    config = tmp / "small.toml"
    config.write_text(CONFIG)
    return main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "category", "--data", str(src),
                 "--out", str(tmp / "models"), "--config", str(config), "--seed", "6", *extra])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("category")
    src = write_internal(tmp / "src")
    return tmp, src, _fit(tmp, src, "--weeks", "2-5")


def test_category_fit_writes_its_folder_with_provenance(fitted):
    tmp, src, code = fitted
    assert code == 0
    out = tmp / "models" / category.STAGE
    expected = ["trace.nc", HYPERPRIORS_FILENAME, CATEGORY_EFFECTS_FILENAME, SEASONAL_FILENAME, SUMMARY_FILENAME, PRIOR_CHECK_FILENAME]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    data = load_data(src, cache_dir=tmp / "cache")
    idata = load_posterior(tmp / "models", "category", data_hash=data.data_hash)
    assert idata.attrs["seed"] == 6 and idata.attrs["weeks"] == "2-5"
    post = idata.posterior
    assert set(post.data_vars) == {"b", "sigma_household", "u", "sigma_week", "s", "sigma_season", "d"}
    assert post["d"].dims[2:] == ("category", "week")


def test_category_tables_and_unscored_weeks(fitted):
    tmp, _, _ = fitted
    out = tmp / "models" / category.STAGE
    hyper = pd.read_csv(out / HYPERPRIORS_FILENAME)
    assert hyper["variable"].tolist() == ["sigma_household", "sigma_week", "sigma_season"]
    effects = pd.read_csv(out / CATEGORY_EFFECTS_FILENAME)
    assert set(effects["variable"]) == {"b"} and effects["category_id"].is_unique
    assert effects["product_category"].notna().all()
    seasonal = pd.read_csv(out / SEASONAL_FILENAME)
    assert list(seasonal.columns) == ["category_id", "product_category", "week", "index_mean", "q0.05", "q0.95", "observed"]
    assert set(seasonal["product_category"]) == {"MILK", "BREAD"}
    # week 6 is not scored: blank; the scored weeks average 1 per category
    assert seasonal.loc[seasonal["week"] == 6, "index_mean"].isna().all()
    scored = seasonal.loc[seasonal["week"].between(2, 5)]
    # (the table holds 6 significant digits: stage.SUMMARY_FLOAT_FORMAT)
    np.testing.assert_allclose(scored.groupby("category_id")["index_mean"].mean(), 1.0, rtol=1e-5)
    assert (scored["q0.05"] <= scored["q0.95"] + 1e-9).all()


def test_category_predictive_checks(fitted):
    tmp, src, _ = fitted
    out = tmp / "models" / category.STAGE
    prior = json.loads((out / PRIOR_CHECK_FILENAME).read_text())
    summary = json.loads((out / SUMMARY_FILENAME).read_text())
    data = load_data(src, cache_dir=tmp / "cache")
    cw = data.category_weeks
    assert summary["purchased_cells"] == int(cw["week"].between(2, 5).sum())
    rate = prior["statistics"]["purchase_rate"]
    assert 0 < rate["observed"] < 1 and rate["prior_q05"] <= rate["prior_median"] <= rate["prior_q95"]
    post = summary["posterior_predictive"]["statistics"]["purchase_rate"]
    assert post["observed"] == rate["observed"] and post["posterior_q05"] <= post["posterior_q95"]
    # PSIS-LOO over the visited household-weeks of the scored weeks 2-5
    visits = data.transactions.loc[data.transactions["week"].between(2, 5), ["household_id", "week"]].drop_duplicates()
    loo = summary["loo"]
    assert loo["cells"] == len(visits) and loo["draws"] == 100 and loo["elpd_loo"] < 0 and loo["p_loo"] > 0


def test_a_household_subset_keeps_only_those_households_purchases(fitted, tmp_path):
    tmp, src, _ = fitted
    config = tmp_path / "subset.toml"
    config.write_text(CONFIG + "households = 2\n")
    code = main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "category", "--data", str(src),
                 "--out", str(tmp_path / "models"), "--config", str(config), "--seed", "5"])
    assert code == 0
    data = load_data(src, cache_dir=tmp / "cache")
    chosen = household_subset(data, 2, seed=5)
    idata = load_posterior(tmp_path / "models", "category", data_hash=data.data_hash)
    assert idata.posterior["u"].sizes["household"] == 2
    np.testing.assert_array_equal(idata.posterior["household"].to_numpy(), chosen)
    summary = json.loads((tmp_path / "models" / category.STAGE / SUMMARY_FILENAME).read_text())
    cw = data.category_weeks
    assert summary["households"] == 2
    assert summary["purchased_cells"] == int(cw["household_id"].isin(chosen).sum())


def test_household_subsets_are_seeded_and_shared_across_stages():
    data = type("Data", (), {"households": pd.DataFrame({"household_id": np.arange(10, 30)})})()
    first = household_subset(data, 5, seed=3)
    assert np.array_equal(first, household_subset(data, 5, seed=3)) and np.all(np.diff(first) > 0)
    assert not np.array_equal(first, household_subset(data, 5, seed=4))
    assert household_subset(data, 0, seed=3) is None and household_subset(data, 50, seed=3).size == 20


def test_category_value_links_one_product_draw_and_is_refused_without_the_product_stage(tiny_fitted, tmp_path):
    import shutil

    tmp, src = tiny_fitted
    config = tmp_path / "value.toml"
    config.write_text(CONFIG + "category_value = true\n\n[product]\nn_classes = 2\nburn_in_weeks = 0\n")
    cli = ["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "category", "--data", str(src),
           "--config", str(config), "--seed", "3"]
    assert main([*cli, "--out", str(tmp_path / "empty")]) == 2  # no product stage there
    for stage in ("pricing", "product"):
        shutil.copytree(tmp / "models" / stage, tmp_path / "models" / stage)
    assert main([*cli, "--out", str(tmp_path / "models")]) == 0
    data = load_data(src, cache_dir=tmp / "cache")
    idata = load_posterior(tmp_path / "models", "category", data_hash=data.data_hash)
    post = idata.posterior
    assert post["k"].dims[2:] == ("category",) and {"mu_value", "tau_value"} <= set(post.data_vars)
    linkage = json.loads(idata.attrs["category_value_linkage"])
    product_post = load_posterior(tmp_path / "models", "product", data_hash=data.data_hash).posterior
    assert 0 <= linkage["product_chain"] < product_post.sizes["chain"]
    assert 0 <= linkage["product_draw"] < product_post.sizes["draw"]
    hyper = pd.read_csv(tmp_path / "models" / "category" / HYPERPRIORS_FILENAME)
    assert {"mu_value", "tau_value"} <= set(hyper["variable"])
    effects = pd.read_csv(tmp_path / "models" / "category" / CATEGORY_EFFECTS_FILENAME)
    assert "k" in set(effects["variable"])
    # the linkage names the product fit: a product refit makes the category stage stale
    from bayes_retail.config import load_config
    from bayes_retail.pipeline import stage_is_current

    product_fit = load_posterior(tmp_path / "models", "product", data_hash=data.data_hash).attrs["fit_id"]
    assert linkage["product_fit_id"] == product_fit and len(product_fit) == 16
    assert stage_is_current(tmp_path / "models", "category", data, load_config(config)) == (True, "current")
    product_cli = [c if c != "category" else "product" for c in cli]
    assert main([*product_cli[:-1], "9", "--out", str(tmp_path / "models")]) == 0  # another seed
    assert stage_is_current(tmp_path / "models", "category", data, load_config(config)) == (
        False, "its category values came from another product fit")


@pytest.mark.slow  # a category fit with values (~1 min); the pooling itself is tested fast in test_imputation.py
def test_value_draws_pool_one_chain_group_per_product_draw(tiny_fitted, tmp_path, capsys):
    import shutil

    from bayes_retail.models.imputation import chain_groups
    from bayes_retail.ppc import category_elpd

    tmp, src = tiny_fitted
    for stage in ("pricing", "visit", "product"):
        shutil.copytree(tmp / "models" / stage, tmp_path / "models" / stage)
    config = tmp_path / "value.toml"
    config.write_text(CONFIG + "category_value = true\nvalue_draws = 2\n\n[product]\nn_classes = 2\nburn_in_weeks = 0\n")
    cli = ["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "category", "--data", str(src),
           "--config", str(config), "--seed", "3", "--out", str(tmp_path / "models")]
    assert main(cli) == 0
    data = load_data(src, cache_dir=tmp / "cache")
    idata = load_posterior(tmp_path / "models", "category", data_hash=data.data_hash)
    assert chain_groups(idata.posterior).tolist() == [0, 1]
    linkage = json.loads(idata.attrs["category_value_linkage"])
    assert len(linkage["draws"]) == 2
    assert linkage["draws"][0]["product_draw"] == linkage["product_draw"]  # the first group's draw at the top
    assert linkage["draws"][0] != linkage["draws"][1]  # two distinct product draws (100 draws x 2 chains)
    summary = json.loads((tmp_path / "models" / "category" / SUMMARY_FILENAME).read_text())
    assert summary["imputation"]["chain_groups"] == 2 and "mu_value" in summary["imputation"]["between_share"]
    assert summary["convergence"]["chain_groups"] == 2
    # the held-out density rebuilds each group's values from the stored linkage
    elpd = category_elpd(tmp_path / "models", data, np.asarray(data.weeks)[-2:])
    assert np.isfinite(elpd["elpd"]) and elpd["draws"] == 100
    # pooling product draws needs the category value
    config.write_text(CONFIG + "value_draws = 2\n")
    assert main([*cli[:-1], str(tmp_path / "other")]) == 2
    assert "value_draws = 2 pools product draws" in capsys.readouterr().err
