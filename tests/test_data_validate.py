"""Validation: every bad input raises DataError naming the file and the column.

Each test breaks one thing in the tiny fixture data, writes it in a source format and
loads it with ``load_data`` (so the whole read -> validate path is exercised).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tiny_data import tiny_tables, write_internal

from bayes_retail.data import load_data
from bayes_retail.data.schema import TRANSACTIONS
from bayes_retail.data.validate import validate_table
from bayes_retail.errors import BayesRetailError, DataError


def _load(tmp_path, tables, fmt="csv"):
    folder = write_internal(tmp_path / "src", tables, fmt=fmt)
    return load_data(folder, cache_dir=tmp_path / "cache")


def _load_error(tmp_path, tables, fmt="csv") -> DataError:
    with pytest.raises(DataError) as info:
        _load(tmp_path, tables, fmt)
    return info.value


def _assert_names(err: DataError, file: str, column: str | None):
    assert err.file == file
    assert err.column == column
    assert str(err).startswith(file)
    if column is not None:
        assert f"column '{column}'" in str(err)


def test_data_error_is_a_bayes_retail_error():
    # the CLI prints BayesRetailError as one line, so DataError must be one
    assert issubclass(DataError, BayesRetailError)
    err = DataError("bad", file="t.csv", column="c")
    assert str(err) == "t.csv, column 'c': bad"


# --------------------------------------------------------------------------- tables and columns


def test_missing_products_table(tmp_path):
    tables = tiny_tables()
    del tables["products"]
    err = _load_error(tmp_path, tables)
    # no file to name: the source folder is named instead
    assert err.file == f"folder {tmp_path / 'src'}"
    assert err.column is None
    assert "required table 'products' is missing" in str(err)


def test_missing_promotions_table(tmp_path):
    tables = tiny_tables()
    del tables["promotions"]
    err = _load_error(tmp_path, tables)
    assert "required table 'promotions' is missing" in str(err)


def test_missing_sales_value_column(tmp_path):
    tables = tiny_tables()
    tables["transactions"] = tables["transactions"].drop(columns="sales_value")
    err = _load_error(tmp_path, tables)
    _assert_names(err, "transactions.csv", "sales_value")
    assert "required column missing" in str(err)


def test_missing_product_category_column(tmp_path):
    tables = tiny_tables()
    tables["products"] = tables["products"].drop(columns="product_category")
    err = _load_error(tmp_path, tables, fmt="parquet")
    _assert_names(err, "products.parquet", "product_category")


def test_text_in_an_integer_column(tmp_path):
    tables = tiny_tables()
    tx = tables["transactions"]
    tx["household_id"] = tx["household_id"].astype(object)
    tx.loc[3, "household_id"] = "abc"
    err = _load_error(tmp_path, tables)
    _assert_names(err, "transactions.csv", "household_id")
    assert "expected integers" in str(err)


def test_text_in_an_integer_column_quotes_the_offending_value(tmp_path):
    tables = tiny_tables()
    tx = tables["transactions"]
    tx["household_id"] = tx["household_id"].astype(object)
    tx.loc[3, "household_id"] = "abc"
    err = _load_error(tmp_path, tables)
    assert "abc" in str(err)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_fractional_quantity(tmp_path, fmt):
    tables = tiny_tables()
    tx = tables["transactions"]
    tx["quantity"] = tx["quantity"].astype(float)
    tx.loc[4, "quantity"] = 1.5
    err = _load_error(tmp_path, tables, fmt)
    _assert_names(err, f"transactions.{fmt}", "quantity")
    assert "fractional" in str(err) and "1.5" in str(err)


def test_whole_floats_in_an_integer_column_are_accepted(tmp_path):
    tables = tiny_tables()
    tables["transactions"]["quantity"] = tables["transactions"]["quantity"].astype(float)  # 1.0, 2.0, ...
    data = _load(tmp_path, tables, fmt="parquet")
    assert data.transactions["quantity"].dtype == np.int64
    assert len(data.transactions) == 27


def test_blank_product_id_is_a_missing_key(tmp_path):
    tables = tiny_tables()
    tx = tables["transactions"]
    tx["product_id"] = tx["product_id"].astype(float)
    tx.loc[4, "product_id"] = np.nan  # written as an empty CSV field
    err = _load_error(tmp_path, tables)
    _assert_names(err, "transactions.csv", "product_id")
    assert "1 missing value(s) in a key column" in str(err)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_blank_quantity_is_missing_in_a_non_nullable_column(tmp_path, fmt):
    tables = tiny_tables()
    tx = tables["transactions"]
    tx["quantity"] = tx["quantity"].astype(float)
    tx.loc[[4, 7], "quantity"] = np.nan
    err = _load_error(tmp_path, tables, fmt)
    _assert_names(err, f"transactions.{fmt}", "quantity")
    assert "2 missing value(s)" in str(err)


def test_missing_department_is_an_error(tmp_path):
    tables = tiny_tables()
    tables["products"].loc[0, "department"] = None
    err = _load_error(tmp_path, tables)
    _assert_names(err, "products.csv", "department")


def test_header_only_csv_is_an_empty_table(tmp_path):
    folder = write_internal(tmp_path / "src", fmt="csv")
    header = (folder / "transactions.csv").read_text().splitlines()[0]
    (folder / "transactions.csv").write_text(header + "\n")
    with pytest.raises(DataError) as info:
        load_data(folder, cache_dir=tmp_path / "cache")
    _assert_names(info.value, "transactions.csv", None)
    assert "the transactions table is empty" in str(info.value)


def test_garbage_parquet_is_unreadable(tmp_path):
    folder = write_internal(tmp_path / "src")
    (folder / "transactions.parquet").write_bytes(b"\x00not parquet\xff" * 20)
    with pytest.raises(DataError) as info:
        load_data(folder, cache_dir=tmp_path / "cache")
    _assert_names(info.value, "transactions.parquet", None)
    assert "cannot read the file" in str(info.value)
    assert "\n" not in str(info.value)


def test_ragged_csv_is_unreadable(tmp_path):
    folder = write_internal(tmp_path / "src", fmt="csv")
    with open(folder / "products.csv", "a") as fh:
        fh.write("1,2,3\n")  # 3 fields where the header has 7
    with pytest.raises(DataError) as info:
        load_data(folder, cache_dir=tmp_path / "cache")
    _assert_names(info.value, "products.csv", None)
    assert "cannot read the file" in str(info.value)


def test_duplicate_product_ids(tmp_path):
    tables = tiny_tables()
    products = tables["products"]
    tables["products"] = pd.concat([products, products.iloc[[1]]], ignore_index=True)  # 102 twice
    err = _load_error(tmp_path, tables)
    _assert_names(err, "products.csv", "product_id")
    assert "1 duplicate product ids, e.g. 102" in str(err)


# --------------------------------------------------------------------------- optional parts


def test_optional_transaction_columns_may_be_absent(tmp_path):
    tables = tiny_tables()
    tables["transactions"] = tables["transactions"].drop(
        columns=["coupon_disc", "coupon_match_disc", "transaction_timestamp"]
    )
    data = _load(tmp_path, tables, fmt="parquet")
    tx = data.transactions
    # the discount columns are filled with their default 0.0; the timestamp has none: left out
    assert (tx["coupon_disc"] == 0.0).all()
    assert (tx["coupon_match_disc"] == 0.0).all()
    assert "transaction_timestamp" not in tx.columns
    assert len(tx) == 27
    # without the 0.20 coupon match, 101's week-6 lines cost 1.80, 2.00, 2.20 at the shelf:
    # three prices once each, ties go to the higher one -> 2.20
    pw = data.product_weeks.set_index(["product_id", "week"])
    assert pw.loc[(101, 6), "shelf_price"] == pytest.approx(2.2)


def test_optional_demographics_table_may_be_absent(tmp_path):
    tables = tiny_tables()
    del tables["demographics"]
    data = _load(tmp_path, tables)
    assert len(data.transactions) == 27


def test_extra_columns_are_kept(tmp_path):
    tables = tiny_tables()
    tables["transactions"]["channel"] = "store"
    data = _load(tmp_path, tables, fmt="parquet")
    assert (data.transactions["channel"] == "store").all()


def test_validate_table_casts_to_internal_types():
    tbl = pa.table(
        {
            "household_id": pa.array([1, 2], pa.int32()),
            "store_id": [10, 10],
            "basket_id": [1, 2],
            "product_id": [101, 102],
            "quantity": [1.0, 2.0],
            "sales_value": pa.array([2, 3], pa.int64()),
            "retail_disc": [0.0, 0.5],
            "week": [2, 3],
        }
    )
    out = validate_table(tbl, TRANSACTIONS, file="t")
    assert out["household_id"].type == pa.int64()
    assert out["quantity"].type == pa.int64()
    assert out["sales_value"].type == pa.float64()
    assert out["coupon_disc"].to_pylist() == [0.0, 0.0]
    assert "transaction_timestamp" not in out.column_names


def test_validate_table_rejects_bad_timestamps():
    tbl = pa.table(
        {
            "household_id": [1], "store_id": [10], "basket_id": [1], "product_id": [101],
            "quantity": [1], "sales_value": [2.0], "retail_disc": [0.0], "week": [2],
            "transaction_timestamp": ["yesterday"],
        }
    )
    with pytest.raises(DataError) as info:
        validate_table(tbl, TRANSACTIONS, file="t.csv")
    _assert_names(info.value, "t.csv", "transaction_timestamp")


def test_blank_coupon_match_disc_is_filled_or_rejected(tmp_path):
    tables = tiny_tables()
    tx = tables["transactions"]
    tx["coupon_match_disc"] = tx["coupon_match_disc"].astype(float)
    tx.loc[29, "coupon_match_disc"] = np.nan  # household 3's week-6 line of product 201 (price 3.00)
    try:
        data = _load(tmp_path, tables)
    except DataError as err:  # acceptable: a clear error naming the column
        _assert_names(err, "transactions.csv", "coupon_match_disc")
        return
    # or: the blank is the default 0.0, and 201's week-6 shelf price is its 3.00
    pw = data.product_weeks.set_index(["product_id", "week"])
    assert pw.loc[(201, 6), "shelf_price"] == pytest.approx(3.0)
