"""The scheduler killed with SIGKILL in the middle of a monitor run, then restarted: nothing inconsistent.

dag.test() has no scheduler, so this test starts a real Airflow of its own: `airflow db migrate`,
then api-server, dag-processor and scheduler (LocalExecutor, SQLite) as separate processes, each
in its own session, with a private AIRFLOW_HOME, config folder and DAG folder, on a free loopback
port. S3 is the session's moto server and SMTP the stoppable sink, both on loopback. No
triggerer: the batch is there before the run starts, so the sensor never defers.

While compute_drift runs, the scheduler is killed the way a crashed or evicted scheduler
container dies: SIGKILL to its process group (the scheduler and its LocalExecutor workers, each
a task supervisor) and to every process group under it (a task runner has its own, see
airflow.sdk.execution_time.supervisor), so the running task dies with it. A new scheduler is
then started. It finds the dead scheduler's job and resets the task instance that job left
"running" (or fails it on its missing heartbeat, whichever comes first), and the task runs again;
the test checks the result where an operator would: the run's and tasks' states in the REST API,
the bucket, the mail folder. Airflow's detection intervals are shortened (see airflow_env) so that
this takes seconds; with the defaults the same recovery takes up to about 5 minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.airflow_api import TERMINAL_RUN_STATES, AirflowApi, AirflowApiError
from devstack.smtp_sink import read_messages
from driftwatch import demo_data, history, layout, seeding, storage
from driftwatch.artifacts import MANIFEST, WRITING
from tests.reliability.support import manifest_problems, snapshot

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.prefix) / "bin"
DAG_ID = "monitor__credit_default"
KILL_DURING = "compute_drift"
REPORTS = {"validation.html", "validation.json", "drift.html", "drift.json", "drift_decision.json", MANIFEST}
# Seconds without a heartbeat after which Airflow fails a running task (default 300). Healthy
# tasks heartbeat every 5 s, well inside it, so no live task is ever taken for a dead one.
HEARTBEAT_TIMEOUT = 30
START_TIMEOUT = 300  # db migrate and three components importing Airflow on 2 busy cores
RUN_TIMEOUT = 300
MARKER = "DRIFTWATCH_SCHEDULER_KILL_TEST"  # on every process this test starts, inherited by their children


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid), or None once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def descendants(root: int) -> list[int]:
    """Every live process under `root` (children, their children...), found through /proc."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _proc_stat(pid)
        if stat and stat[0] not in ("Z", "X"):
            children.setdefault(stat[1], []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def marked_pids(marker_value: str) -> list[int]:
    """Live processes carrying this test's marker (also those that left their process group)."""
    wanted = f"{MARKER}={marker_value}".encode()
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            if wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") and _alive(pid):
                found.append(pid)
    return found


def kill_groups(pgids: set[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, AirflowApiError):
            if result := check():
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Airflow:
    """A private Airflow whose components are started, and killed, one by one."""

    def __init__(self, root: Path, env: dict[str, str], port: int) -> None:
        self.root, self.env, self.port = root, env, port
        self.env_home = Path(env["AIRFLOW_HOME"])
        self.logs = root / "logs"
        self.logs.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [str(VENV_BIN / "airflow"), *args],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, which is what gets killed
            )
        self.procs[name] = proc
        return proc

    def migrate(self) -> None:
        proc = self.launch("db-migrate", "db", "migrate")
        code = proc.wait(timeout=START_TIMEOUT)
        assert code == 0, f"airflow db migrate failed ({code}):\n{self.tail('db-migrate')}"

    def tail(self, name: str, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def task_errors(self) -> str:
        """The last error line of every task attempt that logged one: what a failed run assertion shows."""
        lines = []
        for log in sorted((self.env_home / "logs").rglob("attempt=*.log")):
            errors = [line for line in log.read_text(errors="replace").splitlines() if '"level":"error"' in line]
            if errors:
                lines.append(f"{log.parent.name}/{log.name}: {errors[-1][:600]}")
        return "\n".join(lines) or "(no task logged an error)"

    def check_running(self, *names: str) -> None:
        for name in names:
            code = self.procs[name].poll()
            assert code is None, f"{name} exited with {code}:\n{self.tail(name)}"

    def crash(self, name: str) -> list[str]:
        """SIGKILL a component's process group and every group under it, as a dying container would."""
        proc = self.procs[name]
        tree = descendants(proc.pid)
        groups = {proc.pid} | {stat[2] for pid in tree if (stat := _proc_stat(pid))}
        killed = [cmdline(pid) for pid in [proc.pid, *tree]]
        kill_groups(groups)
        proc.wait(timeout=30)  # our child: reaped here; the others are reparented and reaped by init
        wait_until(lambda: not any(_alive(p) for p in tree), 30, f"the killed {name} processes to be gone", 0.2)
        return killed

    def stop_all(self) -> None:
        """End every process this test started (marker-based: task runners leave their group)."""
        pids = marked_pids(self.env[MARKER])
        groups = {p.pid for p in self.procs.values()} | {s[2] for pid in pids if (s := _proc_stat(pid))}
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and marked_pids(self.env[MARKER]):
            time.sleep(0.5)
        kill_groups(groups | {s[2] for pid in marked_pids(self.env[MARKER]) if (s := _proc_stat(pid))})
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def private_config(folder: Path) -> Path:
    """The demo config with a start date in the future (no scheduled runs: only the one triggered) and
    retries seconds apart rather than half a minute."""
    data = yaml.safe_load((REPO / "config" / "models" / "credit_default.yaml").read_text())
    data["monitor"].update({"start_date": "2030-01-01", "retries": 2, "retry_delay_seconds": 2})
    # One drifted batch requests retraining here: the test is about the crash, not the policy's rules.
    data["retraining"] = {
        "sustained_batches": 1,
        "sustained_window": 1,
        "min_new_labelled_rows": 0,
        "cooldown_days": 0,
        "retrain_on_harmless_drift": True,
    }
    folder.mkdir()
    (folder / "credit_default.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def airflow_env(root: Path, port: int, s3_endpoint: str, smtp_port: int, password_file: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    dags = root / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "monitor.py", dags / "monitor.py")  # the DAG under test, nothing else to parse
    # pytest's own Airflow, AWS and MLflow settings must not reach the components.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "MLFLOW", "DRIFTWATCH_"))}
    home = root / "airflow"
    home.mkdir()
    smtp_extra = {"disable_tls": True, "disable_ssl": True, "from_email": "driftwatch@localhost", "timeout": 5}
    env.update(
        {
            # `airflow` children (LocalExecutor workers) are found on PATH: this venv's first.
            "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
            MARKER: str(root),
            "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "plugins")]),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # One set of secrets for every component: the scheduler's JWTs are checked by the api-server.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # The dead scheduler's job is noticed after 15 s (default 30) and its orphaned task
            # instances are looked for every 10 s (default 300).
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "DRIFTWATCH_CONFIG_DIR": str(private_config(root / "config")),
            "GX_ANALYTICS_ENABLED": "false",
            "OMP_NUM_THREADS": "1",
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "test-key",
                    "password": "test-secret",
                    "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
                }
            ),
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
                {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port, "extra": smtp_extra}
            ),
            # An empty registry: the monitor runs before any champion exists (score_batch says so).
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "http", "host": "x", "extra": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}}
            ),
        }
    )
    return env


@pytest.fixture
def airflow(tmp_path, s3_endpoint, smtp_sink):
    """api-server, dag-processor and scheduler of a private Airflow, up and with the monitor DAG parsed."""
    root = tmp_path / "airflow-kill"
    root.mkdir()
    port = free_port()
    password = secrets.token_urlsafe(16)
    password_file = root / "passwords.json"
    password_file.write_text(json.dumps({"admin": password}))
    instance = Airflow(root, airflow_env(root, port, s3_endpoint, smtp_sink.port, password_file), port)
    try:
        instance.migrate()
        for name, args in {
            "api-server": ("api-server",),
            "dag-processor": ("dag-processor",),
            "scheduler": ("scheduler", "--skip-serve-logs"),
        }.items():
            instance.launch(name, *args)

        def api_ready() -> AirflowApi | None:
            instance.check_running("api-server", "dag-processor", "scheduler")
            return AirflowApi(instance.url, "admin", password)

        api = wait_until(api_ready, START_TIMEOUT, "the api-server", every=2)
        api.wait_for_dag(DAG_ID, timeout=START_TIMEOUT)
        api.set_paused(DAG_ID, False)
        yield instance, api
    finally:
        instance.stop_all()
        left = [f"{pid} {cmdline(pid)}" for pid in marked_pids(str(root))]
        assert not left, f"processes left running after the test: {left}"


def test_scheduler_killed_mid_run_and_restarted_leaves_nothing_inconsistent(
    airflow, bucket, demo_cfg, smtp_sink, figures
):
    instance, api = airflow
    cfg = demo_cfg
    scenario = demo_data.generate_scenario(date(2026, 9, 1), days=14, seed=11, rows_per_day=400)
    batch = max((b for b in scenario if b.kind == "covariate_drift"), key=lambda b: b.drift_strength)
    day = batch.batch_date.isoformat()
    seeding.write_batch(bucket, cfg, batch)
    raw_before = snapshot(bucket, cfg.storage.bucket, layout.incoming_prefix(cfg, day))
    prefix = layout.report_prefix(cfg, day)

    run_id = api.trigger(DAG_ID, conf={"batch_date": day})["dag_run_id"]
    run_path = f"/dags/{DAG_ID}/dagRuns/{run_id}"

    def states() -> dict[str, dict[str, Any]]:
        return {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run_id)}

    def task_running() -> dict[str, Any] | None:
        instance.check_running("api-server", "dag-processor", "scheduler")
        current = states()
        assert api.call("GET", run_path)["state"] not in TERMINAL_RUN_STATES, (
            f"the run ended first: {instance.task_errors()}"
        )
        ti = current.get(KILL_DURING, {})
        return ti if ti.get("state") == "running" else None

    running = wait_until(task_running, RUN_TIMEOUT, f"{KILL_DURING} to be running", every=0.3)
    killed = instance.crash("scheduler")
    # The task runner titles itself "airflow worker -- <task instance id>": it must have died too.
    assert any(c.endswith(f"-- {running['id']}") for c in killed), f"{KILL_DURING} survived the crash: {killed}"
    # What a reader finds right after the crash: a set marked as being written, no drift report yet.
    at_crash = {
        "manifest": (storage.read_json(bucket, cfg.storage.bucket, prefix + MANIFEST) or {}).get("status"),
        "drift.json": storage.object_size(bucket, cfg.storage.bucket, prefix + "drift.json") is not None,
    }
    assert at_crash == {"manifest": WRITING, "drift.json": False}, (at_crash, killed)

    instance.launch("scheduler-restarted", "scheduler", "--skip-serve-logs")
    began = time.monotonic()

    def finished() -> dict[str, Any] | None:
        instance.check_running("api-server", "dag-processor", "scheduler-restarted")
        run = api.call("GET", run_path)
        return run if run["state"] in TERMINAL_RUN_STATES else None

    run = wait_until(finished, RUN_TIMEOUT, f"run {run_id} to finish after the restart", every=2)
    recovery = time.monotonic() - began
    final = states()
    summary = {t: (ti["state"], ti["try_number"]) for t, ti in final.items()}
    assert run["state"] == "success", f"{summary}\n{instance.task_errors()}\n{instance.tail('scheduler-restarted')}"
    tries = api.call("GET", f"{run_path}/taskInstances/{KILL_DURING}/tries")["task_instances"]
    tried = [(t["try_number"], t["state"]) for t in tries]
    assert final[KILL_DURING]["try_number"] == 2 and tried[0][1] != "success", f"not retried: {tried}"
    others = {t: n for t, (_, n) in summary.items() if t != KILL_DURING and n > 1}
    assert not others, f"tasks the crash did not touch ran again: {others}"

    # Nothing inconsistent: the raw batch, one complete report set, one history record, one email.
    assert snapshot(bucket, cfg.storage.bucket, layout.incoming_prefix(cfg, day)) == raw_before
    keys = {k[len(prefix) :] for k in snapshot(bucket, cfg.storage.bucket, prefix)}
    assert keys >= REPORTS and all(k.startswith("partitions/part-") for k in keys - REPORTS), keys
    assert not manifest_problems(bucket, cfg.storage.bucket, prefix)
    assert storage.read_json(bucket, cfg.storage.bucket, prefix + MANIFEST)["status"] == "passed"
    assert not storage.list_objects(bucket, cfg.storage.bucket, layout.quarantine_prefix(cfg, day))
    assert len(storage.list_objects(bucket, cfg.storage.bucket, layout.history_key(cfg, day))) == 1
    assert history.read_record(bucket, cfg, day)["status"] == "passed"
    requests = storage.list_objects(bucket, cfg.storage.bucket, layout.retraining_request_key(cfg, day))
    assert len(requests) == 1, "the retraining request should be recorded once"
    messages = read_messages(smtp_sink.folder)
    assert len(messages) == 1 and "retraining requested" in messages[0]["Subject"], [m["Subject"] for m in messages]
    figures.add(
        "fault",
        f"scheduler killed (SIGKILL to its process tree) during {KILL_DURING}, then restarted",
        f"{len(killed)} processes killed (scheduler, LocalExecutor workers, the task runner); the report set was "
        f"left marked 'writing'; the restarted scheduler {recovered_by(instance.tail('scheduler-restarted', 4000))} "
        f"(tries: {', '.join(f'{n} {s}' for n, s in tried)}); run succeeded {recovery:.0f} s after the restart; "
        "raw batch unchanged, one complete report set, one history record, one retraining request, 1 email",
        intact=True,
    )


def recovered_by(scheduler_log: str) -> str:
    """How the new scheduler took the killed task over, in its own words (its log)."""
    if re.search(rf"orphaned TaskInstances:\s*<TaskInstance: {DAG_ID}\.{KILL_DURING} ", scheduler_log):
        return f"reset {KILL_DURING} as an orphan of the dead scheduler's job and ran it again"
    if re.search(rf"{KILL_DURING}.*heartbeat|heartbeat.*{KILL_DURING}", scheduler_log, flags=re.IGNORECASE):
        return f"failed {KILL_DURING} on its missing heartbeat and retried it"
    return f"retried {KILL_DURING}"
