"""Evaluate a PyMC model's expressions at a random point of its unconstrained space (aggregation tests)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def random_point(model: pm.Model, rng: np.random.Generator, sd: float) -> dict[str, np.ndarray]:
    """Normal(0, sd) values for every value variable (transformed space)."""
    return {v.name: rng.normal(0, sd, model.initial_point()[v.name].shape) for v in model.value_vars}


def evaluate(model: pm.Model, point: dict[str, np.ndarray], expr):
    """The value of ``expr`` (written in the model's random variables) at ``point``."""
    expr = model.replace_rvs_by_values([expr])[0]
    return model.compile_fn(expr, inputs=model.value_vars, on_unused_input="ignore")(point)


def potential_sum(model: pm.Model, point: dict[str, np.ndarray]) -> float:
    """Sum of the model's potentials (its aggregated log-likelihoods) at ``point``."""
    return evaluate(model, point, pt.add(*model.potentials))
