"""The ``bayes-retail`` command line.

Errors caused by the user's input (:class:`~bayes_retail.errors.BayesRetailError`)
are printed as one line without a traceback, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bayes_retail._allocator import keep_large_buffers
from bayes_retail._version import __version__
from bayes_retail.errors import BayesRetailError

DEFAULT_REPORT_DIR = "reports"
DEFAULT_MODELS_DIR = "models"
DEFAULT_SYNTHETIC_DIR = "synthetic"
FIT_STAGES = ("visit", "category", "product", "quantity", "pricing", "all")


class Progress:
    """Prints timestamped step messages to stderr (the CLI's progress output)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:7.1f}s] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-retail",
        description="Bayesian shopper models of The Complete Journey and synthetic shoppers from their posterior.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    parser.add_argument("--cache-dir", default=None, help="where derived panels are cached (default ~/.cache/bayes_retail)")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="validate and clean a data source, build its panels, print a summary")
    data.add_argument("--source", default=None, help="data folder (default: the embedded Complete Journey data)")
    data.add_argument("--out", default=None, help="also write the cleaned tables and panels to this folder")
    data.add_argument("--rebuild", action="store_true", help="rebuild the panels even when cached")
    data.set_defaults(func=cmd_data)

    fit = sub.add_parser("fit", help="fit model stages and write their artifacts")
    fit.add_argument(
        "--stage", choices=FIT_STAGES, default="all",
        help="stage to fit; all = pricing, visit, product, category, quantity (the product stage takes hours)"
    )
    fit.add_argument("--method", default=None, help="inference method: nutpie (default), pymc, numpyro, advi, pathfinder")
    fit.add_argument("--weeks", default=None, help="score only these weeks, e.g. 2-26,37-53 (default: the config's [data] weeks, else all)")
    fit.add_argument("--config", default="default", help="configuration name (inference/configs/NAME.toml) or path")
    fit.add_argument("--data", default=None, help="data source (default: the embedded data)")
    fit.add_argument("--seed", type=int, default=1, help="seed of the fit (default 1)")
    fit.add_argument("--out", default=DEFAULT_MODELS_DIR, help="folder for the artifacts (default: models/)")
    fit.set_defaults(func=cmd_fit)

    sim = sub.add_parser("simulate", help="synthetic shoppers from the fitted posteriors (partitioned parquet)")
    sim.add_argument("--posterior", default=DEFAULT_MODELS_DIR, help="folder of fitted artifacts (default: models/)")
    sim.add_argument("--data", default=None, help="the data the posteriors were fitted on (default: the embedded data)")
    sim.add_argument("--customers", type=int, default=1000, help="customers per posterior draw (default 1000)")
    sim.add_argument("--draws", type=int, default=1, help="posterior draws, evenly spaced over the stored ones (default 1)")
    sim.add_argument("--mode", choices=("new", "population", "replay"), default="new",
                     help="new: Bayesian bootstrap of the fitted households (default); population: each parameter "
                          "from its stage's population distribution; replay: the fitted households")
    sim.add_argument("--prices", choices=("hmm", "observed"), default="hmm",
                     help="hmm: a price path per draw from the pricing HMMs (default); observed: the data's prices")
    sim.add_argument("--weeks", type=int, default=None,
                     help="weeks to simulate from the data's first (default: the data's weeks); more than the data "
                          "hold repeat the seasons, with HMM prices")
    sim.add_argument("--promotion-timing", choices=("seasonal", "homogeneous"), default="seasonal",
                     help="HMM prices: promotions tilted toward each category's observed season with the fitted "
                          "calendar (default), or the HMMs' own timing with a drawn calendar")
    sim.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    sim.add_argument("--batch-size", type=int, default=1000, help="customers per batch and file (default 1000)")
    sim.add_argument("--threads", type=int, default=None,
                     help="batches simulated at a time in this process (default: one per core; same files)")
    sim.add_argument("--policy", default=None,
                     help="promotion policy (CSV or parquet: product_id, week and any of depth, display, mailer) "
                          "overriding the promotions of those product-weeks")
    sim.add_argument("--scheduler", default=None,
                     help="run the batches on Dask: 'local' (a LocalCluster, one worker per core) or a scheduler "
                          "address; default: in this process (same output either way)")
    sim.add_argument("--out", default=DEFAULT_SYNTHETIC_DIR, help="output folder (default: synthetic/)")
    sim.set_defaults(func=cmd_simulate)

    check = sub.add_parser("check", help="tiered KS metric suite: synthetic against real data")
    check.add_argument("--synthetic", required=True, help="synthetic data: any data source or simulator output folder")
    check.add_argument("--real", default=None, help="real data source (default: the embedded data)")
    check.add_argument("--out", default=DEFAULT_REPORT_DIR, help="folder for metrics.json (default: reports/)")
    check.add_argument("--floor", action="store_true", help="also compute the real-vs-real floor (split halves)")
    check.add_argument("--draw", type=int, default=None, help="posterior draw to score when the output holds several")
    check.add_argument("--seed", type=int, default=0, help="seed of household subsampling and the split (default 0)")
    check.set_defaults(func=cmd_check)

    ppc = sub.add_parser("ppc", help="posterior predictive check: the metric suite over S posterior draws")
    ppc.add_argument("--posterior", default=DEFAULT_MODELS_DIR, help="folder of fitted artifacts (default: models/)")
    ppc.add_argument("--data", default=None, help="the data the posteriors were fitted on (default: embedded)")
    ppc.add_argument("--draws", type=int, default=20, help="posterior draws (default 20)")
    ppc.add_argument("--mode", choices=("replay", "new", "population"), default="replay",
                     help="replay: the fitted households with observed prices (default); new / population: new customers")
    ppc.add_argument("--prices", choices=("observed", "hmm"), default=None,
                     help="default: observed for replay, hmm for new customers")
    ppc.add_argument("--seed", type=int, default=0)
    ppc.add_argument("--weeks", default=None,
                     help='score only these weeks, e.g. "27-36" (the held-out block of a holdout fit; default: all)')
    ppc.add_argument("--held-out", action="store_true",
                     help="new customers against the households a fit_share < 1 fit left out (out-of-household)")
    ppc.add_argument("--synthetic", default=None, help="where the draws' panels go (default: synthetic/ppc-MODE)")
    ppc.add_argument("--out", default=DEFAULT_REPORT_DIR, help="folder for ppc.json (default: reports/)")
    ppc.set_defaults(func=cmd_ppc)

    report = sub.add_parser("report", help="the HTML diagnostic report (one self-contained page) of fitted artifacts")
    report.add_argument("--posterior", default=DEFAULT_MODELS_DIR, help="folder of fitted artifacts (default: models/)")
    report.add_argument("--metrics", default=None, help="a metrics.json of the check (default: reports/metrics.json if present)")
    report.add_argument("--ppc", action="append", default=None,
                        help="a ppc.json to show (repeat for several checks, e.g. in-sample and held-out; "
                             "default: the one beside --metrics)")
    report.add_argument("--out", default=DEFAULT_REPORT_DIR, help="folder for report.html (default: reports/)")
    report.set_defaults(func=cmd_report)

    run = sub.add_parser("run", help="the whole pipeline on the embedded data: fit (or reuse models/), simulate, check")
    run.add_argument("--out", default=DEFAULT_REPORT_DIR, help="folder for metrics.json (default: reports/)")
    run.add_argument("--models", default=DEFAULT_MODELS_DIR, help="fitted artifacts to reuse or write (default: models/)")
    run.add_argument("--synthetic", default=DEFAULT_SYNTHETIC_DIR, help="where the synthetic panel goes (default: synthetic/)")
    run.add_argument("--seed", type=int, default=0, help="seed of the simulation and the check (default 0)")
    run.add_argument("--data", default=None, help="data source (default: the embedded Complete Journey data)")
    run.add_argument("--config", default="default",
                     help="configuration fitted where models/ is missing or stale (name or TOML path; default: default)")
    run.add_argument("--ppc-draws", type=int, default=20,
                     help="posterior draws of the predictive check (replay of the fitted households; 0 skips it; "
                          "default 20)")
    run.set_defaults(func=cmd_run)
    return parser


def cmd_data(args: argparse.Namespace, progress: Progress) -> int:
    from bayes_retail.data import load_data, write_panels

    data = load_data(args.source, cache_dir=args.cache_dir, rebuild=args.rebuild, progress=progress)
    if args.out:
        write_panels(data, args.out)
        progress(f"panels written to {args.out}")
    print(format_data_summary(data.report))
    return 0


def cmd_fit(args: argparse.Namespace, progress: Progress) -> int:
    from bayes_retail.config import load_config, stage_config
    from bayes_retail.data import load_data
    from bayes_retail.models.stage import SAMPLER_STAGES, data_selection, sampler_config
    from bayes_retail.pipeline import PIPELINE_STAGES, config_class, fit_stage
    from bayes_retail.pricing.stage import format_summary

    config = load_config(args.config)
    stages = PIPELINE_STAGES if args.stage == "all" else (args.stage,)
    # check every section before any long work starts
    for name in PIPELINE_STAGES:
        stage_config(config, name, config_class(name))
    for name in SAMPLER_STAGES:
        sampler_config(config, method=args.method, stage=name)
    data_selection(config, weeks=args.weeks)
    data = load_data(args.data, cache_dir=args.cache_dir, progress=progress)
    for stage in stages:
        summary = fit_stage(stage, data, config, models=args.out, seed=args.seed, method=args.method,
                            weeks=args.weeks, progress=progress)
        print(format_summary(summary) if stage == "pricing"
              else f"{stage}: {summary['seconds']['total']} s; see {Path(args.out) / stage}")
    return 0


def cmd_simulate(args: argparse.Namespace, progress: Progress) -> int:
    from bayes_retail.config import ConfigError
    from bayes_retail.data import load_data
    from bayes_retail.simulate.policy import read_policy
    from bayes_retail.simulate.run import simulate_from_folder

    policy = read_policy(args.policy) if args.policy else None
    data = load_data(args.data, cache_dir=args.cache_dir, progress=progress)
    progress(f"simulating {args.customers} {args.mode} customers x {args.draws} draw(s) with {args.prices} prices"
             + (f" under the policy {args.policy}" if policy is not None else ""))
    try:
        manifest = simulate_from_folder(
            args.posterior, data, args.out, customers=args.customers, draws=args.draws, mode=args.mode,
            prices=args.prices, seed=args.seed, batch_size=args.batch_size, policy=policy, progress=not args.quiet,
            scheduler=args.scheduler, weeks=args.weeks, promotion_timing=args.promotion_timing, threads=args.threads,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    progress(f"{manifest['lines']} lines over draws {manifest['spec']['draws']} written to {args.out}")
    return 0


def cmd_check(args: argparse.Namespace, progress: Progress) -> int:
    from bayes_retail.data import load_data, load_side
    from bayes_retail.metrics import compute_suite

    real_data = load_data(args.real, cache_dir=args.cache_dir, progress=progress)
    real = real_data.metric_tables("real")
    synthetic = load_side(
        args.synthetic, name="synthetic", reference=real_data, cache_dir=args.cache_dir, draw=args.draw, progress=progress
    )
    progress("metric suite" + (" and the real-vs-real floor" if args.floor else ""))
    result = compute_suite(real, synthetic, seed=args.seed, floor=args.floor)
    return _write_result(result, args.out, progress)


def cmd_ppc(args: argparse.Namespace, progress: Progress) -> int:
    from bayes_retail.config import ConfigError
    from bayes_retail.data import load_data
    from bayes_retail.ppc import PPC_FILENAME, posterior_predictive_suite, write_ppc

    data = load_data(args.data, cache_dir=args.cache_dir, progress=progress)
    prices = args.prices or ("observed" if args.mode == "replay" else "hmm")
    synthetic = args.synthetic or str(Path(DEFAULT_SYNTHETIC_DIR) / f"ppc-{args.mode}")
    progress(f"posterior predictive check: {args.draws} draws, {args.mode} customers, {prices} prices")
    try:
        result = posterior_predictive_suite(args.posterior, data, synthetic, draws=args.draws, mode=args.mode,
                                            prices=prices, seed=args.seed, cache_dir=args.cache_dir,
                                            weeks=args.weeks, held_out=args.held_out, progress=not args.quiet)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    path = write_ppc(result, Path(args.out) / PPC_FILENAME)
    for name in ("block", "scores", "p_values", "replicates", "entities", "households", "goals"):
        if name in result:
            print(result[name].round(4).to_string(index=False))
    progress(f"written to {path}")
    return 0


def cmd_report(args: argparse.Namespace, progress: Progress) -> int:
    from bayes_retail.report import build_report

    metrics = args.metrics
    if metrics is None and (Path(DEFAULT_REPORT_DIR) / "metrics.json").exists():
        metrics = Path(DEFAULT_REPORT_DIR) / "metrics.json"
    progress("building the report" + (f" with {metrics}" if metrics else ""))
    try:
        path = build_report(args.posterior, metrics=metrics, out=args.out, ppc=args.ppc)
    except FileNotFoundError as exc:
        from bayes_retail.config import ConfigError

        raise ConfigError(str(exc)) from exc
    print(f"report: {path}")
    return 0


def cmd_run(args: argparse.Namespace, progress: Progress) -> int:
    from bayes_retail.config import ConfigError
    from bayes_retail.pipeline import run_pipeline
    from bayes_retail.report import build_report

    try:
        outcome = run_pipeline(source=args.data, models=args.models, synthetic=args.synthetic, reports=args.out,
                               config_name=args.config, seed=args.seed, cache_dir=args.cache_dir,
                               ppc_draws=args.ppc_draws, progress=progress)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    progress(f"metrics written to {outcome.metrics_path}")
    # without this run's check, an older ppc.json beside metrics.json is not shown as if it were this run's
    report = build_report(args.models, metrics=outcome.metrics_path, out=args.out,
                          ppc=None if outcome.ppc is not None else [])
    print(outcome.result.format_table())
    if outcome.ppc is not None:
        from bayes_retail.ppc import goals_summary

        # every week is a fitted week: the households' own parameters saw the counts they are judged on
        print(f"posterior predictive check ({args.ppc_draws} draws, in sample; household intervals over-cover by "
              f"construction, held-out checks: docs/report.md): {goals_summary(outcome.ppc['goals'])}")
    print(f"report: {report}")
    return 0


def _write_result(result, out: str, progress: Progress) -> int:
    path = Path(out) / "metrics.json"
    result.to_json(path)
    print(result.format_table())
    progress(f"metrics written to {path}")
    return 0


def format_data_summary(report: dict) -> str:
    """Human-readable summary of a data build: the source, counts and the rows each rule removed."""
    s = report["summary"]
    weeks = s["weeks"]
    rows = [
        f"source            {report['source']['kind']} {report['source']['path'] or ''}".rstrip(),
        f"lines read        {report.get('lines_read', 'n/a'):>10}",
    ]
    rows += [f"  - {r['rule']:<16}{r['rows_removed']:>10}  {r['description']}" for r in report["rules"]]
    rows += [
        f"lines kept        {s['lines']:>10}",
        f"households        {s['households']:>10}",
        f"baskets           {s['baskets']:>10}",
        f"weeks             {len(weeks):>10}  ({weeks[0]}-{weeks[-1]})",
        f"products          {s['products']:>10}",
        f"categories        {s['categories']:>10}",
        f"choice-set items  {s['choice_set_products']:>10}  (median {s['choice_set_size_median']:g} per category)",
        f"visit rate        {s['visit_rate']:>10.3f}  ({s['trips_per_visit']:.2f} trips per visited week)",
        f"depth missing     {s['product_weeks_depth_missing']:>10.3f}  of choice-set product-weeks",
    ]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keep_large_buffers()  # the kernels' large arrays are reused instead of mapped afresh per call
    progress = Progress(quiet=args.quiet)
    try:
        return args.func(args, progress)
    except BayesRetailError as exc:
        print(f"bayes-retail {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
