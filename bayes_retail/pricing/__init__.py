"""Separated HMM pricing (DESIGN.md §3, docs/pricing.md): base-price and promotion regimes per category.

These are maximum-likelihood point fits (with a weak prior on transitions):
the simulator does not propagate pricing uncertainty.
"""

from bayes_retail.pricing.artifacts import load_pricing, save_pricing
from bayes_retail.pricing.model import CalendarHMM, HMMSet, PricingConfig, PricingModel, PricingPanel, fit_pricing
from bayes_retail.pricing.validate import PricingValidation, observed_panel, validate_prices

__all__ = [
    "CalendarHMM",
    "HMMSet",
    "PricingConfig",
    "PricingModel",
    "PricingPanel",
    "PricingValidation",
    "fit_pricing",
    "load_pricing",
    "observed_panel",
    "save_pricing",
    "validate_prices",
]
