"""The "ever" state memory's step (numba), shared by the product stage and the simulator without importing PyMC."""

from __future__ import annotations

import numba
import numpy as np

#: Most items an ``"ever"`` state holds (also the simulator's state capacity).
EVER_STATE_ITEMS = 16
#: What the product stage's state term remembers (``[product] state``): the previous occasion's items, every
#: earlier item (the most recent ones), or every earlier item with a second coefficient for those of the
#: previous occasion.
STATE_MEMORIES = ("last", "ever", "both")


@numba.njit(cache=True)
def ever_state_step(current, n_current, bought, following):
    """``product.next_ever_state`` in numba: writes the state after buying ``bought`` into ``following``
    (capacity ``following.size``) from ``current[:n_current]`` and returns its length.

    The product stage's pair builder and the simulator's kernel both step states with it.
    """
    bought = np.sort(bought)
    n_next = min(bought.size, following.size)
    following[:n_next] = bought[:n_next]
    for r in range(n_current):
        if n_next == following.size:
            break
        if not np.any(bought == current[r]):
            following[n_next] = current[r]
            n_next += 1
    return n_next
