"""pricing.nc and imputed_depths.parquet: round trips, clear errors, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayes_retail.errors import ArtifactError
from bayes_retail.pricing.artifacts import (
    FILENAME,
    IMPUTATIONS_FILENAME,
    load_imputations,
    load_pricing,
    save_imputations,
    save_pricing,
)
from bayes_retail.pricing.model import CalendarHMM, HMMSet, PricingConfig, PricingModel, PricingPanel

WEEKS = np.arange(1, 31)


def _hmmset(kind, rng, m, k, c, names, n_states):
    start = rng.dirichlet(np.ones(k), size=m)
    trans = rng.dirichlet(np.ones(k), size=(m, c, k))
    bic = rng.normal(100, 10, (m, k))
    bic[0, -1] = np.nan  # a degenerate K: NaN by design
    return HMMSet(
        kind=kind,
        n_states=np.asarray(n_states),
        startprob=start,
        transmat=trans,
        params={name: rng.uniform(0.05, 0.9, (m, k)) for name in names},
        loglik=rng.normal(-500, 10, m),
        n_iter=rng.integers(1, 50, m),
        converged=np.array([True, False]),
        occupancy=rng.uniform(1, 100, (m, k)),
        restart_loglik=rng.normal(-500, 10, (m, 3)),
        bic=bic,
    )


def make_model(seed=0) -> PricingModel:
    """Two categories, three promotion states, a two-state calendar; arrays with distinct values."""
    rng = np.random.default_rng(seed)
    base = _hmmset("base_price", rng, 2, 3, 1, ("p_zero", "mu", "var"), [3, 1])
    promo = _hmmset(
        "promotion", rng, 2, 3, 2, ("p_display", "p_mailer", "p_mailer_cal1", "p_zero", "depth_mu", "depth_var"), [2, 3]
    )
    calendar = CalendarHMM(
        startprob=np.array([0.7, 0.3]), transmat=np.array([[0.8, 0.2], [0.4, 0.6]]),
        means=np.array([[-3.1], [-2.2]]), variances=np.array([[0.05], [0.1]]),
        path=(WEEKS % 5 == 0).astype(np.int64), weeks=WEEKS, loglik=12.5,
    )
    catalogue = pd.DataFrame(
        {
            "product_id": np.array([11, 12, 13, 21, 22]),
            "category_id": np.array([0, 0, 0, 1, 1]),
            "median_shelf": [1.99, 2.49, 3.0, 0.89, 5.25],
        }
    )
    config = PricingConfig(restarts=3, max_iter=77, tol=0.005)
    return PricingModel(base, promo, calendar, catalogue, config, attrs={"fit_seconds": 1.25})


def _hmm_arrays(hmm: HMMSet) -> dict:
    names = ("n_states", "startprob", "transmat", "loglik", "n_iter", "converged", "occupancy", "restart_loglik", "bic")
    out = {name: getattr(hmm, name) for name in names}
    out.update({f"param {k}": v for k, v in hmm.params.items()})
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model saved once, with its path (each NetCDF write or read costs ~0.4 s)."""
    model = make_model()
    path = save_pricing(model, tmp_path_factory.mktemp("saved"), attrs={"seed": 7, "data_hash": "abc"})
    return model, path


@pytest.fixture(scope="module")
def reloaded(saved):
    return load_pricing(saved[1].parent)  # the folder holding pricing.nc


def test_pricing_model_round_trips_exactly(saved, reloaded):
    model, path = saved
    back = reloaded
    assert path.name == FILENAME
    for a, b in ((model.base, back.base), (model.promo, back.promo)):
        assert b.kind == a.kind
        assert list(b.params) == list(a.params)
        arrays_a, arrays_b = _hmm_arrays(a), _hmm_arrays(b)
        for name in arrays_a:
            assert arrays_b[name].dtype.kind == np.asarray(arrays_a[name]).dtype.kind, name
            np.testing.assert_array_equal(arrays_b[name], arrays_a[name], err_msg=name)  # NaN == NaN here
    for name in ("startprob", "transmat", "means", "variances", "path", "weeks"):
        np.testing.assert_array_equal(getattr(back.calendar, name), getattr(model.calendar, name), err_msg=name)
    assert back.calendar.loglik == model.calendar.loglik
    pd.testing.assert_frame_equal(back.catalogue, model.catalogue, check_dtype=False)
    assert back.config == model.config
    assert back.attrs["seed"] == 7 and back.attrs["data_hash"] == "abc" and back.attrs["fit_seconds"] == 1.25
    assert "bayes_retail_version" in back.attrs


def test_a_reloaded_model_simulates_the_same_prices(saved, reloaded):
    model, _ = saved
    a = model.simulate(WEEKS, np.random.default_rng(3))
    b = reloaded.simulate(WEEKS, np.random.default_rng(3))
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- errors


def _error(path) -> str:
    with pytest.raises(ArtifactError) as info:
        load_pricing(path)
    assert str(path) in str(info.value)  # the message names the file
    return str(info.value)


def test_missing_file_is_an_artifact_error(tmp_path):
    assert "no pricing model" in _error(tmp_path / "elsewhere.nc")
    assert "no pricing model" in _error(tmp_path / FILENAME)  # an empty folder


def test_garbage_bytes_are_an_artifact_error(tmp_path):
    path = tmp_path / FILENAME
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    assert "cannot read" in _error(path)


def test_truncated_file_is_an_artifact_error(tmp_path, saved):
    data = saved[1].read_bytes()
    path = tmp_path / FILENAME
    path.write_bytes(data[: len(data) // 2])
    _error(path)


def test_netcdf_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"startprob": (("state",), np.ones(3) / 3)}).to_netcdf(path, engine="h5netcdf")
    assert "not a pricing model" in _error(path)


@pytest.fixture(scope="module")
def saved_tree(saved):
    """The saved model read back as a DataTree, to be edited into broken files."""
    return xr.open_datatree(saved[1], engine="h5netcdf").load()


def _rewrite(tree, dst, edit):
    tree = tree.copy(deep=True)
    edit(tree)
    tree.to_netcdf(dst, engine="h5netcdf")
    return dst


def test_another_format_version_is_refused(tmp_path, saved_tree):
    path = _rewrite(saved_tree, tmp_path / "v2.nc", lambda t: t.attrs.update(format_version=2))
    message = _error(path)
    assert "format version 2" in message and "refit" in message


def test_a_missing_group_is_an_artifact_error(tmp_path, saved_tree):
    def drop_calendar(tree):
        del tree["calendar"]

    assert "incomplete" in _error(_rewrite(saved_tree, tmp_path / "nocal.nc", drop_calendar))


def _replace(group, change):
    def edit(tree):
        tree[group] = change(tree[group].to_dataset())

    return edit


@pytest.mark.parametrize(
    "group, change, expected",
    [
        # promotion transitions for one calendar state while the calendar has two
        ("promotion", lambda ds: ds.isel(calendar=[0]), "promotion transmat shape"),
        # a catalogue product in category 5 of a two-category model
        ("catalogue", lambda ds: ds.assign(category_id=("product", np.array([0, 0, 0, 1, 5]))), "category"),
        # n_states larger than the stored states
        ("base_price", lambda ds: ds.assign(n_states=("category", np.array([4, 1]))), "n_states"),
        # the promotion emission lost the mailer probability of calendar state 1
        ("promotion", lambda ds: ds.drop_vars("p_mailer_cal1").assign_attrs(emission_params=json.dumps(
            ["p_display", "p_mailer", "p_zero", "depth_mu", "depth_var"])), "emission parameters"),
    ],
)
def test_inconsistent_shapes_are_an_artifact_error(tmp_path, saved_tree, group, change, expected):
    assert expected in _error(_rewrite(saved_tree, tmp_path / "bad.nc", _replace(group, change)))


# --------------------------------------------------------------------------- atomic writes


def test_saving_leaves_no_temporary_files(tmp_path):
    save_pricing(make_model(), tmp_path)
    save_pricing(make_model(1), tmp_path)  # overwriting too
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]


def test_a_failed_save_leaves_the_existing_file_untouched(tmp_path, monkeypatch):
    path = save_pricing(make_model(), tmp_path)
    before = path.read_bytes()

    def half_written(self, target, *args, **kwargs):
        with open(target, "wb") as f:  # part of a file, then a crash
            f.write(b"\x89HDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_pricing(make_model(1), tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]


# --------------------------------------------------------------------------- imputations


def _panel(rng, n=5, t_len=WEEKS.size):
    depth = np.round(rng.uniform(0, 0.6, (t_len, n)), 2)
    depth[rng.random((t_len, n)) < 0.5] = np.nan
    z = np.zeros((t_len, n))
    return PricingPanel(
        products=pd.DataFrame(
            {"product_id": [11, 12, 13, 21, 22][:n], "category_id": [0, 0, 0, 1, 1][:n], "median_shelf": np.ones(n)}
        ),
        weeks=WEEKS[:t_len], shelf=z + 1, shelf_observed=~np.isnan(depth), x=z,
        display=z.astype(bool), mailer=z.astype(bool), depth=depth,
    )


def _draws(rng, panel, m, decimals=2):
    fill = rng.uniform(0, 0.95, (m, *panel.depth.shape))
    fill = np.round(fill, decimals) if decimals is not None else fill
    return np.where(np.isnan(panel.depth)[None], fill, panel.depth[None])


def test_imputations_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    panel = _panel(rng)
    depths = _draws(rng, panel, 4)
    path = save_imputations(depths, panel, tmp_path)
    assert path == tmp_path / IMPUTATIONS_FILENAME
    back = load_imputations(tmp_path, panel)
    assert back.shape == depths.shape
    np.testing.assert_allclose(back, depths, rtol=0, atol=1e-12)
    # only the missing cells are stored, one column per imputation
    table = pd.read_parquet(path)
    assert len(table) == np.isnan(panel.depth).sum()
    assert [c for c in table.columns if c.startswith("depth_")] == [f"depth_{m}" for m in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [IMPUTATIONS_FILENAME]


def test_imputations_are_stored_at_percent_precision(tmp_path):
    rng = np.random.default_rng(1)
    panel = _panel(rng)
    depths = _draws(rng, panel, 2, decimals=None)
    save_imputations(depths, panel, tmp_path)
    back = load_imputations(tmp_path / IMPUTATIONS_FILENAME, panel)
    np.testing.assert_allclose(back, np.round(depths, 2), atol=1e-12)
    assert np.abs(back - depths).max() <= 0.005 + 1e-12


def test_imputations_of_another_panel_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    panel = _panel(rng)
    save_imputations(_draws(rng, panel, 2), panel, tmp_path)
    other = _panel(np.random.default_rng(3))  # other missing cells
    with pytest.raises(ArtifactError, match="other data") as info:
        load_imputations(tmp_path, other)
    assert str(tmp_path / IMPUTATIONS_FILENAME) in str(info.value)
    fewer = _panel(np.random.default_rng(2), n=4)  # other products
    with pytest.raises(ArtifactError):
        load_imputations(tmp_path, fewer)
    with pytest.raises(ArtifactError, match="no imputed depths"):
        load_imputations(tmp_path / "nowhere", panel)


def test_a_damaged_imputations_file_is_an_artifact_error(tmp_path):
    panel = _panel(np.random.default_rng(4))
    (tmp_path / IMPUTATIONS_FILENAME).write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ArtifactError):
        load_imputations(tmp_path, panel)


def test_a_failed_imputations_save_leaves_the_existing_file_untouched(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    panel = _panel(rng)
    path = save_imputations(_draws(rng, panel, 2), panel, tmp_path)
    before = path.read_bytes()

    def crash(self, target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"PAR1")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(OSError):
        save_imputations(_draws(rng, panel, 3), panel, tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [IMPUTATIONS_FILENAME]
