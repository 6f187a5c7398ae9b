"""``bayes-retail check`` / ``run`` and ``load_side``: sides from any source, metrics.json written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny_data import tiny_tables, write_internal

from bayes_retail.cli import main
from bayes_retail.data import load_data, load_side
from bayes_retail.errors import DataError
from bayes_retail.metrics import METRICS


@pytest.fixture
def real_dir(tmp_path):
    return write_internal(tmp_path / "real")


def _cli(tmp_path, *args):
    return main(["--quiet", "--cache-dir", str(tmp_path / "cache"), *args])


def test_check_of_a_source_against_itself_scores_one_everywhere(tmp_path, real_dir, capsys):
    out = tmp_path / "report"
    code = _cli(tmp_path, "check", "--synthetic", str(real_dir), "--real", str(real_dir), "--floor", "--out", str(out))
    assert code == 0
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["metrics"]) == set(METRICS)
    for name, m in result["metrics"].items():
        assert m["ks"] == 0.0 and m["score"] == 1.0, name
        assert m["floor_ks"] is not None
        assert m["n_real"] == m["n_synthetic"] > 0
    assert result["overall"] == 1.0
    printed = capsys.readouterr().out
    assert "overall" in printed and "visit_probability" in printed


def test_two_formats_of_the_same_data_compare_equal(tmp_path, real_dir):
    csv_dir = write_internal(tmp_path / "csv", fmt="csv")
    out = tmp_path / "report"
    assert _cli(tmp_path, "check", "--synthetic", str(csv_dir), "--real", str(real_dir), "--out", str(out)) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert all(m["ks"] == 0.0 for m in result["metrics"].values())


def _simulator_like(folder, *, draws=(0,), with_flags=True):
    """A transactions-only folder (what the simulator writes): cleaned real lines, one copy per draw."""
    data = load_data(write_internal(folder.parent / "src"), cache_dir=folder.parent / "cache_src")
    lines = data.transactions.copy()
    if with_flags:
        flags = data.promo_weeks.set_index(["product_id", "week"])[["display", "mailer"]]
        lines = lines.join(flags, on=["product_id", "week"])
        lines[["display", "mailer"]] = lines[["display", "mailer"]].fillna(False).astype(bool)
    parts = [lines.assign(draw=d) for d in draws]
    folder.mkdir(parents=True)
    (folder / "transactions").mkdir()
    for d, part in zip(draws, parts):
        part.to_parquet(folder / "transactions" / f"part-{d}.parquet", index=False)
    return data


def test_a_transactions_only_folder_borrows_products_and_reads_calendar_from_line_flags(tmp_path):
    reference = _simulator_like(tmp_path / "sim")
    side = load_side(tmp_path / "sim", name="synthetic", reference=reference)
    assert side.meta["calendar"] == "line flags (purchased product-weeks only)"
    assert side.products is reference.products
    # the tiny data's promoted product-weeks that were bought: 101 w3, 102 w5, 201 w4
    cal = side.promo_weeks.sort_values(["product_id", "week"])
    assert list(zip(cal["product_id"], cal["week"])) == [(101, 3), (102, 5), (201, 4)]


def test_without_flags_the_calendar_is_borrowed_from_the_reference(tmp_path):
    reference = _simulator_like(tmp_path / "sim", with_flags=False)
    side = load_side(tmp_path / "sim", name="synthetic", reference=reference)
    assert side.meta["calendar"] == "borrowed from the reference data"
    pd.testing.assert_frame_equal(side.promo_weeks, reference.promo_weeks)


def test_several_draws_need_a_choice(tmp_path):
    reference = _simulator_like(tmp_path / "sim", draws=(3, 7))
    with pytest.raises(DataError, match="2 posterior draws"):
        load_side(tmp_path / "sim", name="synthetic", reference=reference)
    side = load_side(tmp_path / "sim", name="synthetic", reference=reference, draw=7)
    assert np.unique(side.transactions["draw"]).tolist() == [7]
    assert len(side.transactions) == len(reference.transactions)
    with pytest.raises(DataError, match="draw 5 not found"):
        load_side(tmp_path / "sim", name="synthetic", reference=reference, draw=5)


def test_one_draw_of_a_simulator_folder_is_read_alone_with_its_own_calendar(tmp_path):
    """While a run is still writing (no folder-wide promo_weeks yet), a finished draw reads as it will at the end."""
    reference = load_data(write_internal(tmp_path / "src"), cache_dir=tmp_path / "cache_src")
    folder = tmp_path / "sim"
    (folder / "transactions" / "draw-0").mkdir(parents=True)
    (folder / "transactions" / "draw-1").mkdir()
    (folder / "calendar").mkdir()
    reference.transactions.assign(draw=0).to_parquet(folder / "transactions" / "draw-0" / "part-00000.parquet",
                                                     index=False)
    # the next draw: a file not written yet that would not read (it must not be touched)
    (folder / "transactions" / "draw-1" / "part-00000.parquet").write_bytes(b"not parquet yet")
    own = pd.DataFrame({"product_id": [101], "week": [9], "display": [True], "mailer": [False], "draw": [0]})
    own.to_parquet(folder / "calendar" / "draw-0.parquet", index=False)
    side = load_side(folder, name="synthetic", reference=reference, draw=0)
    assert side.meta["calendar"] == "own promo_weeks table"
    assert side.promo_weeks.to_dict("list") == {"product_id": [101], "week": [9], "display": [True], "mailer": [False]}
    assert len(side.transactions) == len(reference.transactions)


def test_check_scores_a_simulator_folder_draw(tmp_path, real_dir):
    _simulator_like(tmp_path / "sim", draws=(0, 1))
    out = tmp_path / "report"
    code = _cli(tmp_path, "check", "--synthetic", str(tmp_path / "sim"), "--real", str(real_dir), "--draw", "1", "--out", str(out))
    assert code == 0
    result = json.loads((out / "metrics.json").read_text())
    # the synthetic side is the cleaned real lines: every metric but promo_response
    # (its calendar only knows bought product-weeks) matches exactly
    for name, m in result["metrics"].items():
        if name != "promo_response":
            assert m["ks"] == 0.0, name


def test_a_products_less_folder_without_reference_is_a_clear_error(tmp_path):
    folder = tmp_path / "lonely"
    folder.mkdir()
    tiny_tables()["transactions"].to_parquet(folder / "transactions.parquet", index=False)
    with pytest.raises(DataError, match="no products table"):
        load_side(folder, name="synthetic")
