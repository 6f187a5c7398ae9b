"""Partial centring: one hierarchical vector, centred where its groups are data-rich and non-centred elsewhere.

Shared by the stages whose partially pooled vectors mix data-rich and
data-poor groups (DESIGN.md §2: centred or non-centred chosen by how much
data each group has).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def partially_centred(name: str, mean, sigma, rich: np.ndarray, labels: np.ndarray, dim: str, shift=None,
                      start: np.ndarray | None = None):
    """``x_k ~ N(mean_k, sigma)`` over ``dim``: centred where ``rich``, non-centred elsewhere.

    Data-rich groups mix best centred, data-poor ones non-centred (DESIGN.md
    §2). The free variables are ``{name}_centred`` and ``z_{name}`` (dims
    ``{name}_{dim}_centred`` and ``{name}_{dim}_noncentred``); the whole
    vector is the Deterministic ``name`` (dims ``dim``). ``mean`` is indexable
    by position (a vector over ``dim``). ``shift`` (optional, a vector over
    ``dim``) makes the centred piece sample ``x_k + shift_k`` instead (the same
    model): with ``shift = kappa_c * mean depth`` an item intercept is sampled
    at its own mean depth, nearly independent of ``kappa_c``. ``start``
    (optional, a vector over ``dim``) is where the centred piece starts
    (the non-centred one starts at ``mean``).
    """
    model = pm.modelcontext(None)
    on, off = np.flatnonzero(rich), np.flatnonzero(~rich)
    # dims named after the variable: two vectors over one dim split it differently
    on_dim, off_dim = f"{name}_{dim}_centred", f"{name}_{dim}_noncentred"
    model.add_coord(on_dim, labels[on])
    model.add_coord(off_dim, labels[off])
    centred = noncentred = None
    if on.size:  # no empty free variables: every group on one side is a valid split
        offset = 0.0 if shift is None else shift[on]
        initval = None if start is None else start[on] + offset
        centred = pm.Normal(f"{name}_centred", mean[on] + offset, sigma, dims=on_dim, initval=initval) - offset
    if off.size:
        noncentred = mean[off] + sigma * pm.Normal(f"z_{name}", 0.0, 1.0, dims=off_dim)
    return pm.Deterministic(name, joined(rich, centred, noncentred), dims=dim)


def joined(rich: np.ndarray, centred, noncentred):
    """The whole vector, in group order, from its ``centred`` (where ``rich``) and ``noncentred`` pieces.

    A piece is ``None`` when its side of the split is empty.
    """
    on, off = np.flatnonzero(rich), np.flatnonzero(~rich)
    pieces = [piece for piece in (centred, noncentred) if piece is not None]
    return pt.concatenate(pieces)[np.argsort(np.concatenate([on, off]))]
