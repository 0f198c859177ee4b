"""Batch records: one writer with a version check, so concurrent tasks and runs lose no update (moto S3)."""

from __future__ import annotations

import threading

import boto3
import pytest

from driftwatch import history, layout, storage

pytestmark = pytest.mark.integration
DAY = "2026-01-10"


def _client(s3):
    """Another task's client on the same S3."""
    return boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1")


def test_an_update_that_lost_the_race_is_redone_on_the_winner_record(s3, demo_cfg):
    history.write_record(s3, demo_cfg, DAY, {"status": "passed", "drift": {"share": 0.5}})
    read_by_slow = threading.Event()
    fast_wrote = threading.Event()
    seen_by_slow: list[dict | None] = []

    def slow_change(stored):
        seen_by_slow.append(stored)
        if len(seen_by_slow) == 1:  # first attempt: let the other task write in between
            read_by_slow.set()
            assert fast_wrote.wait(10)
        return {**stored, "scoring": {"model_version": "3"}}

    slow = threading.Thread(target=history.update_record, args=(s3, demo_cfg, DAY, slow_change))
    slow.start()
    assert read_by_slow.wait(10)
    history.merge_into_record(_client(s3), demo_cfg, DAY, {"live": {"value": 0.8}})
    fast_wrote.set()
    slow.join(10)

    record = history.read_record(s3, demo_cfg, DAY)
    assert record["scoring"] == {"model_version": "3"} and record["live"] == {"value": 0.8}
    assert record["drift"] == {"share": 0.5} and (record["model"], record["batch_date"]) == (demo_cfg.name, DAY)
    assert len(seen_by_slow) == 2 and "live" in seen_by_slow[1]  # redone on what the other task wrote


def test_concurrent_merges_all_land(s3, demo_cfg):
    def add(field: str) -> None:
        client = _client(s3)
        for i in range(5):
            history.merge_into_record(client, demo_cfg, DAY, {f"{field}{i}": i})

    threads = [threading.Thread(target=add, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    record = history.read_record(s3, demo_cfg, DAY)
    assert {k for k in record if k[0] in "abc" and k[1:].isdigit()} == {f"{f}{i}" for f in "abc" for i in range(5)}


def test_a_record_created_meanwhile_is_not_overwritten_blindly(s3, demo_cfg):
    key_etag = storage.read_json_versioned(s3, demo_cfg.storage.bucket, "nothing/here.json")
    assert key_etag == (None, None)
    history.write_record(s3, demo_cfg, DAY, {"status": "missing"})
    # A writer that saw no record must not create one over the record that appeared since.
    with pytest.raises(storage.WriteConflict, match="changed while it was being updated"):
        storage.write_json_if(
            s3, demo_cfg.storage.bucket, layout.history_key(demo_cfg, DAY), {"status": "passed"}, etag=None
        )


def test_the_action_is_what_the_steps_did(s3, demo_cfg):
    history.write_record(s3, demo_cfg, DAY, {"status": "passed", "action": "pending"})
    history.record_step(s3, demo_cfg, DAY, "decide", {"retrain": True, "reason": "data drift"})
    assert history.read_record(s3, demo_cfg, DAY)["action"] == "pending"
    history.record_step(s3, demo_cfg, DAY, "alert_drift", {"done": True, "message_id": "<m@x>"})
    assert history.read_record(s3, demo_cfg, DAY)["action"] == "alert"
    history.record_step(s3, demo_cfg, DAY, "request_retraining", {"done": True, "run_id": "r1"})
    record = history.read_record(s3, demo_cfg, DAY)
    assert record["action"] == "alert+retrain" and record["status"] == "passed"
    assert set(record["steps"]) == {"decide", "alert_drift", "request_retraining"}


@pytest.mark.parametrize(
    ("steps", "action"),
    [
        ({}, "pending"),
        ({"decide": {"retrain": False}}, "none"),
        ({"decide": {"retrain": True}}, "pending"),
        ({"decide": {"retrain": True}, "request_retraining": {"done": True}}, "retrain"),
        (
            {"decide": {"retrain": True}, "score_batch": {"failed": True}, "alert_drift": {"done": True}},
            "alert (score_batch failed)",
        ),
        (
            {"decide": {"retrain": True}, "alert_drift": {"failed": True, "error": "SMTP down"}},
            "pending (alert_drift failed)",
        ),
    ],
)
def test_final_action(steps, action):
    assert history.final_action(steps) == action


def test_a_step_that_succeeds_after_failing_replaces_its_failure(s3, demo_cfg):
    history.write_record(s3, demo_cfg, DAY, {"status": "passed", "action": "pending"})
    history.record_step(s3, demo_cfg, DAY, "decide", {"retrain": True})
    history.record_step(s3, demo_cfg, DAY, "score_batch", {"failed": True, "error": "registry down"})
    assert history.read_record(s3, demo_cfg, DAY)["action"] == "pending (score_batch failed)"
    # The task cleared and run again: its outcome and its fields land in one write.
    history.record_step(s3, demo_cfg, DAY, "score_batch", {"done": True}, fields={"scoring": {"model_version": "2"}})
    record = history.read_record(s3, demo_cfg, DAY)
    assert record["action"] == "pending" and record["scoring"] == {"model_version": "2"}


def test_the_history_command_prints_one_line_per_recorded_batch(s3, demo_cfg, capsys):
    from driftwatch import cli
    from tests.conftest import DEMO_CONFIG

    endpoint, configs = s3.meta.endpoint_url, str(DEMO_CONFIG.parent)
    argv = ["history", "--model", demo_cfg.name, "--endpoint-url", endpoint, "--config-dir", configs]
    assert cli.main(argv) == 0
    assert "no batch recorded yet under s3://driftwatch-demo/" in capsys.readouterr().out
    history.write_record(s3, demo_cfg, "2026-01-09", {"batch_date": "2026-01-09", "status": "quarantined"})
    estimate = {"value": 0.7123, "lower": 0.664, "upper": 0.758}
    drifted = {"status": "passed", "rows": 1500, "drift": {"share": 0.4}, "estimate": estimate, "action": "alert"}
    history.write_record(s3, demo_cfg, DAY, {"batch_date": DAY, **drifted, "policy": {"action": "alert-only"}})
    assert cli.main([*argv, "--last", "1"]) == 0
    head, line = capsys.readouterr().out.splitlines()
    assert head.split()[:3] == ["batch", "run", "rows"]
    assert line.split() == [DAY, "-", "1500", "passed", "40%", "0.71", "[0.66,0.76]", "alert-only", "alert"]
    assert cli.main(argv) == 0
    assert [row.split()[3] for row in capsys.readouterr().out.splitlines()[1:]] == ["quarantined", "passed"]
    assert cli.main([*argv[:2], "nope", *argv[3:]]) == 2
    assert "no model 'nope'; configured: " in capsys.readouterr().err
