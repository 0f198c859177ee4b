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


def test_live_performance_returns_the_batch_own_measurement_instead_of_writing_it(s3, demo_cfg, model):
    cfg = demo_cfg
    earlier = "2026-01-09"
    frames = {day: demo_data.generate_reference(seed=i, rows=300) for i, day in enumerate((earlier, DAY), 20)}
    for day, frame in frames.items():
        scores = training.predict_scores(model, frame, cfg)
        ids = frame[cfg.dataset.id_column].astype(str)
        predictions = pd.DataFrame({cfg.dataset.id_column: ids, "score": scores, "model_version": "3"})
        ingest.write_parquet(s3, cfg.storage.bucket, layout.predictions_key(cfg, day), predictions)
        labels = pd.DataFrame({cfg.dataset.id_column: ids, cfg.dataset.target.name: frame[cfg.dataset.target.name]})
        storage.write_bytes(
            s3,
            cfg.storage.bucket,
            layout.labels_key(cfg, day, "labels.csv"),
            labels.to_csv(index=False).encode(),
            "text/csv",
        )
    history.write_record(s3, cfg, earlier, {"status": "passed", "scoring": {"model_version": "3"}})
    today = {"status": "passed", "scoring": {"model_version": "3"}}

    live = scoring.live_performance(s3, cfg, DAY, evaluated=0.5, positive=model.classes_[1], today=today)

    assert [m["batch_date"] for m in live["measured"]] == [earlier, DAY]
    assert live["today"]["rows"] == 300 and live["today"]["value"] > 0.5
    assert history.read_record(s3, cfg, DAY) is None  # the caller writes it, with its scoring, once
    assert history.read_record(s3, cfg, earlier)["live"]["rows"] == 300


def test_live_labels_the_model_cannot_be_measured_on_are_reported_not_scored(s3, demo_cfg, model):
    cfg = demo_cfg
    frame = demo_data.generate_reference(seed=30, rows=200)
    ids = frame[cfg.dataset.id_column].astype(str)
    scores = training.predict_scores(model, frame, cfg)
    predictions = pd.DataFrame({cfg.dataset.id_column: ids, "score": scores, "model_version": "3"})
    ingest.write_parquet(s3, cfg.storage.bucket, layout.predictions_key(cfg, DAY), predictions)
    target = frame[cfg.dataset.target.name].astype(str).where(frame.index % 10 != 0, "2")  # a class never trained on
    labels = pd.DataFrame({cfg.dataset.id_column: ids, cfg.dataset.target.name: target})
    key = layout.labels_key(cfg, DAY, "labels.csv")
    storage.write_bytes(s3, cfg.storage.bucket, key, labels.to_csv(index=False).encode(), "text/csv")
    today = {"status": "passed", "scoring": {"model_version": "3"}}

    live = scoring.live_performance(
        s3, cfg, DAY, evaluated=0.8, positive=model.classes_[1], today=today, model_classes=list(model.classes_)
    )

    measured = live["today"]
    assert measured["value"] is None and measured["degraded"] is False
    problems = " ".join(measured["labels"]["problems"])
    assert "3 classes" in problems and "'2'" in problems and "not trained on" in problems
