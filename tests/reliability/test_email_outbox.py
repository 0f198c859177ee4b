"""The retrain and rollback emails with the SMTP server down: kept in the bucket, never silently lost.

The real SMTP sink is stopped on its port (connection refused), as in test_service_faults. The
retrain DAG runs for real with dag.test() (bootstrap on the reference, MLflow on SQLite, moto S3);
the rollback DAG moves the alias back from a v2 registered and promoted through the registry API.
"""

from __future__ import annotations

import json
from datetime import timedelta
from email import message_from_bytes, policy

import pytest

from devstack.smtp_sink import read_messages
from driftwatch import demo_data, layout, registry, seeding, storage
from tests.conftest import fresh_bucket
from tests.integration.test_registry import Env, register
from tests.reliability.support import quick_retries, run_dag, try_numbers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3_endpoint):
    """A bucket with the reference data and an MLflow registry of its own, for this module only."""
    client = fresh_bucket(s3_endpoint)
    root = tmp_path_factory.mktemp("mlflow-outbox")
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    return {"s3": client, "tracking_uri": tracking_uri, "artifacts": root / "artifacts"}


@pytest.fixture
def env(world, demo_cfg, airflow_db, aws_connection, smtp_sink, monkeypatch):
    """The demo model on the module's registry, retried after 1 s rather than minutes."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "http", "host": "unused", "extra": {"tracking_uri": world["tracking_uri"]}}),
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["tracking_uri"])  # the smoke test's fresh process
    cfg = quick_retries(demo_cfg, retries=1)
    # Without an explicit location MLflow would put artifacts in ./mlruns of the working directory.
    registry.ensure_experiment(
        world["tracking_uri"], cfg.registry.experiment, artifact_location=str(world["artifacts"])
    )
    if not storage.object_size(world["s3"], cfg.storage.bucket, cfg.storage.reference_key):
        seeding.write_reference(world["s3"], cfg, demo_data.generate_reference(seed=5, rows=2500))
    return cfg


def alert_records(client, cfg) -> dict[str, object]:
    """Every delivery record and kept message under the model's alerts/ prefix, by file name."""
    prefix = f"{cfg.storage.output_prefix}alerts/"
    return {
        o.key[len(prefix) :]: storage.read_bytes(client, cfg.storage.bucket, o.key)
        for o in storage.list_objects(client, cfg.storage.bucket, prefix)
    }


def kept_alert(records: dict[str, bytes], kind_prefix: str) -> tuple[dict, object]:
    """The one undelivered record of an alert kind and the message kept beside it."""
    found = [
        json.loads(data)
        for name, data in records.items()
        if name.endswith(".undelivered.json") and json.loads(data)["dedup_key"].split("/")[-1].startswith(kind_prefix)
    ]
    assert len(found) == 1, f"expected one undelivered {kind_prefix} alert, found {sorted(records)}"
    eml_name = found[0]["eml"].rsplit("/", 1)[-1]
    assert eml_name in records, f"the record names {eml_name}, which is not in the bucket"
    return found[0], message_from_bytes(records[eml_name], policy=policy.default)


def champion_version(world, cfg) -> str | None:
    found = registry.champion(world["tracking_uri"], cfg.registry.registered_model)
    return str(found["version"]) if found else None


def bootstrap(world, cfg) -> dict[str, str]:
    """Champion v1 trained on the reference by the retrain DAG (once per module); the task states."""
    from retrain import build_retrain_dag

    if champion_version(world, cfg) is not None:
        return {}
    _, states = run_dag(build_retrain_dag(cfg), conf={"reason": "bootstrap with SMTP down"})
    return states


def test_retrain_email_with_smtp_down_fails_the_run_and_is_kept(world, env, smtp_sink, figures):
    from retrain import build_retrain_dag

    cfg = env
    assert champion_version(world, cfg) is None, "this test must run the bootstrap itself"
    smtp_sink.stop()
    run, states = run_dag(build_retrain_dag(cfg), conf={"reason": "bootstrap with SMTP down"})

    assert states["notify"] == "failed" and run.state == "failed", f"an undelivered email passed silently: {states}"
    assert try_numbers(run)["notify"] == 2, "notify should have been retried once by Airflow"
    # What was decided stands: the email failing does not undo or repeat the promotion.
    assert states["apply_decision"] == "success", states
    assert champion_version(world, cfg) == "1"
    assert [v["version"] for v in registry.version_summaries(world["tracking_uri"], cfg.registry.registered_model)] == [
        "1"
    ]
    records = alert_records(world["s3"], cfg)
    record, kept = kept_alert(records, "retrain-")
    assert not [n for n in records if n.endswith(".delivered.json")], "an email was recorded as delivered"
    assert record["attempts"] == 3 and "refused" in record["error"].lower(), record
    assert "v1 promoted" in kept["Subject"] and kept["X-Driftwatch-Dedup-Key"] == record["dedup_key"]
    assert "challenger version 1 was promoted" in kept.get_body(("plain",)).get_content()
    assert read_messages(smtp_sink.folder) == []
    figures.add(
        "fault",
        "SMTP server down for the retrain email (bootstrap promoted v1)",
        "notify failed after 2 tries × 3 SMTP attempts, run marked failed (not silent); the email is kept as "
        f"{record['eml'].rsplit('/', 1)[-1]} with its error; the promotion stands: one version, champion v1",
        intact=True,
        runs=2,
    )


def test_rollback_email_with_smtp_down_then_back_is_delivered_once(world, env, smtp_sink, figures):
    from rollback import build_rollback_dag

    cfg = env
    bootstrap(world, cfg)
    # v2 through the registry API: the rollback under test needs a champion with a predecessor.
    v2 = register(Env(world["tracking_uri"], cfg, world["artifacts"]), seed=1, key="outbox-v2")["version"]
    registry.promote(
        world["tracking_uri"], cfg.registry.registered_model, v2, expected_champion="1", reason="test", actor="test"
    )
    before = {n for n in alert_records(world["s3"], cfg) if n.endswith(".json")}
    dag = build_rollback_dag(cfg)
    notify = dag.get_task("notify")
    notify.retry_delay = timedelta(seconds=1)  # a test waits seconds, not the DAG's 15 s
    smtp_sink.stop()

    def smtp_back(context) -> None:
        smtp_sink.start()

    notify.on_retry_callback = [smtp_back]
    run, states = run_dag(dag, conf={"reason": "rollback with SMTP down"})

    assert run.state == "success", states
    assert try_numbers(run) == {"move_alias": 1, "notify": 2}, "notify should have failed once, then succeeded"
    assert champion_version(world, cfg) == "1"
    rollbacks = [
        h
        for h in registry.champion_history(world["tracking_uri"], cfg.registry.registered_model)
        if h["action"] == "rollback"
    ]
    assert len(rollbacks) == 1, rollbacks
    # Only rollback emails count: a bootstrap run here (when the retrain test did not run) sends its own.
    messages = [m for m in read_messages(smtp_sink.folder) if "rolled back" in m["Subject"]]
    assert len(messages) == 1 and f"from v{v2} to v1" in messages[0]["Subject"], [m["Subject"] for m in messages]
    records = alert_records(world["s3"], cfg)
    record, kept = kept_alert({n: d for n, d in records.items() if n not in before}, "rollback-")
    assert record["attempts"] == 3 and "refused" in record["error"].lower(), record
    assert kept["Message-ID"] == messages[0]["Message-ID"], "the kept message is not the one delivered later"
    # The record's key, not the delivered header: a long header comes back folded from the .eml.
    key = record["dedup_key"]
    delivered = storage.read_json(world["s3"], cfg.storage.bucket, layout.alert_record_key(cfg, key, "delivered"))
    assert delivered["attempts"] == 1, delivered
    pointer = storage.read_json(world["s3"], cfg.storage.bucket, layout.reference_pointer_key(cfg))
    assert pointer["model_version"] == "1", pointer
    figures.add(
        "fault",
        "SMTP server down for the rollback email, then back",
        "try 1: 3 SMTP attempts refused, email recorded as undelivered (.eml kept), task failed; Airflow retry "
        "after the server restarted: delivered exactly once; one rollback in the champion history",
        intact=True,
    )
