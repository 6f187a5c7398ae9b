"""Posteriors pooled over completed inputs, one group of chains per input.

The product stage conditions on imputed discount depths (DESIGN.md §1: M
completed panels, because a depth is only seen when someone buys). The
multiple-imputation posterior is the mixture, over the completed panels, of
the posteriors given each one. Fitting M times would multiply the stage's
cost by M; here the fit's chains are split into G groups and group g samples
the posterior given input g, so the pooled draws cost no more sampling than
one fit. **Approximate**: G of the M inputs (G divides the chain count), and
each group's posterior rests on chains/G chains.

Chains of different groups sample different posteriors and are expected to
disagree, so convergence is judged within groups
(:func:`~bayes_retail.models.diagnostics.convergence` reads the groups from
the trace): R-hat is the worst group's, ESS the sum over groups. How much the
inputs move each parameter is :func:`between_group_share`, Rubin's fraction
of the posterior variance that lies between imputations.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayes_retail.models.sampling import SamplerConfig

__all__ = [
    "CHAIN_GROUPS_ATTR",
    "group_sampler",
    "group_seed",
    "pool_chains",
    "with_chain_groups",
    "chain_groups",
    "group_posteriors",
    "between_group_share",
    "imputation_summary",
    "pooled_draws",
]

#: Posterior attribute holding each chain's group (a JSON list, one entry per chain).
CHAIN_GROUPS_ATTR = "chain_groups"


def group_sampler(sampler: SamplerConfig, groups: int) -> SamplerConfig:
    """The sampler of one group: ``chains / groups`` chains and that share of the time limit.

    Raises
    ------
    ValueError
        ``groups`` is not a positive integer, does not divide the chains, or
        the method is not MCMC (ADVI and pathfinder have no chains to split).
    """
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"the number of chain groups must be a positive integer, got {groups!r}")
    if groups == 1:
        return sampler
    if sampler.approximate:
        raise ValueError(f"pooling over {groups} inputs splits MCMC chains; method {sampler.method!r} has none")
    if sampler.chains % groups:
        raise ValueError(f"{sampler.chains} chains cannot be split evenly into {groups} groups: "
                         f"make [sampler] chains a multiple of {groups}")
    return dataclasses.replace(sampler, chains=sampler.chains // groups,
                               time_limit_minutes=sampler.time_limit_minutes / groups)


def group_seed(seed: int, group: int) -> int:
    """Group 0 keeps ``seed`` (so a one-group fit is the unpooled fit); the others get seeds spawned from it."""
    if group == 0:
        return seed
    return int(np.random.SeedSequence([seed, group]).generate_state(1)[0])


def pool_chains(parts: Sequence[az.InferenceData]) -> az.InferenceData:
    """One posterior holding every part's chains in order, each chain's part recorded in :data:`CHAIN_GROUPS_ATTR`.

    Parts are cut to the shortest part's draws (a time limit can stop groups
    at different lengths; ``stopped_early`` then holds for the pool). Stuck
    or lagging chains a part dropped are recorded as ``"group:chain"``.
    A single part is returned as it is.
    """
    if not parts:
        raise ValueError("nothing to pool")
    if len(parts) == 1:
        return parts[0]
    n = min(p.posterior.sizes["draw"] for p in parts)
    groups = [g for g, p in enumerate(parts) for _ in range(p.posterior.sizes["chain"])]
    pooled = {}
    for name in ("posterior", "sample_stats"):
        if all(name in p.groups() for p in parts):
            joined = xr.concat([getattr(p, name).isel(draw=slice(0, n)) for p in parts], dim="chain",
                               combine_attrs="override")
            pooled[name] = joined.assign_coords(chain=np.arange(len(groups)))
    idata = az.InferenceData(**pooled)
    idata.attrs.update(parts[0].attrs)
    for record in ("dropped_chains", "lagging_chains"):
        merged = {f"{g}:{c}": v for g, p in enumerate(parts) for c, v in json.loads(p.attrs.get(record, "{}")).items()}
        idata.attrs.pop(record, None)
        if merged:
            idata.attrs[record] = json.dumps(merged)
    if any(p.attrs.get("stopped_early") for p in parts) or len({p.posterior.sizes["draw"] for p in parts}) > 1:
        idata.attrs["stopped_early"] = 1
        idata.attrs["draws_completed"] = n
    return with_chain_groups(idata, groups)


def with_chain_groups(idata: az.InferenceData, groups: Sequence[int]) -> az.InferenceData:
    """``idata`` with ``groups`` (one per chain) recorded in its posterior's attributes."""
    if len(groups) != idata.posterior.sizes["chain"]:
        raise ValueError(f"{len(groups)} chain groups for {idata.posterior.sizes['chain']} chains")
    idata.posterior.attrs[CHAIN_GROUPS_ATTR] = json.dumps([int(g) for g in groups])
    return idata


def chain_groups(posterior: xr.Dataset) -> np.ndarray | None:
    """Each chain's group, or ``None`` when the posterior is not pooled (one group)."""
    raw = posterior.attrs.get(CHAIN_GROUPS_ATTR)
    if raw is None:
        return None
    groups = np.asarray(json.loads(raw), dtype=int)
    if groups.size != posterior.sizes["chain"]:
        raise ValueError(f"the trace records {groups.size} chain groups for {posterior.sizes['chain']} chains")
    return groups


def group_posteriors(posterior: xr.Dataset, groups: np.ndarray | None = None) -> list[tuple[int, xr.Dataset]]:
    """Each chain group's label and its chains, in group order (``groups`` defaults to the recorded ones).

    A posterior without groups is one group, ``[(0, posterior)]``.
    """
    groups = chain_groups(posterior) if groups is None else groups
    if groups is None:
        return [(0, posterior)]
    return [(int(g), posterior.isel(chain=np.flatnonzero(groups == g))) for g in np.unique(groups)]


def between_group_share(posterior: xr.Dataset, var_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per scalar, the share of its pooled posterior variance that lies between chain groups.

    With G groups, ``W`` the mean of the groups' variances and ``B`` the
    variance of their means, the share is ``(1 + 1/G) B / (W + (1 + 1/G) B)``
    (Rubin's fraction of missing information, here the information the
    imputed inputs leave unknown). Near 0: the inputs hardly move the
    parameter; near 1: its posterior is mostly the imputations' spread.
    Empty for a posterior without groups. Columns ``parameter`` (``name`` or
    ``name[i, j]``) and ``between_share``.
    """
    groups = chain_groups(posterior)
    if groups is None:
        return pd.DataFrame({"parameter": pd.Series(dtype=str), "between_share": pd.Series(dtype=float)})
    post = posterior if var_names is None else posterior[list(var_names)]
    parts = [part for _, part in group_posteriors(post, groups)]
    g = len(parts)
    means = xr.concat([p.mean(("chain", "draw")) for p in parts], dim="group")
    variances = xr.concat([p.var(("chain", "draw"), ddof=1) for p in parts], dim="group")
    between = (1 + 1 / g) * means.var("group", ddof=1)
    share = between / (variances.mean("group") + between)
    rows = []
    for name in share.data_vars:
        values = np.atleast_1d(np.asarray(share[name].values, dtype=float))
        shape = share[name].shape
        for index, value in zip(np.ndindex(*shape) if shape else [()], values.ravel()):
            label = f"{name}[{', '.join(map(str, index))}]" if index else name
            rows.append({"parameter": label, "between_share": float(value)})
    return pd.DataFrame(rows)


def imputation_summary(posterior: xr.Dataset, var_names: Sequence[str]) -> dict | None:
    """For a fit's summary: the groups and each of ``var_names``' scalars' :func:`between_group_share`.

    ``None`` for a posterior without groups.
    """
    groups = chain_groups(posterior)
    if groups is None:
        return None
    share = between_group_share(posterior, [v for v in var_names if v in posterior])
    finite = share.dropna()  # a constant scalar has no variance to split
    worst = finite.loc[finite["between_share"].idxmax()] if not finite.empty else None
    return {
        "chain_groups": int(np.unique(groups).size),
        "chains_per_group": np.bincount(groups).tolist(),
        "max_between_share": None if worst is None else float(worst["between_share"]),
        "worst": None if worst is None else str(worst["parameter"]),
        "between_share": dict(zip(share["parameter"], share["between_share"].round(4))),
    }


def pooled_draws(function: Callable, inputs: Sequence, posterior: xr.Dataset, *, draws: int) -> np.ndarray:
    """``function(inputs[g], posterior of group g, draws=...)`` for every chain group, stacked on the first axis.

    Each group's draws are evaluated on its own input (``draws // G`` of
    them, at least one); a posterior without groups is ``function(inputs[0],
    posterior, draws=draws)``. ``function`` returns an array with draws first.
    """
    parts = group_posteriors(posterior)
    if len(parts) == 1:
        return function(inputs[0], posterior, draws=draws)
    return np.concatenate([function(inputs[g], part, draws=max(1, draws // len(parts))) for g, part in parts])
