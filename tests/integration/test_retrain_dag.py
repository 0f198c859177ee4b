"""Retraining end to end with dag.test(): moto S3 server, MLflow on SQLite, the SMTP sink.

One module-scoped scenario is built step by step, because each step needs the registry state
the previous one left: bootstrap → concept drift caught by the monitor → promotion → rejection
→ an as_of inside the champion's training window refused → the compare-and-set race → rollback
→ the reference pointer repaired.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from devstack.smtp_sink import read_messages
from driftwatch import demo_data, layout, pipeline, registry, retraining, seeding, storage
from tests.conftest import fresh_bucket
from tests.helpers import eager_policy

pytestmark = pytest.mark.integration

START = date(2026, 3, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3_endpoint):
    """Shared state of the scenario: bucket, MLflow store and the batches."""
    client = fresh_bucket(s3_endpoint)
    root = tmp_path_factory.mktemp("mlflow")
    from driftwatch.config import load_config
    from tests.conftest import DEMO_CONFIG

    # Without an explicit location MLflow would put artifacts in ./mlruns of the working directory.
    experiment = load_config(DEMO_CONFIG).registry.experiment
    registry.ensure_experiment(f"sqlite:///{root}/mlflow.db", experiment, artifact_location=str(root / "artifacts"))
    return {
        "s3": client,
        "tracking_uri": f"sqlite:///{root}/mlflow.db",
        "artifacts": str(root / "artifacts"),
        "batches": demo_data.generate_scenario(START, days=14, seed=5, rows_per_day=600),
    }


@pytest.fixture(scope="module")
def airflow_db():
    from airflow.utils.db import resetdb

    resetdb(skip_init=False)


@pytest.fixture
def env(world, aws_connection, monkeypatch, mail_dir, airflow_db):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "http", "host": "unused", "extra": {"tracking_uri": world["tracking_uri"]}}),
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["tracking_uri"])
    return mail_dir


@pytest.fixture(scope="module")
def cfg():
    from driftwatch.config import load_config
    from tests.conftest import DEMO_CONFIG

    demo = load_config(DEMO_CONFIG)  # promoting at once: tests/integration/test_shadow_mode.py covers shadow mode
    return demo.model_copy(update={"promotion": demo.promotion.model_copy(update={"mode": "immediate"})})


def run_dag(dag, conf=None, logical_date=None):
    run = dag.test(run_conf=conf or {}, logical_date=logical_date)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def land_and_validate(world, cfg, kinds: set[str]) -> list[str]:
    """Land the batches of the given kinds with their labels and run the monitor's steps on them."""
    days = []
    for batch in world["batches"]:
        if batch.kind not in kinds:
            continue
        day = batch.batch_date.isoformat()
        seeding.write_batch(world["s3"], cfg, batch)
        seeding.write_labels(world["s3"], cfg, batch)
        summary = pipeline.validate_step(world["s3"], cfg, day)
        if summary["passed"]:
            pipeline.drift_step(world["s3"], cfg, day, summary)
        days.append(day)
    return days


def champion_version(world, cfg) -> str | None:
    found = registry.champion(world["tracking_uri"], cfg.registry.registered_model)
    return str(found["version"]) if found else None


def read_frame(world, uri: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(storage.read_bytes(world["s3"], *storage.parse_s3_uri(uri))))


def assert_finished(world, cfg, run, *, promoted: bool, version: str | None) -> dict:
    """The retrain status after a run: finished, by that run, promoted or not."""
    status = retraining.read_retrain_status(world["s3"], cfg)
    assert status["state"] == "finished" and status["run_id"] == run.run_id, status
    assert (status["promoted"], status["version"]) == (promoted, version), status
    if not promoted:
        assert status["promoted_on"] is None
    assert datetime.fromisoformat(status["finished_at"]) >= datetime.fromisoformat(status["started_at"])
    return status


def test_bootstrap_trains_champion_v1_on_the_reference(world, cfg, env):
    from retrain import build_retrain_dag

    seeding.write_reference(world["s3"], cfg, demo_data.generate_reference(seed=5, rows=2500))
    run, states = run_dag(build_retrain_dag(cfg), conf={"reason": "bootstrap for the test"})

    assert states["apply_decision"] == "success", states
    assert states["await_approval"] == "skipped" and states["record_finish"] == "success"
    assert champion_version(world, cfg) == "1"
    pointer = storage.read_json(world["s3"], cfg.storage.bucket, layout.reference_pointer_key(cfg))
    assert pointer["model_version"] == "1" and pointer["uri"].endswith("reference.parquet")
    messages = read_messages(env)
    assert len(messages) == 1 and "v1 promoted" in messages[0]["Subject"]
    # A bootstrap learned from the reference: its promotion counts from the reference's last day.
    status = assert_finished(world, cfg, run, promoted=True, version="1")
    assert status["promoted_on"] is not None and status["promoted_on"] < START.isoformat()

    # The estimator came with the version, inside its hashed files; its figures are on the run.
    name = cfg.registry.registered_model
    estimator = registry.load_estimator(world["tracking_uri"], name, "1")
    assert estimator["kind"] in {"cbpe", "none"} and estimator["metric"] == cfg.evaluation.primary_metric
    champion = registry.champion(world["tracking_uri"], name)
    assert champion["tags"]["estimator_kind"] == estimator["kind"]
    if estimator["kind"] == "cbpe":
        assert {"estimator.ece_raw", "estimator.ece_calibrated", "estimator.calibrated"} <= set(champion["metrics"])


def test_concept_drift_is_caught_by_live_performance(world, cfg, env):
    from monitor import build_monitor_dag

    land_and_validate(world, cfg, {"stable"})
    concept = next(b for b in world["batches"] if b.kind == "concept_drift" and b.drift_strength >= 0.9)
    seeding.write_batch(world["s3"], cfg, concept)
    seeding.write_labels(world["s3"], cfg, concept)
    logical = datetime.combine(concept.batch_date, datetime.min.time(), tzinfo=UTC)
    # One degraded batch retrains under an eager policy (the policy's own rules are tested elsewhere),
    # measured on its own (a week's window would pool it with the stable days before it) and on
    # its 600 rows (the demo config asks for two days of rows).
    live = {"live_window_days": 1, "live_min_rows": 200}
    one_day = eager_policy(cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update=live)}))
    run, states = run_dag(build_monitor_dag(one_day), logical_date=logical)

    record = json.loads(
        storage.read_bytes(world["s3"], cfg.storage.bucket, layout.history_key(cfg, concept.batch_date.isoformat()))
    )
    assert states["score_batch"] == "success"
    assert states["request_retraining"] == "success", f"{states}: {record.get('policy')} {record.get('live')}"
    assert record["scoring"]["null_outputs"] == 0 and record["scoring"]["model_version"] == "1"
    assert record["live"]["degraded"] is True
    assert record["live"]["value"] < record["live"]["evaluated"] - cfg.evaluation.live_tolerance
    subject = read_messages(env)[-1]["Subject"]
    assert "concept drift" in subject and "retraining requested" in subject


def test_better_challenger_is_promoted_with_lineage(world, cfg, env):
    from retrain import build_retrain_dag

    days = land_and_validate(world, cfg, {"concept_drift"})
    run, states = run_dag(build_retrain_dag(cfg), conf={"reason": "concept drift (test)", "as_of": days[-1]})

    assert states["apply_decision"] == "success", states
    assert champion_version(world, cfg) == "2"
    versions = {
        v["version"]: v for v in registry.version_summaries(world["tracking_uri"], cfg.registry.registered_model)
    }
    assert versions["1"]["status"] == "retired" and "champion" in versions["2"]["aliases"]
    lineage = registry.run_lineage(world["tracking_uri"], cfg.registry.registered_model, "2")
    assert lineage["config_hash"] == registry.config_hash(cfg)
    assert {d["role"] for d in lineage["inputs"]} == {"training", "holdout"}
    assert all(len(d["digest"]) >= 8 for d in lineage["inputs"])
    assert "v2 promoted" in read_messages(env)[-1]["Subject"]
    assert assert_finished(world, cfg, run, promoted=True, version="2")["promoted_on"] == days[-1]

    # The drift reference is what v2 represents: its training rows and its newest, holdout days.
    pointer = storage.read_json(world["s3"], cfg.storage.bucket, layout.reference_pointer_key(cfg))
    reference = read_frame(world, pointer["uri"])
    inputs = {d["role"]: d for d in lineage["inputs"]}
    holdout = read_frame(world, inputs["holdout"]["uri"])
    id_column = cfg.dataset.id_column
    assert pointer["model_version"] == "2" and len(reference) == inputs["training"]["rows"] + len(holdout)
    assert set(holdout[id_column].astype(str)) <= set(reference[id_column].astype(str))
    holdout_days = days[-cfg.training.holdout_days :]
    stamps = pd.to_datetime(reference[cfg.dataset.timestamp_column], utc=True).dt.date.astype(str)
    assert set(holdout_days) <= set(stamps), "the holdout days' rows are in the reference"

    # The training window is on the version, ending before the holdout days.
    champion = registry.champion(world["tracking_uri"], cfg.registry.registered_model)
    tags = champion["tags"]
    assert tags["training_window_start"] <= tags["training_window_end"] < holdout_days[0]

    # Both models' feature importance on the holdout is in the report; v2's is on its run.
    evaluation_key = layout.evaluation_prefix(cfg, run.run_id) + "evaluation.json"
    importance = storage.read_json(world["s3"], cfg.storage.bucket, evaluation_key)["importance"]
    ours, theirs = importance["challenger"], importance["champion"]
    assert len(ours["features"]) == len(theirs["features"]) == len(cfg.dataset.feature_names)
    assert ours["rows"] == min(len(holdout), cfg.evaluation.importance_max_samples) and importance["ndcg"] is not None
    assert {f"importance.{row['feature']}" for row in ours["features"]} <= set(champion["metrics"])


def test_challenger_that_is_not_better_is_rejected_with_reasons(world, cfg, env):
    from retrain import build_retrain_dag

    strict = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"min_improvement": 0.5})})
    days = sorted(b.batch_date.isoformat() for b in world["batches"] if b.kind == "concept_drift")
    run, states = run_dag(build_retrain_dag(strict), conf={"reason": "rejection test", "as_of": days[-1]})

    assert states["apply_decision"] == "success"
    assert champion_version(world, cfg) == "2"
    rejected = [
        v
        for v in registry.version_summaries(world["tracking_uri"], cfg.registry.registered_model)
        if v["status"] == "rejected"
    ]
    assert rejected and "required" in rejected[-1]["detail"]
    assert "rejected" in read_messages(env)[-1]["Subject"]
    assert_finished(world, cfg, run, promoted=False, version=rejected[-1]["version"])
    assert retraining.read_retrain_status(world["s3"], cfg)["last_promotion"]["version"] == "2"


def test_an_as_of_inside_the_champions_training_window_is_refused_at_once(world, cfg, env):
    from retrain import build_retrain_dag

    name = cfg.registry.registered_model
    tags = registry.champion(world["tracking_uri"], name)["tags"]
    start, end = tags["training_window_start"], tags["training_window_end"]
    versions = len(registry.version_summaries(world["tracking_uri"], name))
    # No as_of and no event: the day before the run's logical date, here the window's last day.
    logical = datetime.combine(date.fromisoformat(end) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    run, states = run_dag(build_retrain_dag(cfg), conf={"reason": "backfill test"}, logical_date=logical)

    assert states["plan"] == "failed" and states["assemble_data"] == "upstream_failed", states
    assert states["record_finish"] == "success" and run.state == "failed"
    plan_ti = next(ti for ti in run.get_task_instances() if ti.task_id == "plan")
    assert plan_ti.try_number == 1, "a refusal is not retried"
    status = assert_finished(world, cfg, run, promoted=False, version=None)
    assert status["as_of"] == end
    assert len(registry.version_summaries(world["tracking_uri"], name)) == versions, "nothing was trained"

    params = {"reason": "x", "as_of": start, "window_days": 6, "promote": True, "require_approval": False}
    with pytest.raises(retraining.AsOfBeforeChampion) as refused:
        retraining.plan(world["s3"], cfg, world["tracking_uri"], params, "direct", [], run_date=logical)
    earliest = (date.fromisoformat(end) + timedelta(days=cfg.training.holdout_days)).isoformat()
    message = str(refused.value)
    assert f"as_of {start}" in message and f"{start} to {end}" in message and f"use as_of >= {earliest}" in message


def test_compare_and_set_allows_one_promotion_of_two_challengers(world, cfg, env):
    """Two challengers evaluated against the same champion: only the first promotion lands."""
    days = sorted(b.batch_date.isoformat() for b in world["batches"] if b.kind == "concept_drift")
    champion = champion_version(world, cfg)
    outcomes = []
    for key in ("race-a", "race-b"):
        plan = {
            "run_key": key,
            "bootstrap": False,
            "champion": champion,
            "reason": "race test",
            "as_of": days[-1],
            "window_days": cfg.training.window_days,
            "promote": True,
            "require_approval": False,
            "drift_reports": [],
        }
        data = retraining.assemble_data(world["s3"], cfg, plan)
        run = retraining.RetrainRun(world["s3"], cfg, world["tracking_uri"], plan, data)
        candidate = retraining.train_and_register(run)
        passed = {"passed": True, "reasons": [], "checks": []}
        outcomes.append((run, candidate, passed))
    results = [
        retraining.apply_decision(run, candidate, passed, {"passed": True, "problems": []}, actor="test")
        for run, candidate, passed in outcomes
    ]
    assert [r["action"] for r in results] == ["promoted", "not promoted"]
    assert "champion changed" in results[1]["reasons"][0]
    assert champion_version(world, cfg) == results[0]["version"]


def test_rollback_moves_the_alias_back_and_records_who_and_why(world, cfg, env):
    from rollback import build_rollback_dag

    before = champion_version(world, cfg)
    run, states = run_dag(build_rollback_dag(cfg), conf={"version": "1", "reason": "rollback test: v1 was fine"})

    assert states["move_alias"] == "success" and states["notify"] == "success"
    assert champion_version(world, cfg) == "1"
    versions = {
        v["version"]: v for v in registry.version_summaries(world["tracking_uri"], cfg.registry.registered_model)
    }
    assert "rollback test" in versions["1"]["detail"]
    pointer = storage.read_json(world["s3"], cfg.storage.bucket, layout.reference_pointer_key(cfg))
    assert pointer["model_version"] == "1"
    assert f"from v{before} to v1" in read_messages(env)[-1]["Subject"]


def test_a_reference_left_on_another_version_is_repaired_to_the_champion(world, cfg, env):
    # As if a promotion had died between moving the alias and writing the reference pointer.
    champion = champion_version(world, cfg)
    key = layout.reference_pointer_key(cfg)
    right = storage.read_json(world["s3"], cfg.storage.bucket, key)
    assert right["model_version"] == champion
    storage.write_json(world["s3"], cfg.storage.bucket, key, {"uri": right["uri"] + ".old", "model_version": "0"})

    repaired = retraining.reference_in_force(world["s3"], cfg, world["tracking_uri"])

    assert repaired == {"checked": True, "repaired": True, "from": "0", "to": champion}
    assert storage.read_json(world["s3"], cfg.storage.bucket, key) == right
    again = retraining.reference_in_force(world["s3"], cfg, world["tracking_uri"])
    assert again == {"checked": True, "repaired": False, "model_version": champion}


def test_the_status_carries_the_last_promotion_past_runs_that_promote_nothing(world, cfg):
    other = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"output_prefix": "status-test/"})})
    client = world["s3"]
    assert retraining.read_retrain_status(client, other) is None
    started = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
    running = retraining.write_running_status(client, other, run_id="r1", as_of="2026-03-14", started_at=started)
    assert retraining.read_retrain_status(client, other) == running
    assert running["state"] == "running" and running["started_at"] == "2026-03-15T09:30:00+00:00"

    outcome = {"action": "promoted", "version": "5"}
    done = retraining.write_finished_status(client, other, run_id="r1", outcome=outcome, candidate={"version": "5"})
    assert (done["promoted"], done["version"], done["promoted_on"]) == (True, "5", "2026-03-14")
    assert done["started_at"] == running["started_at"]

    # A later run that fails before deciding: finished, nothing promoted, the promotion kept.
    retraining.write_running_status(client, other, run_id="r2", as_of="2026-03-20")
    failed = retraining.write_finished_status(client, other, run_id="r2", outcome=None, candidate=None)
    assert (failed["state"], failed["promoted"], failed["version"], failed["promoted_on"]) == (
        "finished",
        False,
        None,
        None,
    )
    assert failed["last_promotion"]["version"] == "5" and failed["last_promotion"]["promoted_on"] == "2026-03-14"
    assert storage.read_json(client, other.storage.bucket, layout.retrain_status_key(other)) == failed
