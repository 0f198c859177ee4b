"""Embedded local stack: moto S3, the SMTP sink and ``airflow standalone``, on 127.0.0.1 only.

Usage: ``python -m devstack.stack start|stop|status|env``.

State lives in ``<repo>/.state`` (or ``$DRIFTWATCH_STATE_DIR``)::

    .state/airflow/       AIRFLOW_HOME (SQLite DB, airflow.cfg, task logs, generated password)
    .state/mail/          every e-mail the stack sent, as .eml files
    .state/logs/<svc>.log one log per service
    .state/bin/airflow    shim that standalone finds first on PATH (see _write_airflow_shim)
    .state/secrets.json   per-install secrets, mode 0600
    .state/stack.json     pids/pgids, ports and endpoints of the running stack

Ports come from DRIFTWATCH_AIRFLOW_PORT (8080), DRIFTWATCH_S3_PORT (9555) and
DRIFTWATCH_SMTP_PORT (8025). Tests may also set DRIFTWATCH_DAGS_FOLDER (default <repo>/dags),
DRIFTWATCH_AIRFLOW_TIMEOUT (300 s) and DRIFTWATCH_S3_TIMEOUT (60 s).
Processes, ports and waiting: devstack.procs (Linux only).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack import procs, services
from devstack.procs import HOST, StackError
from devstack.services import ADMIN_USER, REPO_ROOT, VENV_BIN, airflow_health, airflow_healthy, model_buckets

SERVICES = ("s3", "smtp", "mlflow", "airflow")  # status order; stop order: services.STOP_STAGES
DEFAULT_PORTS = {"airflow": 8080, "s3": 9555, "smtp": 8025, "mlflow": 5500}
PORT_ENV = {name: f"DRIFTWATCH_{name.upper()}_PORT" for name in DEFAULT_PORTS}
SCHEDULER_RESTARTS = 5  # crashes the airflow shim restarts the scheduler after (see _write_airflow_shim)
SCHEDULER_RESTART_PAUSE = 5  # seconds between a crash and the restart


class Paths:
    """Every location under the state folder."""

    def __init__(self, state: Path) -> None:
        self.state, self.stack_file, self.secrets_file = state, state / "stack.json", state / "secrets.json"
        self.airflow_home, self.mail, self.logs, self.bin, self.mlflow = (
            state / name for name in ("airflow", "mail", "logs", "bin", "mlflow")
        )
        self.password_file = self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"


@dataclass(frozen=True)
class Ports:
    """TCP ports of the services (all on 127.0.0.1)."""

    airflow: int
    s3: int
    smtp: int
    mlflow: int

    def urls(self) -> dict[str, str]:
        return {
            "airflow": f"http://{HOST}:{self.airflow}",
            "s3": f"http://{HOST}:{self.s3}",
            "smtp": f"smtp://{HOST}:{self.smtp}",
            "mlflow": f"http://{HOST}:{self.mlflow}",
        }


def paths() -> Paths:
    """State folder: ``$DRIFTWATCH_STATE_DIR`` or ``<repo>/.state``."""
    override = os.environ.get("DRIFTWATCH_STATE_DIR")
    return Paths(Path(override).resolve() if override else REPO_ROOT / ".state")


def configured_ports() -> Ports:
    """Ports requested by the environment (or the defaults)."""
    return Ports(**services.ports_from_env(DEFAULT_PORTS, PORT_ENV))


def current_ports() -> Ports:
    """Ports of the running stack if there is one, else the configured ones."""
    record = read_record()
    if record and "ports" in record:
        # A record written before a service was added lacks its port: use the configured one.
        return Ports(**{**asdict(configured_ports()), **record["ports"]})
    return configured_ports()


def check_ports(ports: Ports) -> None:
    """Fail with a clear message if any port is already taken."""
    if conflict := procs.port_conflict(asdict(ports), PORT_ENV):
        raise StackError(conflict)


def read_record() -> dict[str, Any] | None:
    """The ``stack.json`` of the running (or crashed) stack, if any."""
    return services.read_json(paths().stack_file)


def _make_state_dir(p: Paths) -> None:
    p.state.mkdir(parents=True, exist_ok=True)
    # It holds secrets and the admin password: keep other users out, and keep it out of
    # git even where the repository's .gitignore does not list it.
    p.state.chmod(0o700)
    ignore = p.state / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Written by devstack/stack.py: local stack state, never commit it.\n*\n")


@contextlib.contextmanager
def _locked(p: Paths) -> Iterator[None]:
    """Serialise start/stop of one state folder across processes (a second `start` waits)."""
    _make_state_dir(p)
    with open(p.state / "stack.lock", "w") as fh:  # not inherited: Popen closes fds
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def load_secrets() -> dict[str, str]:
    """Read ``secrets.json``, creating it (mode 0600) on first use."""
    p = paths()
    _make_state_dir(p)
    try:
        fd = os.open(p.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        p.secrets_file.chmod(0o600)
        return json.loads(p.secrets_file.read_text())
    with os.fdopen(fd, "w") as fh:
        created = services.new_secrets()
        json.dump(created, fh, indent=2)
    return created


def admin_password() -> str | None:
    """The admin password SimpleAuthManager generated, once it exists."""
    return (services.read_json(paths().password_file) or {}).get(ADMIN_USER)


def airflow_env(ports: Ports | None = None) -> dict[str, str]:
    """Environment for Airflow components, the ``airflow`` CLI and plain boto3 callers."""
    p, ports = paths(), ports or current_ports()
    home, shared_ports = p.airflow_home, {"api": ports.airflow, "s3": ports.s3, "smtp": ports.smtp}
    return {
        **services.shared_airflow_env(
            home, f"sqlite:///{home / 'airflow.db'}", shared_ports, load_secrets(), p.password_file
        ),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Emails link to the report pages the driftwatch plugin serves on this api-server.
        "DRIFTWATCH_REPORT_BASE_URL": f"http://{HOST}:{ports.airflow}/driftwatch/report",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "http", "host": HOST, "port": ports.mlflow, "schema": "http"}
        ),
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{ports.mlflow}",
        # Only the MLflow server itself talks to S3 (it proxies artifacts for its clients).
        "MLFLOW_S3_ENDPOINT_URL": f"http://{HOST}:{ports.s3}",
        # Four task processes share two cores: OpenMP threads per process only oversubscribe them.
        "OMP_NUM_THREADS": "1",
    }


def endpoints(p: Paths | None = None, ports: Ports | None = None) -> dict[str, Any]:
    """Where to find each service; for summaries (contains no secret)."""
    p, ports = p or paths(), ports or current_ports()
    urls = ports.urls()
    return {
        "airflow_url": urls["airflow"],
        "s3_endpoint": urls["s3"],
        "buckets": model_buckets(),
        "smtp": f"{HOST}:{ports.smtp}",
        "mlflow_url": urls["mlflow"],
        "mail_dir": str(p.mail),
        "login_user": ADMIN_USER,
        "password_file": str(p.password_file),
        "logs_dir": str(p.logs),
        "state_dir": str(p.state),
    }


def _write_airflow_shim(p: Paths) -> None:
    """Put an ``airflow`` wrapper first on standalone's PATH.

    ``airflow standalone`` runs ``airflow scheduler`` and ``airflow triggerer`` without
    ``--skip-serve-logs``; their log servers then bind every interface on 8793/8794
    (airflow/utils/serve_logs/core.py hard-codes the host). With LocalExecutor the API
    server reads task logs from local files, so the log servers are not needed.

    The wrapper also restarts a crashed scheduler: on SQLite, a write race between the
    api-server and the scheduler (a backfill POST answered "database is locked" half-way)
    can end the scheduler with ObjectDeletedError, standalone never restarts it, and every
    queued run then waits forever. A restarted scheduler adopts the runs, as in an HA setup.
    """
    real = shlex.quote(str(VENV_BIN / "airflow"))
    script = f"""#!/bin/sh
# Written by devstack/stack.py (see _write_airflow_shim): Airflow's log servers stay off
# (they bind 0.0.0.0), and a crashed scheduler is restarted up to {SCHEDULER_RESTARTS} times.
case "$1" in
  triggerer) exec {real} "$@" --skip-serve-logs ;;
  scheduler)
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM INT
    restarts=0
    while :; do
      {real} "$@" --skip-serve-logs &
      child=$!
      wait "$child"
      rc=$?
      [ "$rc" -eq 0 ] && exit 0
      restarts=$((restarts + 1))
      if [ "$restarts" -gt {SCHEDULER_RESTARTS} ]; then
        echo "devstack: the scheduler keeps crashing (exit $rc); giving up, see the tracebacks above" >&2
        exit "$rc"
      fi
      echo "devstack: the scheduler exited with $rc (traceback above); restart $restarts of {SCHEDULER_RESTARTS}" >&2
      sleep {SCHEDULER_RESTART_PAUSE}
    done ;;
esac
exec {real} "$@"
"""
    shim = p.bin / "airflow"
    shim.write_text(script)
    shim.chmod(0o700)


def _commands(p: Paths, ports: Ports) -> dict[str, list[str]]:
    py = str(VENV_BIN / "python")
    smtp = [py, "-m", "devstack.smtp_sink", "--folder", str(p.mail), "--host", HOST, "--port", str(ports.smtp)]
    mlflow = [py, "-m", "mlflow", "server", "--host", HOST, "--port", str(ports.mlflow), "--workers", "1"]
    mlflow += ["--backend-store-uri", f"sqlite:///{p.mlflow / 'mlflow.db'}"]
    # The server proxies artifacts, so clients need no S3 credentials of their own.
    mlflow += ["--artifacts-destination", f"s3://{model_buckets()[0]}/mlflow-artifacts"]
    s3 = [py, "-m", "moto.server", "-H", HOST, "-p", str(ports.s3)]
    return {"s3": s3, "smtp": smtp, "airflow": [str(p.bin / "airflow"), "standalone"], "mlflow": mlflow}


def _start_services(p: Paths, ports: Ports) -> None:
    env, creds = {**services.base_env(p.state, p.bin), **airflow_env(ports)}, load_secrets()
    commands, started, record = _commands(p, ports), {}, {}
    since = datetime.now(UTC)
    head = {"state_dir": str(p.state), "started_at": since.isoformat(), "ports": asdict(ports), "services": record}
    # Airflow first: it takes longest, and S3/SMTP come up while it migrates its DB.
    for name in ("airflow", "s3", "smtp", "mlflow"):
        extra = services.MLFLOW_ENV if name == "mlflow" else {}
        proc = started[name] = procs.launch(commands[name], {**env, **extra}, p.log(name), REPO_ROOT)
        record[name] = {"pid": proc.pid, "pgid": proc.pid, "start_time": procs.start_time(proc.pid)}
        record[name] |= {"url": ports.urls()[name], "log": str(p.log(name))}
        services.write_private(p.stack_file, json.dumps({**head, "endpoints": endpoints(p, ports)}, indent=2) + "\n")
    checks = {
        "s3": ("S3 (moto)", lambda: services.s3_healthy(ports.s3, creds), "DRIFTWATCH_S3_TIMEOUT", 60),
        "smtp": ("SMTP sink", lambda: services.smtp_healthy(ports.smtp), None, 30),
        "mlflow": ("MLflow", lambda: services.mlflow_healthy(ports.mlflow), None, 120),
        "airflow": (
            "Airflow",
            lambda: airflow_healthy(airflow_health(ports.airflow), since),
            "DRIFTWATCH_AIRFLOW_TIMEOUT",
            300,
        ),
    }
    for name, (what, check, var, timeout) in checks.items():
        timeout = services.seconds_from_env(var, timeout) if var else timeout
        procs.wait_until(check, timeout, what, log=p.log(name), proc=started[name])
        if name == "s3":
            services.create_buckets(services.s3_client(ports.s3, creds), model_buckets())
    if p.password_file.exists():
        p.password_file.chmod(0o600)


def start() -> bool:
    """Start the stack unless it already runs healthy (then return False).

    On failure, stop whatever was started and re-raise.
    """
    if not (VENV_BIN / "airflow").exists():
        raise StackError(f"{VENV_BIN / 'airflow'} not found: run this with the project's venv python")
    p = paths()
    with _locked(p):
        if read_record() is not None:
            if is_healthy():
                return False
            print("found a stopped or unhealthy stack: cleaning it up first")
            _print_report(_stop_unlocked())
        ports = configured_ports()
        check_ports(ports)
        _make_state_dir(p)
        # moto keeps S3 in memory, so the model artifacts are gone after a restart: a registry
        # that still listed them would point at missing objects. Both start empty together.
        shutil.rmtree(p.mlflow, ignore_errors=True)
        for folder in (p.airflow_home, p.mail, p.logs, p.bin, p.mlflow):
            folder.mkdir(parents=True, exist_ok=True)
        load_secrets()
        _write_airflow_shim(p)
        try:
            _start_services(p, ports)
        except BaseException:
            print("start did not complete: stopping the services started so far", file=sys.stderr)
            _print_report(_stop_unlocked())
            raise
    return True


def stop() -> list[str]:
    """Stop every process of the stack (idempotent); return report lines."""
    with _locked(paths()):
        return _stop_unlocked()


def _stop_unlocked() -> list[str]:
    p = paths()
    report = services.stop_recorded(p.state, (read_record() or {}).get("services", {}))
    p.stack_file.unlink(missing_ok=True)
    return report


def _print_report(lines: list[str]) -> None:
    for line in lines:
        print(f"  {line}")


def service_states() -> dict[str, str]:
    """``healthy``, ``unhealthy``, ``dead`` or ``not started`` for each service."""
    ports, recorded = current_ports(), (read_record() or {}).get("services", {})
    healthy = {
        "s3": lambda: services.s3_healthy(ports.s3, load_secrets()),
        "smtp": lambda: services.smtp_healthy(ports.smtp),
        "mlflow": lambda: services.mlflow_healthy(ports.mlflow),
        "airflow": lambda: airflow_healthy(airflow_health(ports.airflow)),
    }
    states = {}
    for name in SERVICES:
        if name not in recorded:
            states[name] = "not started"
        elif not procs.group_members(recorded[name]["pgid"]):
            states[name] = "dead"
        else:
            states[name] = "healthy" if healthy[name]() else "unhealthy"
    return states


def is_healthy() -> bool:
    """True when all services run and pass their health checks."""
    return set(service_states().values()) == {"healthy"}


def status_lines(states: dict[str, str] | None = None) -> list[str]:
    """Human-readable status: services, URLs and the Airflow login."""
    p, record = paths(), read_record()
    if record is None:
        return [f"stack: stopped (state: {p.state})"]
    states = states or service_states()
    lines = [f"stack: state {p.state}, started {record.get('started_at', '?')}"]
    for name in SERVICES:
        svc = record["services"].get(name)
        if svc is None:
            lines.append(f"  {name:8} not started")
        else:
            lines.append(f"  {name:8} {states[name]:10} {svc['url']:24} pid {svc['pid']:<7} log {svc['log']}")
    password = admin_password() or "(not generated yet)"
    return [
        *lines,
        f"  buckets  {', '.join(model_buckets())}",
        f"  mail     {p.mail}",
        f"  login    {ADMIN_USER} / {password}   (stored in {p.password_file})",
        '  shell    eval "$(python -m devstack.stack env)"',
    ]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m devstack.stack``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    command, began = parser.parse_args(argv).command, time.monotonic()
    try:
        if command == "start":
            print(f"started in {time.monotonic() - began:.1f} s" if start() else "already running and healthy")
            print("\n".join(status_lines()))
        elif command == "stop":
            was_running = read_record() is not None
            _print_report(report := stop())
            print(f"stopped in {time.monotonic() - began:.1f} s" if was_running or report else "stack was not running")
        elif command == "status":
            if read_record() is None:
                print("\n".join(status_lines()))
                return 3  # LSB convention: "program is not running"
            print("\n".join(status_lines(states := service_states())))
            return 0 if set(states.values()) == {"healthy"} else 1
        else:
            print("\n".join(f"export {key}={shlex.quote(value)}" for key, value in airflow_env().items()))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
