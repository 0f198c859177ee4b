"""The MLflow registry module against real MLflow stores: SQLite tracking, local and S3 artifacts.

Creating an MLflow SQLite schema takes several seconds, so one empty database is migrated per
session and copied into each test's tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
import yaml

from driftwatch import registry
from driftwatch.config import ModelConfig
from driftwatch.registry import RegistryError, TamperedArtifactError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    tracking_uri: str
    cfg: ModelConfig
    artifact_root: Path

    @property
    def name(self) -> str:
        return self.cfg.registry.registered_model

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow SQLite database."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def env(tmp_path, template_db, demo_cfg) -> Env:
    """A private tracking DB whose experiment stores artifacts under tmp_path."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(template_db, db)
    tracking_uri = f"sqlite:///{db}"
    artifact_root = tmp_path / "artifacts"
    registry.ensure_experiment(tracking_uri, demo_cfg.registry.experiment, artifact_location=artifact_root.as_uri())
    return Env(tracking_uri, demo_cfg, artifact_root)


def synthetic_frame(cfg: ModelConfig, rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Feature rows for the config's schema plus PII and id columns, and a learnable target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in cfg.dataset.numeric_features})
    for feature in cfg.dataset.features:
        if feature.type == "categorical":
            frame[feature.name] = rng.choice(feature.allowed_values or ["a", "b", "c"], size=rows)
    frame["application_id"] = np.arange(rows)
    frame["applicant_name"] = [f"Person {i}" for i in range(rows)]
    frame["email"] = [f"person{i}@example.com" for i in range(rows)]
    target = pd.Series((frame["age"] + rng.normal(scale=0.5, size=rows) > 0).astype(int), name="defaulted")
    return frame, target


def train(cfg: ModelConfig, seed: int = 0, estimator=None):
    """A small preprocessing + classifier pipeline fitted on synthetic data."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features, target = synthetic_frame(cfg, rows=300, seed=seed)
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), cfg.dataset.numeric_features),
            ("cat", OneHotEncoder(handle_unknown="ignore"), cfg.dataset.categorical_features),
        ]
    )
    model = Pipeline([("prep", prep), ("clf", estimator or LogisticRegression(C=1.0 + seed, max_iter=500))])
    return model.fit(features[cfg.dataset.feature_names], target), features


def lineage_for(seed: int) -> dict:
    data = [
        {"uri": f"s3://driftwatch-demo/incoming/2026-01-0{d}.parquet", "sha256": _sha(f"{seed}-{d}"), "rows": 400}
        for d in (1, 2)
    ]
    return {
        "reason": "drift",
        "drift_report": "s3://driftwatch-demo/driftwatch/credit_default/drift/2026-01-02/report.json",
        "trigger_run_id": f"scheduled__2026-01-0{seed + 3}",
        "data": [*(dict(e, role="training") for e in data[:1]), *(dict(e, role="holdout") for e in data[1:])],
    }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def register(env: Env, seed: int = 0, key: str | None = None, estimator=None, repo_dir: Path | None = None) -> dict:
    model, features = train(env.cfg, seed, estimator)
    return registry.log_and_register(
        env.cfg,
        model,
        tracking_uri=env.tracking_uri,
        params={"estimator": "logistic_regression", "hyper": {"C": 1.0 + seed, "unused": None}},
        metrics={"holdout": {"roc_auc": 0.8 + seed / 100, "f1": 0.6}, "skipped": None, "rows": 300},
        lineage=lineage_for(seed),
        input_example=features.head(20),
        artifacts={"drift_report.json": b'{"drifted": true}', "evaluation/report.html": b"<html></html>"},
        tags={"triggered_by": "test"},
        idempotency_key=key,
        repo_dir=repo_dir,
    )


def model_dir(env: Env, version: str) -> Path:
    """The local folder holding a registered version's model files."""
    uri = env.client().get_model_version_download_uri(env.name, version)
    return Path(unquote(urlparse(uri).path))


def fake_checkout(root: Path, sha: str) -> Path:
    """A .git folder whose branch lives only in packed-refs, as `git gc` leaves it."""
    git = root / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/main\n")
    return root


# --- provenance -----------------------------------------------------------------------


def test_config_hash_is_stable_and_sensitive(demo_cfg):
    same = demo_cfg.model_copy(deep=True)
    changed = demo_cfg.model_copy(update={"owner": "someone-else"})
    assert registry.config_hash(demo_cfg) == registry.config_hash(same)
    assert len(registry.config_hash(demo_cfg)) == 64
    assert registry.config_hash(changed) != registry.config_hash(demo_cfg)


def test_git_commit_reads_the_checkout_without_git(tmp_path):
    assert registry.git_commit(tmp_path) is None
    commit = registry.git_commit(REPO / "include")
    if shutil.which("git"):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode == 0:
            assert commit == head.stdout.strip()
    checkout = fake_checkout(tmp_path / "repo", "a" * 40)
    (checkout / "sub" / "dir").mkdir(parents=True)
    assert registry.git_commit(checkout / "sub" / "dir") == "a" * 40


def test_an_image_without_git_names_the_commit_baked_into_it(tmp_path, monkeypatch):
    from driftwatch.registry.store import code_commit

    monkeypatch.delenv("DRIFTWATCH_GIT_COMMIT", raising=False)
    assert code_commit(tmp_path) == "unknown"
    monkeypatch.setenv("DRIFTWATCH_GIT_COMMIT", "B" * 40)
    assert code_commit(tmp_path) == "b" * 40
    monkeypatch.setenv("DRIFTWATCH_GIT_COMMIT", "unknown")
    assert code_commit(tmp_path) == "unknown"
    checkout = fake_checkout(tmp_path / "repo", "c" * 40)
    assert code_commit(checkout) == "c" * 40, "a checkout's own commit wins"


# --- registration ---------------------------------------------------------------------


def test_register_records_lineage_datasets_signature_and_hash(env, tmp_path):
    import mlflow
    from mlflow.models import Model

    result = register(env, seed=0, repo_dir=fake_checkout(tmp_path / "repo", "b" * 40))
    assert result["version"] == "1" and result["created"] is True
    assert result["model_uri"] == f"models:/{env.name}/1"

    client = env.client()
    run = client.get_run(result["run_id"])
    tags = run.data.tags
    assert tags["config_sha256"] == registry.config_hash(env.cfg)
    assert tags["git_commit"] == "b" * 40
    assert tags["reason"] == "drift"
    assert tags["lineage.drift_report"].endswith("report.json")
    assert tags["triggered_by"] == "test"
    assert json.loads(tags["lineage.data"])[0]["role"] == "training"
    assert run.data.params == {"estimator": "logistic_regression", "hyper.C": "1.0"}
    assert run.data.metrics == {"holdout.roc_auc": 0.8, "holdout.f1": 0.6, "rows": 300.0}

    # Datasets are recorded by URI and our sha256, without the data being uploaded.
    inputs = {d.dataset.source: d for d in run.inputs.dataset_inputs}
    expected = {e["uri"]: e for e in lineage_for(0)["data"]}
    assert {json.loads(source)["uri"] for source in inputs} == set(expected)
    for source, dataset_input in inputs.items():
        entry = expected[json.loads(source)["uri"]]
        input_tags = {t.key: t.value for t in dataset_input.tags}
        assert dataset_input.dataset.digest == entry["sha256"][: registry.DATASET_DIGEST_CHARS]
        assert input_tags["sha256"] == entry["sha256"]
        assert input_tags["mlflow.data.context"] == entry["role"]
        assert input_tags["rows"] == "400"
        assert dataset_input.dataset.source_type == "s3"

    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"drift_report.json", "evaluation", "lineage.json"} <= artifacts

    mv = client.get_model_version(env.name, "1")
    assert mv.tags["artifact_sha256"] == result["artifact_sha256"]
    assert mv.tags["config_sha256"] == registry.config_hash(env.cfg)
    folder = model_dir(env, "1")
    assert registry.tree_sha256(folder) == result["artifact_sha256"]
    meta = Model.load(str(folder / "MLmodel"))
    assert meta.signature is not None
    assert meta.signature.inputs.input_names() == env.cfg.dataset.feature_names
    # Only features reach the stored input example: no PII, ids or target.
    example = json.loads((folder / "input_example.json").read_text())
    assert example["columns"] == env.cfg.dataset.feature_names
    assert "Person" not in (folder / "input_example.json").read_text()
    assert registry.champion(env.tracking_uri, env.name) is None

    lineage = registry.run_lineage(env.tracking_uri, env.name, "1")
    assert lineage["config_hash"] == registry.config_hash(env.cfg) and lineage["reason"] == "drift"
    assert {(d["role"], d["sha256"], d["rows"]) for d in lineage["inputs"]} == {
        (e["role"], e["sha256"], 400) for e in lineage_for(0)["data"]
    }
    assert registry.training_data_uri(env.tracking_uri, env.name, "1") == lineage_for(0)["data"][0]["uri"]
    assert mlflow.get_tracking_uri() != env.tracking_uri  # the global URI was restored


def test_idempotency_key_returns_the_existing_version(env):
    first = register(env, seed=0, key="manual__2026-01-03T00:00:00+00:00")
    again = register(env, seed=1, key="manual__2026-01-03T00:00:00+00:00")
    assert again == {**first, "created": False}
    other = register(env, seed=1, key="manual__2026-01-04T00:00:00+00:00")
    assert other["version"] == "2"
    assert len(env.client().search_model_versions(f"name = '{env.name}'")) == 2
    with pytest.raises(ValueError, match="quotes"):
        register(env, key="it's")


# --- promotion, rejection and rollback --------------------------------------------------


def test_promotion_is_compare_and_set_and_keeps_history(env):
    uri, name = env.tracking_uri, env.name
    v1, v2, v3 = (register(env, seed=s)["version"] for s in (0, 1, 2))

    boot = registry.promote(uri, name, v1, expected_champion=None, reason="bootstrap", actor="ci")
    assert boot["promoted"] is True and boot["previous_champion"] is None
    assert registry.champion(uri, name)["version"] == "1"
    run_id = registry.champion(uri, name)["run_id"]
    registry.record_evaluation(uri, name, v2, run_id, primary=0.83, report_html="<p>ok</p>", report_json={"a": 1})

    # Two challengers evaluated against the same champion: only the first promotion wins.
    registry.mark_challenger(uri, name, v2)
    assert str(env.client().get_model_version_by_alias(name, "challenger").version) == "2"
    won = registry.promote(uri, name, v2, expected_champion="1", reason="better roc_auc", actor="airflow")
    lost = registry.promote(uri, name, v3, expected_champion="1", reason="better roc_auc", actor="airflow")
    assert won["promoted"] is True and won["previous_champion"] == "1"
    assert lost == {
        "promoted": False,
        "version": "3",
        "champion": "2",
        "reason": "champion changed from 1 to 2 since evaluation",
    }
    # A retried promotion task reports success without writing anything again.
    assert registry.promote(uri, name, v2, expected_champion="1", reason="retry", actor="airflow")["already_champion"]

    current = registry.champion(uri, name)
    assert current["version"] == "2"
    assert current["metrics"]["holdout.roc_auc"] == pytest.approx(0.81)
    assert current["tags"]["promoted_by"] == "airflow"
    assert current["tags"]["promotion_reason"] == "better roc_auc"
    assert current["tags"]["previous_champion"] == "1"
    assert float(current["tags"]["evaluated_primary_metric"]) == 0.83
    client = env.client()
    old = client.get_model_version(name, v1).tags
    assert old["replaced_by"] == "2" and "retired_at" in old
    assert "challenger" not in client.get_registered_model(name).aliases
    history = registry.champion_history(uri, name)
    assert [(h["action"], h["version"], h["previous"]) for h in history] == [
        ("promote", "1", None),
        ("promote", "2", "1"),
    ]
    assert json.loads(client.get_registered_model(name).tags["champion_history"]) == history


def test_an_undefined_primary_metric_is_recorded_as_unavailable(env):
    # A one-class holdout leaves roc_auc undefined: the gate rejects, and recording must not crash.
    uri, name = env.tracking_uri, env.name
    version = register(env, seed=0)
    registry.record_evaluation(
        uri, name, version["version"], version["run_id"], primary=None, report_html="<p>x</p>", report_json={}
    )
    tags = env.client().get_model_version(name, version["version"]).tags
    assert tags["evaluated_primary_metric"] == "unavailable"
    assert "evaluation.primary" not in env.client().get_run(version["run_id"]).data.metrics


def test_the_candidates_feature_importance_goes_to_its_run(env, tmp_path):
    uri, name = env.tracking_uri, env.name
    version = register(env, seed=0)
    importance = {
        "metric": "roc_auc",
        "features": [
            {"feature": "x1", "mean": 0.31, "std": 0.02, "rank": 1},
            {"feature": "late/payments", "mean": -0.001, "std": 0.001, "rank": 2},
            {"feature": "x3", "mean": None, "std": None, "rank": 3},
        ],
    }
    registry.record_evaluation(
        uri,
        name,
        version["version"],
        version["run_id"],
        primary=0.8,
        report_html="<p>x</p>",
        report_json={},
        importance=importance,
    )
    metrics = env.client().get_run(version["run_id"]).data.metrics
    assert metrics["importance.x1"] == pytest.approx(0.31) and metrics["importance.late_payments"] == -0.001
    assert "importance.x3" not in metrics
    logged = env.client().download_artifacts(version["run_id"], "evaluation/importance.json", str(tmp_path))
    assert json.loads(Path(logged).read_text()) == importance


def test_reject_and_rollback(env):
    uri, name = env.tracking_uri, env.name
    for seed in (0, 1, 2, 3):
        register(env, seed=seed)
    registry.promote(uri, name, "1", expected_champion=None, reason="bootstrap", actor="ci")
    registry.promote(uri, name, "2", expected_champion="1", reason="better", actor="ci")
    registry.promote(uri, name, "3", expected_champion="2", reason="better", actor="ci")

    registry.mark_challenger(uri, name, "4")
    registry.reject(uri, name, "4", ["roc_auc 0.70 below floor 0.72", "slice channel=web regressed 0.05"])
    tags = env.client().get_model_version(name, "4").tags
    assert tags["rejected"] == "true" and "rejected_at" in tags
    assert json.loads(tags["rejection_reasons"])[0].startswith("roc_auc")
    assert "challenger" not in env.client().get_registered_model(name).aliases
    with pytest.raises(RegistryError, match="rejected"):
        registry.promote(uri, name, "4", expected_champion="3", reason="x", actor="ci")
    with pytest.raises(RegistryError, match="champion"):
        registry.reject(uri, name, "3", ["nope"])

    # Default target: the previous champion; rolling back again walks further back.
    back = registry.rollback(uri, name, actor="oncall", reason="live AUC dropped")
    assert back == {**back, "rolled_back": True, "from_version": "3", "to_version": "2"}
    assert registry.rollback(uri, name, actor="oncall", reason="still bad")["to_version"] == "1"
    client = env.client()
    for version in ("1", "2"):
        assert client.get_model_version(name, version).tags["rolled_back_by"] == "oncall"
    assert client.get_model_version(name, "1").tags["rollback_reason"] == "still bad"
    assert "retired_at" not in client.get_model_version(name, "1").tags

    summaries = {v["version"]: v for v in registry.version_summaries(uri, name)}
    assert [summaries[v]["status"] for v in "1234"] == ["champion", "retired", "retired", "rejected"]
    assert summaries["1"]["aliases"] == ["champion"] and "still bad" in summaries["1"]["detail"]
    assert "below floor" in summaries["4"]["detail"]
    assert "replaced by v1" in summaries["2"]["detail"]

    assert registry.rollback(uri, name, to_version="3", actor="oncall", reason="fixed upstream")["to_version"] == "3"
    assert registry.champion(uri, name)["version"] == "3"
    with pytest.raises(RegistryError, match="rejected"):
        registry.rollback(uri, name, to_version="4", actor="oncall", reason="x")
    with pytest.raises(RegistryError, match="no version '99'"):
        registry.rollback(uri, name, to_version="99", actor="oncall", reason="x")
    with pytest.raises(RegistryError, match="already the champion"):
        registry.rollback(uri, name, to_version="3", actor="oncall", reason="x")
    actions = [(h["action"], h["version"]) for h in registry.champion_history(uri, name)]
    assert actions[-3:] == [("rollback", "2"), ("rollback", "1"), ("rollback", "3")]


# --- tampering ------------------------------------------------------------------------


class _Exploit:
    """Unpickling this creates a folder: proof that the pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_tampered_model_is_refused_before_unpickling(env, tmp_path):
    uri, name = env.tracking_uri, env.name
    register(env, seed=0)
    register(env, seed=1)
    registry.promote(uri, name, "1", expected_champion=None, reason="bootstrap", actor="ci")
    registry.verify_artifact(uri, name, "1")
    assert registry.load_model(uri, f"models:/{name}/1").predict_proba is not None

    # Swap in a malicious pickle and point the MLmodel file at it.
    folder = model_dir(env, "2")
    marker = tmp_path / "exploited"
    (folder / "model.pkl").write_bytes(pickle.dumps(_Exploit(marker)))
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    meta["flavors"]["sklearn"].update(pickled_model="model.pkl", serialization_format="pickle")
    meta["flavors"]["python_function"]["model_path"] = "model.pkl"
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))

    registered = env.client().get_model_version(name, "2").tags["artifact_sha256"]
    with pytest.raises(TamperedArtifactError, match="mismatch") as err:
        registry.verify_artifact(uri, name, "2")
    assert registered in str(err.value) and registry.tree_sha256(folder) in str(err.value)
    with pytest.raises(TamperedArtifactError):
        registry.load_model(uri, f"models:/{name}/2")
    with pytest.raises(TamperedArtifactError):
        registry.promote(uri, name, "2", expected_champion="1", reason="x", actor="ci")
    with pytest.raises(TamperedArtifactError):
        registry.rollback(uri, name, to_version="2", actor="oncall", reason="x")
    assert not marker.exists()
    assert registry.champion(uri, name)["version"] == "1"

    env.client().delete_model_version_tag(name, "1", "artifact_sha256")
    with pytest.raises(TamperedArtifactError, match="no artifact_sha256 tag"):
        registry.load_model(uri, f"models:/{name}@champion")


ESTIMATOR = {"kind": "cbpe", "metric": "roc_auc", "ece_raw": 0.08, "ece_calibrated": 0.02, "calibrated": True}


def test_the_estimator_is_stored_in_the_hashed_model_folder_and_read_back_verified(env):
    uri, name = env.tracking_uri, env.name
    model, features = train(env.cfg)
    result = registry.log_and_register(
        env.cfg,
        model,
        tracking_uri=uri,
        params={},
        metrics={},
        lineage=lineage_for(0),
        input_example=features.head(5),
        model_files=registry.estimator_file(ESTIMATOR),
        version_tags={"training_window_start": "2026-01-01", "training_window_end": "2026-01-05"},
    )
    assert registry.load_estimator(uri, name, result["version"]) == ESTIMATOR
    folder = model_dir(env, result["version"])
    assert (folder / "extra_files" / registry.ESTIMATOR_FILE).is_file()
    # The version's one hash covers the estimator: it was written before the folder was hashed.
    assert registry.tree_sha256(folder) == result["artifact_sha256"]
    tags = env.client().get_model_version(name, result["version"]).tags
    assert tags["training_window_end"] == "2026-01-05" and tags["artifact_sha256"] == result["artifact_sha256"]

    # A version logged without one (as before estimators were stored) has none.
    assert registry.load_estimator(uri, name, register(env, seed=1)["version"]) is None

    estimator_path = folder / "extra_files" / registry.ESTIMATOR_FILE
    estimator_path.write_text(json.dumps({**ESTIMATOR, "ece_calibrated": 0.0}))
    with pytest.raises(TamperedArtifactError, match="mismatch"):
        registry.load_estimator(uri, name, result["version"])


def test_model_files_must_be_plain_names(env):
    model, features = train(env.cfg)
    with pytest.raises(ValueError, match="plain file names"):
        registry.log_and_register(
            env.cfg,
            model,
            tracking_uri=env.tracking_uri,
            params={},
            metrics={},
            lineage=lineage_for(0),
            input_example=features.head(5),
            model_files={"../estimator.json": b"{}"},
        )


# --- smoke test -----------------------------------------------------------------------


def test_smoke_test_runs_in_a_fresh_process(env):
    result = register(env, seed=0)
    sample, _ = synthetic_frame(env.cfg, rows=50, seed=9)
    sample = sample[env.cfg.dataset.feature_names]

    registry.promote(env.tracking_uri, env.name, "1", expected_champion=None, reason="bootstrap", actor="ci")
    good = registry.smoke_test(env.tracking_uri, f"models:/{env.name}@champion", sample, max_latency_ms=5000)
    assert good["passed"] is True, good["problems"]
    assert good["rows"] == 50 and good["version"] == "1" and good["latency_ms"] > 0
    assert good["pid"] != os.getpid() and good["warmup_ms"] > 0

    strict = registry.smoke_test(env.tracking_uri, result["model_uri"], sample, max_latency_ms=1e-6)
    assert strict["passed"] is False
    assert len(strict["problems"]) == 1 and "budget" in strict["problems"][0]

    # A swapped model file is a failed check, reported rather than raised.
    (model_dir(env, "1") / "model.skops").write_bytes(b"swapped")
    tampered = registry.smoke_test(env.tracking_uri, result["model_uri"], sample, max_latency_ms=5000)
    assert tampered["passed"] is False and "sha256 mismatch" in tampered["problems"][0]
    assert tampered["latency_ms"] is None

    # Unknown versions and aliases are caller errors: they raise before any process starts.
    with pytest.raises(RegistryError, match="no alias 'challenger'"):
        registry.smoke_test(env.tracking_uri, f"models:/{env.name}@challenger", sample, max_latency_ms=5000)
    with pytest.raises(RegistryError, match="no version '7'"):
        registry.smoke_test(env.tracking_uri, f"models:/{env.name}/7", sample, max_latency_ms=5000)


# --- S3 artifacts ---------------------------------------------------------------------


def test_artifacts_on_s3(env, s3_endpoint, monkeypatch):
    """Model files in a moto S3 bucket; HistGradientBoosting needs skops trusted types."""
    import boto3
    from sklearn.ensemble import HistGradientBoostingClassifier

    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="mlflow-registry-test")
    cfg = env.cfg.model_copy(
        update={"registry": env.cfg.registry.model_copy(update={"experiment": "driftwatch/s3-test"})}
    )
    registry.ensure_experiment(
        env.tracking_uri, "driftwatch/s3-test", artifact_location="s3://mlflow-registry-test/mlflow"
    )
    s3_env = Env(env.tracking_uri, cfg, env.artifact_root)

    result = register(s3_env, seed=0, estimator=HistGradientBoostingClassifier(max_iter=10))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow-registry-test")["Contents"]]
    model_keys = [k for k in keys if k.endswith("/artifacts/model.skops")]
    assert model_keys and all(k.startswith("mlflow/") for k in keys)
    assert not env.artifact_root.exists()

    model = registry.load_model(env.tracking_uri, result["model_uri"])
    sample, _ = synthetic_frame(cfg, rows=10, seed=5)
    assert model.predict_proba(sample[cfg.dataset.feature_names]).shape == (10, 2)

    s3.put_object(Bucket="mlflow-registry-test", Key=model_keys[0], Body=b"not a model")
    with pytest.raises(TamperedArtifactError):
        registry.load_model(env.tracking_uri, result["model_uri"])
