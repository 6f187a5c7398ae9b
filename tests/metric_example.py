"""The worked example of docs/metrics.md §8, shared by the metric tests."""

# household, basket, product, quantity, sales_value, retail_disc, week
TINY_LINES = [
    (10, 100, 1, 1, 2.0, 0.0, 1),
    (10, 100, 3, 2, 3.0, 0.5, 1),
    (10, 101, 1, 1, 2.0, 0.0, 1),
    (10, 102, 2, 1, 1.5, 0.5, 3),
    (20, 200, 1, 3, 6.0, 1.0, 2),
    (20, 201, 1, 1, 2.0, 0.0, 3),
    (20, 201, 2, 1, 1.5, 0.0, 3),
    (20, 202, 3, 1, 1.0, 0.0, 4),
    (20, 202, 1, 1, 2.0, 0.0, 4),
    (20, 202, 2, 1, 1.5, 0.5, 4),
]
LINE_COLS = ["household_id", "basket_id", "product_id", "quantity", "sales_value", "retail_disc", "week"]
