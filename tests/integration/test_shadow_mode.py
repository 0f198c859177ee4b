"""Shadow mode end to end: the monitor DAG (dag.test()) scores a challenger beside the champion on a
real moto S3 server, MLflow on SQLite decides by aliases, and the SMTP sink receives the verdict."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from devstack.smtp_sink import read_messages
from driftwatch import demo_data, history, layout, registry, seeding, shadow, storage, training
from driftwatch.retraining import RetrainRun, apply_decision
from tests.helpers import register_model
from tests.integration.test_monitor_dag import run_monitor

pytestmark = pytest.mark.integration

SHADOW_DAYS = (date(2026, 1, 13), date(2026, 1, 14))  # concept drift in the test scenario
AS_OF = "2026-01-12"


@pytest.fixture
def cfg(demo_cfg, tmp_path, monkeypatch):
    promotion = demo_cfg.promotion.model_copy(
        update={"mode": "shadow", "shadow_batches": 2, "shadow_max_days": 14, "shadow_min_rows": 500}
    )
    evaluation = demo_cfg.evaluation.model_copy(update={"live_min_rows": 200})
    return demo_cfg.model_copy(update={"promotion": promotion, "evaluation": evaluation})


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def labelled(batches) -> pd.DataFrame:
    return pd.concat([b.features.merge(b.labels, on="application_id") for b in batches], ignore_index=True)


def register(cfg, tracking_uri: str, frame: pd.DataFrame, reason: str) -> str:
    model, _ = training.train(cfg, frame)
    return register_model(cfg, tracking_uri, model, frame, reason)["version"]


def champion_v1(s3, cfg, tracking_uri: str, artifacts) -> str:
    """Trained on the reference regime: the concept drift of the shadow days costs it."""
    from driftwatch import references

    registry.ensure_experiment(tracking_uri, cfg.registry.experiment, artifact_location=str(artifacts))
    version = register(cfg, tracking_uri, demo_data.generate_reference(seed=11, rows=1500), "champion")
    registry.promote(
        tracking_uri, cfg.registry.registered_model, version, expected_champion=None, reason="t", actor="t"
    )
    references.promote_reference(s3, cfg, storage.s3_uri(cfg.storage.bucket, cfg.storage.reference_key), version)
    return version


def better_challenger(cfg, tracking_uri: str) -> str:
    """Trained on the drifted regime (another seed's concept-drift days): better on the shadow days."""
    other = demo_data.generate_scenario(date(2025, 6, 1), days=14, seed=5, rows_per_day=600)
    return register(cfg, tracking_uri, labelled(b for b in other if b.kind == "concept_drift"), "better")


def worse_challenger(cfg, tracking_uri: str) -> str:
    """Trained on shuffled labels: no better than chance."""
    frame = demo_data.generate_reference(seed=21, rows=1500)
    frame["defaulted"] = frame["defaulted"].sample(frac=1.0, random_state=3).to_numpy()
    return register(cfg, tracking_uri, frame, "worse")


def enter_shadow(s3, cfg, tracking_uri: str, version: str, champion: str) -> dict:
    """What the retrain DAG's apply_decision does with a challenger that passed the gate."""
    plan = {
        "promote": True,
        "champion": champion,
        "as_of": AS_OF,
        "reason": "test retrain",
        "run_key": f"run-{version}",
    }
    reference = storage.s3_uri(cfg.storage.bucket, cfg.storage.reference_key)
    run = RetrainRun(s3, cfg, tracking_uri, plan, {"reference": {"uri": reference}})
    evaluation = {"reasons": [], "challenger": {"primary": 0.8}, "champion": {"primary": 0.7}}
    return apply_decision(run, {"version": version}, evaluation, {"problems": []}, actor="test")


def run_shadow_days(s3, cfg, scenario, labelled_days=SHADOW_DAYS) -> list[dict]:
    """Monitor each shadow day, its labels landed first (early, so that each day counts at once)."""
    outcomes = []
    for day in SHADOW_DAYS:
        if day in labelled_days:
            seeding.write_labels(s3, cfg, next(b for b in scenario if b.batch_date == day))
        _run, states = run_monitor(cfg, day)
        assert states["score_batch"] == "success" and states["evaluate_shadow"] == "success", states
        outcomes.append(history.read_record(s3, cfg, day.isoformat()))
    return outcomes


def aliases(tracking_uri: str, cfg) -> dict[str, str]:
    from mlflow import MlflowClient

    model = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_registered_model(
        cfg.registry.registered_model
    )
    return {alias: str(version) for alias, version in model.aliases.items()}


def champion_now(tracking_uri: str, cfg) -> str:
    return registry.champion(tracking_uri, cfg.registry.registered_model)["version"]


def tags(tracking_uri: str, cfg, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return client.get_model_version(cfg.registry.registered_model, version).tags


def test_a_better_challenger_is_promoted_after_shadow(
    airflow_db, seeded, s3, cfg, scenario, mail_dir, tmp_path, tracking_uri, monkeypatch
):
    champion = champion_v1(s3, cfg, tracking_uri, tmp_path / "artifacts")
    challenger = better_challenger(cfg, tracking_uri)
    entered = enter_shadow(s3, cfg, tracking_uri, challenger, champion)
    assert entered["action"] == "shadow" and champion_now(tracking_uri, cfg) == champion
    assert aliases(tracking_uri, cfg) == {"champion": champion, "challenger": challenger}

    first, second = run_shadow_days(s3, cfg, scenario)

    scored = first["shadow"]
    assert scored["version"] == challenger and scored["champion_version"] == champion
    assert 0.0 <= scored["agreement"] <= 1.0 and scored["psi"] >= 0.0 and scored["challenger_ms_per_1k"] > 0
    key = layout.shadow_predictions_key(cfg, SHADOW_DAYS[0].isoformat())
    assert storage.object_size(s3, cfg.storage.bucket, key) is not None, "the challenger's predictions are stored"
    assert first["shadow_evaluation"]["verdict"] == "continue", "one labelled batch of two is not enough"
    verdict = second["shadow_evaluation"]
    assert verdict["verdict"] == "promote" and verdict["status"] == "promoted", verdict
    assert verdict["lower"] > cfg.evaluation.min_improvement and verdict["labelled_batches"] == 2
    assert champion_now(tracking_uri, cfg) == challenger
    pointer = storage.read_json(s3, cfg.storage.bucket, layout.reference_pointer_key(cfg))
    assert pointer["model_version"] == challenger, "the new champion's data is the drift reference"
    assert shadow.read_state(s3, cfg)["status"] == "promoted"
    mail = [m for m in read_messages(mail_dir) if "shadow challenger" in m["Subject"]]
    assert len(mail) == 1 and "promoted to champion" in mail[0]["Subject"]
    assert "paired bootstrap interval" in mail[0].get_body(("plain",)).get_content()


def test_a_worse_challenger_is_rejected_and_the_champion_stays(
    airflow_db, seeded, s3, cfg, scenario, mail_dir, tmp_path, tracking_uri, monkeypatch
):
    champion = champion_v1(s3, cfg, tracking_uri, tmp_path / "artifacts")
    challenger = worse_challenger(cfg, tracking_uri)
    enter_shadow(s3, cfg, tracking_uri, challenger, champion)

    _first, second = run_shadow_days(s3, cfg, scenario)

    verdict = second["shadow_evaluation"]
    assert verdict["verdict"] == "reject" and verdict["upper"] < 0, verdict
    assert champion_now(tracking_uri, cfg) == champion
    assert tags(tracking_uri, cfg, challenger)["rejected"] == "true"
    assert "challenger" not in aliases(tracking_uri, cfg)
    mail = [m for m in read_messages(mail_dir) if "shadow challenger" in m["Subject"]]
    assert len(mail) == 1 and "rejected" in mail[0]["Subject"]


def test_a_newer_challenger_replaces_the_one_in_shadow(s3, seeded, cfg, tmp_path, tracking_uri):
    from driftwatch.alerts import evaluation_email

    champion = champion_v1(s3, cfg, tracking_uri, tmp_path / "artifacts")
    older = worse_challenger(cfg, tracking_uri)
    enter_shadow(s3, cfg, tracking_uri, older, champion)
    newer = better_challenger(cfg, tracking_uri)
    outcome = enter_shadow(s3, cfg, tracking_uri, newer, champion)

    assert outcome["replaced"] == older and shadow.read_state(s3, cfg)["version"] == newer
    assert aliases(tracking_uri, cfg) == {"champion": champion, "challenger": newer}
    retired = tags(tracking_uri, cfg, older)
    assert retired["replaced_by"] == newer and "replaced in shadow" in retired["retirement_reason"]
    status = {
        v["version"]: v["status"] for v in registry.version_summaries(tracking_uri, cfg.registry.registered_model)
    }
    assert status == {champion: "champion", older: "retired", newer: "shadow"}
    assert enter_shadow(s3, cfg, tracking_uri, newer, champion)["replaced"] == older, "a rerun changes nothing"
    plan = {"reason": "drift", "as_of": AS_OF, "run_key": "r2"}
    message = evaluation_email(cfg, plan, {"version": newer}, {"champion_version": champion}, outcome)
    assert f"replaces v{older} in shadow" in message.get_body(("plain",)).get_content()


def test_the_compare_and_set_refuses_a_champion_changed_during_shadow(
    airflow_db, seeded, s3, cfg, scenario, mail_dir, tmp_path, tracking_uri
):
    champion = champion_v1(s3, cfg, tracking_uri, tmp_path / "artifacts")
    challenger = better_challenger(cfg, tracking_uri)
    enter_shadow(s3, cfg, tracking_uri, challenger, champion)
    # Both shadow days are scored beside v1; the second one's labels land late.
    run_shadow_days(s3, cfg, scenario, labelled_days=SHADOW_DAYS[:1])
    # Meanwhile someone promotes another version by hand.
    other = register(cfg, tracking_uri, demo_data.generate_reference(seed=31, rows=1500), "by hand")
    name = cfg.registry.registered_model
    registry.promote(tracking_uri, name, other, expected_champion=champion, reason="by hand", actor="a person")
    last = SHADOW_DAYS[1]
    seeding.write_labels(s3, cfg, next(b for b in scenario if b.batch_date == last))

    # What evaluate_shadow does on the next run: its interval now says promote.
    verdict = shadow.shadow_step(s3, cfg, tracking_uri, last.isoformat())

    assert verdict["verdict"] == "promote" and verdict["status"] == "refused", verdict
    assert any(f"champion changed from {champion} to {other}" in r for r in verdict["reasons"]), verdict
    assert champion_now(tracking_uri, cfg) == other
    assert "retired_at" in tags(tracking_uri, cfg, challenger) and "challenger" not in aliases(tracking_uri, cfg)
    assert shadow.read_state(s3, cfg)["status"] == "refused"
