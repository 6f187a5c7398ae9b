"""Published scores of other synthetic-shopper generators on the same data, beside ours.

The numbers are KS complements (1 - KS) that their authors report on the
Complete Journey data: RetailSynth's per-metric scores and a later fork's
best composite. Their metric definitions are theirs (as published); ours are
those of :mod:`bayes_retail.metrics.distributions`, matched by what they
measure, so a row compares like with like in name and intent, not in every
detail of the definition.
"""

from __future__ import annotations

import pandas as pd

#: (source, their metric name, their score, our metric).
PUBLISHED_SCORES: tuple[tuple[str, str, float, str], ...] = (
    ("RetailSynth", "price", 0.81, "price_distribution"),
    ("RetailSynth", "category size", 0.66, "category_size"),
    ("RetailSynth", "visit", 0.68, "visit_probability"),
    ("RetailSynth", "category", 0.85, "category_purchase"),
    ("RetailSynth", "product", 0.89, "product_purchase"),
    ("RetailSynth", "quantity", 0.94, "quantity"),
    ("RetailSynth", "recency", 0.87, "recency"),
    ("RetailSynth", "categories per visit", 0.69, "category_penetration"),
    ("RetailSynth", "items per visit", 0.49, "basket_size"),
    ("RetailSynth", "items per product-week", 0.99, "sales_volume"),
    ("later fork (best composite 0.54)", "basket", 0.71, "basket_size"),
    ("later fork (best composite 0.54)", "revenue", 0.62, "revenue"),
    ("later fork (best composite 0.54)", "visit", 0.53, "visit_probability"),
    ("later fork (best composite 0.54)", "quantity", 0.79, "quantity"),
)


def anchor_table(metrics: dict) -> pd.DataFrame:
    """Published scores beside ours from a ``metrics.json`` document (``{"metrics": {name: {"ks": ...}}}``).

    Columns: ``source``, ``their_metric``, ``their_score``, ``our_metric``,
    ``our_score`` (1 - KS; NaN when the run lacks the metric) and
    ``difference`` (ours minus theirs).
    """
    ours = {name: 1.0 - m["ks"] for name, m in metrics["metrics"].items() if m.get("ks") is not None}
    rows = [{"source": source, "their_metric": theirs, "their_score": score, "our_metric": name,
             "our_score": ours.get(name, float("nan"))} for source, theirs, score, name in PUBLISHED_SCORES]
    table = pd.DataFrame(rows)
    table["difference"] = table["our_score"] - table["their_score"]
    return table
