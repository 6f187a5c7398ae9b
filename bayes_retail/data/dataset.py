"""``load_data``: validated, cleaned data and its derived panels, cached as parquet.

The cache directory holds one folder per (source contents, package version,
panel version); a folder is written atomically and only read when its manifest
is present, so an interrupted build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bayes_retail._io import atomic_dir
from bayes_retail._version import __version__
from bayes_retail.data import clean, panels
from bayes_retail.data.sources import PANELS_MANIFEST, Source, locate, read_table
from bayes_retail.errors import DataError

#: Bump when a cleaning rule or a panel definition changes: it invalidates every cache.
PANELS_VERSION = "1"

#: Tables written to (and read back from) a cache folder, in build order.
PANEL_NAMES: tuple[str, ...] = (
    "transactions",
    "products",
    "promo_weeks",
    "households",
    "visits",
    "categories",
    "choice_sets",
    "category_weeks",
    "choices",
    "product_weeks",
)


def default_cache_dir() -> Path:
    """``$BAYES_RETAIL_CACHE``, else ``$XDG_CACHE_HOME/bayes_retail``, else ``~/.cache/bayes_retail``."""
    if env := os.environ.get("BAYES_RETAIL_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayes_retail"


@dataclass
class RetailData:
    """Cleaned Complete Journey data and its derived panels.

    Attributes
    ----------
    transactions
        Cleaned basket lines (internal schema).
    products
        The full product table.
    promo_weeks
        Promotion calendar: product-weeks with a display or mailer placement.
    households
        Entry window per household (``first_week``, ``last_week``, ``window_weeks``).
    visits
        Dense household-week panel over each window: ``trips`` (0 = no visit), items, spend.
    categories, choice_sets
        Modelling categories and each bought product's choice-set item.
    category_weeks
        Household-category-week purchases.
    choices
        Household-week-product purchases with their choice-set item and units
        (the product-choice and quantity panel).
    product_weeks
        Offered shelf price, depth (NaN = unobserved), display and mailer of every
        choice-set product in every week.
    report
        Source, cleaning counts per rule and a summary.
    """

    transactions: pd.DataFrame
    products: pd.DataFrame
    promo_weeks: pd.DataFrame
    households: pd.DataFrame
    visits: pd.DataFrame
    categories: pd.DataFrame
    choice_sets: pd.DataFrame
    category_weeks: pd.DataFrame
    choices: pd.DataFrame
    product_weeks: pd.DataFrame
    report: dict = field(default_factory=dict)
    cache_path: Path | None = None

    @property
    def weeks(self) -> np.ndarray:
        """The panel's weeks (after cleaning), sorted."""
        return np.asarray(self.report["summary"]["weeks"], dtype=np.int64)

    @property
    def data_hash(self) -> str:
        """Digest of the source contents and cleaning version (what a fitted posterior records)."""
        return self.report["cache_key"]

    def summary(self) -> dict:
        return dict(self.report["summary"])

    def metric_tables(self, name: str = "real"):
        """This data as one side of a metric-suite comparison."""
        from bayes_retail.metrics.tables import MetricTables

        return MetricTables(
            self.transactions,
            self.products[["product_id", "department", "product_category"]],
            self.promo_weeks[["product_id", "week", "display", "mailer"]],
            name=name,
        )


def load_data(
    source: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RetailData:
    """Load, validate and clean a data source and build (or reuse) its derived panels.

    Parameters
    ----------
    source
        ``None`` / ``"embedded"`` for the embedded Complete Journey data, or a folder
        (internal-format tables or the original Dunnhumby CSV download).
    cache_dir
        Where panels are cached (default :func:`default_cache_dir`).
    rebuild
        Rebuild the panels even when a cache for this source exists.
    progress
        Called with a short message at each step (e.g. ``print``).

    Raises
    ------
    DataError
        Any problem with the input, naming the file and the column.
    """
    say = progress or (lambda _msg: None)
    src = locate(source)
    if src.kind == "panels":
        say(f"reading panels {src.path}")
        return _read_cache(src.path)
    key = cache_key(src)
    folder = Path(cache_dir or default_cache_dir()) / key
    if not rebuild and (folder / PANELS_MANIFEST).exists():
        say(f"reusing cached panels {folder}")
        return _read_cache(folder)
    data = build(src, progress=say)
    data.report["cache_key"] = key
    write_panels(data, folder)
    data.cache_path = folder
    say(f"panels cached in {folder}")
    return data


def write_panels(data: RetailData, folder: str | os.PathLike) -> Path:
    """Write ``data``'s tables and report to ``folder`` atomically (a ``panels`` source)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        for name in PANEL_NAMES:
            getattr(data, name).to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / PANELS_MANIFEST).write_text(json.dumps(data.report, indent=2) + "\n")
    return folder


def cache_key(src: Source) -> str:
    """Cache folder name for ``src``: its kind and a digest of contents and versions."""
    content = src.content_hash(("transactions", "products", "promotions"))
    digest = hashlib.blake2b(f"{content}|{__version__}|{PANELS_VERSION}".encode(), digest_size=10).hexdigest()
    return f"{src.kind}-{digest}"


def build(src: Source, *, progress: Callable[[str], None] | None = None) -> RetailData:
    """Read, validate, clean and derive every panel from ``src`` (no cache)."""
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    say(f"reading {src.describe()}")
    raw = read_table(src, "transactions").to_pandas()
    products = _products(read_table(src, "products").to_pandas(), file=src.files["products"].name)
    say("aggregating the promotion calendar")
    calendar = panels.promo_weeks(read_table(src, "promotions", columns=_PROMO_COLUMNS))
    say("cleaning")
    lines, rules = clean.clean_lines(raw, products)
    if lines.empty:
        raise DataError("no transaction lines left after cleaning", file=src.files["transactions"].name)
    weeks = np.sort(lines["week"].unique())
    calendar = calendar[calendar["week"].isin(weeks)].reset_index(drop=True)
    say("building panels")
    hh = panels.households(lines, weeks)
    cats = panels.categories(lines, products)
    sets = panels.choice_sets(lines, products, cats)
    tables = {
        "transactions": lines,
        "products": products,
        "promo_weeks": calendar,
        "households": hh,
        "visits": panels.visits(lines, hh, weeks),
        "categories": cats,
        "choice_sets": sets,
        "category_weeks": panels.category_weeks(lines, sets),
        "choices": panels.choices(lines, sets),
        "product_weeks": panels.product_weeks(lines, sets, calendar, weeks),
    }
    report = {
        "source": {"kind": src.kind, "path": None if src.path is None else str(src.path)},
        "package_version": __version__,
        "panels_version": PANELS_VERSION,
        "lines_read": int(len(raw)),
        "rules": [r.to_dict() for r in rules],
        "summary": _summary(tables, weeks),
        "build_seconds": round(time.perf_counter() - t0, 2),
    }
    return RetailData(**tables, report=report)


_PROMO_COLUMNS = ["product_id", "store_id", "display_location", "mailer_location", "week"]


def _products(products: pd.DataFrame, *, file: str) -> pd.DataFrame:
    dupes = products["product_id"].duplicated()
    if dupes.any():
        example = products.loc[dupes, "product_id"].iloc[0]
        raise DataError(f"{int(dupes.sum())} duplicate product ids, e.g. {example}", file=file, column="product_id")
    for col in ("department", "product_category", "brand"):
        products[col] = products[col].str.strip()
    return products


def _summary(tables: dict[str, pd.DataFrame], weeks: np.ndarray) -> dict:
    lines = tables["transactions"]
    visits = tables["visits"]
    visited = visits["trips"] > 0
    sets = tables["choice_sets"]
    n_items = sets.groupby("category_id")["n_items"].first()
    return {
        "lines": int(len(lines)),
        "households": int(lines["household_id"].nunique()),
        "baskets": int(lines["basket_id"].nunique()),
        "stores": int(lines["store_id"].nunique()),
        "products": int(lines["product_id"].nunique()),
        "categories": int(len(tables["categories"])),
        "weeks": [int(w) for w in weeks],
        "household_weeks": int(len(visits)),
        "visit_rate": float(visited.mean()),
        "trips_per_visit": float(visits.loc[visited, "trips"].mean()),
        "median_first_week": float(tables["households"]["first_week"].median()),
        "choice_set_products": int((~sets["is_other"]).sum()),
        "choice_set_size_median": float(n_items.median()),
        "choice_set_size_max": int(n_items.max()),
        "product_weeks_depth_missing": float(tables["product_weeks"]["depth"].isna().mean()),
    }


def _read_cache(folder: Path) -> RetailData:
    report = json.loads((folder / PANELS_MANIFEST).read_text())
    tables = {name: pq.read_table(folder / f"{name}.parquet").to_pandas() for name in PANEL_NAMES}
    return RetailData(**tables, report=report, cache_path=folder)


def load_side(
    path: str | os.PathLike | None,
    *,
    name: str,
    reference: RetailData | None = None,
    cache_dir: str | os.PathLike | None = None,
    draw: int | None = None,
    progress: Callable[[str], None] | None = None,
):
    """One side of a metric comparison from any source the data layer accepts.

    A full source (embedded, Dunnhumby download, internal tables with products
    and promotions, or a panels folder) goes through :func:`load_data`. A folder
    holding only ``transactions`` (a simulator's output) borrows the product table
    from ``reference`` when it has none, and takes its promotion calendar from its
    own ``promo_weeks`` table, else from the lines' ``display`` / ``mailer``
    columns (then only purchased product-weeks are known), else from ``reference``;
    which one was used is recorded in ``meta["calendar"]``.

    Parameters
    ----------
    draw
        Keep only this posterior draw when the lines carry a ``draw`` column with
        several draws (required then).
    """
    from bayes_retail.metrics.tables import MetricTables

    src = locate(path)
    full = src.kind != "folder" or {"products", "promotions"} <= set(src.files)
    if full:
        side = load_data(path, cache_dir=cache_dir, progress=progress).metric_tables(name)
        side.meta["calendar"] = "promotions table"
        return _select_draw(side, draw)
    src, own_calendar = _one_draw(src, draw)
    lines = read_table(src, "transactions").to_pandas()
    if "products" in src.files:
        products = _products(read_table(src, "products").to_pandas(), file=src.files["products"].name)
    elif reference is not None:
        products = reference.products
    else:
        raise DataError("no products table here and no reference data to borrow one from", file=str(src.path))
    calendar, how = _calendar(src, lines, reference) if own_calendar is None else (
        pd.read_parquet(own_calendar), "own promo_weeks table")
    side = MetricTables(lines, products, calendar, name=name, meta={"calendar": how})
    return _select_draw(side, draw)


def _one_draw(src: Source, draw: int | None) -> tuple[Source, Path | None]:
    """A simulator folder narrowed to one draw: its ``transactions/draw-D`` files and ``calendar/draw-D.parquet``.

    Reads one draw of many without reading the others, and works while later
    draws are still being written (the folder-wide ``promo_weeks`` table is
    written last). Other sources are returned as they are (no calendar).
    """
    transactions = src.files.get("transactions")
    if draw is None or transactions is None or not (transactions / f"draw-{draw}").is_dir():
        return src, None
    calendar = src.path / "calendar" / f"draw-{draw}.parquet"
    narrowed = replace(src, files={**src.files, "transactions": transactions / f"draw-{draw}"})
    return narrowed, calendar if calendar.exists() else None


def _calendar(src: Source, lines: pd.DataFrame, reference: RetailData | None) -> tuple[pd.DataFrame | None, str]:
    own = src.path / "promo_weeks.parquet" if src.path is not None else None
    if own is not None and own.exists():
        cal = pd.read_parquet(own)
        missing = {"product_id", "week", "display", "mailer"} - set(cal.columns)
        if missing:
            raise DataError("promotion calendar lacks a column", file=own.name, column=sorted(missing)[0])
        return cal, "own promo_weeks table"
    if {"display", "mailer"} <= set(lines.columns):
        cal = lines.groupby(["product_id", "week"])[["display", "mailer"]].max().reset_index()
        cal = cal[cal["display"].astype(bool) | cal["mailer"].astype(bool)]
        return cal.astype({"display": bool, "mailer": bool}), "line flags (purchased product-weeks only)"
    if reference is not None:
        return reference.promo_weeks, "borrowed from the reference data"
    return None, "none"


def _select_draw(side, draw: int | None):
    lines = side.transactions
    if "draw" not in lines.columns:
        if draw is not None:
            raise DataError(f"--draw {draw} given but the lines have no draw column", file=f"{side.name} transactions")
        return side
    draws = np.unique(lines["draw"].to_numpy())
    if draw is None:
        if len(draws) > 1:
            raise DataError(
                f"the lines hold {len(draws)} posterior draws ({draws[:5].tolist()}...): choose one with draw=",
                file=f"{side.name} transactions",
                column="draw",
            )
        return side
    if draw not in draws:
        raise DataError(f"draw {draw} not found (draws: {draws[:10].tolist()})", file=f"{side.name} transactions", column="draw")
    side.transactions = lines.loc[lines["draw"] == draw].reset_index(drop=True)
    calendar = getattr(side, "promo_weeks", None)
    if calendar is not None and "draw" in calendar.columns:  # a simulator's calendar: one per draw
        side.promo_weeks = calendar.loc[calendar["draw"] == draw].drop(columns="draw").reset_index(drop=True)
    side.meta["draw"] = int(draw)
    return side
