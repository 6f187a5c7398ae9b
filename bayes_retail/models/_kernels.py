"""Fused likelihood kernels: one pass computes a stage's log-likelihood and its gradient.

Each kernel is a numba function wrapped in a PyTensor Op (:class:`FusedLoglik`)
that is registered for the numba backend nutpie compiles (so chains do not
hold the GIL) and for JAX (the numpyro method).

Visit stage (:func:`logit_grid_loglik`, the dense household x week grid). The visit stage scores ~118,000 household-weeks per gradient evaluation.
Written as PyTensor elementwise graphs this costs ~4 ms per value-and-gradient
(one ``log1p`` per cell is most of it: ~33 ns each on the 2-core reference
machine). The kernel here computes the exact same Bernoulli-logit
log-likelihood and its gradient in one pass and takes the log of a product of
``1 + exp(-|eta|)`` once per household row instead of once per cell (each factor
lies in (1, 2], so a row of <= 1000 weeks cannot overflow): ~1.5 ms, and it is
registered for the numba backend that nutpie compiles, so chains do not hold
the GIL. The value is exact up to floating-point rounding (tested against the
row-level log-likelihood).

    eta_hw = a_h + g_h * x_hw + rho * lag_hw + s_w
    loglik = sum_hw mask_hw * (y_hw * eta_hw - log(1 + exp(eta_hw)))

Category stage (:func:`cloglog_cells_loglik`): the ~1M purchased
household-category-weeks one by one (the dense part is a matrix product).

Quantity stage (:func:`negbin_pattern_loglik`): one term per distinct
(household, item, depth) pattern, ~1M on the full data; the PyTensor graph
of the same sum gathers and scatters every parameter vector separately.
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

# Every kernel compiles with numpy's error model: a division by zero at an extreme
# point (an underflowed sum, a probability of exactly 1) gives inf or NaN, which the
# sampler rejects, instead of raising ZeroDivisionError (Python's model, numba's
# default) and stopping a fit.

#: Rows longer than this could overflow the product of (1 + exp(-|eta|)) factors.
MAX_ROW = 1000


@numba.njit(fastmath=True, cache=True, error_model="numpy")
def logit_grid_loglik(a, g, rho, s, y, mask, x, lag):
    """Value and gradient of the masked Bernoulli-logit grid log-likelihood.

    Parameters
    ----------
    a, g
        ``(H,)`` row intercepts and row slopes on ``x``.
    rho
        Coefficient of ``lag``.
    s
        ``(W,)`` column effects.
    y, mask, x, lag
        ``(H, W)`` outcomes (0/1), cell weights (0/1), covariate and lag covariate.

    Returns
    -------
    tuple
        ``(loglik, d_a, d_g, d_rho, d_s)``.
    """
    n_rows, n_cols = y.shape
    total = 0.0
    d_a = np.zeros(n_rows)
    d_g = np.zeros(n_rows)
    d_s = np.zeros(n_cols)
    d_rho = 0.0
    for h in range(n_rows):
        acc_a = 0.0
        acc_g = 0.0
        acc_lag = 0.0
        linear = 0.0
        product = 1.0
        for w in range(n_cols):
            if mask[h, w] == 0.0:
                continue
            eta = a[h] + g[h] * x[h, w] + rho * lag[h, w] + s[w]
            negative = eta < 0.0
            e = np.exp(eta if negative else -eta)
            product *= 1.0 + e
            inverse = 1.0 / (1.0 + e)
            p = e * inverse if negative else inverse
            # softplus(eta) = max(eta, 0) + log(1 + exp(-|eta|)); the log is taken per row below
            linear += y[h, w] * eta - (0.0 if negative else eta)
            r = y[h, w] - p
            acc_a += r
            acc_g += r * x[h, w]
            acc_lag += r * lag[h, w]
            d_s[w] += r
        total += linear - np.log(product)
        d_a[h] = acc_a
        d_g[h] = acc_g
        d_rho += acc_lag
    return total, d_a, d_g, d_rho, d_s


@numba.njit(fastmath=True, cache=True, error_model="numpy")
def negbin_pattern_loglik(l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra):
    """Value and gradient of the pattern part of the aggregated negative-binomial log-likelihood.

    Pattern ``p`` holds ``lines[p]`` lines of one (household, item, depth) with
    ``extra[p]`` the sum of their ``y = q - 1``; with
    ``eta = l[item] + kappa[c] * depth + basket[household]`` and the item's
    category dispersion ``a = exp(log_alpha[c])`` it adds

        lines * a * log(a) + extra * eta - (lines * a + extra) * log(a + exp(eta)),

    the part of the NB log-pmf summed over its lines that depends on ``eta``
    (the ``lgamma`` terms need only the histogram of ``y`` per category).
    ``log_alpha`` has one entry per category (repeat one value for a shared
    dispersion).

    Returns
    -------
    tuple
        ``(loglik, d_l, d_kappa, d_basket, d_log_alpha)``.
    """
    alpha = np.exp(log_alpha)
    d_l = np.zeros(l.size)
    d_kappa = np.zeros(kappa.size)
    d_basket = np.zeros(basket.size)
    d_log_alpha = np.zeros(log_alpha.size)
    total = 0.0
    for p in range(item.size):
        j = item[p]
        c = item_category[j]
        h = household[p]
        la = log_alpha[c]
        a = alpha[c]
        eta = l[j] + kappa[c] * depth[p] + basket[h]
        gap = eta - la
        # log(a + mu), mu / (a + mu) and a / (a + mu) without overflow or cancellation
        if gap > 0.0:
            e = np.exp(-gap)
            log_sum = eta + np.log1p(e)
            inverse = 1.0 / (1.0 + e)
            share = inverse
            rest = e * inverse
        else:
            e = np.exp(gap)
            log_sum = la + np.log1p(e)
            inverse = 1.0 / (1.0 + e)
            share = e * inverse
            rest = inverse
        n = lines[p]
        y = extra[p]
        weight = n * a + y
        total += n * a * la + y * eta - weight * log_sum
        r = y - weight * share
        d_l[j] += r
        d_kappa[c] += r * depth[p]
        d_basket[h] += r
        # d/da, times a: a / (a + mu) = rest
        d_log_alpha[c] += n * a * (la + 1.0 - log_sum) - weight * rest
    return total, d_l, d_kappa, d_basket, d_log_alpha


@numba.njit(fastmath=True, cache=True, error_model="numpy")
def cloglog_cells_loglik(b, u, pref, s, d, offset, cell_household, cell_category, cell_week, cell_trips):
    """Value and gradient of the purchased-cell part of the cloglog log-likelihood.

    Each purchased household-category-week ``i`` adds ``log(1 - exp(-r)) + r``
    with ``r = trips * exp(b[c] + u[h] + pref[h, c] + s[w] + d[c, w] + offset[i])``
    (the ``- r`` of every visited cell is the dense part, computed elsewhere);
    ``offset`` carries per-cell terms such as the category value.

    Returns
    -------
    tuple
        ``(loglik, d_b, d_u, d_pref, d_s, d_d, d_offset)``.
    """
    d_b = np.zeros(b.size)
    d_u = np.zeros(u.size)
    d_pref = np.zeros(pref.shape)
    d_s = np.zeros(s.size)
    d_d = np.zeros(d.shape)
    d_offset = np.zeros(offset.size)
    total = 0.0
    for i in range(cell_household.size):
        h = cell_household[i]
        c = cell_category[i]
        w = cell_week[i]
        rate = cell_trips[i] * np.exp(b[c] + u[h] + pref[h, c] + s[w] + d[c, w] + offset[i])
        # log(1 - exp(-r)) + r, and its derivative r / (1 - exp(-r)), stable for small and large r
        if rate < 0.6931471805599453:
            one_minus = -np.expm1(-rate)
        else:
            one_minus = 1.0 - np.exp(-rate)
        total += np.log(one_minus) + rate
        g = rate / one_minus
        d_b[c] += g
        d_u[h] += g
        d_pref[h, c] += g
        d_s[w] += g
        d_d[c, w] += g
        d_offset[i] = g
    return total, d_b, d_u, d_pref, d_s, d_d, d_offset


class FusedLoglik(Op):
    """Base PyTensor Op for a fused kernel: ``(*params, *data) -> (loglik, *d_params)``.

    Subclasses name the numba ``kernel`` and the number of dimensions of its
    parameters and data. Only the first output is meant for models; the others
    are its gradient, returned together so one kernel call serves both value
    and gradient. Scalar parameters reach the kernel as Python floats.
    """

    __props__ = ()
    param_names: tuple[str, ...] = ()
    param_ndims: tuple[int, ...] = ()
    data_names: tuple[str, ...] = ()
    data_ndims: tuple[int, ...] = ()
    int_data: tuple[str, ...] = ()

    @staticmethod
    def kernel(*args):  # pragma: no cover - replaced by subclasses
        raise NotImplementedError

    def make_node(self, *args):
        names = self.param_names + self.data_names
        if len(args) != len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        inputs = []
        for name, value, nd in zip(names, args, self.param_ndims + self.data_ndims):
            dtype = "int64" if name in self.int_data else "float64"
            var = pt.as_tensor_variable(value).astype(dtype)
            if var.ndim != nd:
                raise ValueError(f"{name} must have {nd} dimension(s), got {var.ndim}")
            inputs.append(var)
        outputs = [pt.dscalar()] + [(pt.dscalar, pt.dvector, pt.dmatrix)[nd]() for nd in self.param_ndims]
        return Apply(self, inputs, outputs)

    def check_inputs(self, inputs) -> None:
        """Refuse inputs the kernel cannot handle (override where needed)."""

    def perform(self, node, inputs, output_storage):
        self.check_inputs(inputs)
        n = len(self.param_ndims)
        params = [float(v) if nd == 0 else v for v, nd in zip(inputs[:n], self.param_ndims)]
        result = self.kernel(*params, *inputs[n:])
        for storage, value in zip(output_storage, result):
            storage[0] = np.asarray(value, dtype=np.float64)

    def connection_pattern(self, node):
        n_out = 1 + len(self.param_ndims)
        return [[True] * n_out for _ in self.param_ndims] + [[False] * n_out for _ in self.data_ndims]

    def L_op(self, inputs, outputs, output_grads):
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError(f"second derivatives of {type(self).__name__} are not implemented")
        upstream = output_grads[0]
        grads = [upstream * outputs[k] for k in range(1, 1 + len(self.param_ndims))]
        return grads + [DisconnectedType()() for _ in self.data_ndims]


class LogitGridLoglik(FusedLoglik):
    """``(a, g, rho, s, y, mask, x, lag) -> (loglik, d_a, d_g, d_rho, d_s)`` (see :func:`logit_grid_loglik`)."""

    param_names = ("a", "g", "rho", "s")
    param_ndims = (1, 1, 0, 1)
    data_names = ("y", "mask", "x", "lag")
    data_ndims = (2, 2, 2, 2)
    kernel = staticmethod(logit_grid_loglik)

    def check_inputs(self, inputs) -> None:
        if inputs[4].shape[1] > MAX_ROW:
            raise ValueError(f"rows longer than {MAX_ROW} columns are not supported, got {inputs[4].shape[1]}")


class NegBinPatternLoglik(FusedLoglik):
    """``(l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra)`` (see :func:`negbin_pattern_loglik`)."""

    param_names = ("l", "kappa", "basket", "log_alpha")
    param_ndims = (1, 1, 1, 1)
    data_names = ("item", "item_category", "household", "depth", "lines", "extra")
    data_ndims = (1, 1, 1, 1, 1, 1)
    int_data = ("item", "item_category", "household")
    kernel = staticmethod(negbin_pattern_loglik)


class CloglogCellsLoglik(FusedLoglik):
    """``(b, u, pref, s, d, offset, household, category, week, trips)`` (see :func:`cloglog_cells_loglik`)."""

    param_names = ("b", "u", "pref", "s", "d", "offset")
    param_ndims = (1, 1, 2, 1, 2, 1)
    data_names = ("household", "category", "week", "trips")
    data_ndims = (1, 1, 1, 1)
    int_data = ("household", "category", "week")
    kernel = staticmethod(cloglog_cells_loglik)


logit_grid = LogitGridLoglik()
negbin_patterns = NegBinPatternLoglik()
cloglog_cells = CloglogCellsLoglik()


def cloglog_cells_loglik_op(b, u, pref, s, d, offset, household, category, week, trips):
    """The purchased-cell part of the category log-likelihood as a PyTensor scalar."""
    return cloglog_cells(b, u, pref, s, d, offset, household, category, week, trips)[0]


def logit_grid_loglik_op(a, g, rho, s, y, mask, x, lag):
    """The grid log-likelihood as a PyTensor scalar (differentiable in a, g, rho, s)."""
    return logit_grid(a, g, rho, s, y, mask, x, lag)[0]


def negbin_pattern_loglik_op(l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra):
    """The pattern part of the quantity log-likelihood as a PyTensor scalar (differentiable in the parameters)."""
    return negbin_patterns(l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra)[0]


def kernel_cache_key(op) -> str:
    """The key under which PyTensor caches an Op's compiled numba function on disk.

    PyTensor's default key is the Op's type and props only, and numba does not
    notice when a function called from a cached one changes: an edited kernel
    would keep running its old compiled code (seen as wrong log-likelihoods).
    Hashing the kernels' source into the key recompiles after every change.
    """
    import hashlib
    from pathlib import Path

    here = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(here.glob("_*kernel*.py")):  # every kernel module, the ones added later included
        digest.update(path.read_bytes())
    return f"bayes_retail.{type(op).__name__}.{digest.hexdigest()}"


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_and_cache_key

    @register_funcify_and_cache_key(LogitGridLoglik)
    def _funcify_logit(op, node=None, **kwargs):
        @numba_njit
        def kernel(a, g, rho, s, y, mask, x, lag):
            total, d_a, d_g, d_rho, d_s = logit_grid_loglik(a, g, rho[()], s, y, mask, x, lag)
            return np.asarray(total), d_a, d_g, np.asarray(d_rho), d_s

        return kernel, kernel_cache_key(op)

    @register_funcify_and_cache_key(NegBinPatternLoglik)
    def _funcify_negbin(op, node=None, **kwargs):
        @numba_njit
        def kernel(l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra):
            total, d_l, d_kappa, d_basket, d_log_alpha = negbin_pattern_loglik(
                l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra
            )
            return np.asarray(total), d_l, d_kappa, d_basket, d_log_alpha

        return kernel, kernel_cache_key(op)

    @register_funcify_and_cache_key(CloglogCellsLoglik)
    def _funcify_cloglog(op, node=None, **kwargs):
        @numba_njit
        def kernel(b, u, pref, s, d, offset, household, category, week, trips):
            total, d_b, d_u, d_pref, d_s, d_d, d_offset = cloglog_cells_loglik(
                b, u, pref, s, d, offset, household, category, week, trips
            )
            return np.asarray(total), d_b, d_u, d_pref, d_s, d_d, d_offset

        return kernel, kernel_cache_key(op)


def register_jax() -> None:
    """Give the Op a JAX implementation (for the numpyro method); a no-op without jax."""
    if getattr(register_jax, "done", False):
        return
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # jax is an optional extra
        return

    @jax_funcify.register(LogitGridLoglik)
    def _funcify(op, **kwargs):
        import jax
        import jax.numpy as jnp

        def kernel(a, g, rho, s, y, mask, x, lag):
            eta = a[:, None] + g[:, None] * x + rho * lag + s[None, :]
            total = jnp.sum(mask * (y * eta - jax.nn.softplus(eta)))
            r = mask * (y - jax.nn.sigmoid(eta))
            return total, r.sum(axis=1), (r * x).sum(axis=1), (r * lag).sum(), r.sum(axis=0)

        return kernel

    @jax_funcify.register(NegBinPatternLoglik)
    def _funcify_negbin(op, **kwargs):
        import jax
        import jax.numpy as jnp

        def loglik(l, kappa, basket, log_alpha, item, item_category, household, depth, lines, extra):
            c = item_category[item]
            la = log_alpha[c]
            eta = l[item] + kappa[c] * depth + basket[household]
            log_sum = jnp.logaddexp(la, eta)
            return jnp.sum(lines * jnp.exp(la) * la + extra * eta - (lines * jnp.exp(la) + extra) * log_sum)

        grad = jax.grad(loglik, argnums=(0, 1, 2, 3))

        def kernel(*args):
            return (loglik(*args), *grad(*args))

        return kernel

    @jax_funcify.register(CloglogCellsLoglik)
    def _funcify_cloglog(op, **kwargs):
        import jax
        import jax.numpy as jnp

        def loglik(b, u, pref, s, d, offset, household, category, week, trips):
            eta = b[category] + u[household] + pref[household, category] + s[week] + d[category, week] + offset
            rate = trips * jnp.exp(eta)
            return jnp.sum(jnp.log(-jnp.expm1(-rate)) + rate)

        grad = jax.grad(loglik, argnums=(0, 1, 2, 3, 4, 5))

        def kernel(*args):
            return (loglik(*args), *grad(*args))

        return kernel

    from bayes_retail.models._choice_kernel import register_jax as register_choice_jax

    register_choice_jax()
    register_jax.done = True


_register_numba()
