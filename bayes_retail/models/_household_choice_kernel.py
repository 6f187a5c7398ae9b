"""Fused value-and-gradient kernel of the product stage's choice log-likelihood with household coefficients.

The ``full`` configuration gives every household its own coefficient vector
``theta_h`` (price, discount, state, [previous-occasion state], attribute weights) instead of one of K
latent classes. The choice-set sums then depend on the household, so the
class kernel's dense (week, item, class) grid does not apply; instead each
scored occasion sums its own category's items, and its derivatives are mapped
to the parameters at once (no mixture, so no second pass):

    v_hjw = t_j + theta_h . (price_jw, discount_jw, [state], x_j) + display_c d_jw + mailer_c m_jw
            + depth_c log(1 - depth_jw)

Work per evaluation is the sum over occasions of their category's size: on
the embedded data about as many exponentials as the class kernel's dense
grid over 8 classes. The set probabilities (exact up to ``EXACT_MAX_ITEMS``
items, Gauss-Laguerre beyond) are the class kernel's own functions, so both
kernels score a set the same way (tested: with every household at a class's
coefficients this kernel equals that class's column of
:func:`~bayes_retail.models._choice_kernel.household_class_loglik`).
"""

from __future__ import annotations

import numba
import numpy as np

from bayes_retail.models._choice_kernel import (
    _FAST,
    EXACT_MAX_ITEMS,
    ChoiceLoglik,
    _set_exact,
    _set_quadrature,
    largest_set,
)
from bayes_retail.models._kernels import FusedLoglik, kernel_cache_key


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def household_choice_pass(
    t, theta, display_c, mailer_c, depth_c, category_bounds,
    price, discount, display, mailer, available, attributes,
    occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last, chosen_is_previous,
    last_start, last_item, last_is_previous, nodes, weights,
):
    """Per-household choice log-likelihoods ``(H,)`` and the gradient of their sum.

    Parameters
    ----------
    t
        ``(G,)`` item intercepts (references included, at 0).
    theta
        ``(H, D)`` household coefficients: price, discount, state, with the ``"both"`` state memory the
        previous-occasion state, then attribute weights.
    display_c, mailer_c, depth_c
        ``(C,)`` category coefficients (``depth_c`` of ``log(1 - depth)``, zeros without per-category depth response).
    category_bounds
        ``(C + 1,)`` first item of each category (a category's items are contiguous).
    price, discount, display, mailer, available, attributes, occ_*, chosen_*, last_*, nodes, weights
        As for :func:`~bayes_retail.models._choice_kernel.choice_loglik`.

    Returns
    -------
    tuple
        ``(per_household, d_t, d_theta, d_display, d_mailer, d_depth)``.
    """
    n_h, n_d = theta.shape
    n_a = attributes.shape[1]
    n_core = n_d - n_a
    n_c = display_c.size
    per_household = np.zeros(n_h)
    d_t = np.zeros(t.size)
    d_theta = np.zeros((n_h, n_d))
    d_display = np.zeros(n_c)
    d_mailer = np.zeros(n_c)
    d_depth = np.zeros(n_c)
    widest = 1
    for c in range(n_c):
        widest = max(widest, category_bounds[c + 1] - category_bounds[c])
    v = np.empty(widest)
    e = np.empty(widest)
    dv = np.empty(widest)
    max_m = largest_set(chosen_start)
    lp = np.empty(max_m)
    p = np.empty(max_m)
    grad = np.empty(max_m)
    qa = np.empty(max_m)
    qga = np.empty(max_m)
    q_terms = np.empty(nodes.size)
    q_u = np.empty((max_m, nodes.size))
    work = np.empty((6, 1 << min(max_m, EXACT_MAX_ITEMS)))
    for o in range(occ_household.size):
        h = occ_household[o]
        c = occ_category[o]
        w = occ_week[o]
        lo = category_bounds[c]
        n_items = category_bounds[c + 1] - lo
        lam = theta[h, 2]
        lam_previous = theta[h, 3] if n_core > 3 else 0.0
        em1 = np.expm1(lam)
        em1_previous = np.expm1(lam + lam_previous)
        total = 0.0
        for i in range(n_items):
            g = lo + i
            dv[i] = 0.0
            if available[w, g] == 0.0:  # off the shelf this week: out of the choice set
                v[i] = 0.0
                e[i] = 0.0
                continue
            acc = (t[g] + theta[h, 0] * price[w, g] + theta[h, 1] * discount[w, g]
                   + display_c[c] * display[w, g] + mailer_c[c] * mailer[w, g] + depth_c[c] * discount[w, g])
            for a in range(n_a):
                acc += theta[h, n_core + a] * attributes[g, a]
            v[i] = acc
            e[i] = np.exp(acc)
            total += e[i]
        extra = 0.0
        extra_previous = 0.0
        for r in range(last_start[o], last_start[o + 1]):
            if last_is_previous[r] != 0.0:
                extra_previous += e[last_item[r] - lo]
            else:
                extra += e[last_item[r] - lo]
        den = total + em1 * extra + em1_previous * extra_previous
        log_den = np.log(den)
        c0 = chosen_start[o]
        m = chosen_start[o + 1] - c0
        for i in range(m):
            lp[i] = (v[chosen_item[c0 + i] - lo] + lam * chosen_is_last[c0 + i]
                     + lam_previous * chosen_is_previous[c0 + i] - log_den)
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
        per_household[h] += ll
        # backward: log p_i = v_i + lam * last_i + lam_previous * previous_i - log den
        chosen_total = 0.0
        d_lam = 0.0
        d_lam_previous = 0.0
        for i in range(m):
            chosen_total += grad[i]
            d_lam += grad[i] * chosen_is_last[c0 + i]
            d_lam_previous += grad[i] * chosen_is_previous[c0 + i]
            dv[chosen_item[c0 + i] - lo] += grad[i]
        q = -chosen_total / den
        for i in range(n_items):
            dv[i] += q * e[i]
        for r in range(last_start[o], last_start[o + 1]):
            gain = em1_previous if last_is_previous[r] != 0.0 else em1
            dv[last_item[r] - lo] += q * gain * e[last_item[r] - lo]
        d_theta[h, 2] += d_lam + q * ((em1 + 1.0) * extra + (em1_previous + 1.0) * extra_previous)
        if n_core > 3:
            d_theta[h, 3] += d_lam_previous + q * (em1_previous + 1.0) * extra_previous
        for i in range(n_items):
            g = lo + i
            d = dv[i]
            d_t[g] += d
            d_theta[h, 0] += d * price[w, g]
            d_theta[h, 1] += d * discount[w, g]
            d_display[c] += d * display[w, g]
            d_mailer[c] += d * mailer[w, g]
            d_depth[c] += d * discount[w, g]
            for a in range(n_a):
                d_theta[h, n_core + a] += d * attributes[g, a]
    return per_household, d_t, d_theta, d_display, d_mailer, d_depth


@numba.njit(fastmath=_FAST, cache=True, error_model="numpy")
def household_choice_loglik(
    t, theta, display_c, mailer_c, depth_c, category_bounds,
    price, discount, display, mailer, available, attributes,
    occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last, chosen_is_previous,
    last_start, last_item, last_is_previous, nodes, weights,
):
    """``(loglik, d_t, d_theta, d_display, d_mailer, d_depth)``: :func:`household_choice_pass` summed over households."""
    per_household, d_t, d_theta, d_display, d_mailer, d_depth = household_choice_pass(
        t, theta, display_c, mailer_c, depth_c, category_bounds, price, discount, display, mailer, available,
        attributes, occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last,
        chosen_is_previous, last_start, last_item, last_is_previous, nodes, weights,
    )
    return per_household.sum(), d_t, d_theta, d_display, d_mailer, d_depth


class HouseholdChoiceLoglik(FusedLoglik):
    """``(t, theta, display_c, mailer_c, depth_c, *data)`` -> ``(loglik, d_t, d_theta, d_display, d_mailer, d_depth)``.

    The class kernel's inputs with the category bounds in place of the item
    categories (:func:`~bayes_retail.models.product.household_kernel_inputs`).
    Not a subclass of :class:`ChoiceLoglik`: its backend registrations
    (numba, JAX) must not dispatch to this Op.
    """

    param_names = ChoiceLoglik.param_names
    param_ndims = ChoiceLoglik.param_ndims
    data_names = ("category_bounds", *ChoiceLoglik.data_names[1:])
    data_ndims = ChoiceLoglik.data_ndims
    int_data = ("category_bounds", *(name for name in ChoiceLoglik.int_data if name != "item_category"))
    kernel = staticmethod(household_choice_loglik)


household_choice = HouseholdChoiceLoglik()


def household_choice_loglik_op(t, theta, display_c, mailer_c, depth_c, data):
    """The household-coefficient choice log-likelihood as a PyTensor scalar (differentiable in the five parameters)."""
    return household_choice(t, theta, display_c, mailer_c, depth_c, *data)[0]


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_and_cache_key

    @register_funcify_and_cache_key(HouseholdChoiceLoglik)
    def _funcify(op, node=None, **kwargs):
        @numba_njit
        def kernel(t, theta, display_c, mailer_c, depth_c, category_bounds, price, discount, display, mailer,
                   available, attributes, occ_household, occ_category, occ_week, chosen_start, chosen_item,
                   chosen_is_last, chosen_is_previous, last_start, last_item, last_is_previous, nodes, weights):
            total, d_t, d_theta, d_display, d_mailer, d_depth = household_choice_loglik(
                t, theta, display_c, mailer_c, depth_c, category_bounds, price, discount, display, mailer, available,
                attributes, occ_household, occ_category, occ_week, chosen_start, chosen_item, chosen_is_last,
                chosen_is_previous, last_start, last_item, last_is_previous, nodes, weights,
            )
            return np.asarray(total), d_t, d_theta, d_display, d_mailer, d_depth

        return kernel, kernel_cache_key(op)


_register_numba()
