"""A task that fails for good emails the model's owners once, whatever DAG it is in (dag.test, moto S3, SMTP sink)."""

from __future__ import annotations

import json

import pytest

from devstack.smtp_sink import read_messages
from driftwatch import storage

pytestmark = pytest.mark.integration


@pytest.fixture
def no_retries(demo_cfg):
    return demo_cfg.model_copy(update={"monitor": demo_cfg.monitor.model_copy(update={"retries": 0})})


def test_a_failed_retrain_emails_its_failure_once(s3, aws_connection, mail_dir, monkeypatch, tmp_path, no_retries):
    from airflow.utils.db import resetdb

    from retrain import build_retrain_dag

    resetdb(skip_init=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "http", "extra": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}}),
    )
    cfg = no_retries
    # No reference data in the bucket: the bootstrap cannot assemble a training set.
    dag = build_retrain_dag(cfg)
    run = dag.test(run_conf={"reason": "bootstrap for the test"})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}

    assert states["assemble_data"] == "failed", states
    [mail] = read_messages(mail_dir)
    assert mail["Subject"].strip() == f"[driftwatch] {cfg.name}: assemble_data failed in retrain__{cfg.name}"
    text = mail.get_body(("plain",)).get_content()
    assert "reference data for model credit_default not found" in text and "try 1" in text
    delivered = storage.list_objects(s3, cfg.storage.bucket, f"{cfg.storage.output_prefix}alerts/")
    assert [o.key for o in delivered if o.key.endswith(".delivered.json")]

    # The run cleared and failing the same way on try 2 is the same alert: the outbox does not resend it.
    from driftwatch_airflow.callbacks import report_failure

    class Ti:
        dag_id, run_id, task_id, try_number, log_url = f"retrain__{cfg.name}", run.run_id, "assemble_data", 2, None

    message = text.split("Error: FileNotFoundError: ", 1)[1].split("\n", 1)[0]
    report_failure(cfg, {"ti": Ti(), "exception": FileNotFoundError(message)}, None)
    assert len(read_messages(mail_dir)) == 1
    # Another error is news, and is sent.
    report_failure(cfg, {"ti": Ti(), "exception": FileNotFoundError("something else")}, None)
    assert len(read_messages(mail_dir)) == 2
