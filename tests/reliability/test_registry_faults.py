"""A real MLflow tracking server (SQLite store, proxied artifacts) that goes away mid-registration and
mid-promotion, behind the same stoppable loopback proxy as S3: no alias may ever point at a version
whose artifacts are missing, and a retried task must not register a second version."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from driftwatch import registry
from tests.integration.test_registry import Env, register
from tests.reliability.support import StoppableProxy

pytestmark = pytest.mark.integration

# What a client sees when the server goes away: MLflow's wrapped error or requests' (an OSError);
# TamperedArtifactError (a RegistryError) when the stored files are not the registered ones.
FAILURES = (MlflowException, OSError, registry.RegistryError)
STARTUP_SECONDS = 180  # a cold MLflow server on 2 busy cores; polled, so usually far less


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    import requests

    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {STARTUP_SECONDS} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a loopback port with its own SQLite store and artifact folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = root / "server.log"
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        (root / "artifacts").as_uri(),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        yield {"port": port, "artifacts": root / "artifacts"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def env(mlflow_server, demo_cfg, monkeypatch):
    """The registry through a stoppable proxy; MLflow's client gives up fast so that the failure is visible."""
    # One quick retry covers a keep-alive connection the server closed just as it was reused; an
    # outage outlasts it, so the failure still reaches the caller.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    proxy = StoppableProxy(mlflow_server["port"]).start()
    cfg = demo_cfg.model_copy(
        update={"registry": demo_cfg.registry.model_copy(update={"registered_model": f"rel_{proxy.port}"})}
    )
    registry.ensure_experiment(proxy.url, cfg.registry.experiment)
    yield Env(proxy.url, cfg, mlflow_server["artifacts"]), proxy, f"http://127.0.0.1:{mlflow_server['port']}"
    proxy.stop()


def versions(uri: str, name: str) -> list[str]:
    return [v["version"] for v in registry.version_summaries(uri, name)]


def test_mlflow_down_during_registration_then_retry_registers_one_version(env, figures):
    env, proxy, direct = env
    proxy.stop_on = re.compile(rb"^POST /api/2\.0/mlflow/model-versions/create")
    with pytest.raises(FAILURES) as err:
        register(env, seed=0, key="manual__2026-10-01-retrain")
    assert proxy.refusals == 1, f"the outage never happened: {proxy.requests[-5:]}"
    assert versions(direct, env.name) == [], "a version exists although its registration failed"

    proxy.start()  # the server is reachable again; Airflow retries the task with the same run id
    first = register(env, seed=0, key="manual__2026-10-01-retrain")
    again = register(env, seed=0, key="manual__2026-10-01-retrain")  # a cleared task, once more

    assert first["created"] and not again["created"] and again["version"] == first["version"]
    assert versions(direct, env.name) == [first["version"]]
    registry.verify_artifact(direct, env.name, first["version"])
    figures.add(
        "fault",
        "MLflow server down during registration (create model version)",
        f"register failed ({type(err.value).__name__}), no version left behind; after recovery the retry and "
        "a cleared rerun with the same run id give exactly one version, whose artifact sha256 verifies",
        intact=True,
        runs=2,
    )


@pytest.mark.parametrize(
    ("step", "pattern"),
    [
        ("before the alias moves", rb"^POST /api/2\.0/mlflow/registered-models/alias"),
        ("after the alias moved", rb"^POST /api/2\.0/mlflow/model-versions/set-tag"),
    ],
    ids=["before-alias", "after-alias"],
)
def test_mlflow_down_during_promotion_never_leaves_a_bad_alias(env, step, pattern, figures):
    env, proxy, direct = env
    v1 = register(env, seed=0, key="run-v1")["version"]
    registry.promote(direct, env.name, v1, expected_champion=None, reason="bootstrap", actor="test")
    v2 = register(env, seed=1, key="run-v2")["version"]

    proxy.stop_on = re.compile(pattern)
    with pytest.raises(FAILURES):
        registry.promote(env.tracking_uri, env.name, v2, expected_champion=v1, reason="better", actor="test")
    assert proxy.refusals == 1
    champion = registry.champion(direct, env.name)["version"]
    assert champion in (v1, v2)
    registry.verify_artifact(direct, env.name, champion)  # whatever the alias names is loadable

    proxy.start()
    retried = registry.promote(env.tracking_uri, env.name, v2, expected_champion=v1, reason="better", actor="test")
    assert retried["promoted"] and registry.champion(direct, env.name)["version"] == v2
    history = [h for h in registry.champion_history(direct, env.name) if h["action"] == "promote"]
    assert [h["version"] for h in history] == [v1, v2], history
    summaries = {v["version"]: v for v in registry.version_summaries(direct, env.name)}
    assert summaries[v1]["status"] == "retired", summaries[v1]
    figures.add(
        "fault",
        f"MLflow server down during promotion, {step}",
        f"promote failed; the alias named v{champion}, whose artifacts verify; the retry promoted v{v2} once: "
        "one history entry, previous champion tagged retired",
        intact=True,
    )


def test_alias_never_moves_to_a_version_whose_artifacts_are_missing(env, figures):
    env, proxy, direct = env
    v1 = register(env, seed=0, key="run-a1")["version"]
    registry.promote(direct, env.name, v1, expected_champion=None, reason="bootstrap", actor="test")
    v2 = register(env, seed=1, key="run-a2")["version"]
    # The artifact store lost v2's model files (a lifecycle rule, a bad restore, a half-synced replica).
    expected = env.client().get_model_version(env.name, v2).tags["artifact_sha256"]
    lost = next(p.parent for p in env.artifact_root.rglob("MLmodel") if registry.tree_sha256(p.parent) == expected)
    shutil.rmtree(lost)

    with pytest.raises(FAILURES) as err:
        registry.promote(direct, env.name, v2, expected_champion=v1, reason="better", actor="test")
    assert registry.champion(direct, env.name)["version"] == v1
    figures.add(
        "fault",
        "artifact store lost a registered version's model files",
        f"promotion refused ({type(err.value).__name__}); the alias stays on v{v1}, whose artifacts verify",
        intact=True,
    )
