"""Save and load a fitted :class:`~bayes_retail.pricing.PricingModel` as one NetCDF file (no pickle).

Layout (an xarray DataTree): the root holds the provenance attributes; groups
``base_price`` and ``promotion`` hold the per-category HMM arrays, ``calendar``
the calendar HMM, ``catalogue`` the priced products. Loading checks the format
version, the kind and every array's shape, and fails with
:class:`~bayes_retail.errors.ArtifactError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayes_retail._io import atomic_path
from bayes_retail._version import __version__
from bayes_retail.errors import ArtifactError
from bayes_retail.pricing.emissions import RelativePriceEmission, mailer_param_names
from bayes_retail.pricing.model import CalendarHMM, HMMSet, PricingConfig, PricingModel

#: Bump when the file layout changes; a file of another format version is refused.
FORMAT_VERSION = 1
KIND = "bayes_retail.pricing"
FILENAME = "pricing.nc"


def _locate(path: str | os.PathLike, filename: str) -> Path:
    """A file, a folder holding ``filename``, or an artifacts folder holding ``pricing/filename``."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / filename).exists() or not (path / "pricing" / filename).exists():
        return path / filename
    return path / "pricing" / filename


def _hmm_dataset(hmm: HMMSet) -> xr.Dataset:
    data = {
        "n_states": (("category",), hmm.n_states),
        "startprob": (("category", "state"), hmm.startprob),
        "transmat": (("category", "calendar", "from_state", "to_state"), hmm.transmat),
        "loglik": (("category",), hmm.loglik),
        "n_iter": (("category",), hmm.n_iter),
        "converged": (("category",), hmm.converged.astype(np.int8)),
        "occupancy": (("category", "state"), hmm.occupancy),
        "restart_loglik": (("category", "restart"), hmm.restart_loglik),
        "bic": (("category", "n_states_tried"), hmm.bic),
    }
    data.update({name: (("category", "state"), value) for name, value in hmm.params.items()})
    attrs = {"kind": hmm.kind, "emission_params": json.dumps(list(hmm.params))}
    return xr.Dataset(data, coords={"category": np.arange(hmm.n_models)}, attrs=attrs)


def _calendar_dataset(cal: CalendarHMM) -> xr.Dataset:
    return xr.Dataset(
        {
            "startprob": (("cal_state",), cal.startprob),
            "transmat": (("cal_from", "cal_to"), cal.transmat),
            "means": (("cal_state", "feature"), cal.means),
            "variances": (("cal_state", "feature"), cal.variances),
            "path": (("week",), cal.path),
        },
        coords={"week": cal.weeks},
        attrs={"loglik": cal.loglik},
    )


def save_pricing(model: PricingModel, folder: str | os.PathLike, *, attrs: dict | None = None) -> Path:
    """Write ``model`` to ``folder / pricing.nc`` atomically; returns the path.

    Parameters
    ----------
    attrs
        Extra provenance (data hash, seed, config name...) merged into the root attributes.
    """
    root_attrs = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "bayes_retail_version": __version__,
        "config": json.dumps(model.config.to_dict()),
        "provenance": json.dumps({**model.attrs, **(attrs or {})}),
    }
    catalogue = xr.Dataset({col: (("product",), model.catalogue[col].to_numpy()) for col in model.catalogue.columns})
    tree = xr.DataTree.from_dict(
        {
            "/": xr.Dataset(attrs=root_attrs),
            "/base_price": _hmm_dataset(model.base),
            "/promotion": _hmm_dataset(model.promo),
            "/calendar": _calendar_dataset(model.calendar),
            "/catalogue": catalogue,
        }
    )
    path = Path(folder) / FILENAME
    with atomic_path(path) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf")
    return path


def load_pricing(path: str | os.PathLike) -> PricingModel:
    """Read a pricing model written by :func:`save_pricing`.

    ``path`` is the file, the folder holding ``pricing.nc``, or an artifacts
    folder (``models/``) holding ``pricing/pricing.nc``.

    Raises
    ------
    ArtifactError
        Missing or unreadable file, another kind of artifact, another format
        version, or arrays whose shapes do not fit together.
    """
    path = _locate(path, FILENAME)
    if not path.exists():
        raise ArtifactError("no pricing model here (run `bayes-retail fit --stage pricing`)", file=str(path))
    try:
        tree = xr.open_datatree(path, engine="h5netcdf").load()
    except Exception as exc:  # h5py / xarray raise many types for a damaged file
        raise ArtifactError(f"cannot read the file ({type(exc).__name__}: {exc})", file=str(path)) from exc
    root = tree.attrs
    if root.get("kind") != KIND:
        raise ArtifactError(f"not a pricing model (kind {root.get('kind')!r})", file=str(path))
    if str(root.get("format_version")) != str(FORMAT_VERSION):
        raise ArtifactError(
            f"written in format version {root.get('format_version')} by bayes_retail "
            f"{root.get('bayes_retail_version')}; this version reads format {FORMAT_VERSION}: refit the pricing stage",
            file=str(path),
        )
    try:
        model = PricingModel(
            base=_hmm_from(tree["base_price"].to_dataset(), "base_price"),
            promo=_hmm_from(tree["promotion"].to_dataset(), "promotion"),
            calendar=_calendar_from(tree["calendar"].to_dataset()),
            catalogue=pd.DataFrame({k: v.values for k, v in tree["catalogue"].to_dataset().data_vars.items()}),
            config=PricingConfig(**json.loads(root["config"])),
            attrs={**json.loads(root["provenance"]), "bayes_retail_version": root.get("bayes_retail_version")},
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"incomplete or inconsistent pricing model: {exc}", file=str(path)) from exc
    _check_shapes(model, path)
    return model


def _hmm_from(ds: xr.Dataset, kind: str) -> HMMSet:
    names = json.loads(ds.attrs["emission_params"])
    return HMMSet(
        kind=kind,
        n_states=ds["n_states"].values.astype(np.int64),
        startprob=ds["startprob"].values,
        transmat=ds["transmat"].values,
        params={name: ds[name].values for name in names},
        loglik=ds["loglik"].values,
        n_iter=ds["n_iter"].values.astype(np.int64),
        converged=ds["converged"].values.astype(bool),
        occupancy=ds["occupancy"].values,
        restart_loglik=ds["restart_loglik"].values,
        bic=ds["bic"].values,
    )


def _calendar_from(ds: xr.Dataset) -> CalendarHMM:
    return CalendarHMM(
        startprob=ds["startprob"].values,
        transmat=ds["transmat"].values,
        means=ds["means"].values,
        variances=ds["variances"].values,
        path=ds["path"].values.astype(np.int64),
        weeks=ds["week"].values.astype(np.int64),
        loglik=float(ds.attrs.get("loglik", np.nan)),
    )


def _check_shapes(model: PricingModel, path: Path) -> None:
    problems = []
    n_cal = model.calendar.n_states
    if model.calendar.transmat.shape != (n_cal, n_cal):
        problems.append("calendar transmat is not square over its states")
    cats = model.catalogue["category_id"].to_numpy()
    if cats.size and (cats.min() < 0 or cats.max() >= model.base.n_models):
        raise ArtifactError("catalogue names a category the HMMs do not have", file=str(path))
    priced = np.unique(cats)
    for hmm in (model.base, model.promo):
        m, k = hmm.startprob.shape
        calendars = 1 if hmm.kind == "base_price" else n_cal
        if hmm.transmat.shape != (m, calendars, k, k):
            problems.append(f"{hmm.kind} transmat shape {hmm.transmat.shape} != {(m, calendars, k, k)}")
        if any(v.shape != (m, k) for v in hmm.params.values()):
            problems.append(f"{hmm.kind} emission parameters are not (category, state)")
        expected = RelativePriceEmission.params if hmm.kind == "base_price" else (
            "p_display", *mailer_param_names(n_cal), "p_zero", "depth_mu", "depth_var"
        )
        if tuple(hmm.params) != tuple(expected):
            problems.append(f"{hmm.kind} emission parameters {list(hmm.params)} != {list(expected)}")
        states = hmm.n_states[priced]
        if (states < 1).any() or (states > k).any():
            problems.append(f"{hmm.kind} n_states outside 1..{k}")
    if problems:
        raise ArtifactError("; ".join(problems), file=str(path))


IMPUTATIONS_FILENAME = "imputed_depths.parquet"


def save_imputations(depths: np.ndarray, panel, folder: str | os.PathLike) -> Path:
    """Write the imputed depths of the cells where the panel's depth is missing (percent, uint8).

    Observed depths are not repeated: :func:`load_imputations` puts them back
    from the panel. One column ``depth_m`` per imputation m.
    """
    missing = np.isnan(panel.depth)
    t_idx, n_idx = np.nonzero(missing)
    table = pd.DataFrame(
        {
            "product_id": panel.products["product_id"].to_numpy()[n_idx],
            "week": panel.weeks[t_idx].astype(np.int16),
        }
    )
    for m in range(depths.shape[0]):
        table[f"depth_{m}"] = np.rint(depths[m][missing] * 100).astype(np.uint8)
    path = Path(folder) / IMPUTATIONS_FILENAME
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False, compression="zstd")
    return path


def load_imputations(path: str | os.PathLike, panel) -> np.ndarray:
    """``(M, T, N)`` completed depth panels: the panel's observed depths, the file's imputed ones.

    Raises
    ------
    ArtifactError
        When the file does not cover exactly the panel's missing cells.
    """
    path = _locate(path, IMPUTATIONS_FILENAME)
    if not path.exists():
        raise ArtifactError("no imputed depths here (run `bayes-retail fit --stage pricing`)", file=str(path))
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ArtifactError(f"cannot read the file ({type(exc).__name__}: {exc})", file=str(path)) from exc
    columns = sorted((c for c in table.columns if c.startswith("depth_")), key=lambda c: int(c.split("_")[1]))
    missing = np.isnan(panel.depth)
    t_idx, n_idx = np.nonzero(missing)
    expected = pd.DataFrame({"product_id": panel.products["product_id"].to_numpy()[n_idx], "week": panel.weeks[t_idx]})
    got = table[["product_id", "week"]].astype(np.int64)
    if not columns or len(got) != len(expected) or not (got.to_numpy() == expected.to_numpy()).all():
        raise ArtifactError("the imputed cells do not match this data's missing depths (other data?)", file=str(path))
    out = np.repeat(panel.depth[None], len(columns), axis=0)
    for m, col in enumerate(columns):
        out[m][missing] = table[col].to_numpy() / 100.0
    return out
