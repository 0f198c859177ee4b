"""The monitor DAG end to end with dag.test(): real moto S3 server and SMTP sink on loopback."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from devstack.smtp_sink import read_messages
from driftwatch import history, layout, seeding, storage
from driftwatch.config import RetrainingPolicy
from tests.helpers import asset_events, eager_policy, register_model

pytestmark = pytest.mark.integration

START = date(2026, 1, 1)


def pii_markers(batch) -> list[str]:
    """The PII column name plus real PII values of the batch ('email' alone is a word in any JS bundle)."""
    return ["applicant_name", *batch.features["email"].head(20), *batch.features["applicant_name"].head(20)]


def run_monitor(cfg, batch_date: date):
    from monitor import build_monitor_dag

    dag = build_monitor_dag(cfg)
    run = dag.test(logical_date=datetime.combine(batch_date, datetime.min.time(), tzinfo=UTC))
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def first_of(scenario, kind):
    return next(b for b in scenario if b.kind == kind)


def strongest_drift(scenario):
    return max((b for b in scenario if b.kind == "covariate_drift"), key=lambda b: b.drift_strength)


def report_text(s3, cfg, day: str, name: str) -> str:
    return storage.read_bytes(s3, cfg.storage.bucket, layout.report_prefix(cfg, day) + name).decode()


def test_clean_batch_raises_no_alert(airflow_db, seeded, s3, demo_cfg, mail_dir, scenario):
    batch = first_of(scenario, "stable")
    day = batch.batch_date
    run, states = run_monitor(demo_cfg, day)

    assert states["validate_batch"] == "success"
    assert states["compute_drift"] == "success"
    assert states["quarantine_batch"] == "skipped"
    assert states["score_batch"] == "success", "no champion yet must not fail the monitor"
    assert states["check_attribution"] == "success" and states["attribution_outcome"] == "success"
    assert states["alert_drift"] == "skipped" and states["request_retraining"] == "skipped"
    assert read_messages(mail_dir) == []
    record = json.loads(storage.read_bytes(s3, demo_cfg.storage.bucket, layout.history_key(demo_cfg, day.isoformat())))
    assert record["status"] == "passed" and record["action"] == "none"
    assert record["drift"]["share"] < demo_cfg.drift.dataset_drift_share
    assert record["attribution"]["measured"] is False and record["attribution"]["note"].startswith("no champion yet")
    manifest = json.loads(report_text(s3, demo_cfg, day.isoformat(), "manifest.json"))
    assert {"validation.html", "validation.json", "drift.html", "drift.json"} <= set(manifest["artifacts"])
    for name in ("validation.html", "drift.html", "drift.json", "validation.json"):
        text = report_text(s3, demo_cfg, day.isoformat(), name)
        leaked = [marker for marker in pii_markers(batch) if marker in text]
        assert not leaked, f"PII leaked into {name}: {leaked[:3]}"
    assert "<html" in report_text(s3, demo_cfg, day.isoformat(), "drift.html").lower()


def test_drifted_batch_alerts_and_requests_retraining(airflow_db, seeded, s3, demo_cfg, mail_dir, scenario):
    demo_cfg = eager_policy(demo_cfg)
    batch = strongest_drift(scenario)
    before = len(asset_events(demo_cfg))
    run, states = run_monitor(demo_cfg, batch.batch_date)

    assert states["compute_drift"] == "success"
    assert states["alert_drift"] == "success" and states["request_retraining"] == "success"
    messages = read_messages(mail_dir)
    assert len(messages) == 1
    assert "drift" in messages[0]["Subject"] and batch.batch_date.isoformat() in messages[0]["Subject"]
    html = messages[0].get_body(("html",)).get_content()
    assert "<table" in html and "score" in html
    events = asset_events(demo_cfg)
    assert len(events) == before + 1
    assert events[-1]["batch_date"] == batch.batch_date.isoformat()
    assert events[-1]["reason"].startswith("data drift")


def test_broken_batch_is_quarantined_without_drift(airflow_db, seeded, s3, demo_cfg, mail_dir, scenario):
    batch = first_of(scenario, "broken")
    day = batch.batch_date.isoformat()
    raw_key = seeding.batch_key(demo_cfg, batch)
    raw_before = storage.read_bytes(s3, demo_cfg.storage.bucket, raw_key)
    run, states = run_monitor(demo_cfg, batch.batch_date)

    assert states["quarantine_batch"] == "success"
    assert states["compute_drift"] == "skipped"
    assert storage.read_bytes(s3, demo_cfg.storage.bucket, raw_key) == raw_before, "raw batch was modified"
    q_prefix = layout.quarantine_prefix(demo_cfg, day)
    keys = {o.key[len(q_prefix) :] for o in storage.list_objects(s3, demo_cfg.storage.bucket, q_prefix)}
    assert {"validation.html", "validation.json", "manifest.json", f"data/part-000.{batch.fmt}"} <= keys
    assert storage.object_size(s3, demo_cfg.storage.bucket, layout.report_prefix(demo_cfg, day) + "drift.html") is None
    messages = read_messages(mail_dir)
    assert len(messages) == 1 and "quarantined" in messages[0]["Subject"]
    assert "credit_utilization" in messages[0].get_body(("plain",)).get_content()
    record = json.loads(storage.read_bytes(s3, demo_cfg.storage.bucket, layout.history_key(demo_cfg, day)))
    assert record["status"] == "quarantined" and record["drift"] is None


def test_rerun_overwrites_instead_of_duplicating(airflow_db, seeded, s3, demo_cfg, mail_dir, scenario):
    day = first_of(scenario, "stable").batch_date
    run_monitor(demo_cfg, day)
    keys_first = sorted(
        o.key for o in storage.list_objects(s3, demo_cfg.storage.bucket, demo_cfg.storage.output_prefix)
    )
    run_monitor(demo_cfg, day)
    keys_second = sorted(
        o.key for o in storage.list_objects(s3, demo_cfg.storage.bucket, demo_cfg.storage.output_prefix)
    )
    assert keys_first == keys_second


def test_a_failed_score_batch_does_not_silence_the_drift_alert(
    airflow_db, seeded, s3, demo_cfg, mail_dir, scenario, monkeypatch, tmp_path
):
    # A registry that cannot be opened (its folder is a file): score_batch fails for good (no retries here).
    (tmp_path / "blocked").write_text("not a folder")
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "http", "extra": {"tracking_uri": f"sqlite:///{tmp_path}/blocked/mlflow.db"}}),
    )
    cfg = eager_policy(demo_cfg.model_copy(update={"monitor": demo_cfg.monitor.model_copy(update={"retries": 0})}))
    batch = strongest_drift(scenario)
    day = batch.batch_date.isoformat()
    before = len(asset_events(cfg))
    run, states = run_monitor(cfg, batch.batch_date)

    assert states["score_batch"] == "failed" and states["check_attribution"] == "upstream_failed"
    assert states["alert_drift"] == "success" and states["request_retraining"] == "success"
    subjects = sorted(m["Subject"] for m in read_messages(mail_dir))
    assert len(subjects) == 2, subjects
    drift_mail = [s for s in subjects if "score_batch failed" not in s]
    assert len(drift_mail) == 1 and day in drift_mail[0]
    assert [s for s in subjects if s.endswith(f"{day}: score_batch failed in monitor__{cfg.name}")]
    assert len(asset_events(cfg)) == before + 1
    record = history.read_record(s3, cfg, day)
    assert record["steps"]["score_batch"]["failed"] is True
    assert record["steps"]["decide"]["scoring"].startswith("score_batch failed")
    assert record["steps"]["decide"]["attribution"].startswith("check_attribution failed or did not run")
    assert record["action"] == "alert+retrain (score_batch failed)"


def test_the_record_says_what_was_done(airflow_db, seeded, s3, demo_cfg, mail_dir, scenario):
    demo_cfg = eager_policy(demo_cfg)
    batch = strongest_drift(scenario)
    run_monitor(demo_cfg, batch.batch_date)
    record = history.read_record(s3, demo_cfg, batch.batch_date.isoformat())
    assert record["action"] == "alert+retrain"
    assert record["steps"]["alert_drift"]["done"] and record["steps"]["request_retraining"]["done"]
    assert record["steps"]["decide"]["retrain"] is True and "scoring" not in record["steps"]["decide"]


def test_sustained_drift_retrains_once_when_its_labels_land(airflow_db, seeded, s3, demo_cfg, mail_dir, scenario):
    policy = RetrainingPolicy(sustained_batches=2, sustained_window=3, min_new_labelled_rows=300, cooldown_days=3)
    cfg = demo_cfg.model_copy(update={"retraining": policy})
    drifted = strongest_drift(scenario)
    # The same drifted batch on four new days, after the scenario: drift on every one of them.
    days = [drifted.batch_date + timedelta(days=30 + i) for i in range(4)]
    batches = [dataclasses.replace(drifted, batch_date=day) for day in days]
    for batch in batches:
        seeding.write_batch(s3, cfg, batch)
    before = len(asset_events(cfg))

    def policy_of(day: date) -> dict:
        run_monitor(cfg, day)
        return history.read_record(s3, cfg, day.isoformat())["policy"]

    first = policy_of(days[0])
    assert first["action"] == "alert-only" and "not sustained yet: drift on 1 of the last 1" in first["reason"]
    second = policy_of(days[1])
    assert second["action"] == "pending-labels", second
    assert f"0 labelled row(s) from batches since {days[0]}, 300 needed" in second["reason"]
    assert len(asset_events(cfg)) == before
    seeding.write_labels(s3, cfg, batches[0])  # the first drifted day's labels land, late
    third = policy_of(days[2])
    assert third["action"] == "retrain" and third["retrain"] is True, third
    assert third["signals"]["labelled_rows_since_onset"] == len(batches[0].labels)
    assert len(asset_events(cfg)) == before + 1 and asset_events(cfg)[-1]["batch_date"] == days[2].isoformat()
    fourth = policy_of(days[3])  # the retrain is queued (no run has started it): the new drift joins it
    assert fourth["action"] == "joined" and len(asset_events(cfg)) == before + 1
    record = history.read_record(s3, cfg, days[3].isoformat())
    assert record["action"] == "alert" and record["steps"]["decide"]["retrain"] is False
    subjects = [m["Subject"].strip() for m in read_messages(mail_dir)]
    assert sum("retraining requested" in s for s in subjects) == 1, subjects
    assert sum("retraining waits for labels" in s for s in subjects) == 1, subjects


def promote_champion(s3, cfg, tracking_uri: str, artifacts) -> str:
    """Champion v1, trained on stable data, with the importance its evaluation stores on its run."""
    from driftwatch import demo_data, references, registry, training
    from driftwatch.importance import importance_report

    name = cfg.registry.registered_model
    registry.ensure_experiment(tracking_uri, cfg.registry.experiment, artifact_location=str(artifacts))
    model, _ = training.train(cfg, demo_data.generate_reference(seed=11, rows=1200))
    holdout = demo_data.generate_reference(seed=12, rows=800)
    importance = importance_report(model, None, holdout, cfg)["challenger"]  # as evaluate_candidate stores it
    found = register_model(cfg, tracking_uri, model, holdout, "the test's champion")
    registry.record_evaluation(
        tracking_uri,
        name,
        found["version"],
        found["run_id"],
        primary=importance["baseline"],
        report_html="<html></html>",
        report_json={},
        importance=importance,
    )
    registry.promote(tracking_uri, name, found["version"], expected_champion=None, reason="test", actor="test")
    reference = storage.s3_uri(cfg.storage.bucket, cfg.storage.reference_key)
    references.promote_reference(s3, cfg, reference, found["version"])
    return found["version"]


def test_a_champion_whose_labels_moved_records_attribution_drift(
    airflow_db, seeded, s3, demo_cfg, mail_dir, scenario, tmp_path
):
    # One 400-row day of labels is the window here (the demo config asks for two days of 2,000 rows).
    cfg = demo_cfg.model_copy(update={"evaluation": demo_cfg.evaluation.model_copy(update={"live_min_rows": 200})})
    version = promote_champion(s3, cfg, f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")
    batch = max((b for b in scenario if b.kind == "concept_drift"), key=lambda b: b.drift_strength)
    day = batch.batch_date.isoformat()
    seeding.write_labels(s3, cfg, batch)  # early: the day's own labels are its window
    run, states = run_monitor(cfg, batch.batch_date)

    assert states["check_attribution"] == "success" and states["decide"] == "success", states
    record = history.read_record(s3, cfg, day)
    found = record["attribution"]
    assert found["measured"] is True and found["model_version"] == version, found
    assert found["rows"] == record["live"]["rows"] > 0, "the rows live performance measures"
    assert found["attribution_drift"] is True and found["ndcg"] < cfg.evaluation.attribution_drift_threshold
    assert found["evaluated_top_features"][0] == "credit_utilization" != found["top_features"][0]
    assert "seconds" not in found, "a timing in the record would change it on every rerun of the batch"
    assert record["steps"]["check_attribution"]["done"] is True
    assert record["policy"]["signals"]["attribution_drift"] is True and "attribution drift: v1's" in record["reason"]
    text = read_messages(mail_dir)[-1].get_body(("plain",)).get_content()
    assert "attribution drift (labels) | importance nDCG |" in text
