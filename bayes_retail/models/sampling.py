"""One switch chooses the inference method of every stage: nutpie (default), PyMC NUTS, numpyro, ADVI, pathfinder.

ADVI and pathfinder were measured wrong on these models (hyper-SDs several times
too small, a scale collapsed to zero): they are for smoke tests and initial
values only, and every result built on them carries ``approximate = True``.
The returned InferenceData holds the posterior of the model's own variables
(no warmup draws, no unconstrained copies) and the sampler statistics.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass

import arviz as az
import numpy as np
import pymc as pm

from bayes_retail.errors import BayesRetailError

METHODS: tuple[str, ...] = ("nutpie", "pymc", "numpyro", "advi", "pathfinder")
APPROXIMATE: frozenset[str] = frozenset({"advi", "pathfinder"})
MASS_MATRICES: tuple[str, ...] = ("diagonal", "low_rank")


@dataclass(frozen=True)
class SamplerConfig:
    """How a stage's posterior is computed (the ``[sampler]`` section of a configuration).

    Attributes
    ----------
    method
        One of :data:`METHODS`.
    chains, draws, tune
        MCMC chains, kept draws and warmup draws per chain (four chains for reported fits).
    target_accept
        NUTS target acceptance rate.
    vi_iterations
        Optimisation steps of ADVI.
    keep_draws
        Draws kept in the saved trace (evenly thinned, 0 = all): the shipped
        posterior is thinned so ``models/`` stays small; diagnostics are computed
        before thinning.
    time_limit_minutes
        Wall-clock budget of an MCMC run (0 = none; nutpie only). At the limit
        the chains stop and the draws made so far are kept, cut to the length
        of the shortest chain; the trace says so (``stopped_early``) and the
        convergence verdict fails. A run that meets its limit is not
        reproducible bit for bit (where it stops depends on the machine).
    drop_stuck_chains
        Leave out chains stuck far below the others' log density
        (:func:`~bayes_retail.models.diagnostics.stuck_chains`) before the
        verdict, the tables and the saved trace, when at least two chains
        remain. The verdict then fails and names them: one chain whose
        adaptation failed would otherwise be a quarter of every draw the
        simulator takes. Likewise, at the time limit, chains that completed
        less than half the best chain's draws (:func:`lagging_chains`), so a
        slow chain does not cut the others to its length (or to nothing).
    mass_matrix
        NUTS mass matrix adapted in warmup: ``"diagonal"`` (the default) or
        ``"low_rank"`` (nutpie only: the diagonal plus a low-rank correction
        learned from the draws' and gradients' covariance, for posteriors with
        a few strongly correlated directions, such as a category's item
        intercepts moving together against its reference item).
    """

    method: str = "nutpie"
    chains: int = 4
    draws: int = 500
    tune: int = 500
    target_accept: float = 0.8
    vi_iterations: int = 20_000
    keep_draws: int = 0
    time_limit_minutes: float = 0.0
    drop_stuck_chains: bool = True
    mass_matrix: str = "diagonal"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("chains", "draws", "tune", "vi_iterations", "keep_draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name in ("tune", "keep_draws") else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name in ('tune', 'keep_draws') else 'positive'} integer, got {value!r}")
        limit = self.time_limit_minutes
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit >= 0:
            raise ValueError(f"time_limit_minutes must be a non-negative number, got {limit!r}")
        if limit and self.method != "nutpie":
            raise ValueError(f"time_limit_minutes works with method 'nutpie' only, not {self.method!r}")
        if not isinstance(self.drop_stuck_chains, bool):
            raise ValueError(f"drop_stuck_chains must be true or false, got {self.drop_stuck_chains!r}")
        if self.mass_matrix not in MASS_MATRICES:
            raise ValueError(f"mass_matrix must be one of {', '.join(MASS_MATRICES)}, got {self.mass_matrix!r}")
        if self.mass_matrix != "diagonal" and self.method != "nutpie":
            raise ValueError(f"mass_matrix {self.mass_matrix!r} works with method 'nutpie' only, not {self.method!r}")
        if not 0.5 <= float(self.target_accept) < 1.0:
            raise ValueError(f"target_accept must be in [0.5, 1), got {self.target_accept!r}")

    @property
    def approximate(self) -> bool:
        return self.method in APPROXIMATE

    def to_dict(self) -> dict:
        return asdict(self)


class SamplerError(BayesRetailError):
    """A method that cannot run here (e.g. numpyro without JAX installed)."""


def sample_posterior(model: pm.Model, *, config: SamplerConfig, seed: int, progress: bool = False) -> az.InferenceData:
    """Posterior draws of ``model`` by ``config.method``; ``seed`` makes them reproducible on one machine."""
    runner = {
        "nutpie": _nutpie,
        "pymc": _pymc,
        "numpyro": _numpyro,
        "advi": _advi,
        "pathfinder": _pathfinder,
    }[config.method]
    idata = runner(model, config, seed, progress)
    keep = [name for name in _model_variables(model) if name in idata.posterior]
    idata.posterior = with_model_dims(idata.posterior[keep], model)
    idata.attrs["method"] = config.method
    idata.attrs["approximate"] = int(config.approximate)
    return idata


def with_model_dims(posterior, model: pm.Model):
    """``posterior`` with every variable on the named dims (and coords) the model gives it.

    nutpie names the dims of a variable that shares its name with one of its
    sampler statistics (``depth``, the tree depth) ``<name>_dim_0`` instead of
    the model's; this restores them, so readers can select by name.
    """
    for name, dims in model.named_vars_to_dims.items():
        stored = posterior[name].dims[2:] if name in posterior else ()
        if not dims or len(stored) != len(dims) or stored == tuple(dims):
            continue
        fixed = posterior[name].rename({old: new for old, new in zip(stored, dims) if old != new})
        coords = {dim: np.asarray(model.coords[dim]) for dim in dims if model.coords.get(dim) is not None}
        posterior = posterior.drop_vars(name).assign({name: fixed.assign_coords(coords)})
    unused = [d for d in posterior.dims if d not in {dim for v in posterior.data_vars.values() for dim in v.dims}]
    return posterior.drop_dims(unused) if unused else posterior


def _model_variables(model: pm.Model) -> list[str]:
    """Free and deterministic variables under their own names (not their transformed copies)."""
    return [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]


def _nutpie(model, config, seed, progress):
    import nutpie
    from threadpoolctl import threadpool_limits

    with _quiet():
        compiled = nutpie.compile_pymc_model(model)
    # one BLAS thread per chain: nutpie already runs a chain per core, and nested
    # BLAS threads made two chains on two cores 2-3x slower per gradient (measured)
    with threadpool_limits(limits=1):
        run = nutpie.sample(
            compiled,
            draws=config.draws,
            tune=config.tune,
            chains=config.chains,
            seed=seed,
            save_warmup=False,
            progress_bar=progress,
            target_accept=config.target_accept,
            low_rank_modified_mass_matrix=config.mass_matrix == "low_rank",
            blocking=False,
        )
        try:
            return run.wait(timeout=config.time_limit_minutes * 60 or None)
        except TimeoutError:
            return _stopped_early(run.abort(), config)


def _stopped_early(idata: az.InferenceData, config: SamplerConfig) -> az.InferenceData:
    """The draws every chain completed before the time limit, marked ``stopped_early``.

    nutpie pads shorter chains with NaN; they are cut to the shortest so every
    chain has the same draws and the diagnostics see no padding.
    """
    if "posterior" not in idata.groups():
        raise SamplerError(
            f"the time limit ({config.time_limit_minutes:g} min) ended the run during warmup: no posterior draw "
            f"was made; raise time_limit_minutes or lower tune ({config.tune})"
        )
    first = next(iter(idata.posterior.data_vars.values())).values
    done = np.isfinite(first).all(axis=tuple(range(2, first.ndim))).sum(axis=1)
    lagging = lagging_chains(done) if config.drop_stuck_chains else {}
    if lagging:
        from bayes_retail.models.diagnostics import drop_chains

        idata = drop_chains(idata, lagging, record="lagging_chains")
        done = np.delete(done, list(lagging))
    n = int(done.min()) if first.size else 0
    if n < 4:
        raise SamplerError(
            f"the time limit ({config.time_limit_minutes:g} min) ended the run after {n} posterior draws in the "
            f"slowest chain (of {config.draws}); raise time_limit_minutes or lower tune ({config.tune}) and draws"
        )
    kept = idata.isel(draw=slice(0, n), groups=["posterior", "sample_stats"])
    kept.attrs["stopped_early"] = 1
    kept.attrs["draws_completed"] = n
    return kept


#: A chain that completed fewer than this share of the best chain's draws by the time limit is lagging.
LAGGING_SHARE = 0.5


def lagging_chains(done: np.ndarray, *, share: float = LAGGING_SHARE, least: int = 4) -> dict[int, int]:
    """Chains (index -> draws completed) far behind the best one when the time limit struck.

    A chain that finished fewer than ``share`` of the best chain's draws (or
    fewer than ``least``) is usually one whose adaptation chose a tiny step:
    cutting every chain to it would throw away the others' draws. Returned
    only when at least two chains would remain with ``least`` draws or more.
    """
    done = np.asarray(done, dtype=np.int64)
    behind = (done < share * done.max()) | (done < least)
    if not behind.any() or (~behind).sum() < 2:
        return {}
    return {int(c): int(done[c]) for c in np.flatnonzero(behind)}


def _pymc(model, config, seed, progress):
    with model:
        return pm.sample(
            draws=config.draws,
            tune=config.tune,
            chains=config.chains,
            cores=min(config.chains, 2),
            random_seed=seed,
            target_accept=config.target_accept,
            progressbar=progress,
            compute_convergence_checks=False,
        )


def _numpyro(model, config, seed, progress):
    try:
        import numpyro  # noqa: F401
    except ImportError as exc:
        raise SamplerError("method 'numpyro' needs the gpu extra: pip install 'bayes_retail[gpu]'") from exc
    from bayes_retail.models._kernels import register_jax

    register_jax()
    with model:
        return pm.sample(
            draws=config.draws,
            tune=config.tune,
            chains=config.chains,
            random_seed=seed,
            target_accept=config.target_accept,
            nuts_sampler="numpyro",
            progressbar=progress,
            compute_convergence_checks=False,
        )


def _advi(model, config, seed, progress):
    with model:
        approx = pm.fit(n=config.vi_iterations, method="advi", random_seed=seed, progressbar=progress)
        idata = approx.sample(draws=config.draws * config.chains, random_seed=seed)
    # one "chain" per block of draws so the result has the usual (chain, draw) shape
    posterior = idata.posterior.isel(chain=0, drop=True)
    stacked = posterior.coarsen(draw=config.draws).construct(draw=("chain", "draw"))
    stacked = stacked.assign_coords(chain=np.arange(config.chains), draw=np.arange(config.draws))
    return az.InferenceData(posterior=stacked.transpose("chain", "draw", ...))


def _pathfinder(model, config, seed, progress):
    try:
        import pymc_extras as pmx
    except ImportError as exc:
        raise SamplerError("method 'pathfinder' needs pymc-extras: pip install pymc-extras") from exc
    with model:
        return pmx.fit(method="pathfinder", num_draws=config.draws * config.chains, random_seed=seed)


@contextlib.contextmanager
def _quiet():
    """pytensor warns about BLAS at compile time; it does not concern the numba backend nutpie uses."""
    logger = logging.getLogger("pytensor")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def draws_array(idata: az.InferenceData, name: str) -> np.ndarray:
    """A posterior variable as ``(chain * draw, ...)`` numpy array."""
    value = idata.posterior[name].values
    return value.reshape(-1, *value.shape[2:])
