"""Forward simulator: posterior draws become synthetic shoppers (DESIGN.md §4)."""

from bayes_retail.simulate.engine import LINE_COLUMNS, VISIT_COLUMNS, Batch, simulate_batch
from bayes_retail.simulate.inputs import Catalogue, Customers, PriceGrid, StageDraw
from bayes_retail.simulate.streams import customer_keys

__all__ = ["LINE_COLUMNS", "VISIT_COLUMNS", "Batch", "Catalogue", "Customers", "PriceGrid", "StageDraw", "customer_keys", "simulate_batch"]
