"""Retraining end to end with dag.test(): moto S3 server, MLflow on SQLite, the SMTP sink.

One module-scoped scenario is built step by step, because each step needs the registry state
the previous one left: bootstrap → promotion → rejection → the compare-and-set race → rollback
→ concept drift caught by the monitor.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from devstack.smtp_sink import read_messages
from driftwatch import demo_data, layout, pipeline, registry, retraining, seeding, storage
from tests.conftest import fresh_bucket

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

    return load_config(DEMO_CONFIG)


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


def test_bootstrap_trains_champion_v1_on_the_reference(world, cfg, env):
    from retrain import build_retrain_dag

    seeding.write_reference(world["s3"], cfg, demo_data.generate_reference(seed=5, rows=2500))
    run, states = run_dag(build_retrain_dag(cfg), conf={"reason": "bootstrap for the test"})

    assert states["apply_decision"] == "success", states
    assert states["await_approval"] == "skipped"
    assert champion_version(world, cfg) == "1"
    pointer = storage.read_json(world["s3"], cfg.storage.bucket, layout.reference_pointer_key(cfg))
    assert pointer["model_version"] == "1" and pointer["uri"].endswith("train.parquet")
    messages = read_messages(env)
    assert len(messages) == 1 and "v1 promoted" in messages[0]["Subject"]


def test_concept_drift_is_caught_by_live_performance(world, cfg, env):
    from monitor import build_monitor_dag

    land_and_validate(world, cfg, {"stable"})
    concept = next(b for b in world["batches"] if b.kind == "concept_drift" and b.drift_strength >= 0.9)
    seeding.write_batch(world["s3"], cfg, concept)
    seeding.write_labels(world["s3"], cfg, concept)
    logical = datetime.combine(concept.batch_date, datetime.min.time(), tzinfo=UTC)
    run, states = run_dag(build_monitor_dag(cfg), logical_date=logical)

    assert states["score_batch"] == "success"
    assert states["request_retraining"] == "success", states
    record = json.loads(
        storage.read_bytes(world["s3"], cfg.storage.bucket, layout.history_key(cfg, concept.batch_date.isoformat()))
    )
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
