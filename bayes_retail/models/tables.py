"""Tidy tables a user reads without PyMC: one row per scalar with its 90% interval and diagnostics."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd


def posterior_table(idata: az.InferenceData, var_names: list[str], *, prob: float = 0.9) -> pd.DataFrame:
    """One row per scalar of ``var_names``: mean, sd, the central ``prob`` interval, median, R-hat, ESS.

    Coordinates become columns (``param``, ``week``, ...); the interval is the
    equal-tailed one (quantiles ``(1 - prob) / 2`` and ``(1 + prob) / 2``).
    """
    lo, hi = (1.0 - prob) / 2.0, (1.0 + prob) / 2.0
    post = idata.posterior[var_names]
    rows = []
    rhat, bulk, tail = az.rhat(post), az.ess(post, method="bulk"), az.ess(post, method="tail")
    for name in var_names:
        da = post[name].stack(sample=("chain", "draw"))
        extra = [d for d in da.dims if d != "sample"]
        flat = da.transpose(*extra, "sample").values.reshape(-1, da.sizes["sample"])
        labels = _labels(da, extra)
        q = np.quantile(flat, [lo, 0.5, hi], axis=1)
        for i, label in enumerate(labels):
            rows.append(
                {
                    "variable": name,
                    **label,
                    "mean": float(flat[i].mean()),
                    "sd": float(flat[i].std(ddof=1)),
                    f"q{lo:.2f}".rstrip("0"): float(q[0, i]),
                    "median": float(q[1, i]),
                    f"q{hi:.2f}".rstrip("0"): float(q[2, i]),
                    "r_hat": float(np.ravel(rhat[name].values)[i]),
                    "ess_bulk": float(np.ravel(bulk[name].values)[i]),
                    "ess_tail": float(np.ravel(tail[name].values)[i]),
                }
            )
    return pd.DataFrame(rows)


def _labels(da, dims: list[str]) -> list[dict]:
    if not dims:
        return [{}]
    grids = np.meshgrid(*[da[d].values for d in dims], indexing="ij")
    return [{d: g.ravel()[i].item() if hasattr(g.ravel()[i], "item") else g.ravel()[i] for d, g in zip(dims, grids)}
            for i in range(grids[0].size)]


#: Columns of :func:`promotion_responses`.
PROMOTION_COLUMNS = ["category_id", "product_category", "stage", "response", "scale", "mean", "q0.05", "median", "q0.95"]


def promotion_responses(models) -> pd.DataFrame:
    """Every stage's promotion response by category in one tidy table, read from the stages' own tables.

    - product: ``display`` and ``mailer`` (utility, log-odds within the
      category) from ``promo_response.csv``; ``discount_lift``,
      ``display_lift``, ``mailer_lift`` and ``own_price_elasticity`` (share of
      the category's purchases) from ``elasticities.csv``;
    - quantity: ``stockpiling_kappa`` (log mean of extra units per unit of depth);
    - category: ``k`` (response of purchase incidence to the category value), when fitted.

    A stage without its table is left out. ``scale`` says what the number
    measures, so rows of different stages are not compared as like for like.
    """
    from pathlib import Path

    models = Path(models)
    frames = []

    def take(path, stage, response_column, scale, keep=None):
        if not path.exists():
            return
        table = pd.read_csv(path)
        if keep is not None:
            table = table[table[response_column].isin(keep)]
        frames.append(table.rename(columns={response_column: "response"}).assign(stage=stage, scale=scale))

    take(models / "product" / "promo_response.csv", "product", "response", "utility (within-category log-odds)")
    take(models / "product" / "elasticities.csv", "product", "measure", "share of the category's purchases")
    take(models / "quantity" / "promo_response.csv", "quantity", "response", "log mean extra units per unit depth")
    take(models / "category" / "category_effects.csv", "category", "variable", "purchase incidence per unit value",
         keep=["k"])
    if not frames:
        return pd.DataFrame(columns=PROMOTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)[PROMOTION_COLUMNS].sort_values(
        ["category_id", "stage", "response"], ignore_index=True)
