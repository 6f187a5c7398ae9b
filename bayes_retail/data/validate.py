"""Validation of one table against its :class:`~bayes_retail.data.schema.TableSpec`.

Works on pyarrow tables so the 21M-row promotions table is checked without a
pandas copy. Every failure raises :class:`~bayes_retail.errors.DataError` naming
the file and the column.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bayes_retail.data.schema import Column, TableSpec
from bayes_retail.errors import DataError

_EXAMPLES = 3


def validate_table(tbl: pa.Table, spec: TableSpec, *, file: str) -> pa.Table:
    """Check ``tbl`` against ``spec``; return it with columns cast to their internal types.

    Optional columns the table lacks are added with their default when they have one.
    Columns outside the spec are kept unchanged.

    Raises
    ------
    DataError
        Empty table, missing required column, wrong type, or a missing value in a key column.
    """
    if tbl.num_rows == 0:
        raise DataError(f"the {spec.name} table is empty", file=file)
    missing = [c for c in spec.required_columns if c not in tbl.column_names]
    if missing:
        raise DataError(
            f"required column missing from the {spec.name} table (found: {', '.join(tbl.column_names)})",
            file=file,
            column=missing[0],
        )
    for col in spec.columns:
        if col.name in tbl.column_names:
            cast = _cast_column(tbl[col.name], col, file=file)
            if col.default is not None and cast.null_count:
                # a blank optional amount (a discount) means none, as an absent column does
                cast = pc.fill_null(cast, pa.scalar(col.default, _ARROW_TYPES[col.kind]))
            tbl = tbl.set_column(tbl.column_names.index(col.name), col.name, cast)
        elif col.default is not None:
            tbl = tbl.append_column(col.name, pa.array([col.default] * tbl.num_rows, type=_ARROW_TYPES[col.kind]))
    return tbl


_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "datetime": pa.timestamp("ns")}


def _cast_column(arr: pa.ChunkedArray, col: Column, *, file: str) -> pa.ChunkedArray:
    if arr.null_count and not col.allows_missing:
        what = "a key column" if col.key else "a column that may not be missing"
        raise DataError(f"{arr.null_count} missing value(s) in {what}", file=file, column=col.name)
    kind = col.kind
    if kind == "str":
        return arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    if kind == "datetime":
        return _cast_datetime(arr, col, file=file)
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_null(arr.type)):
        examples = _non_numeric_examples(arr)
        raise DataError(
            f"expected {'integers' if kind == 'int' else 'numbers'}, found {arr.type} values such as {examples}",
            file=file,
            column=col.name,
        )
    if kind == "float":
        return arr.cast(pa.float64())
    if pa.types.is_floating(arr.type):
        filled = pc.fill_null(arr, 0.0)
        fractional = pc.not_equal(filled, pc.floor(filled))
        if pc.any(fractional).as_py():
            bad = pc.filter(arr, fractional).slice(0, _EXAMPLES).to_pylist()
            raise DataError(f"expected integers, found fractional values such as {bad}", file=file, column=col.name)
    return arr.cast(pa.int64())


def _cast_datetime(arr: pa.ChunkedArray, col: Column, *, file: str) -> pa.ChunkedArray:
    if pa.types.is_timestamp(arr.type):
        return arr.cast(pa.timestamp("ns"))
    try:
        return pc.strptime(arr.cast(pa.string()), format="%Y-%m-%d %H:%M:%S", unit="ns")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"expected timestamps (YYYY-MM-DD HH:MM:SS), found values such as {_examples(arr)}",
            file=file,
            column=col.name,
        ) from exc


def _non_numeric_examples(arr: pa.ChunkedArray) -> list:
    text = pc.drop_null(arr.cast(pa.string()))
    numeric = pc.match_substring_regex(text, r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
    return pc.filter(text, pc.invert(numeric)).slice(0, _EXAMPLES).to_pylist()


def _examples(arr: pa.ChunkedArray) -> list:
    return pc.drop_null(arr).slice(0, _EXAMPLES).to_pylist()
