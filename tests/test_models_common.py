"""Shared model machinery: sampler settings, the convergence verdict, stage traces, posterior tables."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayes_retail.errors import ArtifactError
from bayes_retail.models.artifacts import TRACE_FILENAME, attr_json, load_stage, save_stage, stage_path
from bayes_retail.models.diagnostics import ConvergenceWarning, announce, convergence, drop_chains, stuck_chains
from bayes_retail.models.sampling import SamplerConfig
from bayes_retail.models.tables import posterior_table


def _idata(rng, *, chains=4, draws=500, shift=0.0, diverging=0, scale=1.0):
    """A posterior of iid normal draws; ``shift`` moves chain 0 (non-mixing), ``scale`` the spread."""
    mu = rng.normal(0, scale, (chains, draws, 3))
    mu[0] += shift
    sigma = np.abs(rng.normal(1, 0.1, (chains, draws)))
    div = np.zeros((chains, draws), dtype=bool)
    div.flat[:diverging] = True
    energy = rng.normal(0, 1, (chains, draws)).cumsum(axis=1) * 0 + rng.normal(0, 1, (chains, draws))
    return az.from_dict(
        posterior={"mu": mu, "sigma": sigma},
        sample_stats={"diverging": div, "energy": energy},
        coords={"param": ["visit", "signal", "trips"]},
        dims={"mu": ["param"]},
    )


def test_sampler_config_validates_every_field():
    assert SamplerConfig().method == "nutpie" and SamplerConfig().chains == 4
    with pytest.raises(ValueError, match="method must be one of"):
        SamplerConfig(method="gibbs")
    with pytest.raises(ValueError, match="chains must be a positive integer"):
        SamplerConfig(chains=0)
    with pytest.raises(ValueError, match="tune must be a non-negative integer"):
        SamplerConfig(tune=-1)
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        SamplerConfig(draws=True)
    with pytest.raises(ValueError, match="target_accept"):
        SamplerConfig(target_accept=1.0)
    assert SamplerConfig(method="advi").approximate and not SamplerConfig(method="pymc").approximate
    with pytest.raises(ValueError, match="time_limit_minutes must be a non-negative number"):
        SamplerConfig(time_limit_minutes=-1)
    with pytest.raises(ValueError, match="'nutpie' only, not 'pymc'"):
        SamplerConfig(method="pymc", time_limit_minutes=5)
    with pytest.raises(ValueError, match="drop_stuck_chains must be true or false"):
        SamplerConfig(drop_stuck_chains="yes")
    with pytest.raises(ValueError, match="mass_matrix must be one of diagonal, low_rank, got 'dense'"):
        SamplerConfig(mass_matrix="dense")
    with pytest.raises(ValueError, match="mass_matrix 'low_rank' works with method 'nutpie' only, not 'pymc'"):
        SamplerConfig(method="pymc", mass_matrix="low_rank")


def test_a_low_rank_mass_matrix_reaches_nutpie_and_shortens_trajectories_along_a_shared_direction():
    import pymc as pm

    from bayes_retail.models.sampling import sample_posterior

    # 20 coordinates that move together (correlation 0.998): a diagonal mass
    # matrix needs long trajectories along their common direction, a low-rank
    # correction learns that direction in warmup
    n = 20
    cov = 0.002 * np.eye(n) + 0.998 * np.ones((n, n))
    with pm.Model() as model:
        pm.MvNormal("x", np.zeros(n), cov=cov)
    steps, shared_ess = {}, {}
    for mass in ("diagonal", "low_rank"):
        config = SamplerConfig(chains=2, tune=400, draws=400, mass_matrix=mass)
        idata = sample_posterior(model, config=config, seed=3)
        steps[mass] = float(idata.sample_stats["n_steps"].mean())
        # the coordinates' mean is the position along the shared direction
        shared_ess[mass] = float(az.ess(idata.posterior["x"].values.mean(axis=2)))
    # the diagonal run barely moves along the shared direction (measured, seeds 3-5: ESS 5-23 of 800 draws, its
    # mean off by up to 0.40); the low-rank run mixes there (ESS 1,450-1,900) and is accurate
    assert shared_ess["low_rank"] >= 400 and shared_ess["low_rank"] > 10 * shared_ess["diagonal"], shared_ess
    x = idata.posterior["x"].values.reshape(-1, n)
    assert np.abs(x.mean(axis=0)).max() < 0.3 and np.allclose(x.std(axis=0), 1.0, atol=0.2)
    assert steps["low_rank"] < steps["diagonal"] / 2, steps  # measured: 23.4 against 6.8 steps per draw


def _slow_normal_model():
    """A model whose gradient takes ~1 ms (a million observations), so a few seconds make few draws."""
    import pymc as pm

    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0, shape=5)
        pm.Normal("y", x.sum(), 1000.0, observed=np.zeros(1_000_000))
    return model


def test_a_time_limit_keeps_the_draws_every_chain_completed_and_fails_the_verdict():
    from bayes_retail.models.sampling import sample_posterior

    # 2 x (50 + 10 million) draws cannot finish in 3 seconds
    config = SamplerConfig(chains=2, tune=50, draws=10_000_000, time_limit_minutes=0.05)
    idata = sample_posterior(_slow_normal_model(), config=config, seed=1)
    n = idata.posterior.sizes["draw"]
    assert idata.attrs["stopped_early"] == 1 and idata.attrs["draws_completed"] == n
    assert 4 <= n < 10_000_000
    assert np.isfinite(idata.posterior["x"].values).all()
    assert idata.sample_stats.sizes["draw"] == n
    verdict = convergence(idata)
    assert verdict.stopped_early and not verdict.passed
    assert any(f"time limit after {n} draws" in f for f in verdict.failures)


def _padded(done, n_draws=60):
    """A nutpie-like trace cut by a time limit: chain c holds done[c] draws, then NaN padding."""
    import arviz as az

    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(done), n_draws, 3))
    for c, d in enumerate(done):
        x[c, d:] = np.nan
    stats = {"diverging": np.zeros((len(done), n_draws), dtype=bool), "energy": rng.normal(size=(len(done), n_draws))}
    return az.from_dict(posterior={"x": x}, sample_stats=stats)


def test_a_chain_far_behind_at_the_time_limit_is_dropped_not_cut_to():
    from bayes_retail.models.sampling import SamplerError, _stopped_early, lagging_chains

    config = SamplerConfig(chains=4, tune=50, draws=60, time_limit_minutes=1.0)
    kept = _stopped_early(_padded([50, 48, 0, 45]), config)  # chain 2 never left warmup
    assert kept.posterior.sizes["chain"] == 3 and kept.posterior.sizes["draw"] == 45
    assert list(kept.posterior["chain"].values) == [0, 1, 2] and np.isfinite(kept.posterior["x"].values).all()
    assert kept.attrs["lagging_chains"] == '{"2": 0}' and kept.attrs["draws_completed"] == 45
    verdict = convergence(kept)
    assert verdict.lagging_chains == {"2": 0} and not verdict.passed
    assert any("chain 2 completed only 0 draws by the time limit and was dropped" in f for f in verdict.failures)
    # a chain at half the best is kept; one left alone is not a posterior: the old error
    assert lagging_chains(np.array([50, 25, 40, 30])) == {}
    assert lagging_chains(np.array([50, 3, 2, 1])) == {}
    with pytest.raises(SamplerError, match="after 0 posterior draws in the slowest chain"):
        _stopped_early(_padded([50, 48, 0, 45]), SamplerConfig(chains=4, draws=60, time_limit_minutes=1.0,
                                                              drop_stuck_chains=False))


def test_a_time_limit_inside_warmup_is_a_clear_error():
    from bayes_retail.models.sampling import SamplerError, sample_posterior

    config = SamplerConfig(chains=2, tune=10_000_000, draws=10, time_limit_minutes=0.02)
    with pytest.raises(SamplerError, match="time limit .* raise time_limit_minutes or lower tune"):
        sample_posterior(_slow_normal_model(), config=config, seed=1)


def test_a_run_within_its_time_limit_equals_one_without():
    from bayes_retail.models.sampling import sample_posterior

    plain = sample_posterior(_slow_normal_model(), config=SamplerConfig(chains=2, tune=50, draws=50), seed=3)
    limited = sample_posterior(
        _slow_normal_model(), config=SamplerConfig(chains=2, tune=50, draws=50, time_limit_minutes=10), seed=3
    )
    assert "stopped_early" not in limited.attrs
    np.testing.assert_array_equal(plain.posterior["x"].values, limited.posterior["x"].values)


def test_a_variable_named_like_a_sampler_statistic_keeps_the_model_dims():
    import pymc as pm

    from bayes_retail.models.sampling import sample_posterior

    # nutpie calls the tree depth "depth" too and left the product stage's depth response on "depth_dim_0"
    with pm.Model(coords={"category": [10, 20, 30]}) as model:
        tau = pm.HalfNormal("tau_depth", 1.0)
        raw = pm.Normal("depth_raw", 0.0, 1.0, dims="category")
        pm.Deterministic("depth", tau * raw, dims="category")
    posterior = sample_posterior(model, config=SamplerConfig(chains=1, tune=20, draws=10), seed=1).posterior
    assert posterior["depth"].dims == ("chain", "draw", "category")
    assert posterior["category"].values.tolist() == [10, 20, 30] and "depth_dim_0" not in posterior.dims
    np.testing.assert_allclose(posterior["depth"], posterior["tau_depth"] * posterior["depth_raw"], rtol=1e-12)


def test_a_well_mixed_posterior_passes():
    verdict = convergence(_idata(np.random.default_rng(0)))
    assert verdict.passed and verdict.failures == []
    assert verdict.max_rhat < 1.01 and verdict.min_ess_bulk > 1000
    assert verdict.n_scalars == 4 and verdict.divergences == 0


def test_a_stuck_chain_fails_on_rhat_and_names_the_variable():
    verdict = convergence(_idata(np.random.default_rng(1), shift=3.0))
    assert not verdict.passed
    assert verdict.max_rhat > 1.1 and verdict.worst["rhat"].startswith("mu[")
    assert any(f.startswith("R-hat") for f in verdict.failures)


def _with_a_stuck_chain(rng, stuck=2):
    """4 well-mixed chains with a log density, chain ``stuck`` far away and a million below the others."""
    idata = _idata(rng)
    idata.posterior["mu"][stuck] += 50.0
    logp = rng.normal(-100.0, 2.0, (4, 500))
    logp[1] -= 5.0  # 2.5 sds lower: an ordinary chain
    logp[stuck] -= 1e6
    idata.sample_stats["logp"] = (("chain", "draw"), logp)
    return idata


def test_a_chain_far_below_the_others_log_density_is_stuck_and_dropped():
    idata = _with_a_stuck_chain(np.random.default_rng(6))
    stuck = stuck_chains(idata)
    assert list(stuck) == [2] and stuck[2] == pytest.approx(1e6, rel=1e-3)
    assert convergence(idata).max_rhat > 1.5  # all four: the stuck chain ruins R-hat
    dropped = drop_chains(idata, stuck)
    assert dropped.posterior.sizes["chain"] == 3 and list(dropped.posterior["chain"].values) == [0, 1, 2]
    np.testing.assert_array_equal(dropped.posterior["mu"].values, idata.posterior["mu"].values[[0, 1, 3]])
    np.testing.assert_array_equal(dropped.sample_stats["logp"].values, idata.sample_stats["logp"].values[[0, 1, 3]])
    verdict = convergence(dropped)
    assert verdict.max_rhat < 1.01 and not verdict.passed
    assert verdict.dropped_chains == {"2": pytest.approx(1e6, rel=1e-3)}
    assert verdict.failures[0].startswith("chain 2 stuck (mean log density 1,000,")
    # a tighter threshold in sds also flags the ordinary chain; no log density: nothing to judge
    assert list(stuck_chains(idata, logp_sds=2.0)) == [1, 2]
    assert stuck_chains(_idata(np.random.default_rng(6))) == {}


def test_fitting_drops_stuck_chains_unless_told_not_to(monkeypatch):
    from bayes_retail.models import stage

    idata = _with_a_stuck_chain(np.random.default_rng(7), stuck=0)
    monkeypatch.setattr(stage, "sample_posterior", lambda model, config, seed: idata)
    kept, _, verdict = stage._sample(None, SamplerConfig(), seed=0, stage="test")
    assert kept.posterior.sizes["chain"] == 3 and list(verdict.dropped_chains) == ["0"]
    every, _, verdict = stage._sample(None, SamplerConfig(drop_stuck_chains=False), seed=0, stage="test")
    assert every.posterior.sizes["chain"] == 4 and verdict.dropped_chains == {} and verdict.max_rhat > 1.5


def test_divergences_and_low_ess_are_failures():
    rng = np.random.default_rng(2)
    verdict = convergence(_idata(rng, diverging=3))
    assert verdict.divergences == 3 and any("3 divergent" in f for f in verdict.failures)
    short = convergence(_idata(rng, draws=50))
    assert not short.passed and any(f.startswith("bulk ESS") for f in short.failures)
    # thresholds are keyword arguments
    assert convergence(_idata(rng, draws=50), ess_min=50).min_ess_bulk > 50


def test_an_approximate_posterior_never_passes():
    idata = _idata(np.random.default_rng(3))
    idata.attrs["approximate"] = 1
    verdict = convergence(idata)
    assert not verdict.passed and "approximate" in verdict.failures[0]


def test_announce_warns_loudly_on_failure(capsys):
    bad = convergence(_idata(np.random.default_rng(4), shift=3.0))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        announce(bad, stage="visit")
    err = capsys.readouterr().err
    assert "!!!!" in err and "FAILED" in err and "R-hat" in err
    announce(convergence(_idata(np.random.default_rng(5))), stage="visit")
    assert "PASSED" in capsys.readouterr().err


def _saved(tmp_path, **kwargs):
    idata = _idata(np.random.default_rng(6), draws=100)
    attrs = {"data_hash": "abc", "seed": 3, "config": {"a": 1}, "convergence": {"passed": True}}
    return idata, save_stage(idata, tmp_path / "visit", stage="visit", model_version=2, attrs=attrs, **kwargs)


def test_stage_trace_round_trip_keeps_draws_and_provenance(tmp_path):
    idata, path = _saved(tmp_path)
    assert path == stage_path(tmp_path, "visit") and path.name == TRACE_FILENAME
    # the trace file, its folder and the artifacts folder all find it
    for where in (path, path.parent, tmp_path):
        loaded = load_stage(where, stage="visit", model_version=2, data_hash="abc")
        xr.testing.assert_equal(loaded.posterior["mu"], idata.posterior["mu"])
    assert loaded.attrs["seed"] == 3 and loaded.attrs["bayes_retail_version"]
    assert attr_json(loaded, "config") == {"a": 1}
    assert not list(path.parent.glob("*.tmp*"))


def test_thinning_keeps_evenly_spaced_draws_of_every_chain(tmp_path):
    _, path = _saved(tmp_path, keep_draws=40)
    loaded = load_stage(path, stage="visit", model_version=2)
    assert loaded.posterior.sizes["chain"] == 4 and loaded.posterior.sizes["draw"] == 10
    np.testing.assert_array_equal(loaded.posterior["draw"].values, np.linspace(0, 99, 10).round().astype(int))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stage": "category", "model_version": 2}, "a 'visit' trace, not 'category'"),
        ({"stage": "visit", "model_version": 3}, "model version 2 .* this version is 3: refit"),
        ({"stage": "visit", "model_version": 2, "data_hash": "zzz"}, "fitted on other data"),
    ],
)
def test_loading_refuses_a_mismatch(tmp_path, kwargs, message):
    _, path = _saved(tmp_path)
    with pytest.raises(ArtifactError, match=message) as info:
        load_stage(path, **kwargs)
    assert str(path) in str(info.value)


def test_loading_refuses_missing_corrupted_and_foreign_files(tmp_path):
    with pytest.raises(ArtifactError, match="no visit trace here"):
        load_stage(tmp_path, stage="visit", model_version=2)
    _, path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ArtifactError, match="cannot read the trace"):
        load_stage(path, stage="visit", model_version=2)
    foreign = tmp_path / "foreign.nc"
    _idata(np.random.default_rng(7), draws=20).to_netcdf(str(foreign), engine="h5netcdf")
    with pytest.raises(ArtifactError, match="not a bayes_retail stage trace"):
        load_stage(foreign, stage="visit", model_version=2)


def test_posterior_table_is_tidy_with_90_percent_intervals():
    idata = _idata(np.random.default_rng(8), draws=2000)
    table = posterior_table(idata, ["mu", "sigma"])
    assert list(table.columns[:3]) == ["variable", "param", "mean"]
    assert {"q0.05", "median", "q0.95", "r_hat", "ess_bulk", "ess_tail"} <= set(table.columns)
    assert table["variable"].tolist() == ["mu", "mu", "mu", "sigma"]
    assert table["param"].tolist()[:3] == ["visit", "signal", "trips"]
    row = table.iloc[0]
    draws = idata.posterior["mu"].sel(param="visit").values.ravel()
    assert row["q0.05"] == pytest.approx(np.quantile(draws, 0.05))
    assert row["q0.95"] == pytest.approx(np.quantile(draws, 0.95))


def test_load_posterior_checks_the_stage_module_version(tmp_path):
    import bayes_retail as br
    from bayes_retail.models import visit

    idata = _idata(np.random.default_rng(9), draws=20)
    save_stage(idata, tmp_path / "visit", stage="visit", model_version=visit.MODEL_VERSION, attrs={"data_hash": "h"})
    loaded = br.load_posterior(tmp_path, stage="visit", data_hash="h")
    assert loaded.attrs["stage"] == "visit"
    with pytest.raises(ArtifactError, match="unknown stage 'basket'"):
        br.load_posterior(tmp_path, stage="basket")


def test_the_shipped_visit_posterior_loads_and_passed_its_verdict():
    import bayes_retail as br
    from bayes_retail.config import CONFIG_DIR

    models = CONFIG_DIR.parents[1] / "models"
    idata = br.load_posterior(models, stage="visit")
    verdict = attr_json(idata, "convergence")
    assert verdict["passed"] and verdict["max_rhat"] <= 1.01 and verdict["divergences"] == 0
    assert idata.attrs["method"] == "nutpie" and idata.attrs["config_name"] == "default"
    assert idata.posterior.sizes["chain"] == 4 and idata.posterior["a"].shape[-1] == 2467
