"""Failing services, for real: S3 and SMTP stop in the middle of a monitor run and come back.

S3 is the session's moto server behind a loopback proxy that stops listening at a chosen request
(a restarted moto server would come back empty; the proxy keeps the data and still refuses every
connection, as a stopped server does). SMTP is the sink itself, stopped and started on its port.
The outage ends from the task's on_retry_callback: only once Airflow has recorded the failed try
and scheduled a retry with backoff, never after a sleep.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from email import message_from_bytes, policy

import pytest

from devstack.smtp_sink import read_messages
from driftwatch import history, layout, storage
from driftwatch.artifacts import MANIFEST, WRITING, read_manifest
from tests.reliability import support

pytestmark = pytest.mark.integration

START = date(2026, 7, 1)
REPORTS = {"validation.html", "validation.json", "drift.html", "drift.json", "drift_decision.json", "manifest.json"}


@pytest.fixture
def s3_proxy(s3_endpoint):
    proxy = support.StoppableProxy(int(s3_endpoint.rsplit(":", 1)[1])).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def flaky_s3(airflow_db, bucket, s3_proxy, empty_registry, monkeypatch):
    """aws_default through the proxy; botocore gives up fast so that Airflow's retry is what recovers."""
    extra = {
        "endpoint_url": s3_proxy.url,
        "region_name": "us-east-1",
        "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 2}, "connect_timeout": 3},
    }
    conn = {"conn_type": "aws", "login": "test-key", "password": "test-secret", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    return bucket


def _csv(day: date) -> bytes:
    return support.clean_frame(day=day).to_csv(index=False).encode()


@pytest.mark.parametrize(
    ("where", "task_id", "request_pattern"),
    [
        ("ingest", "validate_batch", rb"^GET /driftwatch-demo/incoming/dt(?:=|%3D)[^/]+/part-000\.csv"),
        (
            "report write",
            "compute_drift",
            rb"^PUT /driftwatch-demo/driftwatch/credit_default/reports/dt(?:=|%3D)[^/]+/drift\.html",
        ),
    ],
    ids=["ingest", "report-write"],
)
def test_s3_outage_is_retried_and_leaves_one_complete_set(
    where, task_id, request_pattern, flaky_s3, s3_proxy, demo_cfg, smtp_sink, figures
):
    day = START + timedelta(days=0 if where == "ingest" else 1)
    support.land(flaky_s3, demo_cfg, day.isoformat(), "part-000.csv", _csv(day))
    bucket, prefix = demo_cfg.storage.bucket, layout.report_prefix(demo_cfg, day.isoformat())
    raw_before = support.snapshot(flaky_s3, bucket, layout.incoming_prefix(demo_cfg, day.isoformat()))
    dag = support.monitor_dag(support.quick_retries(demo_cfg))
    during: dict[str, object] = {}

    def end_outage(context) -> None:
        # Seen directly on moto, past the proxy: what a reader finds while S3 is down for the pipeline.
        during["manifest"] = (storage.read_json(flaky_s3, bucket, prefix + MANIFEST) or {}).get("status")
        during["complete"] = read_manifest(flaky_s3, bucket, prefix) is not None
        during["proxy_up"] = s3_proxy.running
        s3_proxy.start()

    dag.get_task(task_id).on_retry_callback = [end_outage]
    s3_proxy.stop_on = re.compile(request_pattern)

    run, states = support.run_dag(dag, day)

    assert s3_proxy.refusals == 1, f"the outage never happened: {s3_proxy.requests[:40]}"
    # The rerun-safe marker, not a missing manifest: the IAM policy lets the pipeline delete nothing.
    assert during == {"manifest": WRITING, "complete": False, "proxy_up": False}, during
    assert run.state == "success", states
    assert support.try_numbers(run)[task_id] == 2, "the task should have failed once and been retried"
    keys = {k[len(prefix) :] for k in support.snapshot(flaky_s3, bucket, prefix)}
    # Besides the reports, only the drift step's per-partition intermediates (deterministic names).
    assert keys >= REPORTS and all(k.startswith("partitions/part-") for k in keys - REPORTS), keys
    assert not support.manifest_problems(flaky_s3, bucket, prefix)
    assert history.read_record(flaky_s3, demo_cfg, day.isoformat())["status"] == "passed"
    assert len(storage.list_objects(flaky_s3, bucket, layout.history_key(demo_cfg, day.isoformat()))) == 1
    assert support.snapshot(flaky_s3, bucket, layout.incoming_prefix(demo_cfg, day.isoformat())) == raw_before
    assert read_messages(smtp_sink.folder) == []
    figures.add(
        "fault",
        f"S3 endpoint down during {where} ({task_id})",
        f"{task_id} failed on try 1 (connection refused), Airflow retried after backoff, try 2 succeeded; "
        "manifest marked 'writing' while incomplete; one complete report set, manifest last and matching",
        intact=True,
    )


def test_smtp_down_then_back_delivers_the_alert_once(flaky_s3, s3_proxy, demo_cfg, smtp_sink, figures):
    day = START + timedelta(days=2)
    support.land(flaky_s3, demo_cfg, day.isoformat(), "part-000.csv", b"")  # quarantined: an alert must go out
    dag = support.monitor_dag(support.quick_retries(demo_cfg))
    smtp_sink.stop()

    def smtp_back(context) -> None:
        smtp_sink.start()

    dag.get_task("quarantine_batch").on_retry_callback = [smtp_back]
    run, states = support.run_dag(dag, day)

    assert run.state == "success", states
    assert support.try_numbers(run)["quarantine_batch"] == 2
    messages = read_messages(smtp_sink.folder)
    assert len(messages) == 1 and "quarantined" in messages[0]["Subject"]
    key = messages[0]["X-Driftwatch-Dedup-Key"]
    delivered = storage.read_json(
        flaky_s3, demo_cfg.storage.bucket, layout.alert_record_key(demo_cfg, key, "delivered")
    )
    undelivered = storage.read_json(
        flaky_s3, demo_cfg.storage.bucket, layout.alert_record_key(demo_cfg, key, "undelivered")
    )
    assert delivered["attempts"] == 1 and undelivered["attempts"] == 3
    assert "Connection refused" in undelivered["error"] or "ConnectionRefused" in undelivered["error"]
    q_prefix = layout.quarantine_prefix(demo_cfg, day.isoformat())
    assert not support.manifest_problems(flaky_s3, demo_cfg.storage.bucket, q_prefix)
    figures.add(
        "fault",
        "SMTP server down during the quarantine alert, then back",
        "try 1: 3 SMTP attempts with backoff refused, alert recorded as undelivered (.eml kept), task failed; "
        "Airflow retry after the server restarted: delivered exactly once",
        intact=True,
    )


def test_smtp_down_for_good_fails_the_run_and_keeps_the_alert(flaky_s3, demo_cfg, smtp_sink, figures):
    day = START + timedelta(days=3)
    support.land(flaky_s3, demo_cfg, day.isoformat(), "part-000.csv", b"")
    smtp_sink.stop()
    run, states = support.run_dag(support.monitor_dag(support.quick_retries(demo_cfg, retries=1)), day)

    assert states["quarantine_batch"] == "failed" and run.state == "failed", "an undelivered alert passed silently"
    assert support.try_numbers(run)["quarantine_batch"] == 2
    assert read_messages(smtp_sink.folder) == []
    key = f"{demo_cfg.name}/{day.isoformat()}/quarantine"
    record = storage.read_json(flaky_s3, demo_cfg.storage.bucket, layout.alert_record_key(demo_cfg, key, "undelivered"))
    assert record is not None, "the undelivered alert was not recorded"
    _, eml_key = storage.parse_s3_uri(record["eml"])
    kept = message_from_bytes(storage.read_bytes(flaky_s3, demo_cfg.storage.bucket, eml_key), policy=policy.default)
    assert kept["X-Driftwatch-Dedup-Key"] == key and "quarantined" in kept["Subject"]
    assert history.read_record(flaky_s3, demo_cfg, day.isoformat())["status"] == "quarantined"
    figures.add(
        "fault",
        "SMTP server down for good",
        "quarantine_batch failed after 2 tries × 3 SMTP attempts, run marked failed (not silent); "
        f"the alert is kept as {eml_key.rsplit('/', 1)[-1]} with its error; quarantine itself complete",
        intact=True,
    )
