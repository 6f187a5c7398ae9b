"""``bayes-retail fit --stage visit``: artifacts, provenance, flags and errors (tiny data)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tiny_data import write_internal

from bayes_retail.cli import main
from bayes_retail.data import load_data
from bayes_retail.models import visit
from bayes_retail.models.artifacts import attr_json, load_stage
from bayes_retail.models.stage import HYPERPRIORS_FILENAME, PRIOR_CHECK_FILENAME, SEASONAL_FILENAME, SUMMARY_FILENAME

SMOKE_CONFIG = """
[sampler]
method = "advi"
vi_iterations = 2000
draws = 100
"""


def _fit(tmp, src, out, *extra):
    return main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "visit",
                 "--data", str(src), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def smoke_fit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("visit")
    src = write_internal(tmp / "src")
    config = tmp / "smoke.toml"
    config.write_text(SMOKE_CONFIG)
    code = _fit(tmp, src, tmp / "models", "--config", str(config), "--seed", "4")
    return tmp, src, code


def test_visit_fit_writes_its_folder_with_provenance(smoke_fit):
    tmp, src, code = smoke_fit
    assert code == 0
    out = tmp / "models" / visit.STAGE
    assert sorted(p.name for p in out.iterdir()) == sorted(["trace.nc", HYPERPRIORS_FILENAME, SUMMARY_FILENAME, PRIOR_CHECK_FILENAME, SEASONAL_FILENAME])
    data = load_data(src, cache_dir=tmp / "cache")
    idata = load_stage(tmp / "models", stage=visit.STAGE, model_version=visit.MODEL_VERSION, data_hash=data.data_hash)
    assert idata.attrs["seed"] == 4 and idata.attrs["method"] == "advi" and idata.attrs["approximate"] == 1
    assert attr_json(idata, "sampler")["vi_iterations"] == 2000
    assert attr_json(idata, "stage_config") == visit.VisitConfig().to_dict() | {"mu_sigma": [1.5, 0.5, 1.0], "sd_sigma": [1.5, 0.5, 1.0]}
    # named dims, no transformed copies, household parameters present
    post = idata.posterior
    assert set(post.data_vars) == {"mu", "sigma", "corr_beta", "a", "b", "z_signal", "rho", "sigma_week", "s", "corr_visit_trips"}
    assert post["a"].dims[2:] == ("household",) and post["s"].dims[2:] == ("week",)
    assert list(post["mu"]["param"].values) == list(visit.PARAMS)


def test_the_prior_predictive_check_is_written_beside_the_fit(smoke_fit):
    tmp, src, _ = smoke_fit
    check = json.loads((tmp / "models" / visit.STAGE / PRIOR_CHECK_FILENAME).read_text())
    assert check["draws"] == 200
    summary = json.loads((tmp / "models" / visit.STAGE / SUMMARY_FILENAME).read_text())
    assert summary["weeks"] == "all"
    ppc = summary["posterior_predictive"]
    assert ppc["draws"] == 20 and set(ppc["ks"]) == {"household_visit_share", "trips_per_visited_week"}
    for row in ppc["ks"].values():
        assert 0 <= row["q05"] <= row["median"] <= row["q95"] <= 1
    data = load_data(src, cache_dir=tmp / "cache")
    vd = visit.build_visit_data(data)
    observed = visit.summary_statistics(vd.trips, vd.scored)
    for name, value in observed.items():
        row = check["statistics"][name]
        assert row["observed"] == pytest.approx(value)
        assert row["prior_q05"] <= row["prior_median"] <= row["prior_q95"]


def test_an_approximate_fit_is_flagged_everywhere(smoke_fit):
    tmp, _, _ = smoke_fit
    out = tmp / "models" / visit.STAGE
    summary = json.loads((out / SUMMARY_FILENAME).read_text())
    assert summary["approximate"] is True and summary["convergence"]["passed"] is False
    assert "approximate" in summary["convergence"]["failures"][0]
    seasonal = pd.read_csv(out / SEASONAL_FILENAME)
    assert list(seasonal.columns) == ["week", "index_mean", "q0.05", "q0.95", "observed"]
    scored = seasonal.dropna()  # the first week is only entries: not scored
    assert len(scored) >= len(seasonal) - 1 and (scored["q0.05"] <= scored["q0.95"]).all()
    table = pd.read_csv(out / HYPERPRIORS_FILENAME)
    assert set(table["variable"]) == {"mu", "sigma", "corr_visit_trips", "rho", "sigma_week"}
    assert table.loc[table["variable"] == "mu", "param"].tolist() == list(visit.PARAMS)


def test_an_unknown_method_is_a_clear_error(tmp_path, capsys):
    src = write_internal(tmp_path / "src")
    assert _fit(tmp_path, src, tmp_path / "models", "--method", "gibbs") == 2
    err = capsys.readouterr().err
    assert "--method" in err and "gibbs" in err and "Traceback" not in err
    assert not (tmp_path / "models").exists()


def test_an_unknown_visit_key_is_a_clear_error(tmp_path, capsys):
    src = write_internal(tmp_path / "src")
    config = tmp_path / "bad.toml"
    config.write_text("[visit]\nweight_weks = 3\n")
    assert _fit(tmp_path, src, tmp_path / "models", "--config", str(config)) == 2
    assert "weight_weks" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_a_bad_weeks_option_is_a_clear_error(tmp_path, capsys):
    src = write_internal(tmp_path / "src")
    assert _fit(tmp_path, src, tmp_path / "models", "--weeks", "9-3") == 2
    assert "cannot read '9-3'" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_named_holdout_and_seasonal_configs_select_their_weeks():
    from bayes_retail.config import DataSelection, load_config, stage_config

    holdout = stage_config(load_config("holdout"), "data", DataSelection).week_numbers
    assert 26 in holdout and 37 in holdout and not set(range(27, 37)) & set(holdout)
    assert max(stage_config(load_config("seasonal"), "data", DataSelection).week_numbers) == 40
    assert stage_config(load_config("default"), "data", DataSelection).week_numbers is None
