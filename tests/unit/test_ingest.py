"""ingest: parsing batch objects, size limits, PII removal, staging, and Parquet read a column group at a time."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftwatch import ingest, layout
from driftwatch.storage import ObjectInfo
from driftwatch.validation import validate_frame
from tests.unit.test_validation import HOSTILE, make_frame


def test_csv_and_parquet_parse():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    assert ingest.parse_object(frame.to_csv(index=False).encode(), "csv", "k.csv").equals(frame)
    assert ingest.parse_object(buffer.getvalue(), "parquet", "k.parquet").equals(frame)


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        (b"", "csv", "empty file"),
        (b"\xff\xfe\x00bad,bytes\n\x80\x81,1\n", "csv", "not UTF-8 text"),
        (b"PAR1\x00\x01truncated", "parquet", "unreadable parquet"),
        (gzip.compress(b"a,b\n1,2\n"), "csv", "gzip-compressed data in a .csv object"),
    ],
)
def test_unreadable_objects_give_a_named_reason(data, fmt, reason):
    with pytest.raises(ingest.IngestError) as err:
        ingest.parse_object(data, fmt, "incoming/dt=2026-01-01/x")
    assert err.value.reason == reason
    assert "incoming/dt=2026-01-01/x" in str(err.value) or reason == "empty file"


def test_size_limit_is_checked_before_reading():
    objects = [ObjectInfo("a.csv", 600, "e1"), ObjectInfo("b.csv", 500, "e2")]
    assert ingest.check_batch_size(objects, 1100) == 1100
    with pytest.raises(ingest.IngestError, match="batch too large: 1100 bytes in 2 object"):
        ingest.check_batch_size(objects, 1000)


def test_drop_unused_columns_removes_only_configured_columns(demo_cfg):
    frame = pd.DataFrame({"email": ["a@b.c"], "applicant_name": ["A"], "age": [30]})
    assert list(ingest.drop_unused_columns(frame, demo_cfg).columns) == ["age"]


# --- staging: the schema's types, written one row group at a time


def _cfg(demo_cfg, partition_rows: int):
    return demo_cfg.model_copy(update={"drift": demo_cfg.drift.model_copy(update={"partition_rows": partition_rows})})


def _batch(demo_cfg, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({demo_cfg.dataset.id_column: np.arange(rows)})
    for name in demo_cfg.dataset.numeric_features:
        frame[name] = rng.normal(size=rows)
    for name in demo_cfg.dataset.categorical_features:
        frame[name] = pd.Categorical(rng.choice(["a", "b", "c"], rows))
    frame[demo_cfg.dataset.timestamp_column] = pd.Timestamp("2026-11-20T10:00:00Z")
    frame[demo_cfg.dataset.target.name] = rng.integers(0, 2, rows)
    # One row group's worth of a category column is entirely null: its type must not become "null".
    frame.loc[:199, "region"] = None
    frame.loc[3, "annual_income"] = np.nan
    return frame


def test_staged_file_reads_back_as_the_normalised_batch(demo_cfg):
    cfg = _cfg(demo_cfg, 200)
    frame = _batch(cfg, 950)
    buffer = io.BytesIO()
    ingest.write_staged(buffer, frame, cfg)
    buffer.seek(0)
    assert layout.staged_row_group_rows(cfg) == 200
    assert pq.ParquetFile(buffer).num_row_groups == 5  # 4 x 200 + 150
    buffer.seek(0)
    staged = pd.read_parquet(buffer)
    expected = ingest.normalize_types(frame, cfg)
    pd.testing.assert_frame_equal(staged, expected, check_dtype=False)
    assert staged["region"].dtype == object and staged["region"].iloc[0] is None
    assert staged[cfg.dataset.id_column].iloc[7] == "7"
    assert str(staged[cfg.dataset.timestamp_column].dtype) == "datetime64[ns, UTC]"


def test_an_empty_frame_still_writes_a_readable_file(demo_cfg):
    frame = _batch(demo_cfg, 10).iloc[:0]
    buffer = io.BytesIO()
    ingest.write_staged(buffer, frame, demo_cfg)
    buffer.seek(0)
    assert len(pd.read_parquet(buffer)) == 0


# --- Parquet batches read a column group at a time: the outcomes of the whole frame, less memory


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(300, seed=1)


def _write(path: Path, frame: pd.DataFrame, row_group: int = 70) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)
    return path


def _columns(cfg, *paths: Path) -> ingest.ParquetColumns:
    return ingest.drop_unused_columns(ingest.ParquetColumns(tuple(paths), tuple(cfg.dataset.categorical_features)), cfg)


def _outcomes(result) -> dict:
    facts = result.to_dict()
    facts.pop("duration_seconds", None)
    return facts


def _in_memory(cfg, *paths: Path) -> pd.DataFrame:
    frames = [ingest.read_parquet(p.read_bytes(), cfg.dataset.categorical_features) for p in paths]
    return ingest.drop_unused_columns(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0], cfg)


def _spoil(frame: pd.DataFrame) -> pd.DataFrame:
    """Every kind of trouble the per-group path must still see: bounds, nulls, ids, text, markup."""
    frame = frame.copy()
    frame.loc[[2, 5], "age"] = 150
    frame["annual_income"] = frame["annual_income"].astype("float64")
    frame.loc[7, "annual_income"] = np.inf
    frame["loan_amount"] = np.nan
    frame.loc[9, "application_id"] = frame.loc[8, "application_id"]
    frame.loc[11, "region"] = HOSTILE
    return frame


@pytest.mark.parametrize("spoiled", [False, True], ids=["clean", "spoiled"])
def test_validating_by_columns_gives_the_outcomes_of_the_whole_frame(demo_cfg, reference, tmp_path, spoiled):
    cfg = demo_cfg
    frame = make_frame(300, seed=4)
    frame = _spoil(frame) if spoiled else frame
    path = _write(tmp_path / "part-0.parquet", frame)
    by_columns = validate_frame(_columns(cfg, path), cfg, reference)
    whole = validate_frame(_in_memory(cfg, path), cfg, reference)
    assert by_columns.passed is (not spoiled)
    assert _outcomes(by_columns) == _outcomes(whole)


def test_missing_and_text_columns_are_reported_the_same_way(demo_cfg, reference, tmp_path):
    cfg = demo_cfg
    frame = make_frame(200, seed=5).drop(columns=["credit_utilization"])
    frame["months_employed"] = frame["months_employed"].astype(str)
    frame.loc[3, "months_employed"] = "unknown"
    path = _write(tmp_path / "part-0.parquet", frame)
    by_columns = validate_frame(_columns(cfg, path), cfg, reference)
    assert not by_columns.passed
    assert "missing column credit_utilization" in by_columns.failure_reason()
    assert "months_employed is not numeric" in by_columns.failure_reason()
    assert _outcomes(by_columns) == _outcomes(validate_frame(_in_memory(cfg, path), cfg, reference))


def test_several_files_read_as_their_concatenation(demo_cfg, tmp_path):
    cfg = demo_cfg
    first, second = make_frame(120, seed=6), make_frame(90, seed=7)
    second = second.drop(columns=["channel"])  # absent from one file: null there
    second["region"] = "far_" + second["region"]  # categories the first file does not hold
    paths = (_write(tmp_path / "a.parquet", first), _write(tmp_path / "b.parquet", second))
    batch = _columns(cfg, *paths)
    assert batch.rows == 210
    assert batch.columns == list(first.columns)
    got = batch.read(["region", "channel", "age"])
    expected = pd.concat([first, second], ignore_index=True)[["region", "channel", "age"]]
    assert got["region"].astype(object).tolist() == expected["region"].tolist()
    assert got["channel"].isna().sum() == 90
    assert got["age"].tolist() == expected["age"].tolist()


def test_staging_from_files_writes_what_staging_the_frame_writes(demo_cfg, tmp_path):
    cfg = _cfg(demo_cfg, 200)
    frame = _batch(cfg, 950)
    # Two files whose row groups (130 rows) do not line up with the staged ones (200 rows).
    paths = (
        _write(tmp_path / "a.parquet", frame.iloc[:610], 130),
        _write(tmp_path / "b.parquet", frame.iloc[610:], 130),
    )
    from_files, from_frame = io.BytesIO(), io.BytesIO()
    ingest.write_staged(from_files, _columns(cfg, *paths), cfg)
    ingest.write_staged(from_frame, frame.reset_index(drop=True), cfg)
    from_files.seek(0)
    from_frame.seek(0)
    staged = pq.ParquetFile(from_files)
    assert [staged.metadata.row_group(i).num_rows for i in range(staged.num_row_groups)] == [200] * 4 + [150]
    assert layout.staged_row_group_rows(cfg) == 200
    pd.testing.assert_frame_equal(pd.read_parquet(from_files), pd.read_parquet(from_frame))


def test_a_damaged_file_is_an_ingest_error_not_a_crash(demo_cfg, tmp_path):
    cfg = demo_cfg
    path = _write(tmp_path / "part-0.parquet", make_frame(300, seed=8))
    data = bytearray(path.read_bytes())
    data[200:4000] = b"\x00" * 3800  # the footer survives, the first pages do not
    path.write_bytes(bytes(data))
    with pytest.raises(ingest.IngestError, match="unreadable parquet"):
        _columns(cfg, path).read(["application_id", "age", "annual_income"])
