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
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack import procs, services
from devstack.procs import HOST, StackError
from devstack.services import (
    ADMIN_USER,
    REPO_ROOT,
    VENV_BIN,
    airflow_health,
    airflow_healthy,
    model_buckets,
    ports_from_env,
    seconds_from_env,
)

SERVICES = ("s3", "smtp", "mlflow", "airflow")  # in status order
# Stopped one stage after the other, dependents first (grace in seconds, services).
STOP_STAGES = (
    (services.AIRFLOW_STOP_GRACE_SECONDS, ("airflow",)),
    (procs.STOP_GRACE_SECONDS, ("mlflow",)),
    (procs.STOP_GRACE_SECONDS, ("smtp", "s3")),
)
DEFAULT_PORTS = {"airflow": 8080, "s3": 9555, "smtp": 8025, "mlflow": 5500}
PORT_ENV = {name: f"DRIFTWATCH_{name.upper()}_PORT" for name in DEFAULT_PORTS}
SCHEDULER_RESTARTS = 5  # crashes the airflow shim restarts the scheduler after (see _write_airflow_shim)
SCHEDULER_RESTART_PAUSE = 5  # seconds between a crash and the restart


# --------------------------------------------------------------------------- paths & ports


@dataclass(frozen=True)
class Paths:
    """Every location under the state folder."""

    state: Path

    @property
    def airflow_home(self) -> Path:
        return self.state / "airflow"

    @property
    def mail(self) -> Path:
        return self.state / "mail"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def bin(self) -> Path:
        return self.state / "bin"

    @property
    def stack_file(self) -> Path:
        return self.state / "stack.json"

    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.json"

    @property
    def mlflow(self) -> Path:
        return self.state / "mlflow"

    @property
    def password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"


@dataclass(frozen=True)
class Ports:
    """TCP ports of the three services (all on 127.0.0.1)."""

    airflow: int
    s3: int
    smtp: int
    mlflow: int


def paths() -> Paths:
    """State folder: ``$DRIFTWATCH_STATE_DIR`` or ``<repo>/.state``."""
    override = os.environ.get("DRIFTWATCH_STATE_DIR")
    return Paths(Path(override).resolve() if override else REPO_ROOT / ".state")


def configured_ports() -> Ports:
    """Ports requested by the environment (or the defaults)."""
    return Ports(**ports_from_env(DEFAULT_PORTS, PORT_ENV))


def current_ports() -> Ports:
    """Ports of the running stack if there is one, else the configured ones."""
    record = read_record()
    if record and "ports" in record:
        # A record written before a service was added lacks its port: use the configured one.
        return Ports(**{**asdict(configured_ports()), **record["ports"]})
    return configured_ports()


# --------------------------------------------------------------------------- small file helpers


def read_record() -> dict[str, Any] | None:
    """The ``stack.json`` of the running (or crashed) stack, if any."""
    try:
        return json.loads(paths().stack_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_record(record: dict[str, Any]) -> None:
    services.write_private(paths().stack_file, json.dumps(record, indent=2) + "\n")


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


def _make_dirs(p: Paths) -> None:
    _make_state_dir(p)
    # moto keeps S3 in memory, so the model artifacts are gone after a restart: a registry
    # that still listed them would point at missing objects. Both start empty together.
    shutil.rmtree(p.mlflow, ignore_errors=True)
    for folder in (p.airflow_home, p.mail, p.logs, p.bin, p.mlflow):
        folder.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- secrets


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


# --------------------------------------------------------------------------- configuration


def airflow_env(ports: Ports | None = None) -> dict[str, str]:
    """Environment for Airflow components, the ``airflow`` CLI and plain boto3 callers."""
    p, ports = paths(), ports or current_ports()
    home = p.airflow_home
    shared_ports = {"api": ports.airflow, "s3": ports.s3, "smtp": ports.smtp}
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


def endpoints() -> dict[str, Any]:
    """Where to find each service; for summaries (contains no secret)."""
    return endpoints_for(paths(), current_ports())


def admin_password() -> str | None:
    """The admin password SimpleAuthManager generated, once it exists."""
    try:
        return json.loads(paths().password_file.read_text()).get(ADMIN_USER)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------- health checks


def _service_healthy(service: str, ports: Ports) -> bool:
    if service == "s3":
        return services.s3_healthy(ports.s3, load_secrets())
    if service == "smtp":
        return services.smtp_healthy(ports.smtp)
    if service == "mlflow":
        return services.mlflow_healthy(ports.mlflow)
    return airflow_healthy(airflow_health(ports.airflow))


# --------------------------------------------------------------------------- stopping


def stop() -> list[str]:
    """Stop every process of the stack (idempotent); return report lines."""
    with _locked(paths()):
        return _stop_unlocked()


def _stop_unlocked() -> list[str]:
    p, record = paths(), read_record()
    recorded = (record or {}).get("services", {})
    # After a reboot a recorded pgid may belong to someone else: signal only our groups.
    ours = {name: svc["pgid"] for name, svc in recorded.items() if procs.group_is_ours(svc["pgid"], p.state)}
    report = procs.stop_groups([(grace, {n: ours[n] for n in names if n in ours}) for grace, names in STOP_STAGES])
    report += procs.sweep(p.state)
    p.stack_file.unlink(missing_ok=True)
    return report


# --------------------------------------------------------------------------- starting


def check_ports(ports: Ports) -> None:
    """Fail with a clear message if any port is already taken."""
    if conflict := procs.port_conflict(asdict(ports), PORT_ENV):
        raise StackError(conflict)


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


def _record(p: Paths, ports: Ports, started: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
    urls = {
        "airflow": f"http://{HOST}:{ports.airflow}",
        "s3": f"http://{HOST}:{ports.s3}",
        "smtp": f"smtp://{HOST}:{ports.smtp}",
        "mlflow": f"http://{HOST}:{ports.mlflow}",
    }
    return {
        "state_dir": str(p.state),
        "started_at": datetime.now(UTC).isoformat(),
        "ports": asdict(ports),
        "services": {
            name: {"pid": proc.pid, "pgid": proc.pid, "url": urls[name], "log": str(p.log(name))}
            for name, proc in started.items()
        },
        "endpoints": endpoints_for(p, ports),
    }


def endpoints_for(p: Paths, ports: Ports) -> dict[str, Any]:
    """``endpoints()`` for explicit paths and ports."""
    return {
        "airflow_url": f"http://{HOST}:{ports.airflow}",
        "s3_endpoint": f"http://{HOST}:{ports.s3}",
        "buckets": model_buckets(),
        "smtp": f"{HOST}:{ports.smtp}",
        "mlflow_url": f"http://{HOST}:{ports.mlflow}",
        "mail_dir": str(p.mail),
        "login_user": ADMIN_USER,
        "password_file": str(p.password_file),
        "logs_dir": str(p.logs),
        "state_dir": str(p.state),
    }


def _start_services(p: Paths, ports: Ports) -> None:
    env = {**services.base_env(p.state, p.bin), **airflow_env(ports)}
    commands, started = _commands(p, ports), {}
    since = datetime.now(UTC)
    # Airflow first: it takes longest, and S3/SMTP come up while it migrates its DB.
    for name in ("airflow", "s3", "smtp", "mlflow"):
        extra = services.MLFLOW_ENV if name == "mlflow" else {}
        started[name] = procs.launch(commands[name], {**env, **extra}, p.log(name), REPO_ROOT)
        _write_record(_record(p, ports, started))

    def wait(what: str, name: str, check: Callable[[], object], timeout: float) -> None:
        procs.wait_until(check, timeout, what, log=p.log(name), proc=started[name])

    creds = load_secrets()
    wait(
        "S3 (moto)",
        "s3",
        lambda: services.s3_healthy(ports.s3, creds),
        seconds_from_env("DRIFTWATCH_S3_TIMEOUT", 60),
    )
    services.create_buckets(services.s3_client(ports.s3, creds), model_buckets())
    wait("SMTP sink", "smtp", lambda: services.smtp_healthy(ports.smtp), 30)
    wait("MLflow", "mlflow", lambda: services.mlflow_healthy(ports.mlflow), 120)
    airflow_timeout = seconds_from_env("DRIFTWATCH_AIRFLOW_TIMEOUT", 300)
    wait("Airflow", "airflow", lambda: airflow_healthy(airflow_health(ports.airflow), since), airflow_timeout)
    if p.password_file.exists():
        p.password_file.chmod(0o600)


def running_services() -> dict[str, bool]:
    """For each recorded service: does its process group still have live members?"""
    record = read_record() or {}
    return {name: bool(procs.group_members(svc["pgid"])) for name, svc in record.get("services", {}).items()}


def is_healthy() -> bool:
    """True when all three services run and pass their health checks."""
    return set(service_states().values()) == {"healthy"}


def start() -> bool:
    """Start the stack unless it already runs healthy (then return False).

    On failure, stop whatever was started and re-raise.
    """
    if not (VENV_BIN / "airflow").exists():
        raise StackError(f"{VENV_BIN / 'airflow'} not found: run this with the project's venv python")
    with _locked(paths()):
        if read_record() is not None:
            if is_healthy():
                return False
            print("found a stopped or unhealthy stack: cleaning it up first")
            _print_report(_stop_unlocked())
        _start_unlocked()
    return True


def _start_unlocked() -> None:
    p, ports = paths(), configured_ports()
    check_ports(ports)
    _make_dirs(p)
    load_secrets()
    _write_airflow_shim(p)
    try:
        _start_services(p, ports)
    except BaseException:
        print("start did not complete: stopping the services started so far", file=sys.stderr)
        _print_report(_stop_unlocked())
        raise


# --------------------------------------------------------------------------- CLI


def _print_report(lines: list[str]) -> None:
    for line in lines:
        print(f"  {line}")


def service_states() -> dict[str, str]:
    """``healthy``, ``unhealthy``, ``dead`` or ``not started`` for each service."""
    ports, running = current_ports(), running_services()
    states = {}
    for name in SERVICES:
        if name not in running:
            states[name] = "not started"
        elif not running[name]:
            states[name] = "dead"
        else:
            states[name] = "healthy" if _service_healthy(name, ports) else "unhealthy"
    return states


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
            continue
        state = states[name]
        lines.append(f"  {name:8} {state:10} {svc['url']:24} pid {svc['pid']:<7} log {svc['log']}")
    password = admin_password() or "(not generated yet)"
    lines += [
        f"  buckets  {', '.join(model_buckets())}",
        f"  mail     {p.mail}",
        f"  login    {ADMIN_USER} / {password}   (stored in {p.password_file})",
        '  shell    eval "$(python -m devstack.stack env)"',
    ]
    return lines


def _cmd_start() -> int:
    began = time.monotonic()
    if start():
        print(f"started in {time.monotonic() - began:.1f} s")
    else:
        print("already running and healthy")
    print("\n".join(status_lines()))
    return 0


def _cmd_stop() -> int:
    began = time.monotonic()
    was_running = read_record() is not None
    report = stop()
    _print_report(report)
    if was_running or report:
        print(f"stopped in {time.monotonic() - began:.1f} s")
    else:
        print("stack was not running")
    return 0


def _cmd_status() -> int:
    if read_record() is None:
        print("\n".join(status_lines()))
        return 3  # LSB convention: "program is not running"
    states = service_states()
    print("\n".join(status_lines(states)))
    return 0 if set(states.values()) == {"healthy"} else 1


def _cmd_env() -> int:
    for key, value in airflow_env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m devstack.stack``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    args = parser.parse_args(argv)
    handlers = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status, "env": _cmd_env}
    try:
        return handlers[args.command]()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
