"""The monitor's steps called directly, as the fleet DAG calls them (real moto S3)."""

from __future__ import annotations

import pytest

from driftwatch import history, pipeline

pytestmark = pytest.mark.integration


def test_a_fleet_check_keeps_scoring_and_records_that_it_sent_nothing(seeded, s3, demo_cfg, scenario):
    batch = max((b for b in scenario if b.kind == "covariate_drift"), key=lambda b: b.drift_strength)
    day = batch.batch_date.isoformat()
    scoring = {"model_version": "4", "predictions_uri": "s3://b/p.parquet", "rows": 400}
    live = {"metric": "roc_auc", "value": 0.81, "model_version": "4"}
    history.write_record(s3, demo_cfg, day, {"status": "passed", "scoring": scoring, "live": live})

    checked = pipeline.check_batch(s3, demo_cfg, day)

    assert checked["passed"] and checked["retrain"]
    record = history.read_record(s3, demo_cfg, day)
    assert record["scoring"] == scoring and record["live"] == live
    assert record["action"] == "retrain advised (not sent: a fleet check sends nothing)"
    assert record["drift"]["dataset_drift"] is True
