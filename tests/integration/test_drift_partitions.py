"""A batch profiled in mapped partitions decides exactly as one pass does (dag.test on moto S3)."""

from __future__ import annotations

import dataclasses
import io
import json

import pyarrow.parquet as pq
import pytest

from driftwatch import history, layout, pipeline, seeding, storage
from tests.integration.test_monitor_dag import first_of, run_monitor, strongest_drift

pytestmark = pytest.mark.integration


def _with_partition_rows(cfg, rows: int):
    return cfg.model_copy(update={"drift": cfg.drift.model_copy(update={"partition_rows": rows})})


def _decision(s3, cfg, day: str) -> dict:
    return json.loads(
        storage.read_bytes(s3, cfg.storage.bucket, layout.report_prefix(cfg, day) + "drift_decision.json")
    )


def test_mapped_partitions_give_the_single_pass_decision(airflow_db, seeded, s3, demo_cfg, mail_dir, scenario):
    batch = strongest_drift(scenario)
    day = batch.batch_date.isoformat()
    cfg = _with_partition_rows(demo_cfg, 100)  # 400 rows: four row groups, four mapped tasks

    run, _ = run_monitor(cfg, batch.batch_date)
    partitions = [ti for ti in run.get_task_instances() if ti.task_id == "profile_partition"]
    assert sorted(ti.map_index for ti in partitions) == [0, 1, 2, 3]
    assert all(ti.state == "success" for ti in partitions)
    mapped = _decision(s3, cfg, day)
    assert mapped["sampling"]["partitions"] == 4
    staged = storage.read_bytes(s3, cfg.storage.bucket, layout.staged_key(cfg, day))
    assert pq.ParquetFile(io.BytesIO(staged)).num_row_groups == 4

    # The same batch in one partition, in process (as the fleet DAG runs it).
    summary = pipeline.validate_step(s3, demo_cfg, day)
    single = pipeline.drift_step(s3, demo_cfg, day, summary)
    assert single["sampling"]["partitions"] == 1
    for key in ("drifted_share", "dataset_drift", "drifted_features", "extreme_features", "retrain"):
        assert mapped[key] == single[key], key
    assert mapped["sampling"]["batch_sample_rows"] == single["sampling"]["batch_sample_rows"] == 400


def test_range_reader_reads_what_a_download_reads(s3):
    data = bytes(range(256)) * 40
    storage.write_bytes(s3, "driftwatch-demo", "blob.bin", data, "application/octet-stream")
    reader = storage.RangeReader(s3, "driftwatch-demo", "blob.bin")
    assert reader.read(10) == data[:10]
    reader.seek(-5, io.SEEK_END)
    assert reader.read() == data[-5:]
    assert reader.read(3) == b""
    reader.seek(1000)
    assert reader.tell() == 1000 and reader.read(24) == data[1000:1024]
    with pytest.raises(FileNotFoundError):
        storage.RangeReader(s3, "driftwatch-demo", "absent.bin")


def test_range_reader_reads_ahead_in_blocks(s3):
    data = bytes(range(256)) * 40  # 10,240 bytes
    storage.write_bytes(s3, "driftwatch-demo", "blob.bin", data, "application/octet-stream")
    ranges: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: ranges.append(params["headers"]["Range"]))
    reader = storage.RangeReader(s3, "driftwatch-demo", "blob.bin", read_ahead=4096)
    # Many small sequential reads, as pyarrow reads column chunks: one request per 4 kB block.
    pieces = [reader.read(100) for _ in range(100)]
    assert b"".join(pieces) == data[:10_000]
    assert ranges == ["bytes=0-4095", "bytes=4096-8191", "bytes=8192-10239"]
    reader.seek(50)  # back into a block already gone: fetched again, from there
    assert reader.read(20) == data[50:70] and ranges[-1] == "bytes=50-4145"
    reader.seek(0)
    assert reader.read(6000) == data[:6000], "a read larger than the block is one request of its size"
    assert ranges[-1] == "bytes=0-5999"


def test_a_reference_promoted_between_profiling_and_deciding_is_used(seeded, s3, demo_cfg, scenario):
    """A retrain that promotes while a batch is half-way decides that batch against the new reference."""
    from driftwatch import references

    cfg = _with_partition_rows(demo_cfg, 100)
    day = strongest_drift(scenario).batch_date.isoformat()
    summary = pipeline.validate_step(s3, cfg, day)
    assert summary["passed"], summary["reason"]
    partitions = [pipeline.profile_partition_step(s3, cfg, part) for part in pipeline.drift_partitions(cfg, summary)]
    before = references.load_profile(s3, cfg)
    assert pipeline.drift_step(s3, cfg, day, summary, partitions=partitions)["drifted_share"] > 0

    # The promotion: a new reference (this batch's own staged rows) and the pointer to it.
    new_key = f"{cfg.storage.output_prefix}training/test-run/train.parquet"
    staged = storage.read_bytes(s3, cfg.storage.bucket, layout.staged_key(cfg, day))
    storage.write_bytes(s3, cfg.storage.bucket, new_key, staged, "application/vnd.apache.parquet")
    storage.write_json(
        s3, cfg.storage.bucket, layout.reference_pointer_key(cfg), {"uri": storage.s3_uri(cfg.storage.bucket, new_key)}
    )
    after = references.load_profile(s3, cfg)
    assert after.profile.profile_id != before.profile.profile_id

    decided = pipeline.drift_step(s3, cfg, day, summary, partitions=partitions)
    assert decided["reference_uri"] == storage.s3_uri(cfg.storage.bucket, new_key)
    # The batch against itself: nothing drifts, where the old reference saw drift.
    assert decided["drifted_share"] == 0.0
    assert decided == pipeline.drift_step(s3, cfg, day, summary)


def test_one_feature_gone_wild_is_named_in_the_decision_while_the_share_stays_low(seeded, s3, demo_cfg, scenario):
    """debt_to_income x1e6 (a unit change) passes validation (no config max) and drifts alone."""
    batch = first_of(scenario, "stable")
    day = batch.batch_date.isoformat()
    calm = pipeline.drift_step(s3, demo_cfg, day, pipeline.validate_step(s3, demo_cfg, day))
    assert calm["extreme_features"] == [] and _decision(s3, demo_cfg, day)["extreme_features"] == []

    wild = batch.features.assign(debt_to_income=batch.features["debt_to_income"] * 1e6)
    seeding.write_batch(s3, demo_cfg, dataclasses.replace(batch, features=wild))
    summary = pipeline.validate_step(s3, demo_cfg, day)
    assert summary["passed"], summary["reason"]
    decided = pipeline.drift_step(s3, demo_cfg, day, summary)

    assert decided["drifted_share"] < decided["share_threshold"]
    assert not decided["dataset_drift"] and not decided["retrain"]
    (extreme,) = decided["extreme_features"]
    assert extreme["feature"] == "debt_to_income"
    assert "of values outside the reference range [" in extreme["why"] and extreme["outside_range_share"] > 0.5
    (entry,) = [f for f in decided["drifted_features"] if f["name"] == "debt_to_income"]
    assert entry["outside_range_share"] == extreme["outside_range_share"] and entry["score_ratio"] > 1e3
    stored = _decision(s3, demo_cfg, day)
    assert stored["extreme_features"] == decided["extreme_features"]
    assert stored["drifted_features"] == decided["drifted_features"]
    assert history.read_record(s3, demo_cfg, day)["drift"]["extreme_features"] == decided["extreme_features"]
