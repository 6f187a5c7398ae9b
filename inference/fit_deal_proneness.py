"""Add deal proneness to an already fitted product stage in models/product/, without sampling again.

    python inference/fit_deal_proneness.py [--config default] [--points N] [--week-points W] [--data PATH]
                                           [--out models]

For each stored posterior draw, the plug-in sd of a household deviation of the
discount coefficient and, with week points, of a household-week one
(docs/models/product.md, "Deal proneness", "Deal-hunting weeks"); rewrites the
product folder atomically with the class membership and elasticities of the
crossed classes. What `bayes-retail fit --stage product` does itself when the
configuration's `[product] deal_points` is >= 2 (and `deal_week_points`).
"""

import argparse

import bayes_retail as br
from bayes_retail.config import load_config
from bayes_retail.models.stage import add_deal_proneness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="inference/configs/NAME.toml or a path")
    parser.add_argument("--points", type=int, default=None, help="grid points (default: the config's deal_points)")
    parser.add_argument("--week-points", type=int, default=None,
                        help="points of the deal-hunting week deviation (default: the config's deal_week_points; 0: none)")
    parser.add_argument("--data", default=None, help="data source (default: the embedded data)")
    parser.add_argument("--out", default="models")
    args = parser.parse_args()

    data = br.load_data(args.data, progress=print)
    print(add_deal_proneness(data, out=args.out, config=load_config(args.config), n_points=args.points,
                             week_points=args.week_points, progress=print))


if __name__ == "__main__":
    main()
