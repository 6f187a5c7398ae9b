"""Compiled week steps of the simulator: the four stages' generative processes, one week at a time.

Each step draws exactly what its stage's forward sampler in
``bayes_retail.models`` draws (the tests compare their distributions); the
difference is speed and the random numbers: every number comes from the
customer's counter-based stream (:mod:`bayes_retail.simulate.streams`), so a
customer's history does not depend on its batch. Inverse-CDF draws use one
uniform each, so the counters stay simple. Every kernel releases the GIL: a
thread can simulate one draw while another scores the previous one.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from bayes_retail.models._state import EVER_STATE_ITEMS, STATE_MEMORIES, ever_state_step
from bayes_retail.simulate.inputs import PREVIOUS, STATE
from bayes_retail.simulate.streams import (
    BASKET_SHOCK,
    CATEGORY,
    ITEM,
    ITEM_COUNT,
    QUANTITY,
    TAIL,
    TAIL_REPEAT,
    TAIL_SIZE,
    TRIP_OF_CATEGORY,
    TRIP_OF_LINE,
    TRIPS,
    VISIT,
    uniform,
)

#: Most items a customer's state remembers per category (the last occasion's set, or with an "ever" state its
#: most recent distinct items: the product stage's capacity, so both keep the same ones).
MAX_STATE_ITEMS = EVER_STATE_ITEMS
#: Draws per extra tail product before taking the first one not yet in the occasion (both give distinct products).
MAX_TAIL_ATTEMPTS = 64
#: Tail products a customer remembers per category (its previous occasion's, in draw order; 1.19 on average).
MAX_TAIL_MEMORY = 4
#: Slot offsets of the uniforms that accept a proposed tail product and that draw one by inversion.
_TAIL_ACCEPT_SLOT = 1 << 24
_TAIL_EXPLICIT_SLOT = 1 << 25
#: Slot offset of the uniform that picks which remembered tail product is bought again.
_REMEMBERED_SLOT = 1 << 20
#: Most trips a week can hold (a category's trips are a bit mask).
MAX_TRIPS = 62
#: Rejection attempts per item before drawing it from the explicit conditional (both exact).
MAX_ATTEMPTS = 64
#: State memories as the kernel reads them: their positions in ``STATE_MEMORIES``.
MEMORY_CODE = {memory: code for code, memory in enumerate(STATE_MEMORIES)}
LAST_STATE, EVER_STATE, BOTH_STATE = (MEMORY_CODE[m] for m in ("last", "ever", "both"))


@numba.njit(cache=True, nogil=True)
def poisson_inverse(u, rate):
    """Smallest k with P(K <= k) >= u for K ~ Poisson(rate)."""
    p = math.exp(-rate)
    cdf, k = p, 0
    while cdf < u and k < 100_000:
        k += 1
        p *= rate / k
        cdf += p
        if p == 0.0 and cdf < u:  # the remaining tail underflowed: u sits in rounding error
            break
    return k


@numba.njit(cache=True, nogil=True)
def negative_binomial_inverse(u, mean, alpha):
    """Smallest k with P(K <= k) >= u for K ~ NB(mean, alpha) (variance mean + mean^2 / alpha)."""
    q = mean / (alpha + mean)
    p = math.exp(alpha * math.log(alpha / (alpha + mean)))
    cdf, k = p, 0
    while cdf < u and k < 100_000:
        p *= (k + alpha) / (k + 1) * q
        k += 1
        cdf += p
        if p == 0.0 and cdf < u:
            break
    return k


@numba.njit(cache=True, nogil=True)
def visit_week(keys, week, visit, signal_w, previous, entry_week, rho, week_effect):
    """``(n,)`` trips this week: a visit with logit ``a + g signal + rho last + s_w``, then ``1 + Poisson(exp(b))`` trips.

    The entry week is always a visit; earlier weeks are empty.
    """
    n = keys.size
    trips = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if week < entry_week[i]:
            continue
        if week > entry_week[i]:
            eta = visit[i, 0] + visit[i, 1] * signal_w[i] + rho * previous[i] + week_effect
            if uniform(keys[i], week, VISIT, 0, 0) >= 1.0 / (1.0 + math.exp(-eta)):
                continue
        extra = poisson_inverse(uniform(keys[i], week, TRIPS, 0, 0), math.exp(visit[i, 2]))
        trips[i] = min(1 + extra, MAX_TRIPS)
    return trips


@numba.njit(cache=True, nogil=True)
def category_week(keys, week, trips, preference_rate, category_rate, customer_class, shock_sigma=0.0,
                  trip_weight_sd=0.0, trips_elasticity=1.0, shock_loading=np.zeros(0)):
    """Category purchases of the week's visiting customers, with the trips that bought.

    A trip buys in category c with probability ``p = 1 - exp(-exp(eta))``; the
    week buys if any of its ``n`` trips does (``1 - exp(-n exp(eta))``, the
    fitted cloglog). Given that it does, the first buying trip follows the
    truncated geometric law and each later trip buys with ``p``: the trips'
    joint law given at least one purchase. ``preference_rate`` is
    ``exp(u_h + f_h . l_c)`` ``(n, C)`` and ``category_rate`` the week's
    ``exp(b_c + s_w + d_cw + k_c CV_kcw)`` ``(K, C)`` for each product class
    (rows equal without a category value), read at the customer's
    ``customer_class``: their product is ``exp(eta)`` (exponentials taken once
    per batch and once per week, not per cell). ``shock_sigma > 0`` multiplies
    every rate of a customer's week by ``exp(e)``, ``e ~ N(0, shock_sigma)``
    (the category stage's household-week effect; Box-Muller from two
    uniforms); a non-empty ``(C,)`` ``shock_loading`` makes category c's
    factor ``exp(lambda_c e)``. ``trip_weight_sd > 0`` gives the week's trips sizes: weights
    ``w_t`` proportional to ``exp(e_t)``, ``e_t ~ N(0, trip_weight_sd)``,
    scaled to sum to ``n``; trip t buys with ``1 - exp(-w_t exp(eta))``, so
    the week's probability stays the fitted ``1 - exp(-n exp(eta))`` and a
    heavy trip (a big shop) buys in many categories at once, a light one (a
    top-up) in few. ``trips_elasticity`` ``gamma`` makes the week's exposure
    ``n^gamma`` (each trip's rate times ``n^(gamma - 1)``; the category stage's
    ``trips_elasticity``). Returns occasion customer, category and trip bit mask.
    """
    n, n_c = preference_rate.shape
    total = 0
    for i in range(n):
        if trips[i] > 0:
            total += n_c
    occ_customer = np.empty(total, dtype=np.int64)
    occ_category = np.empty(total, dtype=np.int64)
    occ_trips = np.empty(total, dtype=np.int64)
    o = 0
    weight = np.ones(MAX_TRIPS)
    cumulative = np.empty(MAX_TRIPS)
    loaded = shock_loading.size > 0
    for i in range(n):
        m = trips[i]
        if m == 0:
            continue
        sized = trip_weight_sd > 0.0 and m > 1
        per_trip = 1.0 if trips_elasticity == 1.0 else math.exp((trips_elasticity - 1.0) * math.log(m))
        if sized:
            _trip_weights(keys[i], week, m, trip_weight_sd, weight, cumulative)
        shock, e = 1.0, 0.0
        if shock_sigma > 0.0:
            e = _normal(keys[i], week, BASKET_SHOCK, 0, shock_sigma)
            shock = math.exp(e)
        for c in range(n_c):
            if loaded:
                shock = math.exp(e * shock_loading[c])
            rate = category_rate[customer_class[i], c] * preference_rate[i, c] * shock * per_trip
            p_week = -math.expm1(-m * rate)
            if uniform(keys[i], week, CATEGORY, c, 0) >= p_week:
                continue
            p_trip = -math.expm1(-rate)
            mask = np.int64(0)
            if p_trip >= 1.0 or m == 1:
                first = 0
            elif sized:
                # no purchase in trips 0..t has probability exp(-rate W_t) (W: running weights), so given one
                # exists the first is the first t with W_t > -log(1 - v) / rate, v uniform on (0, p_week)
                x = -math.log1p(-uniform(keys[i], week, TRIP_OF_CATEGORY, c, 0) * p_week) / rate
                first = 0
                while first < m - 1 and cumulative[first] <= x:
                    first += 1
            else:
                # inverse CDF of the first success among m trips, given one exists
                v = uniform(keys[i], week, TRIP_OF_CATEGORY, c, 0) * p_week
                first = min(int(math.log1p(-v) / math.log1p(-p_trip)), m - 1)
            mask |= np.int64(1) << np.int64(first)
            for j in range(first + 1, m):
                p_j = -math.expm1(-rate * weight[j]) if sized else p_trip
                if uniform(keys[i], week, TRIP_OF_CATEGORY, c, 1 + j) < p_j:
                    mask |= np.int64(1) << np.int64(j)
            occ_customer[o], occ_category[o], occ_trips[o] = i, c, mask
            o += 1
    return occ_customer[:o], occ_category[:o], occ_trips[:o]


@numba.njit(cache=True, nogil=True)
def _normal(key, week, purpose, index, sd):
    """A ``N(0, sd)`` draw by Box-Muller from the uniforms at slots 0 and 1 of ``(week, purpose, index)``."""
    radius = math.sqrt(-2.0 * math.log(uniform(key, week, purpose, index, 0)))
    return sd * radius * math.cos(2.0 * math.pi * uniform(key, week, purpose, index, 1))


@numba.njit(cache=True, nogil=True)
def _trip_weights(key, week, m, sd, weight, cumulative):
    """Fill ``weight[:m]`` (log-normal with log sd ``sd``, summing to ``m``) and their running sums ``cumulative``."""
    total = 0.0
    for t in range(m):
        # the basket-shock purpose, index 0 is the household-week shock; trip t's weight uses index 1 + t
        weight[t] = math.exp(_normal(key, week, BASKET_SHOCK, 1 + t, sd))
        total += weight[t]
    run = 0.0
    for t in range(m):
        weight[t] *= m / total
        run += weight[t]
        cumulative[t] = run
    cumulative[m - 1] = m  # the running sum ends at n exactly: the week's probability is the fitted one


@numba.njit(cache=True, nogil=True)
def _class_category_row(common, price, discount, theta_price, theta_discount, static, available, k, s, e, out):
    """Utilities of items ``s:e`` for class ``k`` into ``out[s:e]`` (``-inf`` off the shelf); returns their maximum.

    The sum is formed in :func:`~bayes_retail.simulate.engine.class_utilities_week`'s order.
    """
    top = -np.inf
    for j in range(s, e):
        u = common[j] + theta_price[k] * price[j] + theta_discount[k] * discount[j] + static[k, j]
        if not available[j]:
            u = -np.inf
        out[j] = u
        top = max(top, u)
    return top


@numba.njit(cache=True, nogil=True)
def _class_category_weights(common, price, discount, theta_price, theta_discount, static, available, k, s, e, out):
    """``exp(v_kj - max)`` of items ``s:e`` for class ``k`` into ``out[s:e]``; returns the category value
    ``log sum_j exp(v_kj)`` and the weights' sum."""
    top = _class_category_row(common, price, discount, theta_price, theta_discount, static, available, k, s, e, out)
    z = 0.0
    for j in range(s, e):
        out[j] = math.exp(out[j] - top)
        z += out[j]
    return top + math.log(z), z


@numba.njit(cache=True, nogil=True)
def week_choice_tables(common, price, discount, theta_price, theta_discount, static, available, category_start,
                       category_items, cum, value):
    """One week's within-category running sums of the logit probabilities ``(K, G)`` and category values ``(K, C)``.

    The class utilities are ``common_j + theta_price_k price_j +
    theta_discount_k discount_j + static_kj`` (items not ``available``:
    ``-inf``); ``value`` is ``log sum_j exp(v_kj)`` over each category's items.
    Only the running sums are stored (in ``cum``'s precision, single in the
    simulator): the probabilities are their differences (:func:`_probability`),
    so the law an item is drawn from and the one its state weight reads agree.
    Each category's sum ends at exactly 1.
    """
    row = np.empty(static.shape[1])
    for k in range(static.shape[0]):
        for c in range(category_start.size):
            s, e = category_start[c], category_start[c] + category_items[c]
            value[k, c], z = _class_category_weights(common, price, discount, theta_price, theta_discount, static,
                                                     available, k, s, e, row)
            run = 0.0
            for j in range(s, e):
                run += row[j] / z
                cum[k, j] = run
            cum[k, e - 1] = 1.0


@numba.njit(cache=True, nogil=True)
def _probability(cum_k, j, start):
    """Item ``j``'s probability from its category's running sums (the category starts at ``start``)."""
    return float(cum_k[j]) - (float(cum_k[j - 1]) if j > start else 0.0)


@numba.njit(cache=True, nogil=True)
def week_category_values(common, price, discount, theta_price, theta_discount, static, available, category_start,
                         category_items, value):
    """The category values of :func:`week_choice_tables` alone, into ``value`` ``(K, C)``."""
    row = np.empty(static.shape[1])
    for k in range(static.shape[0]):
        for c in range(category_start.size):
            s, e = category_start[c], category_start[c] + category_items[c]
            value[k, c], _ = _class_category_weights(common, price, discount, theta_price, theta_discount, static,
                                                     available, k, s, e, row)


@numba.njit(cache=True, nogil=True)
def item_counts(keys, week, occ_customer, occ_category, log_extra_rate, category_items):
    """``(O,)`` distinct items per occasion: ``1 + Poisson(exp(log_extra_rate_c))``, capped at ``category_items[c]``.

    ``category_items``: the week's items on the shelf per category (the choice-set size when every item is).
    """
    out = np.empty(occ_customer.size, dtype=np.int64)
    for o in range(occ_customer.size):
        c = occ_category[o]
        u = uniform(keys[occ_customer[o]], week, ITEM_COUNT, c, 0)
        out[o] = min(1 + poisson_inverse(u, math.exp(log_extra_rate[c])), category_items[c])
    return out


@numba.njit(cache=True, nogil=True)
def _search(cum, start, end, x):
    """First index j in [start, end) with cum[j] >= x."""
    lo, hi = start, end - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] >= x:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, nogil=True)
def _member(j, items, n):
    for r in range(n):
        if items[r] == j:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _state_boost(r, boost, boost_previous, n_previous):
    """``exp`` of the state term of the state's ``r``-th item (the first ``n_previous``: the previous occasion's)."""
    return boost_previous if r < n_previous else boost


@numba.njit(cache=True, nogil=True)
def _item_boost(j, last, n_last, boost, boost_previous, n_previous):
    """The state factor of item ``j``: 1 outside the state."""
    for r in range(n_last):
        if last[r] == j:
            return _state_boost(r, boost, boost_previous, n_previous)
    return 1.0


@numba.njit(cache=True, nogil=True)
def _draw_item(key, week, c, slot, cum_k, start, end, lam, lam_previous, last, n_last, n_previous, chosen, n_chosen):
    """One item from the logit with the state term added to the state's items, excluding ``chosen``.

    ``p'_j`` is proportional to ``p_j b_j``: ``b_j = exp(lam)`` for a state
    item, ``exp(lam + lam_previous)`` for one of the first ``n_previous`` (the
    previous occasion's), 1 otherwise. Proposals come from the base logit plus
    extra mass ``p_j (max(b_j, 1) - 1)`` on the state items (one uniform picks
    either) and are kept with probability ``min(b_j, 1)``: for a single
    ``lam >= 0`` every proposal is kept, for ``lam < 0`` the extra mass is 0.
    Draws of an already chosen item are rejected, which leaves exactly the
    sequential without-replacement law; after ``MAX_ATTEMPTS`` the item is
    drawn from that law written out.
    """
    boost = math.exp(lam)
    boost_previous = math.exp(lam + lam_previous)
    extra = 0.0
    for r in range(n_last):
        extra += _probability(cum_k, last[r], start) * (max(_state_boost(r, boost, boost_previous, n_previous), 1.0) - 1.0)
    base = slot * 2 * MAX_ATTEMPTS
    for attempt in range(MAX_ATTEMPTS):
        u = uniform(key, week, ITEM, c, base + 2 * attempt)
        x = u * (1.0 + extra)
        if x < 1.0:
            j = _search(cum_k, start, end, x)
        else:
            x -= 1.0
            j = last[n_last - 1]
            run = 0.0
            for r in range(n_last):
                run += _probability(cum_k, last[r], start) * (max(_state_boost(r, boost, boost_previous, n_previous), 1.0) - 1.0)
                if run >= x:
                    j = last[r]
                    break
        b = _item_boost(j, last, n_last, boost, boost_previous, n_previous)
        if b < 1.0 and uniform(key, week, ITEM, c, base + 2 * attempt + 1) >= b:
            continue
        if not _member(j, chosen, n_chosen):
            return j
    # explicit conditional law over the items not yet chosen
    total = 0.0
    for j in range(start, end):
        if not _member(j, chosen, n_chosen):
            total += _probability(cum_k, j, start) * _item_boost(j, last, n_last, boost, boost_previous, n_previous)
    x = uniform(key, week, ITEM, c, base + 2 * MAX_ATTEMPTS - 1) * total
    run, pick = 0.0, -1
    for j in range(start, end):
        if not _member(j, chosen, n_chosen):
            run += _probability(cum_k, j, start) * _item_boost(j, last, n_last, boost, boost_previous, n_previous)
            pick = j
            if run >= x:
                break
    return pick


@numba.njit(cache=True, nogil=True)
def _shifted_cumulative(cum_k, discount, shift, start, end, weight, out_cum):
    """Running sums of the probabilities behind ``cum_k`` reweighted by ``exp(shift * discount_j)``, on ``[start, end)``.

    ``weight`` is double-precision scratch; ``out_cum`` has ``cum_k``'s type.
    """
    z = 0.0
    for j in range(start, end):
        weight[j] = _probability(cum_k, j, start) * math.exp(shift * discount[j])
        z += weight[j]
    run = 0.0
    for j in range(start, end):
        run += weight[j] / z
        out_cum[j] = run
    out_cum[end - 1] = 1.0


@numba.njit(cache=True, nogil=True)
def deal_week_shifts(keys, week, sd, locations):
    """``(n,)`` each customer's deal-hunting deviation this week: ``sd`` times one of ``locations``, uniformly.

    The product stage's household-week deviation of the discount coefficient
    (:mod:`bayes_retail.models.deal`), drawn on the grid it was fitted on.
    """
    out = np.empty(keys.size)
    n_points = locations.size
    for i in range(keys.size):
        g = min(int(uniform(keys[i], week, BASKET_SHOCK, DEAL_WEEK_INDEX, 0) * n_points), n_points - 1)
        out[i] = sd * locations[g]
    return out


@numba.njit(cache=True, nogil=True)
def _update_ever_state(state, state_count, i, c, bought):
    """``state`` (a view, most recent first) steps as the product stage's states do (``ever_state_step``)."""
    old = state[:state_count[i, c]].copy()
    state_count[i, c] = ever_state_step(old, old.size, bought, state)


@numba.njit(cache=True, nogil=True)
def choose_week(
    keys, week, occ_customer, occ_category, occ_trips, counts, line_start,
    customer_class, class_coefficients, cum, category_start, category_items,
    state_items, state_count, previous_count, memory, discount_shift, discount,
):
    """Items of every occasion (sequential logit draws without replacement, with state), and each item's trip.

    Updates ``state_items`` / ``state_count`` (``(n, C, MAX_STATE_ITEMS)`` / ``(n, C)``)
    to each occasion's set (``memory`` ``LAST_STATE``), or to the set followed
    by the earlier state's other items (``EVER_STATE``, ``BOTH_STATE``: most
    recent first, capped; the product stage's ``next_ever_state``), and
    ``previous_count`` ``(n, C)`` to how many of the state's first items the
    occasion bought (``BOTH_STATE`` gives those the ``PREVIOUS``
    coefficient too). ``discount_shift`` ``(n,)`` (the customers' deal-hunting
    deviation this week, :func:`deal_week_shifts`; empty: none) reweights the class's
    probabilities by ``exp(shift * discount_j)`` (``discount`` ``(G,)``, the
    week's discount covariate): the logit with the discount coefficient
    moved by the shift. Returns the line item and trip arrays (lines of
    occasion ``o`` start at ``line_start[o]``).
    """
    n_lines = line_start[-1] if line_start.size else 0
    line_item = np.empty(n_lines, dtype=np.int64)
    line_trip = np.empty(n_lines, dtype=np.int64)
    chosen = np.empty(MAX_STATE_ITEMS + 64, dtype=np.int64)
    shift_weight = np.zeros(cum.shape[1])
    shifted_cum = np.zeros(cum.shape[1], dtype=cum.dtype)
    for o in range(occ_customer.size):
        i, c = occ_customer[o], occ_category[o]
        k = customer_class[i]
        start, end = category_start[c], category_start[c] + category_items[c]
        m = counts[o]
        if chosen.size < m:
            chosen = np.empty(m, dtype=np.int64)
        last = state_items[i, c]
        n_last = state_count[i, c]
        lam_previous = class_coefficients[k, PREVIOUS] if memory == BOTH_STATE else 0.0
        cum_k = cum[k]
        if discount_shift.size and discount_shift[i] != 0.0:
            _shifted_cumulative(cum[k], discount, discount_shift[i], start, end, shift_weight, shifted_cum)
            cum_k = shifted_cum
        for r in range(m):
            chosen[r] = _draw_item(
                keys[i], week, c, r, cum_k, start, end,
                class_coefficients[k, STATE], lam_previous, last, n_last, previous_count[i, c], chosen, r,
            )
        if memory == LAST_STATE:
            keep = min(m, MAX_STATE_ITEMS)
            for r in range(keep):
                state_items[i, c, r] = chosen[r]
            state_count[i, c] = keep
        else:
            _update_ever_state(state_items[i, c], state_count, i, c, chosen[:m])
        previous_count[i, c] = min(m, MAX_STATE_ITEMS)
        # each item goes to one of the trips that bought the category, uniformly
        mask = occ_trips[o]
        bits = 0
        for b in range(MAX_TRIPS):
            if (mask >> b) & 1:
                bits += 1
        for r in range(m):
            line = line_start[o] + r
            line_item[line] = chosen[r]
            pick = int(uniform(keys[i], week, TRIP_OF_LINE, c, r) * bits)
            seen = -1
            for b in range(MAX_TRIPS):
                if (mask >> b) & 1:
                    seen += 1
                    if seen == pick:
                        line_trip[line] = b
                        break
    return line_item, line_trip


#: Index offset of the uniforms that pick a line for an empty trip (above any category index).
_FILL_INDEX = 1 << 23
# BASKET_SHOCK index of the deal-hunting week point (0 is the household-week shock, 1 + t trip t's weight)
DEAL_WEEK_INDEX = 1 << 23


@numba.njit(cache=True, nogil=True)
def fill_empty_trips(keys, week, line_customer, line_trip, trips):
    """Give each trip that bought nothing one line, moved from a trip with two or more; ``line_trip`` in place.

    A real trip always buys something (the visit stage counts baskets), while
    the week's categories and items land on trips at random and can miss one.
    Only the trip labels change, so the week's categories, items and units
    are the fitted ones; a customer-week with fewer lines than trips keeps
    the rest empty. Each moved line is uniform among the donor trips' lines.
    ``line_customer`` must be sorted (lines grouped by customer).
    """
    count = np.zeros(MAX_TRIPS, dtype=np.int64)
    start, n_lines = 0, line_customer.size
    while start < n_lines:
        i = line_customer[start]
        end = start
        while end < n_lines and line_customer[end] == i:
            end += 1
        m = trips[i]
        count[:m] = 0
        for line in range(start, end):
            count[line_trip[line]] += 1
        for t in range(m):
            if count[t] > 0:
                continue
            donors = 0
            for line in range(start, end):
                if count[line_trip[line]] >= 2:
                    donors += 1
            if donors == 0:
                break
            pick = int(uniform(keys[i], week, TRIP_OF_LINE, _FILL_INDEX + t, 0) * donors)
            for line in range(start, end):
                if count[line_trip[line]] >= 2:
                    if pick == 0:
                        count[line_trip[line]] -= 1
                        line_trip[line] = t
                        count[t] = 1
                        break
                    pick -= 1
        start = end


@numba.njit(cache=True, nogil=True)
def tail_line_counts(keys, week, line_customer, line_item, item_product, item_category, tail_count, tail_size_cumprob):
    """Lines each chosen item becomes: 1, or for an "other" item the number of distinct tail products bought.

    That number is drawn from the category's row of ``tail_size_cumprob``
    ``(C, S)`` (cumulative probabilities of 1..S) and capped by its tail
    products; with ``S = 0`` every item is one line.
    """
    n = line_item.size
    out = np.ones(n, dtype=np.int64)
    size = tail_size_cumprob.shape[1]
    if size == 0:
        return out
    for r in range(n):
        g = line_item[r]
        if item_product[g] < 0:
            c = item_category[g]
            drawn = _search(tail_size_cumprob[c], 0, size, uniform(keys[line_customer[r]], week, TAIL_SIZE, g, 0)) + 1
            out[r] = min(drawn, tail_count[c])
    return out


@numba.njit(cache=True, nogil=True)
def _tail_product(key, week, g, slot, start, count, tail_cumshare, tail_product, taken, promotion, promoted):
    """A tail product, distinct from ``taken`` (the occasion's earlier tail lines), by share x promotion weight.

    Product ``p`` has weight ``share_p * exp(promotion * promoted[p])``.
    Drawn by rejection from the shares (a product is kept with probability
    its weight over the largest weight); if every attempt fails, from the
    explicit conditional over the free products. Both are exact.
    """
    top = max(promotion, 0.0)
    for attempt in range(MAX_TAIL_ATTEMPTS):
        at = slot * MAX_TAIL_ATTEMPTS + attempt
        p = tail_product[_search(tail_cumshare, start, start + count, uniform(key, week, TAIL, g, at))]
        if np.any(taken == p):
            continue
        if promotion != 0.0:
            keep = math.exp(promotion * promoted[p] - top)
            if keep < 1.0 and uniform(key, week, TAIL, g, _TAIL_ACCEPT_SLOT + at) >= keep:
                continue
        return p
    return _explicit_tail_product(key, week, g, slot, start, count, tail_cumshare, tail_product, taken, promotion,
                                  promoted)


@numba.njit(inline="always", cache=True)
def _tail_weight(j, start, tail_cumshare, tail_product, promotion, promoted):
    """Row ``j``'s share times its promotion weight over the largest weight (``exp(max(promotion, 0))``)."""
    share = tail_cumshare[j] - (tail_cumshare[j - 1] if j > start else 0.0)
    return share * math.exp(promotion * promoted[tail_product[j]] - max(promotion, 0.0))


@numba.njit(cache=True, nogil=True)
def _explicit_tail_product(key, week, g, slot, start, count, tail_cumshare, tail_product, taken, promotion, promoted):
    """:func:`_tail_product`'s distribution by inversion over the free products (-1 when none is free)."""
    total = 0.0
    first_free = -1
    for j in range(start, start + count):
        if not np.any(taken == tail_product[j]):
            total += _tail_weight(j, start, tail_cumshare, tail_product, promotion, promoted)
            if first_free < 0:
                first_free = tail_product[j]
    if total <= 0.0:  # free products with zero weight only (or none free): the first free one in share order
        return first_free
    u = uniform(key, week, TAIL, g, _TAIL_EXPLICIT_SLOT + slot) * total
    last = -1
    for j in range(start, start + count):
        p = tail_product[j]
        if not np.any(taken == p):
            u -= _tail_weight(j, start, tail_cumshare, tail_product, promotion, promoted)
            last = p
            if u <= 0.0:
                return p
    return last  # rounding left u a hair above 0


@numba.njit(cache=True, nogil=True)
def _remembered_tail_product(key, week, g, slot, repeat, remembered, taken):
    """With probability ``repeat``, one of ``remembered`` not in ``taken`` (uniformly); -1 otherwise or if none is free."""
    if remembered.size == 0 or repeat <= 0.0 or uniform(key, week, TAIL_REPEAT, g, slot) >= repeat:
        return -1
    free = 0
    for p in remembered:
        if not np.any(taken == p):
            free += 1
    if free == 0:
        return -1
    pick = int(uniform(key, week, TAIL_REPEAT, g, _REMEMBERED_SLOT + slot) * free)
    for p in remembered:
        if not np.any(taken == p):
            if pick == 0:
                return p
            pick -= 1
    return -1


@numba.njit(cache=True, nogil=True)
def line_products_and_quantities(
    keys, week, line_customer, line_item, line_slot, item_category, item_product, tail_start, tail_product,
    tail_cumshare, tail_count, depth_w, quantity_intercept, kappa, alpha, basket, tail_repeat, tail_memory,
    tail_memory_count, tail_promotion, promoted_w,
):
    """Each line's product (an "other" item becomes tail products) and quantity; steps the tail memory.

    ``line_slot`` numbers the lines one "other" item became (0, 1, ...; 0 for
    every other line): slot s is a product distinct from the s before it. It
    is, with the category's probability ``tail_repeat[c]``, one of the tail
    products the customer bought on its previous occasion in the category
    (``tail_memory`` / ``tail_memory_count``, ``(n, C, MAX_TAIL_MEMORY)`` /
    ``(n, C)``) still free, and otherwise a tail product by share, weighted
    by ``exp(tail_promotion[c])`` in the weeks it is promoted (``promoted_w``,
    ``(P,)`` 0 / 1 per product row).
    Quantity is ``1 + NB(exp(l_g + kappa_c depth + basket_h), alpha_c)`` with
    the depth of the product actually bought. Afterwards each occasion's tail
    products (none, if it bought no "other") become its customer's memory of
    the category.
    """
    n = line_item.size
    product = np.empty(n, dtype=np.int64)
    quantity = np.empty(n, dtype=np.int64)
    for r in range(n):
        i, g, slot = line_customer[r], line_item[r], line_slot[r]
        c = item_category[g]
        p = item_product[g]
        if p < 0:
            taken = product[r - slot:r]
            p = _remembered_tail_product(keys[i], week, g, slot, tail_repeat[c],
                                         tail_memory[i, c, :tail_memory_count[i, c]], taken)
            if p < 0:
                p = _tail_product(keys[i], week, g, slot, tail_start[c], tail_count[c], tail_cumshare, tail_product,
                                  taken, tail_promotion[c], promoted_w)
        product[r] = p
        mean = math.exp(quantity_intercept[g] + kappa[c] * depth_w[p] + basket[i])
        quantity[r] = 1 + negative_binomial_inverse(uniform(keys[i], week, QUANTITY, g, slot), mean, alpha[c])
    _remember_tail_products(line_customer, line_item, product, item_category, item_product, tail_memory, tail_memory_count)
    return product, quantity


@numba.njit(cache=True, nogil=True)
def _remember_tail_products(line_customer, line_item, product, item_category, item_product, tail_memory, tail_memory_count):
    """Each occasion's tail products (lines of one customer and category are contiguous) replace that memory."""
    prev_i, prev_c = -1, -1
    for r in range(line_item.size):
        i, g = line_customer[r], line_item[r]
        c = item_category[g]
        if i != prev_i or c != prev_c:
            tail_memory_count[i, c] = 0
            prev_i, prev_c = i, c
        m = tail_memory_count[i, c]
        if item_product[g] < 0 and m < tail_memory.shape[2]:
            tail_memory[i, c, m] = product[r]
            tail_memory_count[i, c] = m + 1
