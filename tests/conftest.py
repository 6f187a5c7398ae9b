"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest
from tiny_data import write_internal

from bayes_retail.cli import main

#: A small configuration every stage can fit on the tiny data in seconds (not converged: plumbing tests only).
TINY_CONFIG = """
[sampler]
chains = 2
draws = 30
tune = 60

[category]
rank = 0
category_value = true    # linked to the product stage's draws: the simulator's value path runs in every test
household_week_effect = true  # its sd reaches the simulator: the shock path runs in every test too
shock_loadings = true    # and each category's loading on it
trips_elasticity = true  # the exposure n^gamma reaches the simulator and every expectation

[product]
n_classes = 2
burn_in_weeks = 0
state = "both"           # the simulator reads the state memory from the trace: its "ever" path with the
                         # previous-occasion coefficient runs everywhere
intercept_centre = "category"  # the category-centred intercepts reach every saved product trace
"""


def refit_tiny_product(tiny_fitted, folder, product_settings: str):
    """A copy of the tiny fitted models in ``folder/models`` with the product stage refitted under the tiny
    configuration plus ``product_settings`` (TOML lines of its ``[product]`` section); returns that folder."""
    import shutil

    tmp, src = tiny_fitted
    models = folder / "models"
    shutil.copytree(tmp / "models", models)
    config = folder / "product.toml"
    config.write_text(TINY_CONFIG.replace("[product]\n", f"[product]\n{product_settings}\n"))
    assert main(["--quiet", "--cache-dir", str(tmp / "cache"), "fit", "--stage", "product", "--data", str(src),
                 "--out", str(models), "--config", str(config)]) == 0
    return models


@pytest.fixture(scope="session")
def tiny_fitted(tmp_path_factory):
    """Tiny data with every stage fitted into ``tmp/models`` (pricing with `quick`, the rest with ``small.toml``)."""
    tmp = tmp_path_factory.mktemp("tiny-fitted")
    src = write_internal(tmp / "src")
    config = tmp / "small.toml"
    config.write_text(TINY_CONFIG)

    def cli(*args):
        return main(["--quiet", "--cache-dir", str(tmp / "cache"), *args])

    assert cli("fit", "--stage", "pricing", "--data", str(src), "--out", str(tmp / "models"), "--config", "quick") == 0
    for stage in ("visit", "product", "category", "quantity"):  # product first: the category value needs it
        assert cli("fit", "--stage", stage, "--data", str(src), "--out", str(tmp / "models"), "--config", str(config)) == 0
    return tmp, src
