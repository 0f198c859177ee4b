"""What devstack.stack (standalone) and devstack.distributed (Celery) share: settings, the service
table and its launcher, health checks, stop, the CLI's parser."""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from devstack import procs
from devstack.procs import HOST, MARKER_VAR, StackError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "config" / "models"
VENV_BIN = Path(sys.prefix) / "bin"
PYTHONPATH = f"{REPO_ROOT / 'include'}{os.pathsep}{REPO_ROOT / 'plugins'}"
REGION = "us-east-1"
ADMIN_USER = "admin"
MAIL_FROM = "driftwatch@localhost"
AIRFLOW_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
# Airflow legitimately needs longer than procs.STOP_GRACE_SECONDS: its scheduler waits for the executor's
# workers (one still supervising a task that just ended: 3.5 s), its triggerer gives the trigger runner up
# to 10 s (TriggererJobRunner: kill(escalation_delay=10)), then the 150-250 MB components tear down their
# interpreters at once (full garbage collections): 5-12 s in all on a loaded 2-core machine.
AIRFLOW_STOP_GRACE_SECONDS = 30.0
# Stopped one stage after the other, dependents first: Airflow (every component and worker) while
# S3, MLflow and SMTP still serve its last tasks, then MLflow (its artifacts live in S3), then the rest.
STOP_STAGES = {"mlflow": 1, "smtp": 2, "s3": 2}  # any other service is Airflow's: stage 0
# MLflow's job execution (GenAI jobs: prompt optimisation, online scorers) starts a job runner and seven
# huey consumers, each importing all of MLflow (~230 MB), 20-30 s after the server; the pipeline uses none
# of it. On SIGTERM the eight tore down their interpreters at once for 15 s on 2 cores: the stop's flake.
MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass
class Service:
    """One process of a stack, and how its start tells it is ready (``what`` names it in errors)."""

    argv: list[str]
    cwd: Path = REPO_ROOT
    ready: Callable[[], Any] | None = None
    timeout: float = 60.0
    what: str = ""
    env: dict[str, str] = field(default_factory=dict)


class Launcher:
    """Starts services from tables; after each launch ``record`` lists them all (what a stop reads)."""

    def __init__(self, logs: Path, record: Path, head: dict[str, Any]) -> None:
        self.logs, self.record, self.head = logs, record, head
        self.table: dict[str, Service] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def launch(self, table: dict[str, Service], env: dict[str, str]) -> None:
        for name, svc in table.items():
            self.table[name] = svc
            self.procs[name] = procs.launch(svc.argv, {**env, **svc.env}, self.log(name), svc.cwd)
            # The start_time tells the leader of a recorded pgid from a process that reused it.
            recorded = {
                n: {"pid": p.pid, "pgid": p.pid, "start_time": procs.start_time(p.pid), "log": str(self.log(n))}
                for n, p in self.procs.items()
            }
            write_private(self.record, json.dumps({**self.head, "services": recorded}, indent=2) + "\n")

    def wait(self, *names: str) -> None:
        """Each service's ``ready`` in turn; a StackError (with its log's tail) if it exits or times out."""
        for name in names:
            svc, log, began = self.table[name], self.log(name), time.monotonic()
            if not procs.poll_until(functools.partial(self._ready, name), svc.timeout, 0.5):
                what = svc.what or name
                raise StackError(f"{what} not healthy after {svc.timeout:.0f} s; see {log}\n{procs.log_tail(log)}")
            self.timings[f"{name} ready"] = round(time.monotonic() - began, 1)

    def _ready(self, name: str) -> Any:
        return self.table[name].ready() or self.check_alive(name)

    def check_alive(self, *names: str) -> None:
        for name in names:
            if self.procs[name].poll() is not None:
                log, code = self.log(name), self.procs[name].returncode
                what = self.table[name].what or name
                raise StackError(f"{what} exited with code {code}; see {log}\n{procs.log_tail(log)}")


def backing_services(
    ports: dict[str, int],
    creds: dict[str, str],
    mail: Path,
    buckets: list[str],
    mlflow_env: dict[str, str],
    mlflow_timeout: float,
    s3_config: dict[str, Any] | None = None,
) -> dict[str, Service]:
    """S3 (moto; ready once ``buckets`` exist), the SMTP sink and MLflow (its stores in ``mlflow_env``):
    the part of the service table both stacks share, in launch order."""
    py = str(VENV_BIN / "python")
    s3 = [py, "-m", "moto.server", "-H", HOST, "-p", str(ports["s3"])]
    smtp = [py, "-m", "devstack.smtp_sink", "--folder", str(mail), "--host", HOST, "--port", str(ports["smtp"])]
    mlflow = [py, "-m", "mlflow", "server", "--host", HOST, "--port", str(ports["mlflow"]), "--workers", "1"]
    s3_up = functools.partial(s3_ready, ports["s3"], creds, buckets, **(s3_config or {}))
    mlflow_up = functools.partial(mlflow_healthy, ports["mlflow"], 5.0)
    return {
        "s3": Service(s3, REPO_ROOT, s3_up, float(os.environ.get("DRIFTWATCH_S3_TIMEOUT", 60)), "S3 (moto)"),
        "smtp": Service(smtp, REPO_ROOT, functools.partial(smtp_healthy, ports["smtp"]), 30, "SMTP sink"),
        "mlflow": Service(mlflow, REPO_ROOT, mlflow_up, mlflow_timeout, "MLflow", {**mlflow_env, **MLFLOW_ENV}),
    }


def print_lines(lines: list[str], prefix: str = "  ", file: Any = None) -> None:
    for line in lines:
        print(prefix + line, file=file)


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A CLI's parser whose --help shows the module docstring as written (its usage block)."""
    formatter = argparse.RawDescriptionHelpFormatter
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc, formatter_class=formatter)


def make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)  # it holds secrets


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """None when missing or unreadable (a record a crash cut short)."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        return json.loads(path.read_text())
    return None


def new_secrets() -> dict[str, str]:
    """Fresh per-install secrets; moto accepts any AWS key pair, so these only look real."""
    return {
        "aws_access_key_id": "AKIA" + secrets.token_hex(8).upper(),
        "aws_secret_access_key": secrets.token_urlsafe(30),
        # Same format as cryptography's Fernet.generate_key(), without importing it here.
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "jwt_secret": secrets.token_urlsafe(48),
        "api_secret_key": secrets.token_urlsafe(48),
    }


def model_buckets(config_dir: Path = CONFIG_DIR) -> list[str]:
    buckets = [(yaml.safe_load(p.read_text()) or {}).get("storage") or {} for p in sorted(config_dir.glob("*.yaml"))]
    return list(dict.fromkeys(b["bucket"] for b in buckets if b.get("bucket")))


def ports_from_env(defaults: dict[str, int], names: dict[str, str], error: type = StackError) -> dict[str, int]:
    ports = {}
    for service, default in defaults.items():
        raw = os.environ.get(names[service], str(default))
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise error(f"{names[service]}={raw!r} is not a TCP port")
        ports[service] = int(raw)
    if len(set(ports.values())) != len(ports):
        raise error(f"the service ports must differ: {ports}")
    return ports


def base_env(state: Path, *bins: Path) -> dict[str, str]:
    """The caller's environment minus AIRFLOW_* (a pytest AIRFLOW_HOME must not reconfigure the stack)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PATH"] = os.pathsep.join([*map(str, bins), str(VENV_BIN), env.get("PATH", "")])
    env[MARKER_VAR] = str(state)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach .state/logs as they happen
    return env


def shared_airflow_env(
    home: Path, db_url: str, ports: dict[str, int], creds: dict[str, str], password_file: Path
) -> dict[str, str]:
    s3_url, key, secret = f"http://{HOST}:{ports['s3']}", creds["aws_access_key_id"], creds["aws_secret_access_key"]
    aws = {"endpoint_url": s3_url, "region_name": REGION}
    # Field names from airflow.providers.smtp.hooks.smtp (provider 3.2.0): no login means
    # no AUTH; disable_tls/disable_ssl because the sink speaks plain SMTP.
    smtp = {"from_email": MAIL_FROM, "disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 1}
    conns = {
        "AWS": {"conn_type": "aws", "login": key, "password": secret, "extra": aws},
        "SMTP": {"conn_type": "smtp", "host": HOST, "port": ports["smtp"], "extra": smtp},
        # The pipeline reads the tracking URI from this connection (as in docker-compose.yaml).
        "MLFLOW": {"conn_type": "http", "host": HOST, "port": ports["mlflow"], "schema": "http"},
    }
    return {
        "AIRFLOW_HOME": str(home),
        # Explicit, so an old airflow.cfg can never point the stack at another metadata database.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CORE__DAGS_FOLDER": os.environ.get("DRIFTWATCH_DAGS_FOLDER", str(REPO_ROOT / "dags")),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": creds["fernet_key"],
        # A cold 2-core machine's first parse, with four components importing Airflow, exceeds 30 s.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(ports["api"]),
        # The default localhost:8080 is wrong on any other port and may resolve to ::1.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{ports['api']}/execution/",
        # Else each component generates its own, and the api-server rejects the workers' JWTs.
        "AIRFLOW__API_AUTH__JWT_SECRET": creds["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": creds["api_secret_key"],
        # Exactly admin:admin: standalone only generates and prints a password for this value.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        # New DAG files appear within ~5 s, edited ones are re-parsed within ~10 s.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        # Its health server would bind 0.0.0.0:8974; the stack binds loopback only.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "PYTHONPATH": PYTHONPATH,
        "DRIFTWATCH_CONFIG_DIR": str(CONFIG_DIR),
        **{f"AIRFLOW_CONN_{name}_DEFAULT": json.dumps(conn) for name, conn in conns.items()},
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ENDPOINT_URL_S3": s3_url,
        "AWS_DEFAULT_REGION": REGION,
        # botocore must never probe 169.254.169.254: the stack talks to loopback only.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_client(port: int, creds: dict[str, str], timeout: float = 10.0, **config: Any) -> Any:
    """A boto3 client of moto; ``config`` overrides the botocore Config (one attempt, ``timeout``)."""
    import boto3  # slow import; only needed while starting or checking
    from botocore.config import Config

    settings = {"connect_timeout": timeout, "read_timeout": timeout, "retries": {"max_attempts": 1}, **config}
    keys = {key: creds[key] for key in ("aws_access_key_id", "aws_secret_access_key")}
    url = f"http://{HOST}:{port}"
    return boto3.client("s3", endpoint_url=url, region_name=REGION, config=Config(**settings), **keys)


def s3_ready(port: int, creds: dict[str, str], buckets: list[str], **config: Any) -> bool:
    """Answering, and then ``buckets`` exist (moto starts empty): the start's readiness check of S3."""
    try:
        client = s3_client(port, creds, **{"timeout": 3.0, **config})
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    except Exception:  # any botocore/connection error means "not yet"
        return False
    for bucket in sorted(set(buckets) - existing):
        client.create_bucket(Bucket=bucket)
    return True


def mlflow_healthy(port: int, timeout: float = 3.0) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=timeout) as resp:
        return resp.status == 200
    return False


def smtp_healthy(port: int, timeout: float = 3.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=timeout) as sock:
        banner = sock.recv(512)
        sock.sendall(b"QUIT\r\n")
        return banner.startswith(b"220")
    return False


def airflow_up(port: int, since: datetime | None = None) -> bool:
    url = f"http://{HOST}:{port}/api/v2/monitor/health"
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=5.0) as resp:
        return airflow_healthy(json.loads(resp.read()), since)
    return False


def airflow_healthy(health: dict[str, Any] | None, since: datetime | None = None) -> bool:
    """All four components healthy and heartbeating after ``since``: a job killed uncleanly still
    counts as healthy for 30 s, so the old run could pass for the new."""
    if not health:
        return False
    for name in AIRFLOW_COMPONENTS:
        component = health.get(name) or {}
        beat = next((v for k, v in component.items() if k.endswith("heartbeat") and v), None)
        if component.get("status") != "healthy":
            return False
        if since and name != "metadatabase" and (beat is None or datetime.fromisoformat(beat) < since):
            return False
    return True


def stop_recorded(state: Path, recorded: dict[str, dict[str, Any]]) -> list[str]:
    """Stop the recorded services (name: pgid, start_time) in STOP_STAGES, then sweep escapees."""
    stages = [(AIRFLOW_STOP_GRACE_SECONDS, {}), (procs.STOP_GRACE_SECONDS, {}), (procs.STOP_GRACE_SECONDS, {})]
    for name, svc in recorded.items():
        # Only our own groups: after a reboot a recorded pgid may be someone else's.
        if procs.group_is_ours(svc["pgid"], state, svc.get("start_time")):
            stages[STOP_STAGES.get(name, 0)][1][name] = svc["pgid"]
    return procs.stop_groups(stages) + procs.sweep(state)
