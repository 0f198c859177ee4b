"""Scoring a staged batch row group by row group, and live performance written once per record (moto S3)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from driftwatch import demo_data, history, ingest, layout, scoring, storage, training

pytestmark = pytest.mark.integration
DAY = "2026-01-10"


@pytest.fixture
def small_groups(demo_cfg):
    """The demo model with staged row groups of 100 rows, so a small batch spans several."""
    return demo_cfg.model_copy(update={"drift": demo_cfg.drift.model_copy(update={"partition_rows": 100})})


@pytest.fixture
def model(demo_cfg):
    fitted, _ = training.train(demo_cfg, demo_data.generate_reference(seed=5, rows=800))
    return fitted


def _stage(s3, cfg, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    ingest.write_staged(buffer, ingest.drop_unused_columns(frame, cfg), cfg)
    storage.write_bytes(s3, cfg.storage.bucket, layout.staged_key(cfg, DAY), buffer.getvalue(), ingest.PARQUET_TYPE)


def test_scores_every_row_group_as_a_whole_read_would(s3, small_groups, model):
    cfg = small_groups
    batch = demo_data.generate_reference(seed=6, rows=350)
    _stage(s3, cfg, batch)
    staged_bytes = storage.read_bytes(s3, cfg.storage.bucket, layout.staged_key(cfg, DAY))
    assert pq.ParquetFile(io.BytesIO(staged_bytes)).num_row_groups == 4

    scored = scoring.score_batch(s3, cfg, DAY, model, "7")

    whole = ingest.read_table(s3, cfg.storage.bucket, layout.staged_key(cfg, DAY))
    expected = training.predict_scores(model, whole, cfg)
    predictions = ingest.read_table(s3, *storage.parse_s3_uri(scored["predictions_uri"]))
    assert predictions[cfg.dataset.id_column].tolist() == whole[cfg.dataset.id_column].tolist()
    np.testing.assert_allclose(predictions["score"].to_numpy(), expected)
    assert set(predictions["model_version"]) == {"7"}
    assert scored["rows"] == 350 and scored["null_outputs"] == 0
    # Scoring alone writes no history: the score task writes the batch's record once.
    assert history.read_record(s3, cfg, DAY) is None


def _land(s3, cfg, model, day: str, frame: pd.DataFrame, version: str, target: pd.Series | None = None) -> None:
    """Predictions of `version` for `frame` on `day`, and their labels."""
    ids = frame[cfg.dataset.id_column].astype(str)
    scores = training.predict_scores(model, frame, cfg)
    predictions = pd.DataFrame({cfg.dataset.id_column: ids, "score": scores, "model_version": version})
    ingest.write_parquet(s3, cfg.storage.bucket, layout.predictions_key(cfg, day), predictions)
    target = frame[cfg.dataset.target.name] if target is None else target
    labels = pd.DataFrame({cfg.dataset.id_column: ids, cfg.dataset.target.name: target})
    key = layout.labels_key(cfg, day, "labels.csv")
    storage.write_bytes(s3, cfg.storage.bucket, key, labels.to_csv(index=False).encode(), "text/csv")


def with_live(cfg, **values):
    """The config with these evaluation.live_* settings (the demo's own asks for two days of rows)."""
    return cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update=values)})


def test_live_performance_measures_only_what_the_champion_version_predicted(s3, demo_cfg, model):
    cfg = with_live(demo_cfg, live_min_rows=200, live_window_days=7)
    earlier, older = "2026-01-09", "2026-01-08"
    _land(s3, cfg, model, older, demo_data.generate_reference(seed=19, rows=250), "3")
    _land(s3, cfg, model, earlier, demo_data.generate_reference(seed=20, rows=300), "2")
    _land(s3, cfg, model, DAY, demo_data.generate_reference(seed=21, rows=300), "3")

    live = scoring.live_performance(s3, cfg, DAY, "3", evaluated=0.5, positive=model.classes_[1])

    assert live["model_version"] == "3" and live["rows"] == 550  # pooled over the window, v3's rows only
    assert (live["since"], live["until"], live["days"]) == (older, DAY, [older, DAY])
    assert live["value"] > 0.5 and live["degraded"] is False and "note" not in live
    assert live["by_version"]["2"]["rows"] == 300  # an earlier champion's rows: reported, never judged
    assert history.read_record(s3, cfg, DAY) is None  # score_step writes the record, once


def test_live_performance_needs_min_labelled_rows_and_a_window(s3, demo_cfg, model):
    cfg = with_live(demo_cfg, live_min_rows=400, live_window_days=2)
    _land(s3, cfg, model, "2026-01-08", demo_data.generate_reference(seed=22, rows=300), "3")  # outside the window
    _land(s3, cfg, model, DAY, demo_data.generate_reference(seed=23, rows=300), "3")

    live = scoring.live_performance(s3, cfg, DAY, "3", evaluated=0.99, positive=model.classes_[1])

    assert live["rows"] == 300 and live["value"] is None and live["degraded"] is False
    assert live["note"] == "300 labelled row(s) predicted by v3 in the last 2 day(s): 400 are needed to measure it"


def test_live_labels_the_model_cannot_be_measured_on_are_reported_not_scored(s3, demo_cfg, model):
    cfg = with_live(demo_cfg, live_min_rows=100)
    frame = demo_data.generate_reference(seed=30, rows=200)
    target = frame[cfg.dataset.target.name].astype(str).where(frame.index % 10 != 0, "2")  # a class never trained on
    _land(s3, cfg, model, DAY, frame, "3", target)

    live = scoring.live_performance(
        s3, cfg, DAY, "3", evaluated=0.8, positive=model.classes_[1], model_classes=list(model.classes_)
    )

    assert live["value"] is None and live["degraded"] is False
    problems = " ".join(live["problems"])
    assert "3 classes" in problems and "'2'" in problems and "not trained on" in problems
