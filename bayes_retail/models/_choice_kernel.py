"""Fused value-and-gradient kernel of the product stage's choice log-likelihood.

Computes exactly what :func:`bayes_retail.models.product.total_loglik` computes
for the choice part (latent classes marginalised per household, sets scored
by the sum over orders for m <= 4 and Gauss-Laguerre quadrature above), and
its gradient with respect to the item intercepts ``t``, the class
coefficients ``theta`` and the category display / mailer coefficients, in
three passes:

1. dense: ``exp(v)`` for every (item, week, class) and the choice-set sums
   ``S[c, w, k]`` (arrays laid out with the class last, so one occasion's
   classes share a cache line);
2. occasions: per class the denominator with the state correction, the
   chosen items' log-probabilities, the set log-probability (exact by a
   recursion over subsets up to 8 items, Gauss-Laguerre quadrature above)
   and its derivative with respect to them; summed per household and class;
3. backward: the household class responsibilities weight each occasion's
   derivatives with respect to the utilities of its chosen and last items
   and to its choice-set sum; one dense pass maps them to the parameters.

The PyTensor graph of the same computation took 510 s to compile and 6.6 s
per gradient on the embedded data; see ``bench/bench_product_gradient.py``.
"""

from __future__ import annotations

import numba
import numpy as np

from bayes_retail.models._kernels import FusedLoglik

#: Largest set scored exactly (by the recursion over its subsets); larger sets: quadrature.
EXACT_MAX_ITEMS = 8
QUADRATURE_NODES = 48
# fastmath without the no-NaN / no-Inf assumptions: log-sum-exps meet -inf
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(fastmath=_FAST, cache=True)
def _set_exact(lp, m, grad, p, removed, g, h, g_bar, h_bar, p_bar):
    """``log P(S)`` summed over the m! orders by a recursion over subsets; ``d/d lp`` into ``grad[:m]``.

    With ``g(T) = sum over orders of T of prod 1 / (1 - p(removed so far))``,
    ``g(T) = sum_{j in T} h(T - j)`` and ``h(U) = g(U) / (1 - p(U))``, so
    ``log P(S) = sum_S lp + log g(S)`` costs ``m 2^m`` operations instead of
    ``m m!`` and needs no logarithm but the last. The gradient runs the
    recursion backwards. Subsets are bit masks: every subset of T is a
    smaller integer, so increasing order visits subsets first. The other
    arguments are scratch space of length ``m`` or ``2^m``.
    """
    n = 1 << m
    total_lp = 0.0
    for i in range(m):
        p[i] = np.exp(lp[i])
        total_lp += lp[i]
        p_bar[i] = 0.0
    removed[0] = 0.0
    g[0] = 1.0
    h[0] = 1.0
    for t in range(1, n):
        acc = 0.0
        member = 0
        for j in range(m):
            bit = 1 << j
            if t & bit:
                acc += h[t ^ bit]
                member = j
        removed[t] = removed[t ^ (1 << member)] + p[member]
        g[t] = acc
        h[t] = acc / (1.0 - removed[t])
        g_bar[t] = 0.0
        h_bar[t] = 0.0
    full = n - 1
    g_bar[full] = 1.0 / g[full]
    for t in range(full, 0, -1):
        inverse = 1.0 / (1.0 - removed[t])
        g_bar[t] += h_bar[t] * inverse
        # d h / d p_i = h / (1 - p(t)) for every i in t
        push = h_bar[t] * h[t] * inverse
        for j in range(m):
            bit = 1 << j
            if t & bit:
                p_bar[j] += push
                h_bar[t ^ bit] += g_bar[t]
    for i in range(m):
        grad[i] = 1.0 + p[i] * p_bar[i]
    return total_lp + np.log(g[full])


@numba.njit(fastmath=_FAST, cache=True)
def _set_quadrature(lp, m, grad, nodes, log_weights, a, ga, lt, u):
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
    top_q = -np.inf
    for q in range(n_q):
        acc = log_weights[q]
        for i in range(m):
            one_minus = -np.expm1(-a[i] * nodes[q])
            u[i, q] = one_minus
            acc += np.log(one_minus)
        lt[q] = acc
        if acc > top_q:
            top_q = acc
    norm = 0.0
    for q in range(n_q):
        lt[q] = np.exp(lt[q] - top_q)
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
    return top_q + np.log(norm)


@numba.njit(fastmath=_FAST, cache=True)
def choice_loglik(
    t, theta, display_c, mailer_c,
    item_category, price, discount, display, mailer, attributes,
    occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last,
    last_start, last_item, nodes, log_weights,
):
    """Value and gradient of the latent-class choice log-likelihood.

    Parameters
    ----------
    t
        ``(G,)`` item intercepts (references included, at 0).
    theta
        ``(K, D)`` class coefficients: price, discount, state, attribute weights.
    display_c, mailer_c
        ``(C,)`` category coefficients.
    item_category, price, discount, display, mailer, attributes
        Item data as in :class:`~bayes_retail.models.product.ProductData`.
    occ_household, occ_category, occ_week
        ``(O,)`` the scored occasions (whole-choice-set occasions left out).
    chosen_start, chosen_item, chosen_is_last
        CSR rows of each occasion's chosen items (``chosen_start`` has O + 1
        entries) and whether each was among the household's last items.
    last_start, last_item
        CSR rows of each occasion's last items (the state).
    nodes, log_weights
        Gauss-Laguerre nodes and log weights for sets above 4 items.

    Returns
    -------
    tuple
        ``(loglik, d_t, d_theta, d_display, d_mailer)``.
    """
    n_k, n_d = theta.shape
    n_g, n_w = price.shape
    n_c = display_c.size
    n_a = n_d - 3
    n_o = occ_household.size
    n_h = 0
    for o in range(n_o):
        if occ_household[o] + 1 > n_h:
            n_h = occ_household[o] + 1

    # pass 1: exp(v) and the choice-set sums, class last
    expv = np.empty((n_g, n_w, n_k))
    sums = np.zeros((n_c, n_w, n_k))
    base = np.empty(n_k)
    for g in range(n_g):
        c = item_category[g]
        for k in range(n_k):
            acc = t[g]
            for a in range(n_a):
                acc += theta[k, 3 + a] * attributes[g, a]
            base[k] = acc
        for w in range(n_w):
            promo = display_c[c] * display[g, w] + mailer_c[c] * mailer[g, w]
            for k in range(n_k):
                e = np.exp(base[k] + promo + theta[k, 0] * price[g, w] + theta[k, 1] * discount[g, w])
                expv[g, w, k] = e
                sums[c, w, k] += e

    # pass 2: occasions, per class
    lam = theta[:, 2].copy()
    em1 = np.expm1(lam)
    per_household = np.zeros((n_h, n_k))
    extra = np.empty((n_o, n_k))
    g_chosen = np.empty((chosen_item.size, n_k))
    max_m = 1
    for o in range(n_o):
        if chosen_start[o + 1] - chosen_start[o] > max_m:
            max_m = chosen_start[o + 1] - chosen_start[o]
    lp = np.empty(max_m)
    grad = np.empty(max_m)
    qa = np.empty(max_m)
    qga = np.empty(max_m)
    q_terms = np.empty(nodes.size)
    q_u = np.empty((max_m, nodes.size))
    n_sub = 1 << min(max_m, EXACT_MAX_ITEMS)
    sub_removed = np.empty(n_sub)
    sub_g = np.empty(n_sub)
    sub_h = np.empty(n_sub)
    sub_g_bar = np.empty(n_sub)
    sub_h_bar = np.empty(n_sub)
    sub_p_bar = np.empty(max_m)
    exp_lam = np.exp(lam)
    for o in range(n_o):
        c = occ_category[o]
        w = occ_week[o]
        h = occ_household[o]
        c0 = chosen_start[o]
        m = chosen_start[o + 1] - c0
        for k in range(n_k):
            ex = 0.0
            for r in range(last_start[o], last_start[o + 1]):
                ex += expv[last_item[r], w, k]
            extra[o, k] = ex
            inv_den = 1.0 / (sums[c, w, k] + em1[k] * ex)
            for i in range(m):
                state = exp_lam[k] if chosen_is_last[c0 + i] != 0.0 else 1.0
                lp[i] = np.log(expv[chosen_item[c0 + i], w, k] * state * inv_den)
            if m == 1:
                ll = lp[0]
                grad[0] = 1.0
            elif m <= EXACT_MAX_ITEMS:
                ll = _set_exact(lp, m, grad, qa, sub_removed, sub_g, sub_h, sub_g_bar, sub_h_bar, sub_p_bar)
            else:
                ll = _set_quadrature(lp, m, grad, nodes, log_weights, qa, qga, q_terms, q_u)
            per_household[h, k] += ll
            for i in range(m):
                g_chosen[c0 + i, k] = grad[i]

    # household mixtures: value and class responsibilities (in place)
    total = 0.0
    log_k = np.log(n_k)
    for h in range(n_h):
        top = -np.inf
        for k in range(n_k):
            if per_household[h, k] > top:
                top = per_household[h, k]
        norm = 0.0
        for k in range(n_k):
            norm += np.exp(per_household[h, k] - top)
        total += top + np.log(norm) - log_k
        for k in range(n_k):
            per_household[h, k] = np.exp(per_household[h, k] - top) / norm

    # pass 3: backward through the occasions
    d_t = np.zeros(n_g)
    d_theta = np.zeros((n_k, n_d))
    d_display = np.zeros(n_c)
    d_mailer = np.zeros(n_c)
    d_sums = np.zeros((n_c, n_w, n_k))
    # d loglik / d v of chosen and last items, gathered densely (k last) so that the
    # occasions touch one cache line each and the dense pass below maps them to parameters
    d_v = np.zeros((n_g, n_w, n_k))
    d_lam = np.zeros(n_k)
    for o in range(n_o):
        c = occ_category[o]
        w = occ_week[o]
        h = occ_household[o]
        c0 = chosen_start[o]
        m = chosen_start[o + 1] - c0
        for k in range(n_k):
            resp = per_household[h, k]
            if resp == 0.0:
                continue
            ex = extra[o, k]
            den = sums[c, w, k] + em1[k] * ex
            chosen_total = 0.0
            for i in range(m):
                s = resp * g_chosen[c0 + i, k]
                chosen_total += s
                d_lam[k] += s * chosen_is_last[c0 + i]
                d_v[chosen_item[c0 + i], w, k] += s
            q = -chosen_total / den  # d loglik / d denominator
            d_sums[c, w, k] += q
            d_lam[k] += q * exp_lam[k] * ex
            for r in range(last_start[o], last_start[o + 1]):
                j = last_item[r]
                d_v[j, w, k] += q * em1[k] * expv[j, w, k]
    for k in range(n_k):
        d_theta[k, 2] = d_lam[k]

    # dense backward: every item of a category-week through its choice-set sum
    acc_price = np.empty(n_k)
    acc_discount = np.empty(n_k)
    acc_item = np.empty(n_k)
    for g in range(n_g):
        c = item_category[g]
        for k in range(n_k):
            acc_price[k] = 0.0
            acc_discount[k] = 0.0
            acc_item[k] = 0.0
        for w in range(n_w):
            dv_total = 0.0
            for k in range(n_k):
                dv = d_sums[c, w, k] * expv[g, w, k] + d_v[g, w, k]
                dv_total += dv
                acc_item[k] += dv
                acc_price[k] += dv * price[g, w]
                acc_discount[k] += dv * discount[g, w]
            d_display[c] += dv_total * display[g, w]
            d_mailer[c] += dv_total * mailer[g, w]
        for k in range(n_k):
            d_t[g] += acc_item[k]
            d_theta[k, 0] += acc_price[k]
            d_theta[k, 1] += acc_discount[k]
            for a in range(n_a):
                d_theta[k, 3 + a] += acc_item[k] * attributes[g, a]
    return total, d_t, d_theta, d_display, d_mailer


class ChoiceLoglik(FusedLoglik):
    """``(t, theta, display_c, mailer_c, *data)`` -> ``(loglik, d_t, d_theta, d_display, d_mailer)`` (see :func:`choice_loglik`)."""

    param_names = ("t", "theta", "display_c", "mailer_c")
    param_ndims = (1, 2, 1, 1)
    data_names = (
        "item_category", "price", "discount", "display", "mailer", "attributes",
        "occ_household", "occ_category", "occ_week", "chosen_start", "chosen_item", "chosen_is_last",
        "last_start", "last_item", "nodes", "log_weights",
    )
    data_ndims = (1, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    int_data = ("item_category", "occ_household", "occ_category", "occ_week", "chosen_start", "chosen_item",
                "last_start", "last_item")
    kernel = staticmethod(choice_loglik)


choice = ChoiceLoglik()


def choice_loglik_op(t, theta, display_c, mailer_c, data):
    """The choice log-likelihood as a PyTensor scalar (differentiable in the four parameter arrays)."""
    return choice(t, theta, display_c, mailer_c, *data)[0]


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

    @register_funcify_default_op_cache_key(ChoiceLoglik)
    def _funcify_choice(op, node=None, **kwargs):
        @numba_njit
        def kernel(t, theta, display_c, mailer_c, *data):
            total, d_t, d_theta, d_display, d_mailer = choice_loglik(t, theta, display_c, mailer_c, *data)
            return np.asarray(total), d_t, d_theta, d_display, d_mailer

        return kernel, 1


def register_jax() -> None:
    """JAX implementation for the numpyro method: a host callback into the numba kernel.

    Correct on any backend, but it runs on the CPU: the product stage gains
    nothing from an accelerator this way.
    """
    if getattr(register_jax, "done", False):
        return
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # jax is an optional extra
        return

    @jax_funcify.register(ChoiceLoglik)
    def _funcify(op, node=None, **kwargs):
        import jax
        import jax.numpy as jnp

        def kernel(t, theta, display_c, mailer_c, *data):
            shapes = (
                jax.ShapeDtypeStruct((), jnp.float64),
                jax.ShapeDtypeStruct(t.shape, jnp.float64),
                jax.ShapeDtypeStruct(theta.shape, jnp.float64),
                jax.ShapeDtypeStruct(display_c.shape, jnp.float64),
                jax.ShapeDtypeStruct(mailer_c.shape, jnp.float64),
            )

            def host(*args):
                return tuple(np.asarray(v, dtype=np.float64) for v in choice_loglik(*[np.asarray(a) for a in args]))

            return jax.pure_callback(host, shapes, t, theta, display_c, mailer_c, *data)

        return kernel

    register_jax.done = True


_register_numba()
