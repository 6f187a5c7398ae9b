"""Partial centring: one hierarchical vector, centred where its groups are data-rich and non-centred elsewhere.

Shared by the stages whose partially pooled vectors mix data-rich and
data-poor groups (DESIGN.md §2: centred or non-centred chosen by how much
data each group has).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def partially_centred(name: str, mean, sigma, rich: np.ndarray, labels: np.ndarray, dim: str, shift=None):
    """``x_k ~ N(mean_k, sigma)`` over ``dim``: centred where ``rich``, non-centred elsewhere.

    Data-rich groups mix best centred, data-poor ones non-centred (DESIGN.md
    §2). The free variables are ``{name}_centred`` and ``z_{name}`` (dims
    ``{name}_{dim}_centred`` and ``{name}_{dim}_noncentred``); the whole
    vector is the Deterministic ``name`` (dims ``dim``). ``mean`` is indexable
    by position (a vector over ``dim``). ``shift`` (optional, a vector over
    ``dim``) makes the centred piece sample ``x_k + shift_k`` instead (the same
    model): with ``shift = kappa_c * mean depth`` an item intercept is sampled
    at its own mean depth, nearly independent of ``kappa_c``.
    """
    model = pm.modelcontext(None)
    on, off = np.flatnonzero(rich), np.flatnonzero(~rich)
    # dims named after the variable: two vectors over one dim split it differently
    on_dim, off_dim = f"{name}_{dim}_centred", f"{name}_{dim}_noncentred"
    model.add_coord(on_dim, labels[on])
    model.add_coord(off_dim, labels[off])
    pieces = []
    if on.size:  # no empty free variables: every group on one side is a valid split
        offset = 0.0 if shift is None else shift[on]
        pieces.append(pm.Normal(f"{name}_centred", mean[on] + offset, sigma, dims=on_dim) - offset)
    if off.size:
        pieces.append(mean[off] + sigma * pm.Normal(f"z_{name}", 0.0, 1.0, dims=off_dim))
    order = np.argsort(np.concatenate([on, off]))
    return pm.Deterministic(name, pt.concatenate(pieces)[order], dims=dim)
