"""The run's metric suite over several simulation seeds, for two simulator settings side by side (paired).

A single seed's overall score moves by several thousandths from seed to seed
(docs/report.md), so a simulator change is judged here: for each seed, the
setting of ``bayes-retail run`` (new customers, as many as real households,
one posterior draw, HMM prices) is simulated under a baseline and a candidate
setting with the same seed, each scored against the real data, and the
per-metric KS, the overall score and their paired differences are printed
(mean and sd over seeds).

    python bench/bench_run_seeds.py --seeds 0 1 2 --candidate promotion_timing=seasonal
    python bench/bench_run_seeds.py --seeds 0 1 2 --baseline prices=observed --candidate prices=hmm
    python bench/bench_run_seeds.py --seeds 0 1 2 3 --candidate-models runs/week/models

Settings are keyword arguments of ``simulate_from_folder`` (``prices``,
``promotion_timing``, ``mode``); ``--candidate-models`` gives the candidate
other fitted artifacts (a refit, a plug-in added). Outputs go under ``--out`` (default
``runs/seeds``, git-ignored) and are reused when present with the same
arguments (the simulator resumes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _setting(text: list[str]) -> dict:
    out = {}
    for item in text:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"settings are key=value, got {item!r}")
        out[key] = value
    return out


def score(data, models: str, out: Path, seed: int, setting: dict) -> dict:
    """Overall, tier and per-metric KS of one simulated panel of the run's setting."""
    from bayes_retail.data import load_side
    from bayes_retail.metrics import compute_suite
    from bayes_retail.simulate.run import simulate_from_folder

    manifest = simulate_from_folder(models, data, out, customers=len(data.households), draws=1, seed=seed,
                                    **setting)
    side = load_side(out, name="synthetic", reference=data, draw=manifest["spec"]["draws"][0])
    result = compute_suite(data.metric_tables("real"), side, seed=seed)
    return {"overall": result.overall, **{name: m.ks for name, m in result.metrics.items()}}


def summarise(rows: list[dict]) -> list[str]:
    """Per quantity: baseline and candidate means, paired difference mean and sd over seeds."""
    names = [k for k in rows[0]["baseline"]]
    lines = [f"{'':22}{'baseline':>10}{'candidate':>11}{'diff mean':>11}{'diff sd':>9}"]
    for name in names:
        a = np.array([r["baseline"][name] for r in rows])
        b = np.array([r["candidate"][name] for r in rows])
        d = b - a
        lines.append(f"{name:22}{a.mean():>10.4f}{b.mean():>11.4f}{d.mean():>+11.4f}"
                     f"{(d.std(ddof=1) if d.size > 1 else float('nan')):>9.4f}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--baseline", nargs="*", default=[], help="key=value settings of the baseline (default: run's)")
    p.add_argument("--candidate", nargs="*", default=[], help="key=value settings of the candidate")
    p.add_argument("--models", default="models")
    p.add_argument("--candidate-models", default=None, help="the candidate's fitted artifacts (default: --models)")
    p.add_argument("--out", default="runs/seeds")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from bayes_retail.data import load_data

    data = load_data()
    settings = {"baseline": _setting(args.baseline), "candidate": _setting(args.candidate)}
    folders = {"baseline": args.models, "candidate": args.candidate_models or args.models}
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for side, setting in settings.items():
            tag = "-".join(f"{k}_{v}" for k, v in sorted(setting.items())) or "run"
            if folders[side] != args.models:
                tag += "-" + Path(folders[side]).as_posix().strip("/").replace("/", "_")
            row[side] = score(data, folders[side], Path(args.out) / f"{tag}-seed{seed}", seed, setting)
        rows.append(row)
        print(f"seed {seed}: overall {row['baseline']['overall']:.4f} -> {row['candidate']['overall']:.4f}", flush=True)
    print("\n".join(summarise(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "models": folders, "seeds": rows}, indent=1))


if __name__ == "__main__":
    main()
