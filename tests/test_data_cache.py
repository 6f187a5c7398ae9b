"""The panel cache: reuse, invalidation, rebuild, atomic writes and panels folders."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from tiny_data import tiny_tables, write_internal

from bayes_retail.data import dataset, default_cache_dir, load_data, locate, write_panels
from bayes_retail.data.dataset import PANEL_NAMES, cache_key
from bayes_retail.data.sources import PANELS_MANIFEST


def _forbid_build(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("build() called: the cache was not reused")

    monkeypatch.setattr(dataset, "build", no_build)


def _count_builds(monkeypatch) -> list:
    calls = []
    real = dataset.build

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset, "build", counting)
    return calls


def _entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _assert_same_tables(a, b):
    for name in PANEL_NAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


def test_second_load_reuses_the_cache(tmp_path, monkeypatch):
    src = write_internal(tmp_path / "src")
    first = load_data(src, cache_dir=tmp_path / "cache")
    assert (first.cache_path / PANELS_MANIFEST).exists()
    assert first.cache_path.parent == tmp_path / "cache"
    assert first.cache_path.name == first.report["cache_key"] == cache_key(locate(src))

    _forbid_build(monkeypatch)
    messages = []
    second = load_data(src, cache_dir=tmp_path / "cache", progress=messages.append)
    assert second.cache_path == first.cache_path
    assert any("reusing cached panels" in m for m in messages)
    _assert_same_tables(first, second)
    assert second.report["rules"] == first.report["rules"]


def test_same_contents_elsewhere_share_the_cache(tmp_path, monkeypatch):
    src = write_internal(tmp_path / "src")
    first = load_data(src, cache_dir=tmp_path / "cache")
    copy = shutil.copytree(src, tmp_path / "copy")
    _forbid_build(monkeypatch)
    assert load_data(copy, cache_dir=tmp_path / "cache").cache_path == first.cache_path


def test_changed_source_contents_give_a_new_key_and_a_rebuild(tmp_path, monkeypatch):
    src = write_internal(tmp_path / "src")
    first = load_data(src, cache_dir=tmp_path / "cache")

    tables = tiny_tables()
    tables["transactions"].loc[29, "sales_value"] = 3.5  # household 3's week-6 bread line
    write_internal(src, tables)
    calls = _count_builds(monkeypatch)
    second = load_data(src, cache_dir=tmp_path / "cache")

    assert len(calls) == 1
    assert second.report["cache_key"] != first.report["cache_key"]
    assert second.cache_path != first.cache_path
    assert _entries(tmp_path / "cache") == sorted([first.cache_path.name, second.cache_path.name])
    # the new data is the one returned: bread sales 26.00 + 0.50
    cats = second.categories.set_index("product_category")
    assert cats.loc["BREAD", "sales_value"] == pytest.approx(26.5)


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [("products", "brand", "Private"), ("promotions", "mailer_location", "0")],  # were National / A
)
def test_changed_products_or_promotions_change_the_key(tmp_path, table, column, value):
    src = write_internal(tmp_path / "src")
    before = cache_key(locate(src))
    tables = tiny_tables()
    assert tables[table].loc[0, column] != value
    tables[table].loc[0, column] = value
    write_internal(src, tables)
    assert cache_key(locate(src)) != before


def test_rebuild_true_rebuilds(tmp_path, monkeypatch):
    src = write_internal(tmp_path / "src")
    first = load_data(src, cache_dir=tmp_path / "cache")
    calls = _count_builds(monkeypatch)
    again = load_data(src, cache_dir=tmp_path / "cache", rebuild=True)
    assert len(calls) == 1
    assert again.cache_path == first.cache_path  # same key, folder replaced
    assert _entries(tmp_path / "cache") == [first.cache_path.name]
    _assert_same_tables(first, again)


def _fail_on_third_to_parquet(monkeypatch):
    real = pd.DataFrame.to_parquet
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", flaky)
    return calls


def test_failure_while_writing_leaves_no_cache_and_no_temporary_folder(tmp_path, monkeypatch):
    src = write_internal(tmp_path / "src")  # written before to_parquet is broken
    cache = tmp_path / "cache"
    calls = _fail_on_third_to_parquet(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        load_data(src, cache_dir=cache)
    assert len(calls) == 3  # transactions, products written; promo_weeks failed
    # no folder with a manifest, no hidden temporary directory
    assert _entries(cache) == []

    monkeypatch.undo()
    data = load_data(src, cache_dir=cache)
    assert (data.cache_path / PANELS_MANIFEST).exists()
    assert _entries(cache) == [data.cache_path.name]
    assert len(data.transactions) == 27


def test_failed_rebuild_keeps_the_previous_cache(tmp_path, monkeypatch):
    src = write_internal(tmp_path / "src")
    cache = tmp_path / "cache"
    first = load_data(src, cache_dir=cache)
    _fail_on_third_to_parquet(monkeypatch)
    with pytest.raises(OSError):
        load_data(src, cache_dir=cache, rebuild=True)
    monkeypatch.undo()
    assert _entries(cache) == [first.cache_path.name]
    _forbid_build(monkeypatch)
    _assert_same_tables(first, load_data(src, cache_dir=cache))


def test_write_panels_round_trips(tmp_path, monkeypatch):
    data = load_data(write_internal(tmp_path / "src"), cache_dir=tmp_path / "cache")
    out = write_panels(data, tmp_path / "panels")
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.parquet" for n in PANEL_NAMES] + [PANELS_MANIFEST])

    _forbid_build(monkeypatch)  # a panels folder is read as it is
    back = load_data(out, cache_dir=tmp_path / "other-cache")
    _assert_same_tables(data, back)
    assert back.report == data.report
    assert back.cache_path == out
    assert back.data_hash == data.data_hash
    assert not (tmp_path / "other-cache").exists()  # nothing cached for a panels source


def test_write_panels_replaces_an_existing_folder(tmp_path):
    data = load_data(write_internal(tmp_path / "src"), cache_dir=tmp_path / "cache")
    out = tmp_path / "panels"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    write_panels(data, out)
    assert not (out / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary or old folder left


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYES_RETAIL_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    data = load_data(write_internal(tmp_path / "src"))
    assert data.cache_path.parent == tmp_path / "env-cache"

    monkeypatch.delenv("BAYES_RETAIL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "bayes_retail"


def _write_hive(folder, week_dirs: dict[int, int]):
    """Transactions as hive parts transactions/week=W/part-0.parquet (week only in the folder name)."""
    tables = tiny_tables()
    write_internal(folder, {k: v for k, v in tables.items() if k != "transactions"})
    for week, rows in tables["transactions"].groupby("week"):
        part = folder / "transactions" / f"week={week_dirs.get(week, week)}"
        part.mkdir(parents=True)
        rows.drop(columns="week").to_parquet(part / "part-0.parquet", index=False)
    return folder


def test_hive_partitioned_transactions_are_read_with_their_week(tmp_path):
    data = load_data(_write_hive(tmp_path / "src", {}), cache_dir=tmp_path / "cache")
    assert len(data.transactions) == 27
    assert data.weeks.tolist() == [2, 3, 4, 5, 6]


def test_renamed_hive_partition_changes_the_cache_key(tmp_path):
    a = _write_hive(tmp_path / "a", {})
    b = _write_hive(tmp_path / "b", {6: 7})  # week 6's lines now in week=7/
    load_data(a, cache_dir=tmp_path / "cache")
    data_b = load_data(b, cache_dir=tmp_path / "cache")
    assert data_b.weeks.tolist() == [2, 3, 4, 5, 7]
