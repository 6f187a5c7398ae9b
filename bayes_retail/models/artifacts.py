"""One ArviZ InferenceData NetCDF per stage, with provenance in its attributes and checks on load.

The attributes say what made the trace: the stage and its model version, the
package version, the configuration, the data hash, the seed, the method, and
the convergence verdict (computed on the full trace, before any thinning).
Loading a trace of another stage or another model version, a damaged file, or
a trace fitted on other data (when the caller gives its data hash) fails with
:class:`~bayes_retail.errors.ArtifactError` naming the file and the mismatch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import arviz as az
import numpy as np

from bayes_retail._io import atomic_path
from bayes_retail._version import __version__
from bayes_retail.errors import ArtifactError

KIND = "bayes_retail.stage"
TRACE_FILENAME = "trace.nc"


def stage_path(folder: str | os.PathLike, stage: str) -> Path:
    """Where a stage's trace lives in an artifacts folder: ``folder/<stage>/trace.nc``."""
    return Path(folder) / stage / TRACE_FILENAME


def save_stage(
    idata: az.InferenceData,
    folder: str | os.PathLike,
    *,
    stage: str,
    model_version: int,
    attrs: dict,
    keep_draws: int | None = None,
    drop_vars: tuple[str, ...] = (),
    float32: bool = False,
) -> Path:
    """Write ``idata`` as ``folder/trace.nc`` atomically (``folder`` is the stage's own folder).

    Parameters
    ----------
    model_version
        The stage's model version; a trace of another version is refused on load.
    attrs
        Provenance (config, data_hash, seed, method, convergence, ...); values
        that are not strings or numbers are stored as JSON.
    keep_draws
        Thin to about this many draws in total (evenly spaced, spread over
        chains) to keep shipped traces small; ``None`` keeps them all.
    drop_vars
        Posterior variables left out of the file (e.g. the centred and
        non-centred pieces of a vector that is also stored whole).
    float32
        Store posterior draws in single precision (halves item-sized arrays;
        ~7 significant digits, far below Monte Carlo error).
    """
    idata = thinned(idata, keep_draws) if keep_draws else idata
    if drop_vars or float32:
        idata = idata.copy()
        posterior = idata.posterior.drop_vars(list(drop_vars), errors="ignore")
        used = {dim for var in posterior.data_vars.values() for dim in var.dims}
        posterior = posterior.drop_vars([c for c in posterior.coords if c not in used])  # the dropped pieces' own dims
        if float32:
            posterior = posterior.map(lambda da: da.astype("float32") if da.dtype == np.float64 else da, keep_attrs=True)
            posterior.attrs = idata.posterior.attrs
        idata.posterior = posterior
    stamped = {
        "kind": KIND,
        "stage": stage,
        "model_version": int(model_version),
        "bayes_retail_version": __version__,
        **{k: _attr(v) for k, v in attrs.items()},
    }
    for group in idata.groups():
        getattr(idata, group).attrs.update(stamped)
    idata.attrs.update(stamped)
    path = Path(folder) / TRACE_FILENAME
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp), engine="h5netcdf")
    return path


def load_stage(
    path: str | os.PathLike,
    *,
    stage: str,
    model_version: int,
    data_hash: str | None = None,
) -> az.InferenceData:
    """Read a stage trace and check its provenance.

    Parameters
    ----------
    path
        The ``.nc`` file, the stage's folder holding ``trace.nc``, or an
        artifacts folder holding ``<stage>/trace.nc``.
    stage, model_version
        What the caller expects.
    data_hash
        When given, the trace must have been fitted on data with this hash.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TRACE_FILENAME if (path / TRACE_FILENAME).exists() else stage_path(path, stage)
    if not path.exists():
        raise ArtifactError(f"no {stage} trace here (run `bayes-retail fit --stage {stage}`)", file=str(path))
    try:
        idata = az.from_netcdf(str(path), engine="h5netcdf")
        attrs = dict(idata.posterior.attrs)
    except Exception as exc:  # h5py / xarray raise many types for a damaged file
        raise ArtifactError(f"cannot read the trace ({type(exc).__name__}: {exc})", file=str(path)) from exc
    if attrs.get("kind") != KIND:
        raise ArtifactError("not a bayes_retail stage trace", file=str(path))
    if attrs.get("stage") != stage:
        raise ArtifactError(f"a {attrs.get('stage')!r} trace, not {stage!r}", file=str(path))
    if str(attrs.get("model_version")) != str(model_version):
        raise ArtifactError(
            f"fitted with {stage} model version {attrs.get('model_version')} (bayes_retail "
            f"{attrs.get('bayes_retail_version')}); this version is {model_version}: refit the stage",
            file=str(path),
        )
    if data_hash is not None and attrs.get("data_hash") != data_hash:
        raise ArtifactError(
            f"fitted on other data (hash {attrs.get('data_hash')}, this data {data_hash}): refit or pass the matching data",
            file=str(path),
        )
    idata.attrs.update(attrs)
    return idata


def attr_json(idata: az.InferenceData, key: str):
    """An attribute stored as JSON (config, convergence), parsed."""
    return json.loads(idata.attrs[key])


def _attr(value):
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value, default=float)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """About ``k`` evenly spaced indices in ``0 .. n - 1`` (all of them when ``k >= n``), first and last included."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def thinned(idata: az.InferenceData, keep: int) -> az.InferenceData:
    """An evenly spaced subset of draws per chain (total about ``keep``)."""
    chains = idata.posterior.sizes["chain"]
    draws = idata.posterior.sizes["draw"]
    per_chain = max(1, min(draws, keep // chains))
    index = evenly_spaced(draws, per_chain)
    return idata.isel(draw=index, inplace=False)


def load_posterior(folder: str | os.PathLike = "models", stage: str = "visit", *, data_hash: str | None = None) -> az.InferenceData:
    """A fitted stage's trace from an artifacts folder, checked against this package's model version.

    ``stage`` is a stage module name (``visit``, ``category``).
    """
    import importlib

    try:
        module = importlib.import_module(f"bayes_retail.models.{stage}")
        version = module.MODEL_VERSION
    except (ImportError, AttributeError) as exc:
        raise ArtifactError(f"unknown stage {stage!r}", file=str(folder)) from exc
    return load_stage(folder, stage=stage, model_version=version, data_hash=data_hash)


def thin_stage(folder: str | os.PathLike, stage: str, keep_draws: int) -> Path:
    """Rewrite ``folder/<stage>/trace.nc`` (``folder``: an artifacts folder) with about ``keep_draws`` draws (evenly spaced per chain), atomically.

    For shipping a fitted stage smaller than it was written. The verdict and
    every table beside the trace were computed on all draws and stay valid;
    the trace's ``sampler`` attribute records the new ``keep_draws``.
    """
    import importlib

    version = importlib.import_module(f"bayes_retail.models.{stage}").MODEL_VERSION
    idata = load_stage(folder, stage=stage, model_version=version)
    kept = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    if keep_draws >= kept:
        raise ValueError(f"the trace keeps {kept} draws; thinning to {keep_draws} would not thin it")
    idata = thinned(idata, keep_draws)
    idata.load()
    sampler = {**attr_json(idata, "sampler"), "keep_draws": int(keep_draws)}
    for group in idata.groups():
        getattr(idata, group).attrs["sampler"] = json.dumps(sampler)
    idata.attrs["sampler"] = json.dumps(sampler)
    path = stage_path(folder, stage)
    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp), engine="h5netcdf")
    return path
