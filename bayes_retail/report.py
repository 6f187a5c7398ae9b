"""The HTML diagnostic report (``bayes-retail report``): one self-contained page, images embedded.

Sections: the convergence verdict of every fitted stage (a table with pass /
fail against the thresholds); per stage its hyperparameters (the
``hyperpriors.csv`` table), rank and energy plots of the hyperparameters and
its seasonal or promotion-response picture; the metric suite against the
real data beside the real-vs-real floor, as a table and a plot. Built with
ArviZ, matplotlib and jinja2; it opens in a browser with no server.
"""

from __future__ import annotations

import base64
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_retail._io import atomic_path

REPORT_FILENAME = "report.html"
REPORT_STAGES = ("visit", "category", "product", "quantity")
#: At most this many hyperparameter variables get rank plots per stage (the hyperprior table lists them all).
MAX_RANK_VARIABLES = 6


def _png(fig) -> str:
    """A matplotlib figure as a ``data:`` URI (and the figure closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def convergence_table(models: str | os.PathLike) -> pd.DataFrame:
    """One row per fitted stage: the stored verdict (max R-hat, min ESS, divergences, BFMI, pass / fail).

    ``chain groups`` > 1 marks a fit pooled over imputed inputs (R-hat within
    groups); ``max between-group share`` is the largest share of a
    hyperparameter's posterior variance between them (docs/models.md, "Imputations").
    """
    rows = []
    for stage in REPORT_STAGES:
        path = Path(models) / stage / "fit_summary.json"
        if not path.exists():
            rows.append({"stage": stage, "verdict": "not fitted"})
            continue
        summary = json.loads(path.read_text())
        c = summary["convergence"]
        rows.append({
            "stage": stage,
            "verdict": "PASS" if c.get("passed") else "FAIL",
            "max R-hat": c.get("max_rhat"),
            "min ESS bulk": c.get("min_ess_bulk"),
            "min ESS tail": c.get("min_ess_tail"),
            "divergences": c.get("divergences"),
            "min BFMI": c.get("min_bfmi"),
            "scalars": c.get("n_scalars"),
            # fits pooled over imputed inputs: R-hat within groups, and how much the inputs move the hyperparameters
            "chain groups": c.get("chain_groups", 1),
            "max between-group share": (summary.get("imputation") or {}).get("max_between_share"),
            "why": "; ".join(c.get("failures", [])),
            "method": summary.get("method"),
            "approximate": summary.get("approximate", False),
        })
    return pd.DataFrame(rows)


def hyperparameter_figures(idata, names: list[str]) -> dict[str, str]:
    """Rank plots of the named posterior variables and the energy plot (when sample stats are stored)."""
    import arviz as az
    import matplotlib.pyplot as plt
    from matplotlib import MatplotlibDeprecationWarning

    figures = {}
    names = [n for n in names if n in idata.posterior][:MAX_RANK_VARIABLES]
    with warnings.catch_warnings():
        # ArviZ 0.23 calls a matplotlib helper the way 3.11 deprecates: not ours to fix, not the reader's concern
        warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
        if names:
            axes = az.plot_trace(idata, var_names=names, kind="rank_bars", compact=True, show=False)
            figures["rank"] = _png(np.ravel(axes)[0].figure)
        if hasattr(idata, "sample_stats") and "energy" in idata.sample_stats:
            ax = az.plot_energy(idata, show=False)
            figures["energy"] = _png(np.ravel(ax)[0].figure if isinstance(ax, np.ndarray) else ax.figure)
    plt.close("all")
    return figures


def seasonal_figure(table: pd.DataFrame, *, top: int = 6) -> str | None:
    """Seasonal indices with their 90% bands: one panel (visit), or the ``top`` categories with the narrowest bands."""
    import matplotlib.pyplot as plt

    table = table.dropna(subset=["index_mean"])
    if table.empty:
        return None
    if "category_id" in table:
        # the categories with the narrowest bands: the most purchased
        key = "product_category" if "product_category" in table else "category_id"
        width = (table["q0.95"] - table["q0.05"]).groupby(table[key]).mean().sort_values()
        groups = [(name, table.loc[table[key] == name]) for name in width.index[:top]]
    else:
        groups = [("all", table)]
    fig, axes = plt.subplots(len(groups), 1, figsize=(7, 1.8 * len(groups)), sharex=True, squeeze=False)
    for ax, (name, g) in zip(axes[:, 0], groups):
        ax.fill_between(g["week"], g["q0.05"], g["q0.95"], alpha=0.3, label="90% band")
        ax.plot(g["week"], g["index_mean"], label="posterior mean")
        if "observed" in g:
            ax.plot(g["week"], g["observed"], "k.", ms=3, label="observed")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_ylabel(str(name)[:18], fontsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("week")
    return _png(fig)


def promo_figure(table: pd.DataFrame, *, top: int = 25) -> str | None:
    """Posterior means and 90% intervals of a promotion-response table, the ``top`` categories by |effect|."""
    import matplotlib.pyplot as plt

    if table.empty:
        return None
    label = "response" if "response" in table else "variable"
    fig, ax = plt.subplots(figsize=(7, 0.22 * min(top, len(table)) * max(1, table[label].nunique()) + 1))
    y = 0
    for response, g in table.groupby(label):
        g = g.reindex(g["mean"].abs().sort_values(ascending=False).index)[:top]
        ax.errorbar(g["mean"], np.arange(y, y + len(g)), xerr=[g["mean"] - g["q0.05"], g["q0.95"] - g["mean"]],
                    fmt="o", ms=3, label=str(response))
        y += len(g) + 1
    ax.axvline(0.0, color="grey", lw=0.5)
    ax.set_yticks([])
    ax.legend(fontsize=7)
    ax.set_xlabel("effect (posterior mean, 90% interval)")
    return _png(fig)


def metrics_figure(metrics: dict) -> str:
    """Score (1 - KS) of every metric beside its real-vs-real floor's score."""
    import matplotlib.pyplot as plt

    names = list(metrics["metrics"])
    score = [1 - metrics["metrics"][n]["ks"] for n in names]
    floor = [1 - metrics["metrics"][n]["floor_ks"] if metrics["metrics"][n].get("floor_ks") is not None else np.nan
             for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1))
    y = np.arange(len(names))
    ax.barh(y, score, height=0.4, label="synthetic vs real")
    ax.plot(floor, y, "k|", ms=12, label="real vs real (floor)")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score = 1 - KS")
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def distributions_figure(metrics: dict, *, tier: int = 1, upper: float = 0.975) -> str | None:
    """Real against synthetic distribution (quantile curves up to ``upper``) of each metric of ``tier``.

    The curves are each side's values at the stored quantile probabilities,
    drawn as cumulative distributions: the KS is the largest vertical gap
    between the two (up to the resolution of the stored quantiles).
    """
    import matplotlib.pyplot as plt

    from bayes_retail.metrics.suite import QUANTILE_PROBS

    shown = {n: m for n, m in metrics["metrics"].items() if m.get("tier") == tier and m.get("quantiles_real")}
    if not shown:
        return None
    probs = np.asarray(QUANTILE_PROBS)
    keep = probs <= upper
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 2.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], shown.items()):
        for side, style in (("real", "k-"), ("synthetic", "C1--")):
            ax.step(np.asarray(m[f"quantiles_{side}"])[keep], probs[keep], style, where="post", label=side, lw=1.2)
        ax.set_title(f"{name} (KS {m['ks']:.3f})", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("cumulative share")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    return _png(fig)


def pit_figure(pit) -> str:
    """Bar chart of the share of households per PIT decile, one panel per statistic, beside the uniform 0.1."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(pit["statistic"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = pit[pit["statistic"] == name]
        ax.bar((rows["bin"] + 0.5) / 10, rows["share"], width=0.09)
        ax.axhline(0.1, color="k", lw=0.8, ls="--")
        ax.set_title(f"PIT of {name}", fontsize=9)
        ax.set_xlim(0, 1)
    return _png(fig)


def promo_lift_figure(table: pd.DataFrame, *, top: int = 30) -> str | None:
    """Per category (the ``top`` by real sales): the real promotion lift beside the draws' median and 90% interval."""
    import matplotlib.pyplot as plt

    rows = table.dropna(subset=["median"]).nlargest(top, "sales_value").iloc[::-1]
    if rows.empty:
        return None
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.19 * len(rows)))
    ax.errorbar(rows["median"], y, xerr=[rows["median"] - rows["q05"], rows["q95"] - rows["median"]], fmt="o",
                ms=3, color="tab:blue", lw=1, label="synthetic draws (median, 90%)")
    ax.plot(rows["real"], y, "x", color="k", ms=5, label="real")
    ax.axvline(0.0, color="grey", lw=0.6)
    ax.set_yticks(y, [str(c)[:28] for c in rows["category"]], fontsize=7)
    ax.set_xlabel("promotion lift: log(units per promoted / per non-promoted product-week)")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def promo_lift_summary(table: pd.DataFrame) -> dict:
    """Categories with a lift, the share (and sales share) whose 90% interval holds the real lift, and the PITs' KS from uniform."""
    from scipy.stats import kstest

    judged = table.dropna(subset=["median"])
    sales = judged["sales_value"]
    return {
        "categories": int(len(judged)),
        "coverage_90": float(judged["covered"].mean()) if len(judged) else float("nan"),
        "sales_weighted_coverage_90": float(sales[judged["covered"]].sum() / sales.sum()) if sales.sum() > 0 else float("nan"),
        "pit_mean": float(judged["pit"].mean()) if len(judged) else float("nan"),
        "pit_ks": float(kstest(judged["pit"], "uniform").statistic) if len(judged) else float("nan"),
    }


#: Household-level parameters whose posterior means the report histograms, per stage.
HOUSEHOLD_PARAMETERS = {"visit": ("a", "g", "b"), "category": ("u",), "quantity": ("basket",)}


def heterogeneity_figure(idata, stage: str) -> str | None:
    """Histograms of each household's posterior mean of the stage's household parameters (the heterogeneity)."""
    import matplotlib.pyplot as plt

    post = idata.posterior
    if stage == "visit" and {"mu", "sigma", "z_signal"} <= set(post):
        from bayes_retail.models.visit import household_parameters

        theta = household_parameters(post).mean(axis=0)
        values = {"a (visit propensity)": theta[:, 0], "g (signal response)": theta[:, 1], "b (log extra trips)": theta[:, 2]}
    else:
        values = {name: post[name].mean(dim=("chain", "draw")).values for name in HOUSEHOLD_PARAMETERS.get(stage, ())
                  if name in post}
    if not values:
        return None
    fig, axes = plt.subplots(1, len(values), figsize=(3 * len(values), 2.4), squeeze=False)
    for ax, (name, v) in zip(axes[0], values.items()):
        ax.hist(np.ravel(v), bins=40)
        ax.set_title(name, fontsize=8)
    axes[0, 0].set_ylabel("households")
    return _png(fig)


def class_figure(idata, membership: pd.DataFrame | None, *,
                 coefficients=("price", "discount", "state", "previous")) -> str | None:
    """The product stage's latent classes: each class's coefficients (mean, 90% interval) and household share.

    The share is the households' mean posterior class probability
    (``class_membership.csv``); without it the classes are drawn alike.
    """
    import matplotlib.pyplot as plt

    post = idata.posterior
    if "theta" not in post or "class" not in post["theta"].dims:
        return None
    theta = post["theta"].stack(sample=("chain", "draw")).transpose("class", "coefficient", "sample")
    names = [c for c in coefficients if c in theta.coords["coefficient"].values]
    k = theta.sizes["class"]
    share = np.full(k, 1.0 / k)
    if membership is not None:
        columns = [f"class_{i}" for i in range(k)]
        if set(columns) <= set(membership.columns):
            share = membership[columns].to_numpy().mean(axis=0)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    x = np.arange(k)
    for ax, name in zip(axes[0], names):
        values = theta.sel(coefficient=name).values
        lo, mid, hi = np.quantile(values, [0.05, 0.5, 0.95], axis=1)
        ax.errorbar(x, mid, yerr=[mid - lo, hi - mid], fmt="none", ecolor="0.5", lw=1)
        ax.scatter(x, mid, s=20 + 600 * share, zorder=3)
        ax.set_title(f"{name} coefficient by class", fontsize=8)
        ax.set_xticks(x)
        ax.axhline(0, color="k", lw=0.5)
    axes[0, 0].set_xlabel("class (marker area: share of households)", fontsize=8)
    return _png(fig)


def predictive_check_table(folder: Path) -> pd.DataFrame | None:
    """One row per checked statistic of a stage: the observed value against its prior and posterior predictive.

    From the stage's ``prior_predictive.json`` and the ``posterior_predictive``
    of its ``fit_summary.json`` (both written by the fit); ``None`` when the
    stage stored neither. An observed quantile near 0 or 1 flags a miss.
    """
    rows: dict[str, dict] = {}
    sources = []
    if (folder / "prior_predictive.json").exists():
        sources.append(("prior", json.loads((folder / "prior_predictive.json").read_text())))
    if (folder / "fit_summary.json").exists():
        sources.append(("posterior", json.loads((folder / "fit_summary.json").read_text()).get("posterior_predictive", {})))
    for kind, check in sources:
        for name, values in (check or {}).get("statistics", {}).items():
            row = rows.setdefault(name, {"statistic": name, "observed": values.get("observed")})
            for q in ("q05", "median", "q95"):
                row[f"{kind} {q}"] = values.get(f"{kind}_{q}")
            row[f"observed {kind} quantile"] = values.get(f"observed_{kind}_quantile")
    return pd.DataFrame(list(rows.values())) if rows else None


def _stage_section(models: Path, stage: str) -> dict | None:
    from bayes_retail.models.artifacts import load_posterior

    folder = models / stage
    if not (folder / "trace.nc").exists():
        return None
    idata = load_posterior(models, stage)
    hyper = pd.read_csv(folder / "hyperpriors.csv")
    section = {"stage": stage, "hyperpriors": hyper.round(4).to_html(index=False, na_rep="", border=0),
               "figures": hyperparameter_figures(idata, list(dict.fromkeys(hyper["variable"])))}
    summary = json.loads((folder / "fit_summary.json").read_text()) if (folder / "fit_summary.json").exists() else {}
    section["loo"] = summary.get("loo")
    checks = predictive_check_table(folder)
    section["checks"] = None if checks is None else checks.round(4).to_html(index=False, na_rep="", border=0)
    section["figures"]["household heterogeneity (posterior means)"] = heterogeneity_figure(idata, stage)
    if stage == "product":
        path = folder / "class_membership.csv"
        section["figures"]["latent classes: coefficients (90% interval) and household shares"] = class_figure(
            idata, pd.read_csv(path) if path.exists() else None)
    if (folder / "seasonal_indices.csv").exists():
        section["figures"]["seasonal indices (posterior predictive, 90% band)"] = seasonal_figure(
            pd.read_csv(folder / "seasonal_indices.csv"))
    if (folder / "promo_response.csv").exists():
        section["figures"]["promotion response by category"] = promo_figure(pd.read_csv(folder / "promo_response.csv"))
    section["figures"] = {k: v for k, v in section["figures"].items() if v}
    return section


_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>bayes_retail report</title>
<style>
body { font-family: sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.8em; } td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; }
.fail { color: #b00; font-weight: bold; } .pass { color: #070; font-weight: bold; }
.warning { background: #fee; border: 2px solid #b00; padding: 0.5em 1em; }
img { max-width: 100%; }
</style></head><body>
<h1>bayes_retail report</h1>
<p>Artifacts: <code>{{ models }}</code>. Package {{ version }}.</p>
<h2 id="convergence">Convergence</h2>
{% if failing %}<div class="warning">The fits of {{ failing|join(", ") }} did NOT converge
(R-hat &le; 1.01, bulk and tail ESS &ge; 400, no divergences, BFMI &ge; 0.3 not all met): their estimates and
everything simulated from them are provisional.</div>{% endif %}
{{ convergence }}
{% for s in stages %}
<h2 id="{{ s.stage }}">Stage: {{ s.stage }}</h2>
<h3>Hyperparameters</h3>
{{ s.hyperpriors }}
{% if s.loo %}<p>PSIS-LOO over the fitted cells ({{ s.loo.cells }} cells, {{ s.loo.draws }} draws): elpd_loo
{{ "%.1f"|format(s.loo.elpd_loo) }} (se {{ "%.1f"|format(s.loo.se) }}), p_loo {{ "%.1f"|format(s.loo.p_loo) }};
Pareto k &gt; {{ s.loo.k_max }} in {{ "%.2f"|format(100 * s.loo.share_k_above_max) }}% of cells
(max {{ "%.2f"|format(s.loo.max_k) }}).</p>{% endif %}
{% if s.checks %}<h3>Prior and posterior predictive checks</h3>
<p>Observed statistic against its prior predictive (are the priors sensible?) and posterior predictive
(does the fit reproduce it?) 5% / 50% / 95% quantiles; a quantile of the observed value near 0 or 1 is a miss.</p>
{{ s.checks }}{% endif %}
{% for title, uri in s.figures.items() %}<h3>{{ title }}</h3><img alt="{{ s.stage }} {{ title }}" src="{{ uri }}">{% endfor %}
{% endfor %}
<h2 id="metrics">Metric suite: synthetic against real</h2>
{% if metrics %}
<p>Overall {{ "%.4f"|format(metrics.overall) }};
{% for tier, score in metrics.tiers.items() %}tier {{ tier }} {{ "%.4f"|format(score) }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
{{ metrics_table }}
<img alt="metric scores" src="{{ metrics_figure }}">
{% if distributions_figure %}<p>Real against synthetic distributions of the tier-1 metrics (cumulative, up to each side's
97.5% quantile; the KS is the largest vertical gap between the curves):</p>
<img alt="tier-1 distributions" src="{{ distributions_figure }}">{% endif %}
<p>Beside published scores on the same data (1 - KS as their authors report them; their definitions, matched to
ours by what they measure):</p>
{{ anchors_table }}
{% else %}<p>No metrics given (run <code>bayes-retail run</code> or <code>check</code>, then pass <code>--metrics</code>).</p>{% endif %}
<h2 id="ppc">Posterior predictive check over draws</h2>
{% if ppcs %}{% for ppc in ppcs %}
{% if ppcs|length > 1 or ppc.spec %}<h3>{{ ppc.title }}</h3>{% endif %}
{% if ppc.block %}<p>Scored weeks against each stage's fitted weeks (held out: the fit never saw them; seasonal
extrapolation: all after the last fitted week):</p>
{{ ppc.block }}{% endif %}
{% if ppc.goals %}<p>Goals (DESIGN.md §5): each metric's median KS at most max(0.05, 1.5 x its real-vs-real floor
KS); 85-95% of households inside their 90% predictive interval of spend and of visits; the real co-purchase lift
inside the draws' 90% interval. {{ ppc.goals_failed }}</p>
{{ ppc.goals }}{% endif %}
<p>Score of each metric over posterior draws (median and 90% interval) beside the real-vs-real floor:</p>
{{ ppc.scores }}
<p>Bayesian p-values (share of draws at or below the real value) of summary and joint statistics
(visits x basket size across households; co-purchase lift of the frequent category pairs):</p>
{{ ppc.p_values }}
{% if ppc.replicates %}<p>Replicate calibration: KS(real, replicate) beside KS(replicate, replicate') over disjoint
pairs of draws (calibrated: the real data look like one more replicate):</p>
{{ ppc.replicates }}{% endif %}
{% if ppc.entities %}<p>Entity-matched: share of categories / products (and of their sales) whose 90% predictive interval
holds the real value (a KS score cannot see which entity is which):</p>
{{ ppc.entities }}{% endif %}
{% if ppc.elpd %}<p>Log predictive density of the scored (held-out) weeks, exact (the fit did not see them): per stage
the sum over its units (household-weeks; for the product stage households), its standard error and the mean per unit:</p>
{{ ppc.elpd }}{% endif %}
{% if ppc.promo_lift %}<p>Calibration of promotion lift per category (log units per promoted over per non-promoted
product-week): share of categories whose 90% predictive interval holds the real lift, and the PITs (calibrated:
coverage near 0.9, PIT mean near 0.5 and a small KS from uniform):</p>
{{ ppc.promo_lift }}
{% if ppc.promo_lift_figure %}<img alt="promotion lift by category" src="{{ ppc.promo_lift_figure }}">{% endif %}{% endif %}
{% if ppc.households %}<p>Replayed households: 50% / 90% predictive interval coverage and mid-PIT of each household's
spend and visits (calibrated: coverage near 0.5 / 0.9, PITs flat; U-shaped PITs mean too narrow predictions):</p>
{{ ppc.households }}
<img alt="household PIT histograms" src="{{ ppc.pit_figure }}">{% endif %}
{% endfor %}{% else %}<p>Not run (<code>bayes-retail ppc</code> writes <code>ppc.json</code> beside <code>metrics.json</code>).</p>{% endif %}
</body></html>
"""


PROMOTION_FILENAME = "promo_response.csv"


def write_promotion_table(models: str | os.PathLike, out: str | os.PathLike) -> Path:
    """``out/promo_response.csv``: every stage's promotion response by category (:func:`~bayes_retail.models.tables.promotion_responses`)."""
    from bayes_retail.models.tables import promotion_responses

    path = Path(out) / PROMOTION_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        promotion_responses(models).to_csv(tmp, index=False)
    return path


def ppc_title(spec: pd.DataFrame | None, block: pd.DataFrame | None, path: Path) -> str:
    """A check's heading: who was simulated, with which prices, over which weeks, and what those weeks were to the fit."""
    if spec is None or not len(spec):
        return str(path)
    row = spec.iloc[0]
    who = "held-out households against new customers" if row.get("held_out") else f"{row['mode']} customers"
    title = f"{who}, {row['prices']} prices, {int(row['draws'])} draws, weeks {row['weeks']}"
    if block is not None and len(block):
        kinds = sorted(set(block["kind"]))
        title += f" ({', '.join(kinds)})"
    return f"{title}: {row['posterior']}"


def ppc_section(path: Path) -> dict:
    """What the report shows of one ``ppc.json``: its tables as HTML, its figures and its title."""
    from bayes_retail.ppc import goals_summary, read_ppc

    tables = read_ppc(path)
    shown = {name: tables[name].round(4).to_html(index=False, na_rep="", border=0)
             for name in ("block", "goals", "scores", "p_values", "replicates", "entities", "households", "elpd")
             if name in tables}
    shown["spec"] = "spec" in tables
    shown["title"] = ppc_title(tables.get("spec"), tables.get("block"), path)
    if "goals" in tables:
        summary = f"{goals_summary(tables['goals'])}."
        shown["goals_failed"] = summary if tables["goals"]["passed"].astype(bool).all() else f"<b>{summary}</b>"
    if "pit" in tables:
        shown["pit_figure"] = pit_figure(tables["pit"])
    if "promo_lift" in tables and len(tables["promo_lift"]):
        shown["promo_lift"] = pd.DataFrame([promo_lift_summary(tables["promo_lift"])]).round(4).to_html(
            index=False, na_rep="", border=0)
        shown["promo_lift_figure"] = promo_lift_figure(tables["promo_lift"])
    return shown


def _copy_beside(source: str | os.PathLike | None, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically, unless it is missing or already there."""
    if source is None or not Path(source).exists() or (target.exists() and target.samefile(source)):
        return
    with atomic_path(target) as tmp:
        tmp.write_bytes(Path(source).read_bytes())


def build_report(models: str | os.PathLike = "models", *, metrics: str | os.PathLike | None = None,
                 out: str | os.PathLike = "reports",
                 ppc: str | os.PathLike | list[str | os.PathLike] | None = None) -> Path:
    """Write ``out/report.html`` from the artifacts in ``models`` and, when given, a ``metrics.json``.

    Also writes ``out/promo_response.csv``, the stages' promotion responses in one table,
    and copies the ``metrics.json`` and ``ppc.json`` it shows into ``out``
    when they are elsewhere (several checks as ``ppc-1.json``, ``ppc-2.json``, ...),
    so the folder holds the numbers behind the page.

    The posterior predictive checks (``ppc.json`` of ``bayes-retail ppc``)
    are included from ``ppc`` (one path or several: e.g. the in-sample, the
    mid-year held-out and the out-of-household checks, each its own section),
    else from beside ``metrics`` when one is there.
    """
    import jinja2

    from bayes_retail._version import __version__

    models = Path(models)
    conv = convergence_table(models)
    failing = conv.loc[conv["verdict"] == "FAIL", "stage"].tolist()
    conv_html = conv.round(4).to_html(index=False, na_rep="", border=0)
    conv_html = conv_html.replace("<td>FAIL</td>", '<td class="fail">FAIL</td>').replace(
        "<td>PASS</td>", '<td class="pass">PASS</td>')
    stages = [s for s in (_stage_section(models, stage) for stage in REPORT_STAGES) if s]
    context = {"models": str(models), "version": __version__, "convergence": conv_html, "failing": failing,
               "stages": stages, "metrics": None, "ppcs": []}
    if metrics is not None:
        result = json.loads(Path(metrics).read_text())
        table = pd.DataFrame([{"metric": n, "tier": m.get("tier"), "score": 1 - m["ks"],
                               "floor score": None if m.get("floor_ks") is None else 1 - m["floor_ks"]}
                              for n, m in result["metrics"].items()])
        from bayes_retail.metrics.anchors import anchor_table

        context.update(metrics={"overall": result["overall"], "tiers": result.get("tier_scores", {})},
                       metrics_table=table.round(4).to_html(index=False, na_rep="", border=0),
                       metrics_figure=metrics_figure(result), distributions_figure=distributions_figure(result),
                       anchors_table=anchor_table(result).round(3).to_html(index=False, na_rep="", border=0))
    if ppc is None:
        beside = None if metrics is None else Path(metrics).parent / "ppc.json"
        ppc_paths = [beside] if beside is not None and beside.exists() else []
    else:
        ppc_paths = [Path(p) for p in ([ppc] if isinstance(ppc, (str, os.PathLike)) else ppc)]
        missing = [str(p) for p in ppc_paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"no posterior predictive check at {', '.join(missing)}")
    context.update(ppcs=[ppc_section(p) for p in ppc_paths])
    html = jinja2.Environment(autoescape=False).from_string(_TEMPLATE).render(**context)
    write_promotion_table(models, out)
    _copy_beside(metrics, Path(out) / "metrics.json")
    for i, p in enumerate(ppc_paths):
        _copy_beside(p, Path(out) / ("ppc.json" if len(ppc_paths) == 1 else f"ppc-{i + 1}.json"))
    path = Path(out) / REPORT_FILENAME
    with atomic_path(path) as tmp:
        tmp.write_text(html)
    return path
