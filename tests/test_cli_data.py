"""The ``bayes-retail data`` command (and the one-line error contract of every command)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from tiny_data import tiny_tables, write_internal

from bayes_retail.cli import main
from bayes_retail.data import load_data, locate
from bayes_retail.data.dataset import PANEL_NAMES


@pytest.fixture
def src(tmp_path):
    return write_internal(tmp_path / "src")


def _data(tmp_path, *args):
    return main(["--cache-dir", str(tmp_path / "cache"), *args])


def _row(out: str, label: str) -> str:
    """The summary line that starts with ``label``."""
    match = re.search(rf"^\s*{re.escape(label)}\s.*$", out, flags=re.M)
    assert match, f"no '{label}' line in:\n{out}"
    return match.group(0)


def _assert_one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bayes-retail {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


def test_data_prints_the_summary_with_rows_removed_per_rule(tmp_path, src, capsys):
    assert _data(tmp_path, "data", "--source", str(src)) == 0
    out = capsys.readouterr().out
    # tiny_data: 33 lines read; 1 / 1 / 1 / 2 / 1 removed; 27 kept
    assert _row(out, "lines read").split()[-1] == "33"
    removed = {rule: int(n) for rule, n in re.findall(r"^\s*- (\w+)\s+(\d+)\s", out, flags=re.M)}
    assert removed == {
        "unknown_product": 1,
        "non_grocery": 1,
        "uncategorised": 1,
        "non_positive": 2,
        "partial_week": 1,
    }
    assert _row(out, "lines kept").split()[-1] == "27"
    assert _row(out, "households").split()[-1] == "4"
    assert _row(out, "baskets").split()[-1] == "15"
    assert "(2-6)" in _row(out, "weeks")  # week 1 dropped
    assert _row(out, "source").startswith(f"source            folder {src}")


def test_data_progress_goes_to_stderr_and_quiet_silences_it(tmp_path, src, capsys):
    assert _data(tmp_path, "data", "--source", str(src)) == 0
    first = capsys.readouterr()
    assert "cleaning" in first.err and "panels cached in" in first.err
    assert "cleaning" not in first.out

    # second run: the cache is reused and the summary (from its manifest) is the same
    assert _data(tmp_path, "data", "--source", str(src)) == 0
    second = capsys.readouterr()
    assert "reusing cached panels" in second.err
    assert second.out == first.out

    assert main(["--quiet", "--cache-dir", str(tmp_path / "cache"), "data", "--source", str(src)]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    assert quiet.out == first.out


def test_data_rebuild_flag_rebuilds(tmp_path, src, capsys):
    assert _data(tmp_path, "data", "--source", str(src)) == 0
    capsys.readouterr()
    assert _data(tmp_path, "data", "--source", str(src), "--rebuild") == 0
    err = capsys.readouterr().err
    assert "reusing" not in err
    assert "building panels" in err


def test_data_out_writes_a_panels_source(tmp_path, src, capsys):
    out_dir = tmp_path / "panels"
    assert _data(tmp_path, "data", "--source", str(src), "--out", str(out_dir)) == 0
    summary = capsys.readouterr().out
    assert locate(out_dir).kind == "panels"
    direct = load_data(src, cache_dir=tmp_path / "cache")
    written = load_data(out_dir)
    for name in PANEL_NAMES:
        pd.testing.assert_frame_equal(getattr(written, name), getattr(direct, name), obj=name)

    # the folder is itself a source for the command
    assert _data(tmp_path, "data", "--source", str(out_dir)) == 0
    again = capsys.readouterr().out
    assert _row(again, "source").startswith("source            folder")  # the report's original source
    assert again.splitlines()[1:] == summary.splitlines()[1:]


def test_data_missing_source_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert _data(tmp_path, "data", "--source", str(missing)) == 2
    captured = capsys.readouterr()
    line = _assert_one_error_line(captured.err, "data")
    assert line == f"bayes-retail data: error: {missing}: no such file or folder"
    assert captured.out == ""


def test_data_unreadable_file_is_one_error_line(tmp_path, src, capsys):
    (src / "transactions.parquet").write_bytes(b"\x00garbage" * 16)
    code = main(["--quiet", "--cache-dir", str(tmp_path / "cache"), "data", "--source", str(src)])
    assert code == 2
    line = _assert_one_error_line(capsys.readouterr().err, "data")
    assert "transactions.parquet" in line and "cannot read the file" in line


def test_data_error_after_progress_messages_is_still_one_error_line(tmp_path, capsys):
    tables = tiny_tables()
    tables["transactions"] = tables["transactions"].drop(columns="sales_value")
    folder = write_internal(tmp_path / "bad", tables, fmt="csv")
    assert _data(tmp_path, "data", "--source", str(folder)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1
    assert err.strip().splitlines()[-1] == errors[0]  # progress lines come before it
    assert "transactions.csv, column 'sales_value'" in errors[0]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_check_with_a_missing_real_source_is_one_error_line(tmp_path, src, capsys):
    code = main(
        ["--quiet", "--cache-dir", str(tmp_path / "cache"), "check",
         "--real", str(tmp_path / "nope"), "--synthetic", str(src), "--out", str(tmp_path / "reports")]
    )
    assert code == 2
    line = _assert_one_error_line(capsys.readouterr().err, "check")
    assert str(tmp_path / "nope") in line
    assert not (tmp_path / "reports").exists()


def test_data_blank_optional_discount_is_a_user_error_not_a_crash(tmp_path, capsys):
    tables = tiny_tables()
    tx = tables["transactions"]
    tx["coupon_match_disc"] = tx["coupon_match_disc"].astype(float)
    tx.loc[29, "coupon_match_disc"] = np.nan
    folder = write_internal(tmp_path / "bad", tables, fmt="csv")
    code = main(["--quiet", "--cache-dir", str(tmp_path / "cache"), "data", "--source", str(folder)])
    # either filled with the default 0.0 (code 0) or rejected as a DataError (code 2, one line)
    if code == 2:
        _assert_one_error_line(capsys.readouterr().err, "data")
    else:
        assert code == 0
