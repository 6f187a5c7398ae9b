"""``bayes-retail fit --stage quantity``: artifacts, provenance, tables and checks (tiny data)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny_data import write_internal

from bayes_retail.cli import main
from bayes_retail.data import load_data
from bayes_retail.models import quantity
from bayes_retail.models.artifacts import load_posterior
from bayes_retail.models.stage import (
    HYPERPRIORS_FILENAME,
    ITEMS_FILENAME,
    PRIOR_CHECK_FILENAME,
    PROMO_FILENAME,
    QUANTITY_HYPERPRIORS,
    QUANTITY_PIECES,
    SUMMARY_FILENAME,
)

CONFIG = """
[sampler]
chains = 2
draws = 100
tune = 150
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quantity")
    src = write_internal(tmp / "src")
    config = tmp / "small.toml"
    config.write_text(CONFIG)
    code = main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "quantity", "--data", str(src),
                 "--out", str(tmp / "models"), "--config", str(config), "--seed", "5"])
    return tmp, src, code


def test_quantity_fit_writes_its_folder_with_provenance(fitted):
    tmp, src, code = fitted
    assert code == 0
    out = tmp / "models" / quantity.STAGE
    expected = ["trace.nc", HYPERPRIORS_FILENAME, PROMO_FILENAME, ITEMS_FILENAME, SUMMARY_FILENAME, PRIOR_CHECK_FILENAME]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    data = load_data(src, cache_dir=tmp / "cache")
    idata = load_posterior(tmp / "models", "quantity", data_hash=data.data_hash)
    assert idata.attrs["seed"] == 5 and idata.attrs["method"] == "nutpie"
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    # households and categories by id, items by global index; no pattern-sized variables
    assert sorted(post["basket"]["household"].values) == sorted(data.choices["household_id"].unique())
    assert list(post["kappa"]["category"].values) == sorted(data.choice_sets["category_id"].unique())
    assert max(v.size for v in post.data_vars.values()) < 10 * post.sizes["chain"] * post.sizes["draw"] * post.sizes["item"]


def test_quantity_tables_name_categories_and_items(fitted):
    tmp, _, _ = fitted
    out = tmp / "models" / quantity.STAGE
    hyper = pd.read_csv(out / HYPERPRIORS_FILENAME)
    assert hyper["variable"].tolist() == QUANTITY_HYPERPRIORS
    assert (hyper["q0.05"] <= hyper["median"]).all() and (hyper["median"] <= hyper["q0.95"]).all()
    promo = pd.read_csv(out / PROMO_FILENAME)
    assert set(promo["response"]) == {"stockpiling_kappa"} and promo["category_id"].is_unique
    assert list(promo.columns[:2]) == ["category_id", "product_category"] and promo["product_category"].notna().all()
    items = pd.read_csv(out / ITEMS_FILENAME)
    assert list(items.columns) == ["category_id", "item", "product_id"]
    # one "other" item per category with tail products, with no product id
    assert items.groupby("category_id")["product_id"].apply(lambda s: s.isna().sum()).max() == 1


def test_quantity_predictive_checks_bracket_their_statistics(fitted):
    tmp, src, _ = fitted
    out = tmp / "models" / quantity.STAGE
    data = load_data(src, cache_dir=tmp / "cache")
    qd, _, _ = quantity.build_quantity_data(data)
    observed = quantity.summary_statistics(qd.extra_values, qd.extra_counts)
    prior = json.loads((out / PRIOR_CHECK_FILENAME).read_text())
    summary = json.loads((out / SUMMARY_FILENAME).read_text())
    posterior = summary["posterior_predictive"]
    assert prior["draws"] == 100 and posterior["draws"] == 20
    for name, value in observed.items():
        assert prior["statistics"][name]["observed"] == pytest.approx(value)
        row = posterior["statistics"][name]
        assert row["posterior_q05"] <= row["posterior_median"] <= row["posterior_q95"]
        assert 0.0 <= row["observed_posterior_quantile"] <= 1.0
    assert summary["lines"] == qd.n_lines and summary["stage"] == "quantity"
    assert np.isfinite(summary["convergence"]["max_rhat"])


def test_the_trace_holds_whole_vectors_in_single_precision(fitted):
    tmp, _, _ = fitted
    post = load_posterior(tmp / "models", "quantity").posterior
    assert not set(QUANTITY_PIECES) & set(post.data_vars)
    assert post["l"].dims[2:] == ("item",) and post["kappa"].dims[2:] == ("category",)
    assert all(post[name].dtype == np.float32 for name in post.data_vars)


def test_per_category_dispersion_reports_its_hyperparameters(tmp_path):
    src = write_internal(tmp_path / "src")
    config = tmp_path / "category.toml"
    config.write_text('[sampler]\nmethod = "advi"\nvi_iterations = 500\ndraws = 50\n\n[quantity]\ndispersion = "category"\n')
    code = main(["--quiet", "--cache-dir", str(tmp_path / "cache"), "fit", "--stage", "quantity", "--data", str(src),
                 "--out", str(tmp_path / "models"), "--config", str(config)])
    assert code == 0
    hyper = pd.read_csv(tmp_path / "models" / quantity.STAGE / HYPERPRIORS_FILENAME)
    assert hyper["variable"].tolist() == QUANTITY_HYPERPRIORS[:-1] + ["mu_log_alpha", "sigma_log_alpha"]
    post = load_posterior(tmp_path / "models", "quantity").posterior
    assert post["alpha"].dims[2:] == ("category",) and not {"log_alpha_centred", "z_log_alpha"} & set(post.data_vars)


def test_household_week_log_likelihoods_sum_the_lines_negative_binomial(fitted):
    from scipy.stats import nbinom

    tmp, src, _ = fitted
    data = load_data(src, cache_dir=tmp / "cache")
    post = load_posterior(tmp / "models", "quantity", data_hash=data.data_hash).posterior
    loglik, left_out = quantity.household_week_loglik_draws(data, post, draws=3)
    ch = data.choices
    assert left_out == 0 and loglik.shape == (3, len(ch.drop_duplicates(["household_id", "week"])))
    # the first evenly spaced draw is (chain 0, draw 0): the row-level NB over every line
    p = {name: post[name].isel(chain=0, draw=0).values.astype(float) for name in quantity.PARAMETER_NAMES}
    lines = quantity._lines(data)[0]
    mu = np.exp(p["l"][lines["item"]] + p["kappa"][lines["category"]] * lines["depth"] + p["basket"][lines["household"]])
    rows = nbinom.logpmf(lines["quantity"] - 1, p["alpha"], p["alpha"] / (p["alpha"] + mu))
    assert loglik[0].sum() == pytest.approx(rows.sum(), rel=1e-9)
    # the fit summary's PSIS-LOO is over the same household-weeks
    loo = json.loads((tmp / "models" / quantity.STAGE / SUMMARY_FILENAME).read_text())["loo"]
    assert loo["cells"] == loglik.shape[1] and loo["draws"] == 100 and loo["elpd_loo"] < 0
    # held-out weeks: only those weeks' household-weeks; a household the fit lacks is left out, counted in lines
    week = int(ch["week"].max())
    one, _ = quantity.household_week_loglik_draws(data, post, weeks=[week], draws=2)
    assert one.shape == (2, ch.loc[ch["week"] == week, "household_id"].nunique())
    fewer = post.isel(household=slice(1, None))
    _, dropped = quantity.household_week_loglik_draws(data, fewer, draws=2)
    assert dropped == int((ch["household_id"] == post["household"].values[0]).sum())
