"""The embedded stack: its environment, its process bookkeeping, and a full start/run/stop.

The `stack`-marked test runs `python -m devstack.stack` in subprocesses with its own state
folder, free ports and a probe DAG folder, so it neither needs nor disturbs a running demo
stack. It takes 60-90 s; set DRIFTWATCH_SKIP_STACK_TEST=1 to skip it. The other tests take
about a second and start nothing but `sleep`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devstack import stack
from devstack.smtp_sink import read_messages

skip_stack = pytest.mark.skipif(
    os.environ.get("DRIFTWATCH_SKIP_STACK_TEST") == "1", reason="DRIFTWATCH_SKIP_STACK_TEST=1"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE_DAG = """
import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     is_paused_upon_creation=False)
def devstack_probe():
    @task
    def put_object():
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        S3Hook(aws_conn_id="aws_default").load_string(
            "ok", key="probe/ok.txt", bucket_name="driftwatch-demo", replace=True
        )

    @task
    def send_mail():
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id="smtp_default") as hook:
            hook.send_email_smtp(to="oncall@example.com", subject="devstack probe", html_content="<p>ok</p>")

    put_object() >> send_mail()


devstack_probe()
"""


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack_:
        socks = [stack_.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _run_stack(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack.stack", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _api(base: str, path: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _token(base: str, password: str) -> str:
    request = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())["access_token"]


def _wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except OSError:  # the API may still be parsing the DAG: 404 until then
            pass
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _run_probe(base: str, token: str) -> str:
    """Trigger the probe DAG once it is parsed; return the run's API path once it finished."""
    _wait_for(lambda: _api(base, "/api/v2/dags/devstack_probe", token), 60, "the probe DAG to be parsed")
    run = _api(base, "/api/v2/dags/devstack_probe/dagRuns", token, {"logical_date": None})
    path = f"/api/v2/dags/devstack_probe/dagRuns/{run['dag_run_id']}"
    _wait_for(lambda: _api(base, path, token)["state"] in ("success", "failed"), 90, "the probe run")
    return path


@pytest.fixture
def stack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "devstack_probe.py").write_text(PROBE_DAG)
    airflow_port, s3_port, smtp_port = _free_ports(3)
    overrides = {
        "DRIFTWATCH_STATE_DIR": str(tmp_path / "state"),
        "DRIFTWATCH_DAGS_FOLDER": str(dags),
        "DRIFTWATCH_AIRFLOW_PORT": str(airflow_port),
        "DRIFTWATCH_S3_PORT": str(s3_port),
        "DRIFTWATCH_SMTP_PORT": str(smtp_port),
    }
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)
    try:
        yield env
    finally:
        _run_stack("stop", env, timeout=60)


@pytest.mark.stack
@skip_stack
def test_start_run_a_task_stop_leaves_nothing(stack_env: dict[str, str]) -> None:
    began = time.monotonic()
    started = _run_stack("start", stack_env, timeout=360)
    assert started.returncode == 0, started.stdout + started.stderr
    start_seconds = time.monotonic() - began

    ends = stack.endpoints()
    base = ends["airflow_url"]
    with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=10) as resp:
        health = json.loads(resp.read())
    assert {health[c]["status"] for c in stack.AIRFLOW_COMPONENTS} == {"healthy"}
    assert _run_stack("start", stack_env, timeout=60).stdout.startswith("already running")

    password = stack.admin_password()
    assert password and password in _run_stack("status", stack_env, timeout=60).stdout
    assert oct(Path(stack.paths().secrets_file).stat().st_mode & 0o777) == "0o600"

    token = _token(base, password)
    run_path = _run_probe(base, token)
    assert _api(base, run_path, token)["state"] == "success"
    # Task logs are read from local files: the log servers the shim turns off are not needed.
    log = _api(base, f"{run_path}/taskInstances/put_object/logs/1", token)
    events = [line.get("event", "") for line in log["content"]]
    assert "Done. Returned value was: None" in events, events
    [mail] = read_messages(ends["mail_dir"])
    assert mail["Subject"] == "devstack probe"
    client = stack._s3_client(stack.current_ports().s3)
    assert client.get_object(Bucket="driftwatch-demo", Key="probe/ok.txt")["Body"].read() == b"ok"

    state = stack.paths().state
    ports = [stack.current_ports().airflow, stack.current_ports().s3, stack.current_ports().smtp]
    stop_began = time.monotonic()
    stopped = _run_stack("stop", stack_env, timeout=90)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    stop_seconds = time.monotonic() - stop_began

    assert "killed" not in stopped.stdout, stopped.stdout
    assert [p for p in stack.find_leftovers(state) if p.ours] == []
    assert all(stack._port_free(port) for port in ports)
    assert _run_stack("status", stack_env, timeout=60).returncode == 3
    print(f"stack start {start_seconds:.1f} s, stop {stop_seconds:.1f} s, total {time.monotonic() - began:.1f} s")


# --------------------------------------------------------------------------- fast tests


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRIFTWATCH_STATE_DIR", str(tmp_path / "state"))
    for service, port in (("AIRFLOW", 18080), ("S3", 19555), ("SMTP", 18025)):
        monkeypatch.setenv(f"DRIFTWATCH_{service}_PORT", str(port))
    monkeypatch.delenv("DRIFTWATCH_DAGS_FOLDER", raising=False)
    return tmp_path / "state"


def test_airflow_env_points_everything_at_the_stack(state_dir: Path) -> None:
    env = stack.airflow_env()
    assert env["AIRFLOW_HOME"] == str(state_dir / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__PORT"] == "18080"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO_ROOT / "include"), str(REPO_ROOT / "plugins")]
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["login"] == env["AWS_ACCESS_KEY_ID"] and aws["password"] == env["AWS_SECRET_ACCESS_KEY"]
    assert aws["extra"]["endpoint_url"] == env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:19555"
    smtp = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert (smtp["host"], smtp["port"], smtp["extra"]["disable_tls"]) == ("127.0.0.1", 18025, True)
    assert stack.endpoints()["buckets"] == ["driftwatch-demo"]


def test_secrets_are_generated_once_and_private(state_dir: Path) -> None:
    first = stack.load_secrets()
    assert stack.load_secrets() == first
    assert (state_dir / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert state_dir.stat().st_mode & 0o777 == 0o700
    from cryptography.fernet import Fernet

    Fernet(first["fernet_key"].encode())  # raises if the key is malformed


def test_airflow_health_requires_fresh_heartbeats() -> None:
    def health(beat: str) -> dict[str, Any]:
        return {
            "metadatabase": {"status": "healthy"},
            "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": beat},
            "triggerer": {"status": "healthy", "latest_triggerer_heartbeat": beat},
            "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": beat},
        }

    since = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert stack.airflow_healthy(health("2026-01-01T12:00:05+00:00"), since)
    assert not stack.airflow_healthy(health("2026-01-01T11:59:55+00:00"), since)
    assert stack.airflow_healthy(health("2026-01-01T11:59:55+00:00"))
    broken = health("2026-01-01T12:00:05+00:00")
    broken["dag_processor"] = {"status": None, "latest_dag_processor_heartbeat": None}
    assert not stack.airflow_healthy(broken, since)
    assert not stack.airflow_healthy(None)


def test_a_taken_port_is_named_in_the_error(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("DRIFTWATCH_S3_PORT", str(busy.getsockname()[1]))
        with pytest.raises(stack.StackError, match="DRIFTWATCH_S3_PORT"):
            stack.check_ports(stack.configured_ports())


def test_stop_kills_escaped_stack_processes_and_spares_others(state_dir: Path) -> None:
    assert stack.stop() == []  # never started: nothing to do
    marker = {**os.environ, stack.MARKER_VAR: str(state_dir)}
    bystander_env = {**os.environ, "AIRFLOW_HOME": str(state_dir / "airflow")}
    escaped = subprocess.Popen(["sleep", "300"], env=marker, start_new_session=True)
    bystander = subprocess.Popen(["sleep", "301"], env=bystander_env, start_new_session=True)
    try:
        time.sleep(0.2)  # let exec() replace the forked Python, so /proc shows `sleep`
        report = stack.stop()
        assert escaped.wait(timeout=10) == -signal.SIGTERM
        assert any(f"killed stray pid {escaped.pid}" in line for line in report), report
        assert any(f"left alone pid {bystander.pid}" in line for line in report), report
        assert bystander.poll() is None
    finally:
        for proc in (escaped, bystander):
            proc.kill()
            proc.wait()
