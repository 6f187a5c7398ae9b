"""bayes_retail: hierarchical Bayesian shopper models of The Complete Journey and synthetic shoppers.

The Python API mirrors the ``bayes-retail`` command line::

    import bayes_retail as br
    data = br.load_data()                      # embedded Complete Journey, validated and cleaned
    floor = br.floor_suite(data.metric_tables())   # the suite between two halves of the households
    print(floor.format_table())
    visit = br.load_posterior("models", stage="visit")  # a fitted stage's ArviZ trace, version-checked
    br.keep_large_buffers()   # what the command line does first: glibc reuses the kernels' large arrays
"""

from bayes_retail._allocator import keep_large_buffers
from bayes_retail._version import __version__
from bayes_retail.data import RetailData, load_data, load_side
from bayes_retail.errors import BayesRetailError, DataError

__all__ = ["BayesRetailError", "DataError", "RetailData", "__version__", "keep_large_buffers", "load_data", "load_side"]


def __getattr__(name: str):
    # The metric suite is imported lazily so `import bayes_retail` stays light.
    if name in {"compute_suite", "real_vs_real_floor", "floor_suite"}:
        from bayes_retail import metrics

        return getattr(metrics, name)
    if name == "load_posterior":
        from bayes_retail.models.artifacts import load_posterior

        return load_posterior
    raise AttributeError(f"module 'bayes_retail' has no attribute {name!r}")
