"""Out-of-household validation: fits on a seeded share of the households, new customers against the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CONFIG
from tiny_data import write_internal

from bayes_retail.cli import main
from bayes_retail.config import DataSelection
from bayes_retail.data import load_data
from bayes_retail.models.artifacts import load_posterior
from bayes_retail.ppc import held_out_households, posterior_predictive_suite


def test_the_split_is_seeded_disjoint_and_validated():
    ids = np.arange(100, 200)
    fit, held = DataSelection(fit_share=0.8, split_seed=3).household_split(ids)
    assert fit.size == 80 and held.size == 20 and not set(fit) & set(held)
    assert set(fit) | set(held) == set(ids)
    again = DataSelection(fit_share=0.8, split_seed=3).household_split(ids[::-1])
    np.testing.assert_array_equal(again[1], held)  # the order of the ids does not matter
    assert not np.array_equal(DataSelection(fit_share=0.8, split_seed=4).household_split(ids)[1], held)
    assert DataSelection().household_split(ids)[1].size == 0
    with pytest.raises(ValueError, match=r"fit_share must be in \(0, 1\]"):
        DataSelection(fit_share=1.5)


@pytest.fixture(scope="module")
def split_fit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("split")
    src = write_internal(tmp / "src")
    config = tmp / "split.toml"
    config.write_text(TINY_CONFIG + "\n[data]\nfit_share = 0.5\nsplit_seed = 1\n")
    cli = ["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--data", str(src), "--out", str(tmp / "models")]
    assert main([*cli, "--stage", "pricing", "--config", "quick"]) == 0
    for stage in ("visit", "product", "category", "quantity"):
        assert main([*cli, "--stage", stage, "--config", str(config)]) == 0
    return tmp, src, load_data(src, cache_dir=tmp / "cache")


def test_every_stage_fits_only_the_fitted_share(split_fit):
    tmp, _, data = split_fit
    fit, held = DataSelection(fit_share=0.5, split_seed=1).household_split(data.households["household_id"])
    assert fit.size == 2 and held.size == 2
    for stage, dim in (("visit", "household"), ("category", "household"), ("quantity", "household")):
        idata = load_posterior(tmp / "models", stage, data_hash=data.data_hash)
        assert set(idata.posterior[dim].values) <= set(fit), stage
        assert idata.attrs["fit_share"] == 0.5 and idata.attrs["split_seed"] == 1
    membership = pd.read_csv(tmp / "models" / "product" / "class_membership.csv")
    assert set(membership["household_id"]) <= set(fit)
    np.testing.assert_array_equal(held_out_households(tmp / "models", data), held)


def test_new_customers_are_checked_against_the_held_out_households(split_fit, tmp_path):
    tmp, _, data = split_fit
    out = posterior_predictive_suite(tmp / "models", data, tmp_path / "ppc", draws=2, mode="new", prices="observed",
                                     held_out=True, cache_dir=str(tmp / "cache"))
    held = held_out_households(tmp / "models", data)
    real = data.transactions[data.transactions["household_id"].isin(held)]
    observed = out["p_values"].set_index("statistic")["observed"]
    n_weeks = len(data.weeks)
    assert observed["visit_rate"] == pytest.approx(len(real[["household_id", "week"]].drop_duplicates()) / (held.size * n_weeks))
    with pytest.raises(ValueError, match="were not fitted: compare them with new customers"):
        posterior_predictive_suite(tmp / "models", data, tmp_path / "ppc2", draws=2, held_out=True)


def test_a_fit_on_every_household_has_nothing_held_out(tiny_fitted):
    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    with pytest.raises(ValueError, match="nothing is held out"):
        held_out_households(tmp / "models", data)
