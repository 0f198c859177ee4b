"""Embedded local stack: moto S3, the SMTP sink, MLflow and ``airflow standalone``, on 127.0.0.1 only.

usage: python -m devstack.stack start|stop|status|env

State in <repo>/.state or $DRIFTWATCH_STATE_DIR: airflow/ (AIRFLOW_HOME), mail/ (.eml), logs/,
bin/airflow (the shim), secrets.json, stack.json. Ports: DRIFTWATCH_AIRFLOW_PORT (8080),
DRIFTWATCH_S3_PORT (9555), DRIFTWATCH_SMTP_PORT (8025), DRIFTWATCH_MLFLOW_PORT (5500). Tests may set
DRIFTWATCH_DAGS_FOLDER, DRIFTWATCH_AIRFLOW_TIMEOUT (300 s) and DRIFTWATCH_S3_TIMEOUT (60 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
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
from devstack.services import ADMIN_USER, REPO_ROOT, VENV_BIN, Service, model_buckets

SERVICES = ("s3", "smtp", "mlflow", "airflow")  # status and start-wait order; stop order: services.STOP_STAGES
DEFAULT_PORTS = {"airflow": 8080, "s3": 9555, "smtp": 8025, "mlflow": 5500}
PORT_ENV = {name: f"DRIFTWATCH_{name.upper()}_PORT" for name in DEFAULT_PORTS}
SCHEDULER_RESTARTS = 5  # crashes the airflow shim restarts the scheduler after (see _write_airflow_shim)
SCHEDULER_RESTART_PAUSE = 5  # seconds between a crash and the restart
airflow_healthy = services.airflow_healthy  # as the tests call it


class Paths:
    def __init__(self, state: Path) -> None:
        self.state, self.stack_file, self.secrets_file = state, state / "stack.json", state / "secrets.json"
        self.airflow_home, self.mail, self.logs, self.bin, self.mlflow = (
            state / name for name in ("airflow", "mail", "logs", "bin", "mlflow")
        )
        self.password_file = self.airflow_home / "simple_auth_manager_passwords.json.generated"


@dataclass(frozen=True)
class Ports:
    airflow: int
    s3: int
    smtp: int
    mlflow: int

    def urls(self) -> dict[str, str]:
        return {name: f"{'smtp' if name == 'smtp' else 'http'}://{HOST}:{port}" for name, port in asdict(self).items()}


def paths() -> Paths:
    override = os.environ.get("DRIFTWATCH_STATE_DIR")
    return Paths(Path(override).resolve() if override else REPO_ROOT / ".state")


def configured_ports() -> Ports:
    return Ports(**services.ports_from_env(DEFAULT_PORTS, PORT_ENV))


def current_ports() -> Ports:
    # A record written before a service was added lacks its port: the configured one fills in.
    return Ports(**{**asdict(configured_ports()), **(read_record() or {}).get("ports", {})})


def check_ports(ports: Ports) -> None:
    procs.check_ports(asdict(ports), PORT_ENV)


def read_record() -> dict[str, Any] | None:
    return services.read_json(paths().stack_file)


@contextlib.contextmanager
def _locked(p: Paths) -> Iterator[None]:
    _make_state_dir(p)
    with open(p.state / "stack.lock", "w") as fh:  # not inherited: Popen closes fds
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _make_state_dir(p: Paths) -> None:
    services.make_private_dir(p.state)
    # Keep git out even where .gitignore does not list it.
    if not (ignore := p.state / ".gitignore").exists():
        ignore.write_text("# Written by devstack/stack.py: local stack state, never commit it.\n*\n")


def load_secrets() -> dict[str, str]:
    p = paths()
    _make_state_dir(p)
    try:
        fd = os.open(p.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        p.secrets_file.chmod(0o600)
        return json.loads(p.secrets_file.read_text())
    with os.fdopen(fd, "w") as fh:
        json.dump(created := services.new_secrets(), fh, indent=2)
    return created


def admin_password() -> str | None:
    return (services.read_json(paths().password_file) or {}).get(ADMIN_USER)


def airflow_env(ports: Ports | None = None) -> dict[str, str]:
    p, ports = paths(), ports or current_ports()
    db, shared_ports = f"sqlite:///{p.airflow_home / 'airflow.db'}", {**asdict(ports), "api": ports.airflow}
    return {
        **services.shared_airflow_env(p.airflow_home, db, shared_ports, load_secrets(), p.password_file),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Emails link to the report pages the driftwatch plugin serves on this api-server.
        "DRIFTWATCH_REPORT_BASE_URL": f"http://{HOST}:{ports.airflow}/driftwatch/report",
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{ports.mlflow}",
        # Only the MLflow server itself talks to S3 (it proxies artifacts for its clients).
        "MLFLOW_S3_ENDPOINT_URL": f"http://{HOST}:{ports.s3}",
        # Four task processes share two cores: OpenMP threads per process only oversubscribe them.
        "OMP_NUM_THREADS": "1",
    }


def s3_client() -> Any:
    """A boto3 client of the stack's S3 (a few attempts: the demo and tests seed through it)."""
    return services.s3_client(current_ports().s3, load_secrets(), retries={"max_attempts": 3})


def endpoints(p: Paths | None = None, ports: Ports | None = None) -> dict[str, Any]:
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
    """An ``airflow`` wrapper first on standalone's PATH.

    standalone runs scheduler and triggerer without ``--skip-serve-logs``: their log servers bind
    0.0.0.0:8793/8794 (serve_logs hard-codes the host); LocalExecutor reads local task logs anyway.
    It also restarts a crashed scheduler: on SQLite an api-server write race ("database is locked")
    can end it with ObjectDeletedError, standalone never restarts it, and queued runs wait forever.
    """
    real, restarts = shlex.quote(str(VENV_BIN / "airflow")), SCHEDULER_RESTARTS
    script = f"""#!/bin/sh
# Written by devstack/stack.py (see _write_airflow_shim): Airflow's log servers stay off
# (they bind 0.0.0.0), and a crashed scheduler is restarted up to {restarts} times.
case "$1" in
  triggerer) exec {real} "$@" --skip-serve-logs ;;
  scheduler)
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM INT
    for restart in $(seq {restarts}) none; do
      {real} "$@" --skip-serve-logs &
      child=$!
      wait "$child" && exit 0
      rc=$?
      [ "$restart" = none ] && break
      echo "devstack: the scheduler exited with $rc (traceback above); restart $restart of {restarts}" >&2
      sleep {SCHEDULER_RESTART_PAUSE}
    done
    echo "devstack: the scheduler keeps crashing (exit $rc); giving up, see the tracebacks above" >&2
    exit "$rc" ;;
esac
exec {real} "$@"
"""
    shim = p.bin / "airflow"
    shim.write_text(script)
    shim.chmod(0o700)


def _commands(p: Paths, ports: Ports) -> dict[str, list[str]]:
    return {name: svc.argv for name, svc in _services(p, ports).items()}


def _services(p: Paths, ports: Ports, since: datetime | None = None) -> dict[str, Service]:
    """The start's table in launch order: Airflow first, as it takes longest (the rest come up while it
    migrates its DB)."""
    mlflow_env = {
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{p.mlflow / 'mlflow.db'}",
        # The server proxies artifacts, so clients need no S3 credentials of their own.
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{model_buckets()[0]}/mlflow-artifacts",
    }
    airflow_up = functools.partial(services.airflow_up, ports.airflow, since)
    airflow_timeout = float(os.environ.get("DRIFTWATCH_AIRFLOW_TIMEOUT", 300))
    return {
        "airflow": Service([str(p.bin / "airflow"), "standalone"], REPO_ROOT, airflow_up, airflow_timeout, "Airflow"),
        **services.backing_services(asdict(ports), load_secrets(), p.mail, model_buckets(), mlflow_env, 120),
    }


def start() -> bool:
    """Start the stack unless it already runs healthy (then False); on failure stop what started."""
    if not (VENV_BIN / "airflow").exists():
        raise StackError(f"{VENV_BIN / 'airflow'} not found: run this with the project's venv python")
    p = paths()
    with _locked(p):
        if read_record() is not None:
            if set(service_states().values()) == {"healthy"}:
                return False
            print("found a stopped or unhealthy stack: cleaning it up first")
            services.print_lines(_stop_unlocked())
        ports, since = configured_ports(), datetime.now(UTC)
        check_ports(ports)
        # moto keeps S3 in memory, so the model artifacts are gone after a restart: a registry
        # that still listed them would point at missing objects. Both start empty together.
        shutil.rmtree(p.mlflow, ignore_errors=True)
        for folder in (p.airflow_home, p.mail, p.logs, p.bin, p.mlflow):
            folder.mkdir(parents=True, exist_ok=True)
        _write_airflow_shim(p)
        head = {"state_dir": str(p.state), "started_at": since.isoformat(), "ports": asdict(ports)}
        run = services.Launcher(p.logs, p.stack_file, {**head, "endpoints": endpoints(p, ports)})
        try:
            run.launch(_services(p, ports, since), {**services.base_env(p.state, p.bin), **airflow_env(ports)})
            run.wait(*SERVICES)
        except BaseException:
            print("start did not complete: stopping the services started so far", file=sys.stderr)
            services.print_lines(_stop_unlocked())
            raise
        if p.password_file.exists():
            p.password_file.chmod(0o600)
    return True


def stop() -> list[str]:
    with _locked(paths()):
        return _stop_unlocked()


def _stop_unlocked() -> list[str]:
    p = paths()
    report = services.stop_recorded(p.state, (read_record() or {}).get("services", {}))
    p.stack_file.unlink(missing_ok=True)
    return report


def service_states() -> dict[str, str]:
    recorded, ports = (read_record() or {}).get("services", {}), current_ports()
    # The start's checks, but S3's without creating buckets: a status changes nothing.
    healthy = {name: svc.ready for name, svc in _services(paths(), ports).items()}
    healthy["s3"] = functools.partial(services.s3_ready, ports.s3, load_secrets(), [])
    states = {}
    for name in SERVICES:
        if name not in recorded:
            states[name] = "not started"
        elif not procs.group_members(recorded[name]["pgid"]):
            states[name] = "dead"
        else:
            states[name] = "healthy" if healthy[name]() else "unhealthy"
    return states


def status_lines(states: dict[str, str] | None = None) -> list[str]:
    p, record = paths(), read_record()
    if record is None:
        return [f"stack: stopped (state: {p.state})"]
    states, urls = states or service_states(), current_ports().urls()
    lines = [f"stack: state {p.state}, started {record.get('started_at', '?')}"]
    for name in SERVICES:
        if (svc := record["services"].get(name)) is None:
            lines.append(f"  {name:8} not started")
        else:
            lines.append(f"  {name:8} {states[name]:10} {urls[name]:24} pid {svc['pid']:<7} log {svc['log']}")
    return [
        *lines,
        f"  buckets  {', '.join(model_buckets())}",
        f"  mail     {p.mail}",
        f"  login    {ADMIN_USER} / {admin_password() or '(not generated yet)'}   (stored in {p.password_file})",
        '  shell    eval "$(python -m devstack.stack env)"',
    ]


def main(argv: list[str] | None = None) -> int:
    parser = services.parser("devstack.stack", __doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    command, began = parser.parse_args(argv).command, time.monotonic()
    try:
        if command == "start":
            print(f"started in {time.monotonic() - began:.1f} s" if start() else "already running and healthy")
            print("\n".join(status_lines()))
        elif command == "stop":
            was_running = read_record() is not None
            services.print_lines(report := stop())
            print(f"stopped in {time.monotonic() - began:.1f} s" if was_running or report else "stack was not running")
        elif command == "status":
            running = read_record() is not None
            print("\n".join(status_lines(states := service_states() if running else None)))
            return 3 if not running else 0 if set(states.values()) == {"healthy"} else 1  # 3: LSB "not running"
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
