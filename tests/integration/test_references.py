"""The reference profile is built once per reference and stored next to it (real moto S3 server)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from driftwatch import demo_data, layout, references, seeding, storage, validation
from driftwatch.artifacts import MANIFEST

pytestmark = pytest.mark.integration


def _keys(s3, prefix: str) -> list[str]:
    return [o.key for o in storage.list_objects(s3, "driftwatch-demo", prefix)]


def test_built_on_first_use_then_read_back(s3, demo_cfg):
    seeding.write_reference(s3, demo_cfg, demo_data.generate_reference(seed=3, rows=1500))
    first = references.load_profile(s3, demo_cfg)
    assert first.built
    prefix = storage.parse_s3_uri(first.prefix_uri)[1]
    assert sorted(k.rsplit("/", 1)[-1] for k in _keys(s3, prefix)) == [MANIFEST, "profile.json", "sample.parquet"]

    again = references.load_profile(s3, demo_cfg)
    assert not again.built
    assert again.profile.profile_id == first.profile.profile_id
    assert again.prefix_uri == first.prefix_uri


def test_sample_holds_only_the_configured_features(s3, demo_cfg):
    seeding.write_reference(s3, demo_cfg, demo_data.generate_reference(seed=3, rows=1500))
    stored = references.load_profile(s3, demo_cfg)
    sample = references.read_sample(s3, stored)
    assert list(sample.columns) == demo_cfg.dataset.feature_names  # no id, target, timestamp or PII
    assert len(sample) == 1500  # smaller than report_sample_rows: the whole reference
    profile_text = storage.read_bytes(s3, *storage.parse_s3_uri(stored.prefix_uri + "profile.json")).decode()
    for pii in demo_cfg.dataset.pii_columns:
        assert pii not in profile_text


def test_a_new_reference_gets_a_new_profile(s3, demo_cfg):
    seeding.write_reference(s3, demo_cfg, demo_data.generate_reference(seed=3, rows=1500))
    first = references.load_profile(s3, demo_cfg)
    # A promotion points the monitor at the new champion's training data.
    train = demo_data.generate_reference(seed=4, rows=900)
    key = f"{demo_cfg.storage.output_prefix}training/v2/train.parquet"
    uri = storage.write_bytes(s3, "driftwatch-demo", key, demo_data.to_bytes(train, "parquet"), "application/x")
    storage.write_json(s3, "driftwatch-demo", layout.reference_pointer_key(demo_cfg), {"uri": uri})
    promoted = references.load_profile(s3, demo_cfg)
    assert promoted.built and promoted.data_uri == uri
    assert promoted.prefix_uri != first.prefix_uri
    assert promoted.profile.rows == 900
    # Rewriting the same key in place changes its ETag, so the stale profile is not reused.
    storage.write_bytes(s3, "driftwatch-demo", key, demo_data.to_bytes(train.head(800), "parquet"), "application/x")
    rewritten = references.load_profile(s3, demo_cfg)
    assert rewritten.built and rewritten.profile.rows == 800


def test_a_build_that_died_before_its_manifest_is_redone(s3, demo_cfg):
    seeding.write_reference(s3, demo_cfg, demo_data.generate_reference(seed=3, rows=1500))
    stored = references.load_profile(s3, demo_cfg)
    bucket, prefix = storage.parse_s3_uri(stored.prefix_uri)
    s3.delete_object(Bucket=bucket, Key=prefix + MANIFEST)  # the pipeline itself deletes nothing
    storage.write_bytes(s3, bucket, prefix + "profile.json", b"{half", "application/json")
    rebuilt = references.load_profile(_another_task(s3), demo_cfg)
    assert rebuilt.built
    assert rebuilt.profile.profile_id == stored.profile.profile_id


def test_missing_reference_names_where_it_was_expected(s3, demo_cfg):
    with pytest.raises(FileNotFoundError, match=r"reference data for model credit_default not found at s3://"):
        references.load_profile(s3, demo_cfg)


def test_validation_from_the_profile_equals_validation_from_the_data(s3, demo_cfg):
    reference = demo_data.generate_reference(seed=3, rows=1500)
    seeding.write_reference(s3, demo_cfg, reference)
    stored = references.load_profile(s3, demo_cfg)
    batch = demo_data.generate_scenario(demo_cfg.monitor.start_date, days=5, seed=3, rows_per_day=300)
    for day in batch:
        frame = pd.read_parquet(io.BytesIO(demo_data.to_bytes(day.features, "parquet")))
        from_data = validation.validate_frame(frame, demo_cfg, reference).to_dict()
        from_profile = validation.validate_frame(frame, demo_cfg, stored.profile).to_dict()
        for result in (from_data, from_profile):
            result.pop("duration_seconds")
        assert from_profile == from_data, day.kind


def _another_task(s3):
    """A client of its own, as the next task gets: nothing cached from this one."""
    import boto3

    return boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1")


def _counting(s3) -> list[str]:
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


def test_a_task_reads_the_stored_profile_once(s3, demo_cfg):
    seeding.write_reference(s3, demo_cfg, demo_data.generate_reference(seed=3, rows=1500))
    references.load_profile(s3, demo_cfg)  # builds and stores it
    calls = _counting(s3)
    again = references.load_profile(s3, demo_cfg)
    # Only what finds the reference in force and its ETag: the profile is cached by its digest.
    assert sorted(calls) == ["GetObject", "HeadObject"] and not again.built

    other_task = _another_task(s3)
    fresh = _counting(other_task)
    loaded = references.load_profile(other_task, demo_cfg)
    assert sorted(fresh) == ["GetObject", "GetObject", "GetObject", "HeadObject"]
    assert loaded.profile.profile_id == again.profile.profile_id
