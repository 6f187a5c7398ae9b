"""Counter-based random streams: one per (customer, posterior draw).

Every synthetic customer gets a 64-bit key from numpy's ``SeedSequence``
(``SeedSequence(seed, spawn_key=(draw, customer))``, the same child that
``SeedSequence(seed).spawn`` would hand out). A uniform is then a pure
function of that key and a *counter* naming what it is for (week, purpose,
category or item, slot). Because no state is carried from one number to the
next, a customer's numbers do not depend on which other customers share its
batch, on the batch size or on the worker that runs it, and the simulator can
draw them inside vectorised or compiled loops.

The hash is two rounds of the splitmix64 finaliser (a bijective 64-bit mixer
with full avalanche), applied to ``key ^ counter`` and then to the result plus
the counter. It is not a cryptographic generator; the tests check uniformity
and independence across counters, keys and purposes at the sample sizes the
simulator uses.
"""

from __future__ import annotations

import numba
import numpy as np

# purposes: the counter's top bits say what a number is for, so two uses never share a number
# (BASKET_SHOCK: index 0 is the household-week shock, index 1 + t trip t's weight, 2^23 the deal-hunting
# week's point; TRIP_OF_LINE: index c
# is category c's items, 2^23 + t the line an empty trip t takes)
(VISIT, TRIPS, CATEGORY, ITEM_COUNT, ITEM, QUANTITY, TAIL, TRIP_OF_CATEGORY, TRIP_OF_LINE,
 CLASS, ENTRY, TEMPLATE, POPULATION, TAIL_SIZE, BASKET_SHOCK, TAIL_REPEAT) = range(16)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_M53 = 2.0**-53


@numba.njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(inline="always", cache=True)
def counter(week, purpose, index, slot):
    """Pack (week < 2^8, purpose < 2^4, index < 2^24, slot < 2^28) into one 64-bit counter."""
    return (
        (np.uint64(week) << np.uint64(56))
        | (np.uint64(purpose) << np.uint64(52))
        | (np.uint64(index) << np.uint64(28))
        | np.uint64(slot)
    )


@numba.njit(inline="always", cache=True)
def uniform(key, week, purpose, index, slot):
    """A uniform in (0, 1) for ``key`` at the given counter (never exactly 0 or 1)."""
    c = counter(week, purpose, index, slot)
    z = _mix(_mix(key ^ c) + c * _GOLDEN)
    return (np.float64(z >> _S11) + 0.5) * _TWO_M53


@numba.njit(cache=True)
def uniforms(keys, week, purpose, index, slot):
    """``(n,)`` uniforms: one per key at one counter."""
    out = np.empty(keys.size)
    for i in range(keys.size):
        out[i] = uniform(keys[i], week, purpose, index, slot)
    return out


def customer_keys(seed: int, draw: int, customers: np.ndarray) -> np.ndarray:
    """``(n,)`` uint64 stream keys of the given customers (global indices) for one posterior draw.

    Parameters
    ----------
    seed
        The run's seed (a non-negative integer).
    draw
        Index of the posterior draw the customers are simulated under.
    customers
        Global customer indices (not positions within a batch).
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    customers = np.asarray(customers, dtype=np.int64)
    if customers.size and customers.min() < 0:
        raise ValueError("customer indices must be non-negative")
    return np.array(
        [np.random.SeedSequence(int(seed), spawn_key=(int(draw), int(c))).generate_state(1, np.uint64)[0] for c in customers],
        dtype=np.uint64,
    )
