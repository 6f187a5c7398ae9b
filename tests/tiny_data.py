"""A tiny, hand-checkable Complete Journey-like data set, and writers for each source format.

Lines are built with :func:`line`, where ``price`` is the unit shelf price, so a
line's shelf price is known by construction:
sales_value = quantity * price - retail_disc - coupon_match_disc.

Hand-derived facts the tests rely on (after cleaning):
- raw lines: 33; removed: unknown product 1, non-grocery 1 (FUEL), uncategorised 1,
  non-positive 2 (one quantity 0, one sales_value 0), partial week 1 (week 1: 1 line
  against a median week of 5.5): 27 lines kept in weeks 2-6.
- product 101, week 6: shelf prices 2.00 (a coupon match of 0.20 is part of the shelf
  price), 2.00, 2.20 -> offered 2.00.
- MILK (products 101-104): lines 101: 10, 102: 7, 103: 1, 104: 1 (19). After the top 2
  "other" holds 2/19 = 0.105 < 0.2, after the top 1 it holds 9/19: two items, and
  "other" = {104, 103} (1 line each; 104 ranks first on sales), tail shares 0.5 each.
- BREAD (201, 202): 201: 7 lines, 202: 1. After the top 1, other holds 1/8 < 0.2:
  one item, other = {202}, tail share 1.0.
- product 101, week 3: unit shelf prices 2.00, 2.00, 2.50 -> offered 2.00; depths at
  2.00 are 0.25 and 0.00 (a tie) -> 0.25. Week 4: no purchase -> shelf 2.00 carried
  forward, depth missing.
- households 1, 2, 3 enter in week 2 (household 1's week-1 line is dropped with the
  partial week), household 4 in week 4.
- promotions (2 stores): 101 week 3 on display at store 10 and in the mailer at store 11;
  201 week 4 in the mailer at store 10; 102 week 5 on display at store 11.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bayes_retail.data.schema import DUNNHUMBY_TABLES

LINE_COLUMNS = [
    "household_id", "store_id", "basket_id", "product_id", "quantity", "sales_value",
    "retail_disc", "coupon_disc", "coupon_match_disc", "week", "transaction_timestamp",
]


def line(hh, basket, product, week, *, qty=1, price=1.0, disc=0.0, match=0.0, store=10, sales=None):
    sales_value = qty * price - disc - match if sales is None else sales
    ts = pd.Timestamp("2017-01-01") + pd.Timedelta(days=7 * (week - 1), hours=hh)
    return (hh, store, basket, product, qty, round(sales_value, 2), disc, 0.0, match, week, ts)


def tiny_tables() -> dict[str, pd.DataFrame]:
    rows = [
        # week 1: partial (a single line)
        line(1, 1, 101, 1, price=2.0),
        # week 2
        line(1, 2, 101, 2, price=2.0), line(1, 2, 201, 2, price=3.0),
        line(2, 3, 101, 2, price=2.0), line(2, 3, 102, 2, price=1.5),
        line(3, 4, 102, 2, price=1.5), line(3, 4, 201, 2, price=3.0),
        # week 3
        line(1, 5, 101, 3, price=2.0, disc=0.5), line(1, 5, 103, 3, price=1.0),
        line(2, 6, 101, 3, price=2.0), line(2, 6, 201, 3, price=3.0),
        line(3, 7, 101, 3, qty=2, price=2.5), line(3, 7, 102, 3, price=1.5),
        # week 4, with one line for each row rule
        line(1, 8, 102, 4, price=1.5), line(1, 8, 201, 4, price=3.0),
        line(1, 8, 900, 4, qty=10, price=2.9),                 # FUEL
        line(1, 8, 201, 4, price=3.0, sales=0.0),              # sales_value 0
        line(4, 9, 104, 4, price=1.2), line(4, 9, 202, 4, price=2.0),
        line(4, 9, 901, 4, price=4.0),                         # no product_category
        line(2, 10, 201, 4, price=3.0),
        line(2, 10, 999, 4, qty=0, price=0.0),                 # unknown product
        line(3, 17, 102, 4, qty=0, price=1.5, sales=0.0),      # quantity 0
        # week 5 (household 1 makes two trips)
        line(1, 11, 101, 5, price=2.0), line(1, 11, 102, 5, price=1.5),
        line(1, 12, 201, 5, qty=2, price=3.0),
        line(4, 13, 101, 5, price=2.0),
        # week 6
        line(2, 14, 101, 6, price=2.0, match=0.2), line(2, 14, 102, 6, price=1.5),
        line(3, 15, 201, 6, price=3.0),
        line(4, 16, 102, 6, price=1.5), line(4, 16, 101, 6, price=2.0), line(3, 15, 101, 6, price=2.2),
    ]
    transactions = pd.DataFrame(rows, columns=LINE_COLUMNS)
    products = pd.DataFrame(
        {
            "product_id": [101, 102, 103, 104, 201, 202, 900, 901],
            "manufacturer_id": [1, 2, 1, 3, 4, 2, 9, 5],
            "department": ["GROCERY"] * 6 + ["FUEL", "GROCERY"],
            "brand": ["National", "Private", "National", "National", "National", "Private", "National", "National"],
            "product_category": ["MILK", "MILK", "MILK", "MILK", "BREAD", "BREAD", "FUEL", None],
            "product_type": ["WHOLE", "WHOLE", "SKIM", "SKIM", "WHITE", "WHITE", "GAS", None],
            "package_size": ["1 GA", "1 GA", "1/2 GA", "1/2 GA", "20 OZ", "20 OZ", None, None],
        }
    )
    promotions = pd.DataFrame(
        {
            "product_id": [101, 101, 101, 201, 102],
            "store_id": [10, 10, 11, 10, 11],
            "display_location": ["1", "1", "0", "0", "2"],
            "mailer_location": ["A", "0", "A", "A", "0"],
            "week": [1, 3, 3, 4, 5],
        }
    )
    demographics = pd.DataFrame({"household_id": [1, 2], "age": ["35-44", "45-54"]})
    return {"transactions": transactions, "products": products, "promotions": promotions, "demographics": demographics}


def write_internal(folder: Path, tables: dict[str, pd.DataFrame] | None = None, *, fmt: str = "parquet") -> Path:
    """Write the tables as ``NAME.parquet`` or ``NAME.csv`` files in ``folder``."""
    tables = tiny_tables() if tables is None else tables
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "parquet":
            df.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            out = df.copy()
            if "transaction_timestamp" in out:
                out["transaction_timestamp"] = out["transaction_timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
            out.to_csv(folder / f"{name}.csv", index=False)
    return folder


def write_dunnhumby(folder: Path, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write the tables as the original download: upper-case columns, negative discounts."""
    tables = tiny_tables() if tables is None else tables
    folder.mkdir(parents=True, exist_ok=True)
    for spec in DUNNHUMBY_TABLES:
        if spec.table not in tables:
            continue
        df = tables[spec.table].copy()
        if spec.table == "transactions":
            for col in ("retail_disc", "coupon_disc", "coupon_match_disc"):
                df[col] = -df[col]
            df["day"] = 7 * (df["week"] - 1) + 1
            df["trans_time"] = 1200
            df = df.drop(columns="transaction_timestamp")
        inverse = {v: k for k, v in spec.rename.items()}
        df = df.rename(columns=inverse)
        df.to_csv(folder / spec.file, index=False)
    return folder


def kept_line_count() -> int:
    return 27


def as_sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys, ignore_index=True)


__all__ = ["tiny_tables", "write_internal", "write_dunnhumby", "line", "kept_line_count", "as_sorted", "np"]
