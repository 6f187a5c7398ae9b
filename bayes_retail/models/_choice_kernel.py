"""Fused value-and-gradient kernel of the product stage's choice log-likelihood.

Computes exactly what :func:`bayes_retail.models.product.total_loglik` computes
for the choice part (latent classes marginalised per household; sets of up
to 8 items scored exactly, larger ones by Gauss-Laguerre quadrature), and its
gradient with respect to the item intercepts ``t``, the class coefficients
``theta`` and the category display / mailer / depth coefficients:

1. dense forward: ``exp(v)`` for every (week, item, class) of the category-weeks
   that have a scored occasion, and the choice-set sums ``S[w, c, k]`` (week
   first, class last: the occasions, sorted by week and category, sweep the
   arrays in memory order and an item-week's classes share a cache line); an
   item whose covariates repeat the last computed week's copies that week's
   values (the same numbers; 54% of the active item-weeks of the product
   fit's 300 households);
2. occasions forward: per class the denominator with the state correction,
   the chosen items' probabilities, the set probability (a recursion over
   subsets) and its derivative with respect to their log-probabilities; the
   product per household and class is kept as a rescaled mantissa, so most
   occasions need no logarithm;
3. the class mixture per household, whose responsibilities weight
4. the occasions backward: derivatives with respect to the choice-set sums,
   and those of the chosen and last items' own utilities, which go straight
   to the parameters (no dense array of utility derivatives), and
5. a dense backward pass that maps the sums' derivatives to the parameters.

The PyTensor graph of the same computation took 510 s to compile and 6.6 s
per gradient on the embedded data; this kernel compiles in ~6 s
(``bench/bench_product_gradient.py`` has the current cost per gradient).
"""

from __future__ import annotations

import numba
import numpy as np

from bayes_retail.models._kernels import FusedLoglik, kernel_cache_key

#: Largest set scored exactly (by the recursion over its subsets); larger sets: quadrature.
EXACT_MAX_ITEMS = 8
QUADRATURE_NODES = 48
#: Occasion probabilities below this take the log path; mantissas below its square are rescaled.
_TINY = 1e-100
_RESCALE = 2.0**664  # ~1e200, a power of 2 so rescaling is exact
_LOG_RESCALE = 664 * np.log(2.0)
# rows of the subset recursion's scratch array: p(T), g(T), h(T), their adjoints, d log g / d p
_REMOVED, _G, _H, _G_BAR, _H_BAR, _P_BAR = range(6)
# fastmath without the no-NaN / no-Inf assumptions: log-sum-exps meet -inf
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(fastmath=_FAST, cache=True, inline="always", error_model="numpy")
def _set_exact(p, m, grad, work):
    """``g(S)`` such that ``P(S) = g(S) prod_S p`` (the sum over the m! orders); ``d log P / d log p`` into ``grad[:m]``.

    ``g(T) = sum_{j in T} h(T - j)`` and ``h(U) = g(U) / (1 - p(U))``, i.e.
    the sum over orders of ``prod 1 / (1 - p(removed so far))``, in ``m 2^m``
    operations instead of ``m m!``. The gradient runs the recursion
    backwards. Subsets are bit masks: every subset of T is a smaller integer,
    so increasing order visits subsets first. ``work`` is ``(6, 2^m)`` scratch
    space (one array: a call passes no tuple of arrays).
    """
    if m == 2:  # g = 1 / (1 - p0) + 1 / (1 - p1)
        r0 = 1.0 / (1.0 - p[0])
        r1 = 1.0 / (1.0 - p[1])
        total = r0 + r1
        grad[0] = 1.0 + p[0] * r0 * r0 / total
        grad[1] = 1.0 + p[1] * r1 * r1 / total
        return total
    n = 1 << m
    for i in range(m):
        work[_P_BAR, i] = 0.0
    work[_REMOVED, 0] = 0.0
    work[_G, 0] = 1.0
    work[_H, 0] = 1.0
    for t in range(1, n):
        acc = 0.0
        member = 0
        for j in range(m):
            bit = 1 << j
            if t & bit:
                acc += work[_H, t ^ bit]
                member = j
        work[_REMOVED, t] = work[_REMOVED, t ^ (1 << member)] + p[member]
        work[_G, t] = acc
        work[_H, t] = acc / (1.0 - work[_REMOVED, t])
        work[_G_BAR, t] = 0.0
        work[_H_BAR, t] = 0.0
    full = n - 1
    work[_G_BAR, full] = 1.0 / work[_G, full]
    for t in range(full, 0, -1):
        inverse = 1.0 / (1.0 - work[_REMOVED, t])
        work[_G_BAR, t] += work[_H_BAR, t] * inverse
        # d h / d p_i = h / (1 - p(t)) for every i in t
        push = work[_H_BAR, t] * work[_H, t] * inverse
        for j in range(m):
            bit = 1 << j
            if t & bit:
                work[_P_BAR, j] += push
                work[_H_BAR, t ^ bit] += work[_G_BAR, t]
    for i in range(m):
        grad[i] = 1.0 + p[i] * work[_P_BAR, i]
    return work[_G, full]


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _set_quadrature(lp, m, grad, nodes, weights, a, ga, lt, u):
    """``log P(S)`` by Gauss-Laguerre quadrature of the exponential-clock integral (large sets).

    ``P(S) = int_0^inf e^-s prod_j (1 - exp(-a_j s)) ds`` with
    ``a_j = p_j / (1 - sum_S p)``; ``a``, ``ga`` (length m), ``lt`` (one per
    node) and ``u`` (m x nodes) are scratch space.
    """
    top = -np.inf
    for i in range(m):
        if lp[i] > top:
            top = lp[i]
    s = 0.0
    for i in range(m):
        s += np.exp(lp[i] - top)
    log_rest = np.log(-np.expm1(top + np.log(s)))  # log(1 - sum_S p)
    for i in range(m):
        a[i] = np.exp(lp[i] - log_rest)
        ga[i] = 0.0
    n_q = nodes.size
    norm = 0.0
    for q in range(n_q):
        # products, not sums of logs: one transcendental per (item, node); the
        # terms stay far above underflow for the sets this path sees (checked below)
        term = weights[q]
        for i in range(m):
            one_minus = -np.expm1(-a[i] * nodes[q])
            u[i, q] = one_minus
            term *= one_minus
        lt[q] = term
        norm += term
    offset = 0.0
    if not norm > 1e-280:  # so improbable a set that the products underflow: node terms in logs
        offset = -np.inf
        for q in range(n_q):
            acc = np.log(weights[q])
            for i in range(m):
                acc += np.log(u[i, q])
            lt[q] = acc
            offset = max(offset, acc)
        norm = 0.0
        for q in range(n_q):
            lt[q] = np.exp(lt[q] - offset)
            norm += lt[q]
    for q in range(n_q):
        omega = lt[q] / norm
        for i in range(m):
            # d log(1 - exp(-a x)) / d a = x exp(-a x) / (1 - exp(-a x))
            ga[i] += omega * nodes[q] * (1.0 - u[i, q]) / u[i, q]
    # a_j = exp(lp_j) / rest: d a_j / d lp_i = a_j (delta_ij + p_i / rest), and p_i / rest = a_i
    weighted = 0.0
    for i in range(m):
        weighted += a[i] * ga[i]
    for i in range(m):
        grad[i] = a[i] * ga[i] + a[i] * weighted
    return offset + np.log(norm)


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def largest_set(chosen_start):
    """The most items any occasion chose (at least 1): the size of the set-probability scratch arrays."""
    m = 1
    for o in range(chosen_start.size - 1):
        m = max(m, chosen_start[o + 1] - chosen_start[o])
    return m


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _dense_forward(t, theta, display_c, mailer_c, depth_c, active, item_category, price, discount, display, mailer,
                   available, attributes):
    """``exp(v)`` as ``(W, G, K)`` and the choice-set sums ``(W, C, K)`` of the ``active`` category-weeks.

    Week first and class last: the occasions, sorted by week and category,
    then sweep these arrays in memory order and one cache line holds an
    item-week's classes. Category-weeks without a scored occasion are skipped
    (their entries stay undefined and are never read).
    """
    n_k, n_d = theta.shape
    n_w, n_g = price.shape
    n_a = attributes.shape[1]
    n_core = n_d - n_a
    base = np.empty((n_g, n_k))
    for g in range(n_g):
        for k in range(n_k):
            acc = t[g]
            for a in range(n_a):
                acc += theta[k, n_core + a] * attributes[g, a]
            base[g, k] = acc
    expv = np.empty((n_w, n_g, n_k))
    sums = np.zeros((n_w, display_c.size, n_k))
    # an item's covariates usually repeat from one week to the next: its utilities
    # are then copied from the last computed week (the same numbers, no exp)
    last_week = np.full(n_g, -1)
    for w in range(n_w):
        for g in range(n_g):
            c = item_category[g]
            if not active[w, c]:
                continue
            if available[w, g] == 0.0:  # off the shelf: out of the choice set (it adds 0 to the sums)
                for k in range(n_k):
                    expv[w, g, k] = 0.0
                continue
            lw = last_week[g]
            last_week[g] = w
            if lw >= 0 and price[w, g] == price[lw, g] and discount[w, g] == discount[lw, g] \
                    and display[w, g] == display[lw, g] and mailer[w, g] == mailer[lw, g]:
                for k in range(n_k):
                    e = expv[lw, g, k]
                    expv[w, g, k] = e
                    sums[w, c, k] += e
                continue
            promo = display_c[c] * display[w, g] + mailer_c[c] * mailer[w, g] + depth_c[c] * discount[w, g]
            for k in range(n_k):
                e = np.exp(base[g, k] + promo + theta[k, 0] * price[w, g] + theta[k, 1] * discount[w, g])
                expv[w, g, k] = e
                sums[w, c, k] += e
    return expv, sums


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _occasions_forward(expv, sums, lam, lam_previous, n_households, occ_household, occ_category, occ_week,
                       chosen_start, chosen_item, chosen_is_last, chosen_is_previous, last_start, last_item,
                       last_is_previous, nodes, weights):
    """Per household and class the summed log set probabilities ``(H, K)``.

    A state item's utility gains ``lam``, and ``lam + lam_previous`` when it
    was bought on the previous occasion (``lam_previous`` is 0 unless the
    state memory is ``"both"``). Also returns each occasion's state sums
    ``(O, K)`` (earlier items, previous-occasion items) and each chosen
    item's ``d log P(S) / d log p`` ``(P, K)`` for the backward pass.
    """
    n_o = occ_household.size
    n_k = lam.size
    em1 = np.expm1(lam)
    exp_lam = np.exp(lam)
    em1_previous = np.expm1(lam + lam_previous)
    exp_previous = np.exp(lam + lam_previous)
    extra = np.empty((n_o, n_k))
    extra_previous = np.empty((n_o, n_k))
    g_chosen = np.empty((chosen_item.size, n_k))
    max_m = largest_set(chosen_start)
    lp = np.empty(max_m)
    p = np.empty(max_m)
    grad = np.empty(max_m)
    qa = np.empty(max_m)
    qga = np.empty(max_m)
    q_terms = np.empty(nodes.size)
    q_u = np.empty((max_m, nodes.size))
    n_sub = 1 << min(max_m, EXACT_MAX_ITEMS)
    work = np.empty((6, n_sub))
    # the product of a household's occasion probabilities per class, as a mantissa
    # rescaled by powers of 2 (exact), so that most occasions need no logarithm
    mantissa = np.ones((n_households, n_k))
    rescaled = np.zeros((n_households, n_k))
    log_part = np.zeros((n_households, n_k))
    for o in range(n_o):
        c = occ_category[o]
        w = occ_week[o]
        h = occ_household[o]
        c0 = chosen_start[o]
        m = chosen_start[o + 1] - c0
        for k in range(n_k):
            ex = 0.0
            ex_previous = 0.0
            for r in range(last_start[o], last_start[o + 1]):
                if last_is_previous[r] != 0.0:
                    ex_previous += expv[w, last_item[r], k]
                else:
                    ex += expv[w, last_item[r], k]
            extra[o, k] = ex
            extra_previous[o, k] = ex_previous
            den = sums[w, c, k] + em1[k] * ex + em1_previous[k] * ex_previous
            inv_den = 1.0 / den
            product = 1.0
            for i in range(m):
                state = 1.0
                if chosen_is_previous[c0 + i] != 0.0:
                    state = exp_previous[k]
                elif chosen_is_last[c0 + i] != 0.0:
                    state = exp_lam[k]
                p[i] = expv[w, chosen_item[c0 + i], k] * state * inv_den
                product *= p[i]
            if m <= EXACT_MAX_ITEMS and product > _TINY:
                if m == 1:
                    grad[0] = 1.0
                    prob = product
                else:
                    prob = product * _set_exact(p, m, grad, work)
                mantissa[h, k] *= prob
                if mantissa[h, k] < _TINY * _TINY:
                    mantissa[h, k] *= _RESCALE
                    rescaled[h, k] += 1.0
            else:  # large sets, or probabilities too small for products
                log_den = np.log(den)
                for i in range(m):
                    lp[i] = (np.log(expv[w, chosen_item[c0 + i], k]) + lam[k] * chosen_is_last[c0 + i]
                             + lam_previous[k] * chosen_is_previous[c0 + i] - log_den)
                    p[i] = np.exp(lp[i])
                if m == 1:
                    grad[0] = 1.0
                    ll = lp[0]
                elif m <= EXACT_MAX_ITEMS:
                    ll = np.log(_set_exact(p, m, grad, work))
                    for i in range(m):
                        ll += lp[i]
                else:
                    ll = _set_quadrature(lp, m, grad, nodes, weights, qa, qga, q_terms, q_u)
                log_part[h, k] += ll
            for i in range(m):
                g_chosen[c0 + i, k] = grad[i]
    for h in range(n_households):
        for k in range(n_k):
            log_part[h, k] += np.log(mantissa[h, k]) - rescaled[h, k] * _LOG_RESCALE
    return log_part, extra, extra_previous, g_chosen


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _mixture(per_household):
    """Equal-weight class mixture per household: the log-likelihood, and the responsibilities in place."""
    n_h, n_k = per_household.shape
    total = 0.0
    log_k = np.log(n_k)
    for h in range(n_h):
        top = -np.inf
        for k in range(n_k):
            top = max(top, per_household[h, k])
        norm = 0.0
        for k in range(n_k):
            norm += np.exp(per_household[h, k] - top)
        total += top + np.log(norm) - log_k
        for k in range(n_k):
            per_household[h, k] = np.exp(per_household[h, k] - top) / norm
    return total


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _occasions_backward(resp, expv, sums, extra, extra_previous, g_chosen, lam, lam_previous, item_category, price,
                        discount, display, mailer, occ_household, occ_category, occ_week, chosen_start, chosen_item,
                        chosen_is_last, chosen_is_previous, last_start, last_item, last_is_previous):
    """Derivatives with respect to the choice-set sums ``(W, C, K)`` and, directly, to the parameters.

    The chosen and last items' own utilities enter the log-likelihood outside
    the sums; their derivatives go straight to the parameters here (a few
    hundred thousand item-weeks), so no dense (week, item, class) array of
    derivatives is allocated: the dense pass then reads the sums' only.
    Returns ``(d_sums, d_item (G, K), d_core (K, 4), d_display, d_mailer, d_depth (C,))``, ``d_core`` over
    price, discount, state and the previous-occasion state.
    """
    n_k = lam.size
    em1 = np.expm1(lam)
    exp_lam = np.exp(lam)
    em1_previous = np.expm1(lam + lam_previous)
    exp_previous = np.exp(lam + lam_previous)
    d_sums = np.zeros(sums.shape)
    d_item = np.zeros((item_category.size, n_k))
    d_theta = np.zeros((n_k, 4))
    d_display = np.zeros(sums.shape[1])
    d_mailer = np.zeros(sums.shape[1])
    d_depth = np.zeros(sums.shape[1])
    for o in range(occ_household.size):
        c = occ_category[o]
        w = occ_week[o]
        h = occ_household[o]
        c0 = chosen_start[o]
        m = chosen_start[o + 1] - c0
        for k in range(n_k):
            r_hk = resp[h, k]
            if r_hk == 0.0:
                continue
            ex = extra[o, k]
            ex_previous = extra_previous[o, k]
            den = sums[w, c, k] + em1[k] * ex + em1_previous[k] * ex_previous
            chosen_total = 0.0
            for i in range(m):
                s = r_hk * g_chosen[c0 + i, k]
                chosen_total += s
                d_theta[k, 2] += s * chosen_is_last[c0 + i]
                d_theta[k, 3] += s * chosen_is_previous[c0 + i]
                _direct(s, w, chosen_item[c0 + i], k, c, price, discount, display, mailer, d_item, d_theta,
                        d_display, d_mailer, d_depth)
            q = -chosen_total / den  # d loglik / d denominator
            d_sums[w, c, k] += q
            d_theta[k, 2] += q * (exp_lam[k] * ex + exp_previous[k] * ex_previous)
            d_theta[k, 3] += q * exp_previous[k] * ex_previous
            for r in range(last_start[o], last_start[o + 1]):
                j = last_item[r]
                gain = em1_previous[k] if last_is_previous[r] != 0.0 else em1[k]
                _direct(q * gain * expv[w, j, k], w, j, k, c, price, discount, display, mailer, d_item, d_theta,
                        d_display, d_mailer, d_depth)
    return d_sums, d_item, d_theta, d_display, d_mailer, d_depth


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy", inline="always")
def _direct(dv, w, g, k, c, price, discount, display, mailer, d_item, d_theta, d_display, d_mailer, d_depth):
    """Add ``dv = d loglik / d v[w, g, k]`` to the derivatives of the parameters that ``v`` is linear in."""
    d_item[g, k] += dv
    d_theta[k, 0] += dv * price[w, g]
    d_theta[k, 1] += dv * discount[w, g]
    d_display[c] += dv * display[w, g]
    d_mailer[c] += dv * mailer[w, g]
    d_depth[c] += dv * discount[w, g]


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _dense_backward(d_sums, d_item, d_core, d_display, d_mailer, d_depth, expv, active, item_category, price, discount,
                    display, mailer, attributes, n_coefficients):
    """Add the choice-set sums' derivatives (through every item) to the direct ones: ``(d_t, d_theta)``.

    An off-shelf item needs no test here: its ``expv`` is 0, so it adds nothing.

    ``d_item``, ``d_display``, ``d_mailer`` and ``d_depth`` are accumulated in place.
    """
    n_w, n_g, n_k = expv.shape
    n_a = attributes.shape[1]
    n_core = n_coefficients - n_a
    d_theta = np.zeros((n_k, n_coefficients))
    d_theta[:, :n_core] = d_core[:, :n_core]
    for w in range(n_w):
        for g in range(n_g):
            c = item_category[g]
            if not active[w, c]:
                continue
            dv_total = 0.0
            for k in range(n_k):
                dv = d_sums[w, c, k] * expv[w, g, k]
                dv_total += dv
                d_item[g, k] += dv
                d_theta[k, 0] += dv * price[w, g]
                d_theta[k, 1] += dv * discount[w, g]
            d_display[c] += dv_total * display[w, g]
            d_mailer[c] += dv_total * mailer[w, g]
            d_depth[c] += dv_total * discount[w, g]
    d_t = np.zeros(n_g)
    for g in range(n_g):
        for k in range(n_k):
            d_t[g] += d_item[g, k]
            for a in range(n_a):
                d_theta[k, n_core + a] += d_item[g, k] * attributes[g, a]
    return d_t, d_theta


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _occasion_extent(occ_household, occ_week, occ_category, n_weeks, n_categories):
    """The number of household rows the occasions need, and the ``(W, C)`` category-weeks that have one."""
    n_households = 0
    active = np.zeros((n_weeks, n_categories), dtype=np.bool_)
    for o in range(occ_household.size):
        n_households = max(n_households, occ_household[o] + 1)
        active[occ_week[o], occ_category[o]] = True
    return n_households, active


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def choice_loglik(
    t, theta, display_c, mailer_c, depth_c,
    item_category, price, discount, display, mailer, available, attributes,
    occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last, chosen_is_previous,
    last_start, last_item, last_is_previous, nodes, weights,
):
    """Value and gradient of the latent-class choice log-likelihood.

    Parameters
    ----------
    t
        ``(G,)`` item intercepts (references included, at 0).
    theta
        ``(K, D)`` class coefficients: price, discount, state, with the ``"both"`` state memory the
        previous-occasion state, then attribute weights (``D - A`` core coefficients).
    display_c, mailer_c, depth_c
        ``(C,)`` category coefficients of display, mailer and ``log(1 - depth)`` (the last a deviation from
        the classes' discount coefficient; zeros without per-category depth response).
    item_category, attributes
        ``(G,)`` and ``(G, A)`` item data as in :class:`~bayes_retail.models.product.ProductData`.
    price, discount, display, mailer, available
        ``(W, G)``: the transposes of ProductData's item-week grids (``available`` 1.0 / 0.0: an item off
        the shelf in a week is out of that week's choice sets).
    occ_household, occ_category, occ_week
        ``(O,)`` the scored occasions (whole-choice-set occasions left out),
        best sorted by week then category (memory order of the kernel's arrays).
    chosen_start, chosen_item, chosen_is_last, chosen_is_previous
        CSR rows of each occasion's chosen items (``chosen_start`` has O + 1
        entries), whether each was in the household's state and whether it
        was bought on the previous occasion.
    last_start, last_item, last_is_previous
        CSR rows of each occasion's state items, and whether each was bought on the previous occasion.
    nodes, weights
        Gauss-Laguerre nodes and weights for sets above ``EXACT_MAX_ITEMS`` items.

    Returns
    -------
    tuple
        ``(loglik, d_t, d_theta, d_display, d_mailer, d_depth)``.
    """
    n_households, active = _occasion_extent(occ_household, occ_week, occ_category, price.shape[0], display_c.size)
    lam, lam_previous = _state_coefficients(theta, attributes.shape[1])
    expv, sums = _dense_forward(t, theta, display_c, mailer_c, depth_c, active, item_category, price, discount,
                                display, mailer, available, attributes)
    occasions = (occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last, chosen_is_previous,
                 last_start, last_item, last_is_previous)
    per_household, extra, extra_previous, g_chosen = _occasions_forward(
        expv, sums, lam, lam_previous, n_households, *occasions, nodes, weights
    )
    total = _mixture(per_household)
    d_sums, d_item, d_core, d_display, d_mailer, d_depth = _occasions_backward(
        per_household, expv, sums, extra, extra_previous, g_chosen, lam, lam_previous, item_category, price, discount,
        display, mailer, *occasions
    )
    d_t, d_theta = _dense_backward(d_sums, d_item, d_core, d_display, d_mailer, d_depth, expv, active, item_category,
                                   price, discount, display, mailer, attributes, theta.shape[1])
    return total, d_t, d_theta, d_display, d_mailer, d_depth


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def _state_coefficients(theta, n_attributes):
    """``(lam, lam_previous)`` per row of ``theta``: its state coefficient and, with four core coefficients
    (the ``"both"`` state memory), the previous-occasion one; otherwise zeros."""
    lam = theta[:, 2].copy()
    if theta.shape[1] - n_attributes > 3:
        return lam, theta[:, 3].copy()
    return lam, np.zeros(lam.size)


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy", nogil=True)  # threads run draws side by side
def household_class_loglik(
    t, theta, display_c, mailer_c, depth_c,
    item_category, price, discount, display, mailer, available, attributes,
    occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last, chosen_is_previous,
    last_start, last_item, last_is_previous, nodes, weights,
):
    """``(H, K)`` each household's choice log-likelihood under each class (arguments as :func:`choice_loglik`).

    The forward half of :func:`choice_loglik` without the mixture: what class
    membership posteriors are computed from.
    """
    n_households, active = _occasion_extent(occ_household, occ_week, occ_category, price.shape[0], display_c.size)
    expv, sums = _dense_forward(t, theta, display_c, mailer_c, depth_c, active, item_category, price, discount,
                                display, mailer, available, attributes)
    lam, lam_previous = _state_coefficients(theta, attributes.shape[1])
    per_household, _, _, _ = _occasions_forward(
        expv, sums, lam, lam_previous, n_households, occ_household, occ_category, occ_week, chosen_start,
        chosen_item, chosen_is_last, chosen_is_previous, last_start, last_item, last_is_previous, nodes, weights,
    )
    return per_household


class ChoiceLoglik(FusedLoglik):
    """``(t, theta, display_c, mailer_c, depth_c, *data)`` -> ``(loglik, d_t, d_theta, d_display, d_mailer, d_depth)``
    (see :func:`choice_loglik`)."""

    param_names = ("t", "theta", "display_c", "mailer_c", "depth_c")
    param_ndims = (1, 2, 1, 1, 1)
    data_names = (
        "item_category", "price", "discount", "display", "mailer", "available", "attributes",
        "occ_household", "occ_category", "occ_week", "chosen_start", "chosen_item", "chosen_is_last",
        "chosen_is_previous", "last_start", "last_item", "last_is_previous", "nodes", "weights",
    )
    data_ndims = (1, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    int_data = ("item_category", "occ_household", "occ_category", "occ_week", "chosen_start", "chosen_item",
                "last_start", "last_item")
    kernel = staticmethod(choice_loglik)


choice = ChoiceLoglik()


def choice_loglik_op(t, theta, display_c, mailer_c, depth_c, data):
    """The choice log-likelihood as a PyTensor scalar (differentiable in the five parameter arrays)."""
    return choice(t, theta, display_c, mailer_c, depth_c, *data)[0]


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_and_cache_key

    @register_funcify_and_cache_key(ChoiceLoglik)
    def _funcify_choice(op, node=None, **kwargs):
        @numba_njit
        def kernel(t, theta, display_c, mailer_c, depth_c, item_category, price, discount, display, mailer, available,
                   attributes, occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last,
                   chosen_is_previous, last_start, last_item, last_is_previous, nodes, weights):
            total, d_t, d_theta, d_display, d_mailer, d_depth = choice_loglik(
                t, theta, display_c, mailer_c, depth_c, item_category, price, discount, display, mailer, available,
                attributes, occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last,
                chosen_is_previous, last_start, last_item, last_is_previous, nodes, weights,
            )
            return np.asarray(total), d_t, d_theta, d_display, d_mailer, d_depth

        return kernel, kernel_cache_key(op)


def register_jax() -> None:
    """JAX implementations for the numpyro method (class and household choice Ops): host callbacks into the numba kernels.

    Correct on any backend, but they run on the CPU: the product stage gains
    nothing from an accelerator this way.
    """
    if getattr(register_jax, "done", False):
        return
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # jax is an optional extra
        return
    from bayes_retail.models._household_choice_kernel import HouseholdChoiceLoglik

    for op_class in (ChoiceLoglik, HouseholdChoiceLoglik):
        jax_funcify.register(op_class)(_host_callback)
    register_jax.done = True


def _host_callback(op, node=None, **kwargs):
    """A JAX function that calls ``op``'s numba kernel on the host (outputs: the log-likelihood and one gradient per
    parameter in ``op.param_names``, so a parameter added to the Op needs no edit here)."""
    import jax
    import jax.numpy as jnp

    n_params = len(op.param_names)

    def kernel(*inputs):
        shapes = (jax.ShapeDtypeStruct((), jnp.float64),
                  *(jax.ShapeDtypeStruct(x.shape, jnp.float64) for x in inputs[:n_params]))

        def host(*args):
            return tuple(np.asarray(v, dtype=np.float64) for v in op.kernel(*[np.asarray(a) for a in args]))

        return jax.pure_callback(host, shapes, *inputs)

    return kernel


_register_numba()
