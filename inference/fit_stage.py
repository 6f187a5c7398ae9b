"""Fit one Bayesian shopper-model stage and write it to models/<stage>/.

    python inference/fit_stage.py --stage visit|category|product|quantity [--config default] [--data PATH]
                                  [--weeks 2-26,37-53] [--method nutpie] [--seed 1] [--out models]

The same as `bayes-retail fit --stage STAGE`, written out as a script.
"""

import argparse

import bayes_retail as br
from bayes_retail.config import load_config
from bayes_retail.models.stage import run_category_stage, run_product_stage, run_quantity_stage, run_visit_stage

RUNNERS = {
    "visit": run_visit_stage,
    "category": run_category_stage,
    "product": run_product_stage,
    "quantity": run_quantity_stage,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=sorted(RUNNERS))
    parser.add_argument("--config", default="default", help="inference/configs/NAME.toml or a path")
    parser.add_argument("--data", default=None, help="data source (default: the embedded data)")
    parser.add_argument("--weeks", default=None, help="score only these weeks (default: the config's)")
    parser.add_argument("--method", default=None, help="nutpie (default), pymc, numpyro, advi, pathfinder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="models")
    args = parser.parse_args()

    data = br.load_data(args.data, progress=print)
    summary = RUNNERS[args.stage](
        data, config=load_config(args.config), seed=args.seed, out=args.out, method=args.method,
        weeks=args.weeks, progress=print,
    )
    print(summary["convergence"])


if __name__ == "__main__":
    main()
