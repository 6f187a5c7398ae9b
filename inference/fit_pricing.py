"""Fit the pricing HMMs (base price, promotion, calendar) and write them to models/.

    python inference/fit_pricing.py [--config default] [--data PATH] [--seed 1] [--out models]

The same as `bayes-retail fit --stage pricing`, written out as a script.
"""

import argparse

import bayes_retail as br
from bayes_retail.config import load_config, stage_config
from bayes_retail.pricing import PricingConfig
from bayes_retail.pricing.stage import format_summary, run_pricing_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="inference/configs/NAME.toml or a path")
    parser.add_argument("--data", default=None, help="data source (default: the embedded data)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="models")
    args = parser.parse_args()

    config = load_config(args.config)
    data = br.load_data(args.data, progress=print)
    summary = run_pricing_stage(
        data,
        config=stage_config(config, "pricing", PricingConfig),
        seed=args.seed,
        out=args.out,
        config_name=config["name"],
        progress=print,
    )
    print(format_summary(summary))


if __name__ == "__main__":
    main()
