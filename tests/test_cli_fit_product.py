"""``bayes-retail fit --stage product``: artifacts, provenance and tables (tiny data)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from tiny_data import write_internal

from bayes_retail.cli import main
from bayes_retail.data import load_data
from bayes_retail.models import product
from bayes_retail.models.artifacts import load_posterior
from bayes_retail.models.stage import (
    CLASS_MEMBERSHIP_FILENAME,
    ELASTICITIES_FILENAME,
    HYPERPRIORS_FILENAME,
    ITEMS_FILENAME,
    PRODUCT_HYPERPRIORS,
    PRIOR_CHECK_FILENAME,
    PRODUCT_PIECES,
    PROMO_FILENAME,
    SUMMARY_FILENAME,
)

CONFIG = """
[sampler]
chains = 2
draws = 100
tune = 150

[product]
n_classes = 2
burn_in_weeks = 0
promo_centred_min_occasions = 2
intercept_centred_min_purchases = 8  # the tiny data's free items are bought 7, 10 and 7 times: a split
intercept_centre = "pooled"  # its hyperparameters reach the table
"""


def _fit(tmp, src, config, *extra):
    return main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--data", str(src), "--out", str(tmp / "models"),
                 "--config", str(config), *extra])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("product")
    src = write_internal(tmp / "src")
    assert _fit(tmp, src, "quick", "--stage", "pricing") == 0
    config = tmp / "small.toml"
    config.write_text(CONFIG)
    return tmp, src, _fit(tmp, src, config, "--stage", "product", "--seed", "5")


def test_product_fit_writes_its_folder_with_provenance(fitted):
    tmp, src, code = fitted
    assert code == 0
    out = tmp / "models" / product.STAGE
    expected = ["trace.nc", HYPERPRIORS_FILENAME, PROMO_FILENAME, ITEMS_FILENAME, CLASS_MEMBERSHIP_FILENAME,
                ELASTICITIES_FILENAME, SUMMARY_FILENAME, PRIOR_CHECK_FILENAME]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    data = load_data(src, cache_dir=tmp / "cache")
    idata = load_posterior(tmp / "models", "product", data_hash=data.data_hash)
    assert idata.attrs["seed"] == 5 and idata.attrs["method"] == "nutpie"
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    assert not set(PRODUCT_PIECES) & set(post.data_vars)
    assert {"display", "mailer", "log_extra_rate", "t_free"} <= set(post.data_vars)
    assert not [dim for dim in post.coords if dim.endswith("centred")]  # the pieces' dims went with them
    assert post["theta"].shape[2:] == (2, 6)  # classes x (price, discount, state, 3 attributes)
    summary = json.loads((out / SUMMARY_FILENAME).read_text())
    assert summary["stage"] == "product" and summary["households"] == 4 and summary["depth_panels"] == [0]
    assert summary["imputation"] is None and "chain_groups" not in post.attrs
    check = summary["posterior_predictive"]
    assert check["draws"] == 5 and set(check["statistics"]) == {"reference_share", "mean_items"}
    assert 0 <= check["statistics"]["reference_share"]["observed"] <= 1
    assert "loo" not in summary  # household-level PSIS fails (docs/models.md); ppc --weeks gives exact held-out densities
    prior = json.loads((out / PRIOR_CHECK_FILENAME).read_text())
    assert prior["draws"] == 10 and set(prior["statistics"]) == {"reference_share", "mean_items"}
    assert prior["statistics"]["mean_items"]["observed"] == check["statistics"]["mean_items"]["observed"]


def test_product_tables(fitted):
    tmp, src, _ = fitted
    out = tmp / "models" / product.STAGE
    data = load_data(src, cache_dir=tmp / "cache")
    hyper = pd.read_csv(out / HYPERPRIORS_FILENAME)
    assert set(hyper["variable"]) == set(PRODUCT_HYPERPRIORS) - {"tau_depth"}  # no per-category depth response here
    promo = pd.read_csv(out / PROMO_FILENAME)
    n_categories = data.choice_sets["category_id"].nunique()
    assert sorted(promo["response"].unique()) == ["display", "mailer"] and len(promo) == 2 * n_categories
    assert promo["product_category"].notna().all() and (promo["q0.05"] <= promo["q0.95"]).all()
    membership = pd.read_csv(out / CLASS_MEMBERSHIP_FILENAME)
    assert list(membership.columns) == ["household_id", "class_0", "class_1"]
    assert sorted(membership["household_id"]) == sorted(data.households["household_id"])
    np.testing.assert_allclose(membership[["class_0", "class_1"]].sum(axis=1), 1.0)
    items = pd.read_csv(out / ITEMS_FILENAME)
    assert list(items.columns) == ["category_id", "item", "product_id"]
    elasticities = pd.read_csv(out / ELASTICITIES_FILENAME)
    assert list(elasticities.columns) == [
        "measure", "category_id", "product_category", "mean", "sd", "q0.05", "median", "q0.95", "depth"
    ]
    assert list(elasticities["measure"].unique()) == list(product.SHARE_RESPONSES)
    assert len(elasticities) == len(product.SHARE_RESPONSES) * n_categories
    assert (elasticities["q0.05"] <= elasticities["median"]).all()
    assert (elasticities["median"] <= elasticities["q0.95"]).all() and (elasticities["depth"] == 0.2).all()


def _refit_with(fitted, tmp_path, product_lines: str) -> int:
    """Fit the product stage into ``tmp_path/models`` (the fixture's pricing) with CONFIG plus ``product_lines``."""
    tmp, src, _ = fitted
    shutil.copytree(tmp / "models" / "pricing", tmp_path / "models" / "pricing")
    config = tmp_path / "refit.toml"
    config.write_text(CONFIG.replace("[product]", f"[product]\n{product_lines}"))
    return main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--data", str(src), "--out",
                 str(tmp_path / "models"), "--config", str(config), "--stage", "product", "--seed", "5"])


def test_a_household_subset_is_drawn_with_the_seed(fitted, tmp_path):
    assert _refit_with(fitted, tmp_path, "households = 2") == 0
    summary = json.loads((tmp_path / "models" / product.STAGE / SUMMARY_FILENAME).read_text())
    membership = pd.read_csv(tmp_path / "models" / product.STAGE / CLASS_MEMBERSHIP_FILENAME)
    assert summary["households"] == 2 and len(membership) == 2


def test_span_availability_is_fitted_and_stored_with_the_trace(fitted, tmp_path):
    tmp = fitted[0]
    assert _refit_with(fitted, tmp_path, 'availability = "span"') == 0
    idata = load_posterior(tmp_path / "models", product.STAGE)
    assert json.loads(idata.attrs["stage_config"])["availability"] == "span"
    # the tiny data sell every choice-set product from the first week to the last: the same posterior as "always"
    always = load_posterior(tmp / "models", product.STAGE)
    np.testing.assert_allclose(idata.posterior["mu"].values, always.posterior["mu"].values)


def test_depth_panels_pool_one_chain_group_per_imputed_panel(fitted, tmp_path):
    from bayes_retail.models.imputation import chain_groups

    assert _refit_with(fitted, tmp_path, "depth_panels = 2") == 0
    idata = load_posterior(tmp_path / "models", product.STAGE)
    assert chain_groups(idata.posterior).tolist() == [0, 1]  # the fixture's 2 chains, one per panel
    single = load_posterior(fitted[0] / "models", product.STAGE)
    # group 0 is the one-panel fit's first chain: same panel, same seed
    np.testing.assert_allclose(idata.posterior["mu"].values[0], single.posterior["mu"].values[0])
    summary = json.loads((tmp_path / "models" / product.STAGE / SUMMARY_FILENAME).read_text())
    assert summary["depth_panels"] == [0, 1] and summary["convergence"]["chain_groups"] == 2
    imputation = summary["imputation"]
    assert imputation["chain_groups"] == 2 and imputation["chains_per_group"] == [1, 1]
    assert "mu[0]" in imputation["between_share"] and 0 <= imputation["max_between_share"] <= 1
    membership = pd.read_csv(tmp_path / "models" / product.STAGE / CLASS_MEMBERSHIP_FILENAME)
    np.testing.assert_allclose(membership.filter(like="class_").sum(axis=1), 1.0)


def test_depth_panels_the_fit_cannot_have_are_refused_before_sampling(fitted, tmp_path, capsys):
    from bayes_retail.config import ConfigError
    from bayes_retail.models.stage import product_depth_panels

    assert _refit_with(fitted, tmp_path, "depth_panels = 3") != 0
    assert "[product] depth_panels = 3: 2 chains cannot be split evenly into 3 groups" in capsys.readouterr().err
    assert not (tmp_path / "models" / product.STAGE).exists()
    tmp, src, _ = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    assert product_depth_panels(data, tmp / "models", 5).shape[0] == 5
    with pytest.raises(ConfigError, match="depth_panels = 6, but the pricing stage .* imputed 5 panels"):
        product_depth_panels(data, tmp / "models", 6)


def test_without_the_pricing_stage_the_error_names_the_missing_file(tmp_path, capsys):
    src = write_internal(tmp_path / "src")
    config = tmp_path / "small.toml"
    config.write_text(CONFIG)
    assert _fit(tmp_path, src, config, "--stage", "product") != 0
    err = capsys.readouterr().err
    assert "fit --stage pricing" in err and "pricing" in err
    assert not (tmp_path / "models" / product.STAGE).exists()


def test_the_simulator_reads_a_household_coefficient_fit_as_one_class_per_household(tiny_fitted, tmp_path):
    from conftest import refit_tiny_product

    tmp, src = tiny_fitted
    models = refit_tiny_product(tiny_fitted, tmp_path, 'coefficients = "household"')
    cli = ["--quiet", "--cache-dir", str(tmp / "cache")]
    data = load_data(src, cache_dir=tmp / "cache")
    fit = load_posterior(models, "product", data_hash=data.data_hash)
    post = fit.posterior
    assert post["theta_household"].dims[2:] == ("household", "coefficient")
    assert {"sigma", "correlation"} <= set(post.data_vars) and not {"theta", "z_household"} & set(post.data_vars)
    assert json.loads(fit.attrs["stage_config"])["coefficients"] == "household"
    out = models / product.STAGE
    membership = pd.read_csv(out / CLASS_MEMBERSHIP_FILENAME).set_index("household_id")
    np.testing.assert_array_equal(membership.to_numpy(), np.eye(len(membership)))  # each household its own class
    assert "correlation" in set(pd.read_csv(out / HYPERPRIORS_FILENAME)["variable"])
    assert json.loads((out / SUMMARY_FILENAME).read_text())["posterior_predictive"]["draws"] == 5
    for mode, customers in (("replay", 4), ("new", 12), ("population", 12)):
        out = tmp_path / f"syn-{mode}"
        assert main([*cli, "simulate", "--posterior", str(models), "--data", str(src), "--customers", str(customers),
                     "--mode", mode, "--out", str(out)]) == 0
        lines = pd.concat(pd.read_parquet(p) for p in (out / "transactions").rglob("*.parquet"))
        assert len(lines) > 0 and lines["household_id"].nunique() > 1, mode


def test_a_deal_frequency_fit_reaches_the_simulators_catalogue(tiny_fitted, tmp_path):
    from conftest import refit_tiny_product

    from bayes_retail.simulate.population import Posteriors, stage_draw
    from bayes_retail.simulate.world import catalogue_from_data

    tmp, src = tiny_fitted
    models = refit_tiny_product(tiny_fitted, tmp_path, "deal_frequency = true")
    data = load_data(src, cache_dir=tmp / "cache")
    posteriors = Posteriors.load(models, data_hash=data.data_hash)
    assert list(posteriors.product.coords["coefficient"].values[-4:]) == list(product.ATTRIBUTES)
    config = product.fitted_config(posteriors.product.attrs)
    assert config.deal_frequency
    catalogue = catalogue_from_data(data, deal_frequency=config.deal_frequency)
    assert catalogue.attributes.shape[1] == 4
    assert stage_draw(posteriors, catalogue, 0).class_coefficients.shape[1] == 4 + 4  # "both": 4 core columns
    with pytest.raises(ValueError, match=r"class_coefficients must have shape \(K, 7\), got \(2, 8\)"):
        stage_draw(posteriors, catalogue_from_data(data), 0).check(catalogue_from_data(data), data.weeks.size)
    out = tmp_path / "syn"
    assert main(["--quiet", "--cache-dir", str(tmp / "cache"), "simulate", "--posterior", str(models), "--data",
                 str(src), "--customers", "6", "--out", str(out)]) == 0
    assert len(pd.concat(pd.read_parquet(p) for p in (out / "transactions").rglob("*.parquet"))) > 0
