"""Chain groups pooled over imputed inputs: splitting the sampler, pooling, grouped verdicts, between-group share."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest

from bayes_retail.models.diagnostics import convergence
from bayes_retail.models.imputation import (
    between_group_share,
    chain_groups,
    group_sampler,
    group_seed,
    imputation_summary,
    pool_chains,
    pooled_draws,
)
from bayes_retail.models.sampling import SamplerConfig


def _part(centre: float, *, chains: int = 2, draws: int = 1000, seed: int = 0, **attrs) -> az.InferenceData:
    """iid normal draws around ``centre`` (``a``) and around 0 (``b``, two entries), with sampler statistics."""
    rng = np.random.default_rng(seed)
    idata = az.from_dict(
        posterior={"a": centre + rng.normal(size=(chains, draws)), "b": rng.normal(size=(chains, draws, 2))},
        sample_stats={"diverging": np.zeros((chains, draws), dtype=bool),
                      "energy": rng.normal(size=(chains, draws)).cumsum(axis=1) * 0.01 + rng.normal(size=(chains, draws))},
    )
    idata.attrs.update(attrs)
    return idata


def test_group_sampler_splits_chains_and_time_limit():
    sampler = SamplerConfig(chains=4, time_limit_minutes=100.0)
    one = group_sampler(sampler, 2)
    assert one.chains == 2 and one.time_limit_minutes == 50.0 and one.draws == sampler.draws
    assert group_sampler(sampler, 1) is sampler
    with pytest.raises(ValueError, match="4 chains cannot be split evenly into 3 groups"):
        group_sampler(sampler, 3)
    with pytest.raises(ValueError, match="method 'advi' has none"):
        group_sampler(SamplerConfig(method="advi"), 2)
    with pytest.raises(ValueError, match="positive integer"):
        group_sampler(sampler, 0)


def test_group_seed_keeps_the_first_group_and_spawns_distinct_others():
    assert group_seed(7, 0) == 7
    seeds = {group_seed(7, g) for g in range(1, 5)}
    assert len(seeds) == 4 and 7 not in seeds and group_seed(7, 1) == group_seed(7, 1)


def test_pool_chains_concatenates_in_order_and_records_groups():
    first, second = _part(0.0, seed=1), _part(5.0, seed=2, draws=800)
    second.attrs["dropped_chains"] = json.dumps({"1": 123.0})
    pooled = pool_chains([first, second])
    post = pooled.posterior
    assert post.sizes["chain"] == 4 and post.sizes["draw"] == 800  # cut to the shorter part
    assert list(post["chain"].values) == [0, 1, 2, 3]
    assert chain_groups(post).tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(post["a"].values[2:], second.posterior["a"].values)
    np.testing.assert_array_equal(post["a"].values[:2], first.posterior["a"].values[:, :800])
    assert pooled.sample_stats.sizes["chain"] == 4
    assert json.loads(pooled.attrs["dropped_chains"]) == {"1:1": 123.0}
    assert pooled.attrs["stopped_early"] == 1 and pooled.attrs["draws_completed"] == 800
    assert pool_chains([first]) is first and chain_groups(first.posterior) is None


def test_grouped_verdict_judges_chains_within_their_group():
    pooled = pool_chains([_part(0.0, seed=1), _part(5.0, seed=2)])
    grouped = convergence(pooled)
    assert grouped.chain_groups == 2 and grouped.max_rhat < 1.01
    # each group: 2 chains x 1000 iid draws; the sum over the two groups
    assert 3000 < grouped.min_ess_bulk < 5000
    assert "within 2 chain groups" in grouped.format()
    del pooled.posterior.attrs["chain_groups"]  # the same chains judged as one posterior
    ungrouped = convergence(pooled)
    assert ungrouped.chain_groups == 1 and ungrouped.max_rhat > 1.5 and not ungrouped.passed


def test_between_group_share_by_hand():
    pooled = pool_chains([_part(0.0, seed=1), _part(5.0, seed=2)])
    share = between_group_share(pooled.posterior).set_index("parameter")["between_share"]
    assert list(share.index) == ["a", "b[0]", "b[1]"]
    # a: group means 0 and 5, variances 1: B = 12.5, (1 + 1/2) B = 18.75 of 19.75
    assert share["a"] == pytest.approx(18.75 / 19.75, abs=0.005)
    assert share["b[0]"] < 0.01 and share["b[1]"] < 0.01
    # exact on a tiny table: groups [0, 2] and [4, 6] (one chain of two draws each)
    tiny = pool_chains([az.from_dict(posterior={"x": np.array([[0.0, 2.0]])}),
                        az.from_dict(posterior={"x": np.array([[4.0, 6.0]])})])
    # W = 2, group means 1 and 5: B = 8, (1 + 1/2) B = 12
    assert between_group_share(tiny.posterior)["between_share"].item() == pytest.approx(12 / 14)
    assert between_group_share(_part(0.0).posterior).empty


def test_imputation_summary_names_the_most_imputation_driven_parameter():
    pooled = pool_chains([_part(0.0, seed=1), _part(5.0, seed=2)])
    pooled.posterior["c"] = pooled.posterior["a"] * 0.0  # constant: no variance to split
    summary = imputation_summary(pooled.posterior, ["b", "a", "c", "missing"])
    assert summary["chain_groups"] == 2 and summary["chains_per_group"] == [2, 2]
    assert summary["worst"] == "a" and summary["max_between_share"] == pytest.approx(18.75 / 19.75, abs=0.005)
    assert set(summary["between_share"]) == {"a", "b[0]", "b[1]", "c"}
    assert imputation_summary(_part(0.0).posterior, ["a"]) is None


def test_pooled_draws_evaluate_each_group_on_its_own_input():
    def first_draws(offset, posterior, *, draws):  # (draws,) of chain 0's ``a`` plus the input
        return posterior["a"].values[0, :draws] + offset

    pooled = pool_chains([_part(0.0, seed=1), _part(5.0, seed=2)])
    out = pooled_draws(first_draws, [100.0, 200.0], pooled.posterior, draws=10)
    assert out.shape == (10,)  # 5 per group
    np.testing.assert_allclose(out[:5], pooled.posterior["a"].values[0, :5] + 100.0)
    np.testing.assert_allclose(out[5:], pooled.posterior["a"].values[2, :5] + 200.0)
    single = _part(0.0)
    np.testing.assert_allclose(pooled_draws(first_draws, [1.0], single.posterior, draws=3),
                               single.posterior["a"].values[0, :3] + 1.0)
