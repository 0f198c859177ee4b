"""The staged copy of a batch: the schema's types, written one row group at a time."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from driftwatch import ingest, layout


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
