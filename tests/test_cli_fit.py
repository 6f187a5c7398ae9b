"""``bayes-retail fit --stage pricing`` and the TOML configurations behind it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_data import write_internal

from bayes_retail.cli import main
from bayes_retail.config import ConfigError, load_config, stage_config
from bayes_retail.data import load_data
from bayes_retail.pricing import PricingConfig, PricingPanel, load_pricing
from bayes_retail.pricing.artifacts import FILENAME, IMPUTATIONS_FILENAME, load_imputations
from bayes_retail.pricing.stage import STAGE_FOLDER, VALIDATION_FILENAME


def _fit(tmp, src, out, *extra):
    return main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "pricing", "--config", "quick",
                 "--data", str(src), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def two_fits(tmp_path_factory):
    """The tiny data fitted twice with the same seed into two folders."""
    tmp = tmp_path_factory.mktemp("fit")
    src = write_internal(tmp / "src")
    codes = [_fit(tmp, src, tmp / name, "--seed", "3") for name in ("a", "b")]
    return tmp, src, codes


def test_fit_writes_the_pricing_artifacts(two_fits, capsys):
    tmp, src, codes = two_fits
    assert codes == [0, 0]
    # the stage writes one folder, models/pricing, moved into place whole
    assert [p.name for p in (tmp / "a").iterdir()] == [STAGE_FOLDER]
    out = tmp / "a" / STAGE_FOLDER
    assert sorted(p.name for p in out.iterdir()) == sorted([FILENAME, IMPUTATIONS_FILENAME, VALIDATION_FILENAME])
    model = load_pricing(tmp / "a")  # the artifacts folder is enough to find it
    # the quick configuration was used, and the provenance is recorded
    assert model.config == PricingConfig(restarts=1, max_iter=30, n_imputations=5)
    assert model.attrs["seed"] == 3 and model.attrs["config_name"] == "quick"
    data = load_data(src, cache_dir=tmp / "cache")
    panel = PricingPanel.from_product_weeks(data.product_weeks)
    assert model.attrs["data_hash"] == data.data_hash
    depths = load_imputations(out, panel)
    assert depths.shape == (5, *panel.depth.shape)
    seen = ~np.isnan(panel.depth)
    assert np.all(depths[:, seen] == panel.depth[seen])
    summary = json.loads((out / VALIDATION_FILENAME).read_text())
    assert summary["seed"] == 3 and summary["config"] == "quick" and summary["data_hash"] == data.data_hash
    assert summary["convergence"]["base_price"]["categories"] == model.base.n_states.size


def test_the_same_seed_gives_the_same_artifacts(two_fits):
    tmp, src, _ = two_fits
    a, b = load_pricing(tmp / "a"), load_pricing(tmp / "b")
    for x, y in ((a.base, b.base), (a.promo, b.promo)):
        for name in ("n_states", "startprob", "transmat", "loglik", "n_iter", "occupancy", "restart_loglik", "bic"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
        for name in x.params:
            np.testing.assert_array_equal(x.params[name], y.params[name], err_msg=name)
    np.testing.assert_array_equal(a.calendar.path, b.calendar.path)
    np.testing.assert_array_equal(a.calendar.transmat, b.calendar.transmat)
    panel = PricingPanel.from_product_weeks(load_data(src, cache_dir=tmp / "cache").product_weeks)
    np.testing.assert_array_equal(load_imputations(tmp / "a", panel), load_imputations(tmp / "b", panel))
    va = json.loads((tmp / "a" / STAGE_FOLDER / VALIDATION_FILENAME).read_text())
    vb = json.loads((tmp / "b" / STAGE_FOLDER / VALIDATION_FILENAME).read_text())
    va.pop("seconds"), vb.pop("seconds")
    assert va == vb


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bayes-retail fit: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_an_unknown_configuration_name_is_one_error_line(tmp_path, capsys):
    code = main(["--quiet", "fit", "--stage", "pricing", "--config", "no-such-config", "--out", str(tmp_path / "out")])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "no-such-config" in line and "quick" in line  # names the known ones
    assert not (tmp_path / "out").exists()


def test_a_configuration_with_an_unknown_key_is_one_error_line(tmp_path, capsys):
    config = tmp_path / "mine.toml"
    config.write_text("[pricing]\nrestarts = 2\nn_states = 4\n")
    code = main(["--quiet", "fit", "--stage", "pricing", "--config", str(config), "--out", str(tmp_path / "out")])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "n_states" in line and str(config) in line
    assert not (tmp_path / "out").exists()


def test_a_configuration_with_a_bad_value_is_one_error_line(tmp_path, capsys):
    config = tmp_path / "zero.toml"
    config.write_text("[pricing]\nrestarts = 0\n")
    assert main(["--quiet", "fit", "--stage", "pricing", "--config", str(config)]) == 2
    assert "restarts must be >= 1" in _one_error_line(capsys.readouterr().err)


def test_a_missing_configuration_file_is_one_error_line(tmp_path, capsys):
    assert main(["--quiet", "fit", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in _one_error_line(capsys.readouterr().err)


def test_an_unparsable_configuration_is_one_error_line(tmp_path, capsys):
    config = tmp_path / "broken.toml"
    config.write_text("[pricing\nrestarts = \n")
    assert main(["--quiet", "fit", "--config", str(config)]) == 2
    assert "broken.toml" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- bayes_retail.config


def _config(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path)


#: Where default.toml's [product] departs from ProductConfig's defaults.
DEFAULT_PRODUCT = {"households": 300, "intercept_centre": "pooled", "promo_centred_min_occasions": 100,
                   "intercept_centred_min_purchases": 8, "state": "both", "deal_points": 7,
                   "deal_week_points": 3}


def test_named_configurations_load_and_leave_defaults_to_the_dataclass():
    quick = stage_config(load_config("quick"), "pricing", PricingConfig)
    assert quick == PricingConfig(restarts=1, max_iter=30, n_imputations=5)
    # default.toml spells out every default: it must agree with the dataclass
    assert stage_config(load_config("default"), "pricing", PricingConfig) == PricingConfig()
    from bayes_retail.models.category import CategoryConfig
    from bayes_retail.models.quantity import QuantityConfig
    from bayes_retail.models.visit import VisitConfig

    for section, cls in (("visit", VisitConfig), ("quantity", QuantityConfig)):
        assert stage_config(load_config("default"), section, cls) == cls(), section
    from bayes_retail.models.product import ProductConfig

    # the departures: the category and product stages fit 300 households; the category stage's non-centred
    # category-week deviations, folded loading signs, lower intercept prior, category values and household-week
    # shocks, trips elasticity and seasonal scales per category; the product stage's pooled category centres,
    # partial centring and "both" state (what the shipped fits used)
    assert stage_config(load_config("default"), "category", CategoryConfig) == CategoryConfig(
        households=300, season_centred=False, loading_signs="folded", intercept_mean=-6.0, category_value=True,
        household_week_effect=True, trips_elasticity=True, season_scales="category",
    )
    assert stage_config(load_config("default"), "product", ProductConfig) == ProductConfig(**DEFAULT_PRODUCT)
    # holdout, seasonal and out_of_household are default with other weeks or households: every other
    # section, the samplers' included, is default's
    default = load_config("default")["sections"]
    for name in ("holdout", "seasonal", "out_of_household"):
        sections = load_config(name)["sections"]
        assert set(sections["data"]) and {k: v for k, v in sections.items() if k != "data"} == default, name


def test_the_full_configuration_is_default_with_household_coefficients():
    from bayes_retail.models.product import ProductConfig

    full, default = load_config("full")["sections"], load_config("default")["sections"]
    assert {k: v for k, v in full.items() if k not in ("product", "sampler")} == \
        {k: v for k, v in default.items() if k not in ("product", "sampler")}
    # the sampler's only change: the product stage's overnight time limit
    assert full["sampler"] == {**default["sampler"],
                               "product": {**default["sampler"]["product"], "time_limit_minutes": 480}}
    assert full["product"] == {**default["product"], "coefficients": "household", "deal_points": 0,
                               "deal_week_points": 0}
    assert stage_config(load_config("full"), "product", ProductConfig) == ProductConfig(
        **{**DEFAULT_PRODUCT, "coefficients": "household", "deal_points": 0, "deal_week_points": 0})


def test_a_configuration_extends_another_key_by_key(tmp_path):
    (tmp_path / "base.toml").write_text('[sampler]\ndraws = 1000\nchains = 4\n\n[sampler.product]\ntune = 150\n'
                                        'draws = 300\n\n[visit]\nlkj_eta = 3.0\n')
    child = _config(tmp_path, 'extends = "base.toml"\n\n[sampler.product]\ndraws = 50\n\n[data]\nweeks = "2-40"\n')
    assert child["name"] == "c" and "extends" not in child["sections"]
    assert child["sections"] == {"sampler": {"draws": 1000, "chains": 4, "product": {"tune": 150, "draws": 50}},
                                 "visit": {"lkj_eta": 3.0}, "data": {"weeks": "2-40"}}
    named = _config(tmp_path, 'extends = "quick"\n[pricing]\nrestarts = 2\n')
    assert named["sections"]["pricing"] == {**load_config("quick")["sections"]["pricing"], "restarts": 2}


@pytest.mark.parametrize("text, message", [
    ('extends = 3\n', "extends must be a configuration name or path"),
    ('extends = "nowhere"\n', "unknown configuration 'nowhere'"),
    ('extends = "c.toml"\n', "extend each other in a cycle"),
])
def test_a_bad_extends_is_a_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, text)


def test_a_missing_section_gives_the_defaults(tmp_path):
    assert stage_config(_config(tmp_path, "[other]\nx = 1\n"), "pricing", PricingConfig) == PricingConfig()


def test_stage_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[pricing\]: n_states, speed"):
        stage_config(_config(tmp_path, "[pricing]\nspeed = 2\nn_states = 3\n"), "pricing", PricingConfig)


@pytest.mark.parametrize(
    "line, name",
    [("restarts = 0", "restarts"), ("n_imputations = 0", "n_imputations"), ("min_occupancy = 1.5", "min_occupancy")],
)
def test_stage_config_rejects_bad_values(tmp_path, line, name):
    # the key must be named after the section (the file's path is in the message too)
    with pytest.raises(ConfigError, match=rf"\[pricing\]: .*\b{name}\b"):
        stage_config(_config(tmp_path, f"[pricing]\n{line}\n"), "pricing", PricingConfig)


@pytest.mark.parametrize(
    "line, name", [("restarts = 2.5", "restarts"), ('tol = "small"', "tol"), ('restarts = "three"', "restarts")]
)
def test_stage_config_rejects_values_of_the_wrong_type_naming_the_key(tmp_path, line, name):
    with pytest.raises(ConfigError, match=rf"\[pricing\]: .*\b{name}\b"):
        stage_config(_config(tmp_path, f"[pricing]\n{line}\n"), "pricing", PricingConfig)


# --------------------------------------------------------------------------- the embedded data (slow)


@pytest.mark.slow
def test_quick_fit_on_the_embedded_data_reproduces_its_price_panel(tmp_path):
    # ~1 minute: builds the panels of the embedded data and fits every category
    out = tmp_path / "models"
    args = ["--quiet", "--cache-dir", str(tmp_path / "cache"), "fit", "--stage", "pricing", "--config", "quick"]
    assert main([*args, "--out", str(out)]) == 0
    model = load_pricing(out)
    priced = np.unique(model.catalogue["category_id"])
    for hmm in (model.base, model.promo):
        assert (hmm.n_states[priced] >= 1).all()
        assert (hmm.n_states[priced] > 1).mean() > 0.5  # most categories have regimes
        for value in (hmm.startprob, hmm.transmat, *hmm.params.values()):
            assert np.isfinite(value[priced]).all()
    check = json.loads((out / STAGE_FOLDER / VALIDATION_FILENAME).read_text())["against_completed_panel"]
    # a first fit measured 0.97, 0.99, 0.003 and 0.0002
    assert check["base_price_score"] > 0.9
    assert check["promo_discount_score"] > 0.9
    assert abs(check["promo_frequency_diff"]) < 0.05
    assert abs(check["promoted_share"]["simulated"] - check["promoted_share"]["observed"]) < 0.05


def test_a_stage_sampler_table_overrides_only_that_stage(tmp_path):
    from bayes_retail.models.stage import sampler_config

    config = _config(tmp_path, "[sampler]\ndraws = 1000\nchains = 4\n\n[sampler.product]\ndraws = 200\ntune = 150\n")
    product = sampler_config(config, stage="product")
    assert (product.draws, product.tune, product.chains) == (200, 150, 4)
    assert sampler_config(config, stage="visit").draws == 1000 and sampler_config(config).draws == 1000
    assert sampler_config(config, stage="product", method="pymc").method == "pymc"
    with pytest.raises(ConfigError, match="unknown key"):
        sampler_config(_config(tmp_path, "[sampler]\n[sampler.basket]\ndraws = 5\n"), stage="visit")
    with pytest.raises(ConfigError, match="draws"):
        sampler_config(_config(tmp_path, "[sampler.quantity]\ndraws = -5\n"), stage="quantity")
