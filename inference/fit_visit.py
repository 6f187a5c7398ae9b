"""Fit the visit-and-trips stage and write it to models/visit/.

    python inference/fit_visit.py [--config default] [--data PATH] [--method nutpie] [--seed 1] [--out models]

The same as `bayes-retail fit --stage visit`, written out as a script.
"""

import argparse

import bayes_retail as br
from bayes_retail.config import load_config
from bayes_retail.models.stage import run_visit_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="inference/configs/NAME.toml or a path")
    parser.add_argument("--data", default=None, help="data source (default: the embedded data)")
    parser.add_argument("--method", default=None, help="nutpie (default), pymc, numpyro, advi, pathfinder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="models")
    args = parser.parse_args()

    data = br.load_data(args.data, progress=print)
    summary = run_visit_stage(
        data, config=load_config(args.config), seed=args.seed, out=args.out, method=args.method, progress=print
    )
    print(summary["convergence"])


if __name__ == "__main__":
    main()
