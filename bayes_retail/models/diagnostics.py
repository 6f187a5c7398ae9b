"""Convergence verdict of a fit: R-hat, bulk and tail ESS, divergences, BFMI against documented thresholds."""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict, dataclass, field

import arviz as az
import numpy as np

from bayes_retail.models.imputation import chain_groups, group_posteriors

#: Thresholds a reported fit must meet (keyword arguments of :func:`convergence`).
RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3
MAX_DIVERGENCES = 0
#: A chain whose mean log density lies more than this many within-chain sds below the best chain's is stuck.
STUCK_LOGP_SDS = 20.0


class ConvergenceWarning(UserWarning):
    """A fit that failed the convergence thresholds (its estimates should not be reported)."""


@dataclass
class Convergence:
    """Convergence verdict over every scalar of the posterior.

    Attributes
    ----------
    max_rhat, min_ess_bulk, min_ess_tail
        Worst values over all scalars (NaN for methods without chains, e.g. ADVI).
    divergences
        Divergent transitions after warmup (0 when the method has none).
    min_bfmi
        Lowest chain BFMI (NaN without energy statistics).
    worst
        The variable behind each worst value.
    passed
        Every threshold met (always False for an approximate method).
    approximate
        The posterior comes from ADVI or pathfinder.
    stopped_early
        The sampler's time limit cut the chains short (always a failure: the
        chains ran fewer draws than configured).
    dropped_chains
        Chains left out as stuck (:func:`stuck_chains`), with how far their
        mean log density lay below the best chain's; the other numbers cover
        the remaining chains only, and a drop is always a failure.
    lagging_chains
        Chains left out because they completed less than half the best
        chain's draws by the sampler's time limit (original index -> draws);
        likewise a failure.
    failures
        One line per threshold that was missed.
    thresholds
        The thresholds used.
    chain_groups
        Groups of chains that sample the posteriors given different inputs
        (:mod:`~bayes_retail.models.imputation`); with more than one, R-hat is
        the worst group's and ESS the sum over groups.
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_bfmi: float
    n_scalars: int
    worst: dict = field(default_factory=dict)
    passed: bool = False
    approximate: bool = False
    stopped_early: bool = False
    dropped_chains: dict = field(default_factory=dict)
    lagging_chains: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    chain_groups: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=float)

    def _groups_note(self) -> str:
        return f", within {self.chain_groups} chain groups" if self.chain_groups > 1 else ""

    def format(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        line = (
            f"convergence {status}: max R-hat {self.max_rhat:.3f}, min ESS bulk {self.min_ess_bulk:.0f} / tail "
            f"{self.min_ess_tail:.0f}, divergences {self.divergences}, min BFMI {self.min_bfmi:.2f} "
            f"({self.n_scalars} scalars{self._groups_note()})"
        )
        return line if self.passed else line + "".join(f"\n  - {f}" for f in self.failures)


def _chain_statistics(post) -> tuple[dict, dict, dict]:
    """Per scalar: rank-normalised split R-hat, bulk ESS and tail ESS."""
    return _flat(az.rhat(post)), _flat(az.ess(post, method="bulk")), _flat(az.ess(post, method="tail"))


def _grouped_chain_statistics(post, groups: np.ndarray) -> tuple[dict, dict, dict]:
    """Per scalar: the worst R-hat of any chain group and the ESS summed over groups.

    A group of one chain gets split R-hat (its two halves compared).
    """
    parts = [_chain_statistics(part) for _, part in group_posteriors(post, groups)]
    rhat = {name: np.max([p[0][name] for p in parts], axis=0) for name in parts[0][0]}
    bulk = {name: np.sum([p[1][name] for p in parts], axis=0) for name in parts[0][1]}
    tail = {name: np.sum([p[2][name] for p in parts], axis=0) for name in parts[0][2]}
    return rhat, bulk, tail


def convergence(
    idata: az.InferenceData,
    *,
    var_names: list[str] | None = None,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
    bfmi_min: float = BFMI_MIN,
    max_divergences: int = MAX_DIVERGENCES,
) -> Convergence:
    """Compute the verdict of ``idata`` (every posterior scalar unless ``var_names``).

    Parameters
    ----------
    rhat_max, ess_min, bfmi_min, max_divergences
        Thresholds (defaults: 1.01, 400, 0.3, 0).
    """
    post = idata.posterior if var_names is None else idata.posterior[var_names]
    approximate = bool(idata.attrs.get("approximate", 0))
    stopped_early = bool(idata.attrs.get("stopped_early", 0))
    dropped = json.loads(idata.attrs.get("dropped_chains", "{}"))
    lagging = json.loads(idata.attrs.get("lagging_chains", "{}"))
    groups = chain_groups(idata.posterior)
    rhat, bulk, tail = _chain_statistics(post) if groups is None else _grouped_chain_statistics(post, groups)
    divergences, bfmi = _sampler_stats(idata)
    verdict = Convergence(
        max_rhat=_nanext(rhat, np.nanmax),
        min_ess_bulk=_nanext(bulk, np.nanmin),
        min_ess_tail=_nanext(tail, np.nanmin),
        divergences=divergences,
        min_bfmi=bfmi,
        n_scalars=int(sum(v.size for v in rhat.values())),
        chain_groups=1 if groups is None else int(np.unique(groups).size),
        worst={
            "rhat": _argext(rhat, np.nanargmax),
            "ess_bulk": _argext(bulk, np.nanargmin),
            "ess_tail": _argext(tail, np.nanargmin),
        },
        approximate=approximate,
        stopped_early=stopped_early,
        dropped_chains=dropped,
        lagging_chains=lagging,
        thresholds={"rhat_max": rhat_max, "ess_min": ess_min, "bfmi_min": bfmi_min, "max_divergences": max_divergences},
    )
    failures = []
    if approximate:
        failures.append("approximate method (ADVI / pathfinder): not a posterior to report")
    if stopped_early:
        failures.append(
            f"stopped at the sampler's time limit after {idata.attrs.get('draws_completed', '?')} draws per chain"
        )
    for chain, gap in dropped.items():
        failures.append(f"chain {chain} stuck (mean log density {gap:,.0f} below the best chain's) and dropped: "
                        "the numbers cover the other chains")
    for chain, done in lagging.items():
        failures.append(f"chain {chain} completed only {done} draws by the time limit and was dropped: "
                        "the numbers cover the other chains")
    if not verdict.max_rhat <= rhat_max:
        failures.append(f"R-hat {verdict.max_rhat:.3f} > {rhat_max} ({verdict.worst['rhat']})")
    if not verdict.min_ess_bulk >= ess_min:
        failures.append(f"bulk ESS {verdict.min_ess_bulk:.0f} < {ess_min} ({verdict.worst['ess_bulk']})")
    if not verdict.min_ess_tail >= ess_min:
        failures.append(f"tail ESS {verdict.min_ess_tail:.0f} < {ess_min} ({verdict.worst['ess_tail']})")
    if verdict.divergences > max_divergences:
        failures.append(f"{verdict.divergences} divergent transitions > {max_divergences}")
    if not (np.isnan(bfmi) or bfmi >= bfmi_min):
        failures.append(f"BFMI {bfmi:.2f} < {bfmi_min}")
    verdict.failures = failures
    verdict.passed = not failures
    return verdict


def _log_density(stats) -> np.ndarray | None:
    for name in ("logp", "lp"):  # nutpie, PyMC
        if name in stats:
            return np.asarray(stats[name].values, dtype=np.float64)
    return None


def stuck_chains(idata: az.InferenceData, *, logp_sds: float = STUCK_LOGP_SDS) -> dict[int, float]:
    """Chains stuck far from the posterior's typical set, with how far below the best chain they sit.

    A chain is stuck when its mean log density lies more than ``logp_sds``
    within-chain sds (the median over chains of each chain's sd) below the
    highest chain mean. Healthy chains of one posterior differ by a few sds;
    a chain whose adaptation failed (a tiny step size far out in a funnel,
    or a start it never left) sits orders of magnitude lower. Empty without
    a log-density statistic or with fewer than 2 chains.

    Parameters
    ----------
    logp_sds
        Threshold in within-chain sds (default :data:`STUCK_LOGP_SDS`).
    """
    stats = getattr(idata, "sample_stats", None)
    logp = None if stats is None else _log_density(stats)
    if logp is None or logp.shape[0] < 2:
        return {}
    means = logp.mean(axis=1)
    spread = max(float(np.median(logp.std(axis=1))), 1e-12)
    gaps = means.max() - means
    return {int(c): float(gaps[c]) for c in np.flatnonzero(gaps > logp_sds * spread)}


def drop_chains(idata: az.InferenceData, chains: dict[int, float], *, record: str = "dropped_chains") -> az.InferenceData:
    """``idata`` without ``chains`` (renumbered from 0); ``attrs[record]`` records them and their values.

    ``record`` is ``"dropped_chains"`` for stuck chains (their log density
    gaps) and ``"lagging_chains"`` for chains behind at a time limit (their
    draws completed).
    """
    keep = [c for c in range(idata.posterior.sizes["chain"]) if c not in chains]
    if len(keep) < 1:
        raise ValueError("cannot drop every chain")
    out = idata.isel(chain=keep)
    for group in out.groups():
        if "chain" in getattr(out, group).dims:
            getattr(out, group)["chain"] = np.arange(len(keep))
    out.attrs.update(idata.attrs)
    out.attrs[record] = json.dumps({str(c): value for c, value in sorted(chains.items())})
    return out


def announce(verdict: Convergence, *, stage: str, stream=None) -> None:
    """Print the verdict; a failed one also raises a :class:`ConvergenceWarning` and a banner."""
    stream = stream or sys.stderr
    if verdict.passed:
        print(f"[{stage}] {verdict.format()}", file=stream)
        return
    banner = "!" * 78
    print(f"{banner}\n[{stage}] {verdict.format()}\n{banner}", file=stream)
    warnings.warn(f"{stage}: the fit did not converge; do not report its estimates", ConvergenceWarning, stacklevel=2)


def _flat(ds) -> dict[str, np.ndarray]:
    return {name: np.atleast_1d(np.asarray(ds[name].values, dtype=float)) for name in ds.data_vars}


def _nanext(values: dict[str, np.ndarray], fn) -> float:
    arrays = [v.ravel() for v in values.values() if v.size]
    if not arrays:
        return float("nan")
    joined = np.concatenate(arrays)
    return float(fn(joined)) if np.isfinite(joined).any() else float("nan")


def _argext(values: dict[str, np.ndarray], fn) -> str:
    best_name, best_val, best_idx = "", None, None
    for name, v in values.items():
        flat = v.ravel()
        if not np.isfinite(flat).any():
            continue
        i = int(fn(flat))
        cand = flat[i]
        better = best_val is None or (cand > best_val if fn is np.nanargmax else cand < best_val)
        if better:
            best_name, best_val, best_idx = name, cand, (np.unravel_index(i, v.shape) if v.ndim > 1 or v.size > 1 else ())
    return f"{best_name}{list(map(int, best_idx)) if best_idx else ''}"


def _sampler_stats(idata: az.InferenceData) -> tuple[int, float]:
    stats = getattr(idata, "sample_stats", None)
    if stats is None:
        return 0, float("nan")
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    bfmi = float(np.min(az.bfmi(idata))) if "energy" in stats else float("nan")
    return divergences, bfmi
