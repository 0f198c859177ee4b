"""The schema matrix: datasets we did not design the pipeline for, driven through the real DAGs.

Each case is onboarded as a user would (`driftwatch init`'s draft of its reference, with the
edits the draft asks for), then runs with `dag.test()` against the moto S3 server, the SMTP
sink and MLflow on SQLite: the bootstrap retrain, a stable batch, a drifted one and the retrain
it requests. Each step asserts its outcome (decision, scores, live metric, alert or none).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import yaml

from devstack.smtp_sink import read_messages
from driftwatch import layout, onboarding, registry, storage
from driftwatch.config import parse_config
from tests.datasets import generator as gen
from tests.helpers import asset_events

pytestmark = pytest.mark.integration

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
ROWS = 1000

CASES = [
    # The case from the field: integer ids, Parquet labels, a reference without a timestamp, CSV batches.
    gen.Case("int_ids_parquet_labels", id_kind="int64", labels_format="parquet", timestamp=False, batch_format="csv"),
    gen.Case(
        "text_ids_bool_target",
        id_kind="text",
        target="bool",
        category="bool",
        files=3,
        shuffled=True,
        label_quirks=frozenset({"duplicated"}),
    ),
    gen.Case(
        "uuid_yes_no",
        id_kind="uuid",
        labels_format="parquet",
        target="yesno",
        category="high_cardinality",
        extras=True,
        reference_format="csv",
        label_quirks=frozenset({"duplicated", "unknown"}),
    ),
    gen.Case(
        "zero_padded_late_labels",
        id_kind="zero_padded",
        target="string_positive",
        batch_format="csv",
        files=2,
        label_quirks=frozenset({"missing", "late"}),
    ),
    gen.Case("regression_no_timestamp", target="regression", category="bool", timestamp=False, files=2),
]


def onboard(case: gen.Case, reference: pd.DataFrame, config_dir):
    """The config `driftwatch init` drafts for this reference, with the edits a user makes for the test.

    It is written to the config folder the DAG files read, as a user's would be.
    """
    name = f"m_{case.name}"
    text = onboarding.draft_config(
        reference,
        name=name,
        target=gen.TARGET,
        id_column=gen.ID,
        bucket="driftwatch-demo",
        reference_key=f"reference/{name}/reference.{case.reference_format}",
        recipients=["oncall@example.com"],
        start=DAY1,
    )
    raw = yaml.safe_load(text)
    if case.extras:
        raw["schema"]["ignored_columns"] = list(gen.EXTRAS)
    # Two batches are enough to retrain: one to train on, the latest one held out.
    raw["training"].update(window_days=3, holdout_days=1, min_training_rows=100)
    # The matrix tests schemas, not the retraining policy (tests/unit/test_policy.py): one drifted
    # batch with its labels retrains here, and a day's labels are enough to measure live performance.
    raw["retraining"] = {
        "sustained_batches": 1,
        "sustained_window": 1,
        "min_new_labelled_rows": 0,
        "cooldown_days": 0,
        "retrain_on_harmless_drift": True,
    }
    raw.setdefault("evaluation", {})["live_min_rows"] = 100
    (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return parse_config(raw, source=name)


def land_batch(s3, cfg, case: gen.Case, day: date, features: pd.DataFrame) -> None:
    for name, data in gen.batch_files(case, features):
        storage.write_bytes(s3, cfg.storage.bucket, layout.incoming_prefix(cfg, day.isoformat()) + name, data, "x")


def land_labels(s3, cfg, case: gen.Case, day: date, labels: pd.DataFrame) -> None:
    key = layout.labels_prefix(cfg, day.isoformat()) + f"labels.{case.labels_format}"
    storage.write_bytes(s3, cfg.storage.bucket, key, gen.file_bytes(labels, case.labels_format), "x")


def run(dag, **kwargs):
    result = dag.test(**kwargs)
    return {ti.task_id: ti.state for ti in result.get_task_instances()}


def at_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def record(s3, cfg, day: date) -> dict:
    return storage.read_json(s3, cfg.storage.bucket, layout.history_key(cfg, day.isoformat()))


def drift_alerts(mail_dir) -> list[str]:
    """Subjects of the drift alerts sent (every subject starts with "[driftwatch]")."""
    subjects = [str(m["Subject"]).replace("[driftwatch]", "") for m in read_messages(mail_dir)]
    return [s for s in subjects if "drift" in s]


def evaluation_reports(s3, cfg) -> list[dict]:
    prefix = f"{cfg.storage.output_prefix}evaluations/"
    keys = [o.key for o in storage.list_objects(s3, cfg.storage.bucket, prefix) if o.key.endswith("evaluation.json")]
    return [storage.read_json(s3, cfg.storage.bucket, key) for key in keys]


@pytest.fixture(scope="module")
def airflow_db():
    from airflow.utils.db import resetdb

    resetdb(skip_init=False)


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("DRIFTWATCH_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    conn = {"conn_type": "http", "host": "unused", "extra": {"tracking_uri": uri}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri, tmp_path / "artifacts"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_dataset_runs_end_to_end(case, airflow_db, s3, aws_connection, mail_dir, mlflow_store, config_dir):
    from monitor import build_monitor_dag
    from retrain import build_retrain_dag

    tracking_uri, artifacts = mlflow_store
    reference = gen.reference_frame(case, rows=3000)
    cfg = onboard(case, reference, config_dir)
    registry.ensure_experiment(tracking_uri, cfg.registry.experiment, artifact_location=str(artifacts))
    storage.write_bytes(
        s3, cfg.storage.bucket, cfg.storage.reference_key, gen.file_bytes(reference, case.reference_format), "x"
    )

    # 1. The first model, trained on the reference: a random holdout when it has no dates.
    states = run(build_retrain_dag(cfg), run_conf={"reason": "bootstrap"})
    assert states["apply_decision"] == "success", states
    assert registry.champion(tracking_uri, cfg.registry.registered_model)["version"] == "1"
    split = evaluation_reports(s3, cfg)[-1]["split"]
    assert split["method"] == ("time" if case.timestamp else "random"), split

    # 2. A stable batch: validated, no drift, scored, and measured where its labels are in.
    features1, labels1 = gen.make_frames(case, rows=ROWS, seed=21, start_id=1000, day=DAY1.isoformat())
    labels1 = gen.quirky_labels(case, labels1, seed=21)
    land_batch(s3, cfg, case, DAY1, features1)
    if "late" not in case.label_quirks:
        land_labels(s3, cfg, case, DAY1, labels1)
    states = run(build_monitor_dag(cfg), logical_date=at_midnight(DAY1))
    assert states["compute_drift"] == "success" and states["score_batch"] == "success", states
    day1 = record(s3, cfg, DAY1)
    assert day1["status"] == "passed" and day1["action"] == "none", day1
    assert day1["drift"]["share"] < cfg.drift.dataset_drift_share
    assert day1["scoring"]["rows"] == ROWS and day1["scoring"]["null_outputs"] == 0
    labelled1 = len(set(labels1[gen.ID].astype(str)) & set(features1[gen.ID].astype(str)))
    if "late" in case.label_quirks:
        assert day1["live"]["rows"] == 0 and day1["live"]["value"] is None, "no labels yet: nothing to measure"
        land_labels(s3, cfg, case, DAY1, labels1)
    else:
        assert day1["live"]["value"] is not None and day1["live"]["rows"] == labelled1, day1["live"]
    assert not drift_alerts(mail_dir)

    # 3. A drifted batch: the alert, the retraining request, and late labels measured now.
    features2, labels2 = gen.make_frames(case, rows=ROWS, seed=22, start_id=2000, shift=1.0, day=DAY2.isoformat())
    labels2 = gen.quirky_labels(case, labels2, seed=22)
    land_batch(s3, cfg, case, DAY2, features2)
    land_labels(s3, cfg, case, DAY2, labels2)
    before = len(asset_events(cfg))
    states = run(build_monitor_dag(cfg), logical_date=at_midnight(DAY2))
    assert states["alert_drift"] == "success" and states["request_retraining"] == "success", (
        states,
        record(s3, cfg, DAY2).get("policy"),
    )
    day2 = record(s3, cfg, DAY2)
    assert day2["action"] == "alert+retrain" and day2["drift"]["share"] >= cfg.drift.dataset_drift_share
    assert day2["scoring"]["rows"] == ROWS and day2["live"]["value"] is not None
    labelled2 = len(set(labels2[gen.ID].astype(str)) & set(features2[gen.ID].astype(str)))
    # Live performance pools the window's labelled batches that this version predicted: day 1's late labels too.
    assert day2["live"]["days"] == [DAY1.isoformat(), DAY2.isoformat()] and day2["live"]["model_version"] == "1"
    assert day2["live"]["rows"] == labelled1 + labelled2, day2["live"]
    drift_mails = drift_alerts(mail_dir)
    assert len(drift_mails) == 1 and DAY2.isoformat() in drift_mails[0]
    events = asset_events(cfg)
    assert len(events) == before + 1 and events[-1]["batch_date"] == DAY2.isoformat()

    # 4. The retrain it requests: trained on day 1, judged on day 2, promoted or rejected with reasons.
    states = run(build_retrain_dag(cfg), run_conf={"reason": "drift in the matrix", "as_of": DAY2.isoformat()})
    assert states["apply_decision"] == "success" and states["notify"] == "success", states
    report = evaluation_reports(s3, cfg)[-1]
    assert report["split"]["method"] == "time" and report["split"]["holdout_dates"] == [DAY2.isoformat()]
    assert report["split"]["train_rows"] == labelled1
    assert report["challenger"]["primary"]["value"] is not None and report["champion"] is not None


def test_a_permanent_error_fails_on_its_first_attempt(
    airflow_db, s3, aws_connection, mail_dir, mlflow_store, config_dir
):
    """A reference with one class cannot train a classifier: the task fails at once, not after every retry."""
    from retrain import build_retrain_dag

    case = gen.Case("one_class_reference")
    reference = gen.reference_frame(case, rows=1000).assign(**{gen.TARGET: 1})
    draft = gen.reference_frame(case, rows=1000)  # drafted from a healthy file, then fed a broken one
    cfg = onboard(case, draft, config_dir)
    assert cfg.monitor.retries >= 2, "the test needs retries to be on to prove they are skipped"
    registry.ensure_experiment(mlflow_store[0], cfg.registry.experiment, artifact_location=str(mlflow_store[1]))
    storage.write_bytes(s3, cfg.storage.bucket, cfg.storage.reference_key, gen.file_bytes(reference, "parquet"), "x")

    result = build_retrain_dag(cfg).test(run_conf={"reason": "bootstrap"})
    failed = {ti.task_id: ti for ti in result.get_task_instances()}["train_challenger"]
    assert failed.state == "failed", f"{failed.state}: a deterministic error must not wait for a retry"
    assert failed.try_number == 1
