"""PSIS-LOO and held-out log predictive density on constructed log-likelihoods, and the visit stage's cells."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_retail.models.elpd import heldout_elpd, loo_summary


def test_identical_draws_give_the_log_likelihood_and_no_effective_parameters():
    ll = np.tile(np.log([0.2, 0.5, 0.9]), (50, 1))
    held = heldout_elpd(ll)
    assert held["elpd"] == pytest.approx(np.log([0.2, 0.5, 0.9]).sum()) and held["cells"] == 3
    loo = loo_summary(ll)
    assert loo["elpd_loo"] == pytest.approx(held["elpd"], abs=1e-9) and loo["p_loo"] == pytest.approx(0.0, abs=1e-9)


def test_heldout_elpd_is_the_log_of_the_mean_likelihood_by_hand():
    ll = np.log(np.array([[0.1, 0.4], [0.3, 0.2]]))
    held = heldout_elpd(ll)
    assert held["elpd"] == pytest.approx(np.log(0.2) + np.log(0.3))
    assert held["elpd_per_cell"] == pytest.approx((np.log(0.2) + np.log(0.3)) / 2)


def test_psis_loo_matches_exact_leave_one_out_for_a_normal_mean():
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    n = 40
    y = rng.normal(0, 1, n)
    # flat prior, known sd 1: the posterior of the mean is N(mean(y), 1/n), sampled exactly
    mu = rng.normal(y.mean(), 1 / np.sqrt(n), 4000)
    ll = norm.logpdf(y[None, :], mu[:, None], 1.0)
    loo = loo_summary(ll)
    # exact: leaving y_i out, y_i ~ N(mean of the others, 1 + 1/(n - 1))
    others = (y.sum() - y) / (n - 1)
    exact = norm.logpdf(y, others, np.sqrt(1 + 1 / (n - 1))).sum()
    assert loo["elpd_loo"] == pytest.approx(exact, abs=0.1)
    assert loo["elpd_loo"] < heldout_elpd(ll)["elpd"] and loo["share_k_above_max"] == 0.0


def test_bad_log_likelihoods_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        heldout_elpd(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"must be \(draws, cells\)"):
        loo_summary(np.zeros(3))


def test_visit_cell_log_likelihoods_sum_to_the_stage_log_likelihood(tiny_fitted):
    import json

    from bayes_retail.data import load_data
    from bayes_retail.models import visit
    from bayes_retail.models.artifacts import load_posterior

    tmp, src = tiny_fitted
    data = load_data(src, cache_dir=tmp / "cache")
    idata = load_posterior(tmp / "models", "visit", data_hash=data.data_hash)
    vd = visit.build_visit_data(data, visit.VisitConfig(**json.loads(idata.attrs["stage_config"])))
    post = idata.posterior
    ll = visit.cell_loglik_draws(vd, post, draws=3)
    assert ll.shape == (3, int(vd.scored.sum()))
    theta = visit.household_parameters(post)[0]
    first = visit.pointwise_loglik(vd, theta, float(post["rho"].values.ravel()[0]), post["s"].values.reshape(-1, vd.weeks.size)[0])
    assert ll[0].sum() == pytest.approx(np.nansum(first))
    summary = json.loads((tmp / "models" / "visit" / "fit_summary.json").read_text())
    assert summary["loo"]["cells"] == int(vd.scored.sum()) and np.isfinite(summary["loo"]["elpd_loo"])
