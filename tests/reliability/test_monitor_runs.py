"""The whole monitor DAG (dag.test) on hostile days: a missing batch, a hostile batch, reruns, the next day."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from devstack.smtp_sink import read_messages
from driftwatch import demo_data, history, layout, seeding
from tests.helpers import eager_policy
from tests.reliability.support import (
    SCRIPT,
    clean_frame,
    land,
    manifest_problems,
    monitor_dag,
    pii_values,
    run_dag,
    snapshot,
    stable_snapshot,
)

pytestmark = pytest.mark.integration

START = date(2026, 6, 1)


@pytest.fixture
def world(airflow_db, bucket, aws_connection, empty_registry, mail_dir):
    """The demo bucket with its reference data, aws_default on moto, an empty registry, the SMTP sink."""
    return bucket


def test_missing_batch_is_recorded_and_alerted_and_the_next_day_runs(world, demo_cfg, mail_dir, figures):
    day, next_day = START, START + timedelta(days=1)
    land(world, demo_cfg, next_day.isoformat(), "part-000.csv", clean_frame(day=next_day).to_csv(index=False).encode())

    run, states = run_dag(monitor_dag(demo_cfg, sensor_seconds=3), day)

    assert states["wait_for_batch"] == "skipped"
    assert states["record_missing_batch"] == "success"
    assert states["validate_batch"] == "skipped" and states["quarantine_batch"] == "skipped"
    assert run.state == "success", "a missing batch must not fail the run"
    record = history.read_record(world, demo_cfg, day.isoformat())
    assert record["status"] == "missing" and "no object under" in record["reason"]
    messages = read_messages(mail_dir)
    assert len(messages) == 1 and "missing batch" in messages[0]["Subject"]

    run2, states2 = run_dag(monitor_dag(demo_cfg), next_day)
    assert run2.state == "success" and states2["validate_batch"] == "success"
    assert states2["record_missing_batch"] == "skipped" and states2["compute_drift"] == "success"
    assert history.read_record(world, demo_cfg, next_day.isoformat())["status"] == "passed"
    assert len(read_messages(mail_dir)) == 1, "the clean next day sent an email"
    figures.add(
        "input",
        "batch that never arrives (sensor timeout)",
        "sensor skipped (soft_fail), run succeeds; history records 'missing'; 1 email; the next day "
        "validates and runs drift normally",
        intact=True,
    )


def test_hostile_batch_through_the_dag_then_a_rerun_then_the_next_day(
    world, demo_cfg, mail_dir, figures, capfd, caplog
):
    day, next_day = START + timedelta(days=2), START + timedelta(days=3)
    hostile = clean_frame(day=day).assign(**{SCRIPT: "<b>x</b>"})
    land(world, demo_cfg, day.isoformat(), "part-000.csv", hostile.to_csv(index=False).encode())
    land(world, demo_cfg, next_day.isoformat(), "part-000.csv", clean_frame(day=next_day).to_csv(index=False).encode())
    bucket = demo_cfg.storage.bucket
    raw_before = snapshot(world, bucket, demo_cfg.storage.incoming_prefix)

    run, states = run_dag(monitor_dag(demo_cfg), day)
    assert states["quarantine_batch"] == "success" and states["compute_drift"] == "skipped"
    assert states["request_retraining"] == "skipped" and run.state == "success"
    outputs_first = stable_snapshot(world, bucket, demo_cfg.storage.output_prefix)
    messages = read_messages(mail_dir)
    assert len(messages) == 1
    html = messages[0].get_body(("html",)).get_content()
    assert SCRIPT not in html and "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html

    # A cleared run of the same date: same artifacts, no second email.
    run_dag(monitor_dag(demo_cfg), day)
    outputs_second = stable_snapshot(world, bucket, demo_cfg.storage.output_prefix)
    assert set(outputs_second) == set(outputs_first), "a rerun added or removed objects"
    changed = {k for k in outputs_first if outputs_first[k] != outputs_second[k]}
    assert not changed, f"a rerun changed {changed}"
    q_prefix = layout.quarantine_prefix(demo_cfg, day.isoformat())
    assert not manifest_problems(world, bucket, q_prefix)
    assert len(read_messages(mail_dir)) == 1, "the rerun sent the alert again"

    run3, states3 = run_dag(monitor_dag(demo_cfg), next_day)
    assert run3.state == "success" and states3["compute_drift"] == "success"
    assert history.read_record(world, demo_cfg, next_day.isoformat())["status"] == "passed"
    assert snapshot(world, bucket, demo_cfg.storage.incoming_prefix) == raw_before, "a raw batch changed"
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "quarantine_batch" in logs, "task logs were not captured: the PII check would prove nothing"
    leaked = [m for m in pii_values(hostile) if m in logs]
    assert not leaked, f"PII in task logs: {leaked[:3]}"
    figures.add(
        "input",
        "HTML/script in a column name, through the monitor DAG",
        "quarantined (unexpected column); escaped in the validation report and the email's HTML part; "
        "the next day passes",
        intact=True,
    )
    figures.add(
        "race",
        "monitor run cleared and rerun for the same date (quarantined batch)",
        f"same {len(outputs_first)} objects with the same bytes (manifest timestamps aside); 1 email in total "
        "(delivery record keyed by X-Driftwatch-Dedup-Key)",
        intact=True,
        runs=2,
    )


def asset_event_count(cfg) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == layout.drift_asset_name(cfg))
            .count()
        )


def test_rerun_of_a_drifted_day_sends_one_alert_and_one_retraining_request(world, demo_cfg, mail_dir, figures):
    demo_cfg = eager_policy(demo_cfg)
    scenario = demo_data.generate_scenario(START, days=14, seed=11, rows_per_day=400)
    batch = max((b for b in scenario if b.kind == "covariate_drift"), key=lambda b: b.drift_strength)
    seeding.write_batch(world, demo_cfg, batch)
    before = asset_event_count(demo_cfg)

    run1, states1 = run_dag(monitor_dag(demo_cfg), batch.batch_date)
    assert states1["alert_drift"] == "success" and states1["request_retraining"] == "success", states1
    outputs_first = stable_snapshot(world, demo_cfg.storage.bucket, demo_cfg.storage.output_prefix)
    run2, states2 = run_dag(monitor_dag(demo_cfg), batch.batch_date)

    assert run2.state == "success"
    assert states2["alert_drift"] == "success", "the alert task itself must still succeed"
    assert states2["request_retraining"] == "skipped", "the rerun requested retraining again"
    assert asset_event_count(demo_cfg) == before + 1
    messages = read_messages(mail_dir)
    assert len(messages) == 1 and "retraining requested" in messages[0]["Subject"]
    outputs_second = stable_snapshot(world, demo_cfg.storage.bucket, demo_cfg.storage.output_prefix)
    assert set(outputs_second) == set(outputs_first)
    changed = {k for k in outputs_first if outputs_first[k] != outputs_second[k]}
    assert not changed, f"a rerun changed {changed}"
    assert not manifest_problems(world, demo_cfg.storage.bucket, layout.report_prefix(demo_cfg, str(batch.batch_date)))
    figures.add(
        "race",
        "monitor run cleared and rerun for the same date (drifted batch)",
        "1 drift email and 1 Asset event in total: the rerun's request_retraining is skipped (request record per "
        "batch date), so no second retrain run and no duplicate registry version; same objects",
        intact=True,
        runs=2,
    )
