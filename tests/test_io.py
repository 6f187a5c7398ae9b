"""Atomic writes: a folder lands whole, replaces what was there, and survives a second writer landing first."""

from __future__ import annotations

import os

import pytest

from bayes_retail import _io
from bayes_retail._io import atomic_dir


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_folder_lands_whole_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "cache"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists()  # nothing visible until the block ends
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"] and _leftovers(tmp_path) == []


def test_a_failed_block_leaves_the_old_folder_and_no_temporary(tmp_path):
    target = tmp_path / "cache"
    target.mkdir()
    (target / "kept").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("interrupted")
    assert (target / "kept").read_text() == "old" and _leftovers(tmp_path) == []


def test_a_second_writer_landing_meanwhile_is_replaced(tmp_path, monkeypatch):
    target = tmp_path / "cache"
    calls, real_replace = [], os.replace

    def other_writer_first(src, dst):
        if not calls:  # another process lands the same folder just before this one's move
            target.mkdir()
            (target / "theirs").write_text("2")
        calls.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", other_writer_first)
    with atomic_dir(target) as tmp:
        (tmp / "ours").write_text("1")
    assert sorted(p.name for p in target.iterdir()) == ["ours"] and _leftovers(tmp_path) == []
    assert len(calls) == 3  # the refused move, theirs aside, ours again


def test_a_folder_that_never_moves_is_a_clear_error(tmp_path, monkeypatch):
    target = tmp_path / "cache"

    def refuse(src, dst):
        raise PermissionError(f"cannot move {src}")

    monkeypatch.setattr(_io.os, "replace", refuse)
    with pytest.raises(PermissionError, match="cannot move"), atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    monkeypatch.undo()
    assert not target.exists() and _leftovers(tmp_path) == []
