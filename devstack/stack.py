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
Linux only: stopping scans /proc for leftovers.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "config" / "models"
VENV_BIN = Path(sys.prefix) / "bin"
HOST = "127.0.0.1"
REGION = "us-east-1"
ADMIN_USER = "admin"
MAIL_FROM = "driftwatch@localhost"
SERVICES = ("s3", "smtp", "mlflow", "airflow")  # in status order
DEFAULT_PORTS = {"airflow": 8080, "s3": 9555, "smtp": 8025, "mlflow": 5500}
PORT_ENV = {name: f"DRIFTWATCH_{name.upper()}_PORT" for name in DEFAULT_PORTS}
# Every process the stack starts carries this variable (value: the state dir). Descendants
# inherit it, so `stop` can find them even after they left their process group.
MARKER_VAR = "DRIFTWATCH_STACK"
AIRFLOW_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
STOP_GRACE_SECONDS = 15.0
# Airflow legitimately needs longer: its scheduler waits for the LocalExecutor workers (one still
# supervising a task that just ended: 3.5 s), its triggerer gives the trigger runner up to 10 s
# (TriggererJobRunner: kill(escalation_delay=10)), then the four 150-250 MB components tear down
# their interpreters at once (full garbage collections): 5-12 s in all on a loaded 2-core machine.
AIRFLOW_STOP_GRACE_SECONDS = 30.0
# Stopped one stage after the other, dependents first: a task still finishing while Airflow
# stops can reach S3, MLflow and SMTP, and MLflow's artifacts live in S3.
STOP_STAGES = (
    (AIRFLOW_STOP_GRACE_SECONDS, ("airflow",)),
    (STOP_GRACE_SECONDS, ("mlflow",)),
    (STOP_GRACE_SECONDS, ("smtp", "s3")),
)
# MLflow's job execution (GenAI jobs: prompt optimisation, online scorers) starts a job runner
# and seven huey consumers, each importing all of MLflow (~230 MB), some 20-30 s after the
# server; the pipeline uses none of it. On SIGTERM the eight tear down their interpreters at
# once, which took 15 s on 2 cores: the flaky "process group N ignored SIGTERM" of the stop.
MLFLOW_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
SCHEDULER_RESTARTS = 5  # crashes the airflow shim restarts the scheduler after (see _write_airflow_shim)
SCHEDULER_RESTART_PAUSE = 5  # seconds between a crash and the restart


class StackError(RuntimeError):
    """The stack cannot be started, or a service did not become healthy."""


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


def _port_from_env(service: str) -> int:
    raw = os.environ.get(PORT_ENV[service], str(DEFAULT_PORTS[service]))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{PORT_ENV[service]}={raw!r} is not a TCP port")
    return int(raw)


def configured_ports() -> Ports:
    """Ports requested by the environment (or the defaults)."""
    ports = Ports(**{name: _port_from_env(name) for name in DEFAULT_PORTS})
    if len(set(asdict(ports).values())) != len(DEFAULT_PORTS):
        raise StackError(f"the service ports must differ: {asdict(ports)}")
    return ports


def current_ports() -> Ports:
    """Ports of the running stack if there is one, else the configured ones."""
    record = read_record()
    if record and "ports" in record:
        # A record written before a service was added lacks its port: use the configured one.
        return Ports(**{**asdict(configured_ports()), **record["ports"]})
    return configured_ports()


# --------------------------------------------------------------------------- small file helpers


def _write_private(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path`` with mode 0600."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_record() -> dict[str, Any] | None:
    """The ``stack.json`` of the running (or crashed) stack, if any."""
    try:
        return json.loads(paths().stack_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_record(record: dict[str, Any]) -> None:
    _write_private(paths().stack_file, json.dumps(record, indent=2) + "\n")


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


def _random_token(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _new_secrets() -> dict[str, str]:
    """Fresh per-install secrets; moto accepts any AWS key pair, so these only look real."""
    return {
        "aws_access_key_id": "AKIA" + _random_token(string.ascii_uppercase + string.digits, 16),
        "aws_secret_access_key": _random_token(string.ascii_letters + string.digits + "+/", 40),
        # Same format as cryptography's Fernet.generate_key(), without importing it here.
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "jwt_secret": secrets.token_urlsafe(48),
        "api_secret_key": secrets.token_urlsafe(48),
    }


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
        created = _new_secrets()
        json.dump(created, fh, indent=2)
    return created


# --------------------------------------------------------------------------- configuration


def model_buckets(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Distinct ``storage.bucket`` values of ``config/models/*.yaml``, in file order."""
    buckets: list[str] = []
    for path in sorted(config_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        bucket = (data.get("storage") or {}).get("bucket")
        if bucket and bucket not in buckets:
            buckets.append(bucket)
    return buckets


def _aws_conn(ports: Ports, creds: dict[str, str]) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": creds["aws_access_key_id"],
            "password": creds["aws_secret_access_key"],
            "extra": {"endpoint_url": f"http://{HOST}:{ports.s3}", "region_name": REGION},
        }
    )


def _smtp_conn(ports: Ports) -> str:
    # Field names from airflow.providers.smtp.hooks.smtp (provider 3.2.0): no login means
    # no AUTH; disable_tls/disable_ssl because the sink speaks plain SMTP.
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": HOST,
            "port": ports.smtp,
            "extra": {
                "from_email": MAIL_FROM,
                "disable_tls": True,
                "disable_ssl": True,
                "timeout": 10,
                "retry_limit": 1,
            },
        }
    )


def airflow_env(ports: Ports | None = None) -> dict[str, str]:
    """Environment for Airflow components, the ``airflow`` CLI and plain boto3 callers."""
    p, ports = paths(), ports or current_ports()
    creds = load_secrets()
    home = p.airflow_home
    api_url = f"http://{HOST}:{ports.airflow}"
    return {
        "AIRFLOW_HOME": str(home),
        # Explicit, so an AIRFLOW__DATABASE__* inherited from the caller's shell or an old
        # airflow.cfg can never point the stack at another metadata database.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": os.environ.get("DRIFTWATCH_DAGS_FOLDER", str(REPO_ROOT / "dags")),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": creds["fernet_key"],
        # The first parse on a cold 2-core machine happens while four components import
        # Airflow at once; the 30 s default import timeout is too tight for that.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(ports.airflow),
        # Task workers reach the Execution API here; the default is localhost:8080, which
        # is wrong on any other port and may resolve to ::1 where nothing listens.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        # Without fixed secrets every component generates its own, and the JWTs the
        # scheduler hands to task workers are then rejected by the API server.
        "AIRFLOW__API_AUTH__JWT_SECRET": creds["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": creds["api_secret_key"],
        # Exactly admin:admin (user admin, role admin): standalone only generates and
        # prints a password for this value.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(p.password_file),
        # New DAG files appear within ~5 s, edited ones are re-parsed within ~10 s.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        # Its health server would bind 0.0.0.0:8974; the stack binds loopback only.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "PYTHONPATH": f"{REPO_ROOT / 'include'}{os.pathsep}{REPO_ROOT / 'plugins'}",
        "DRIFTWATCH_CONFIG_DIR": str(CONFIG_DIR),
        # Emails link to the report pages the driftwatch plugin serves on this api-server.
        "DRIFTWATCH_REPORT_BASE_URL": f"{api_url}/driftwatch/report",
        "AIRFLOW_CONN_AWS_DEFAULT": _aws_conn(ports, creds),
        "AIRFLOW_CONN_SMTP_DEFAULT": _smtp_conn(ports),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "http", "host": HOST, "port": ports.mlflow, "schema": "http"}
        ),
        "MLFLOW_TRACKING_URI": f"http://{HOST}:{ports.mlflow}",
        # Only the MLflow server itself talks to S3 (it proxies artifacts for its clients).
        "MLFLOW_S3_ENDPOINT_URL": f"http://{HOST}:{ports.s3}",
        "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
        "AWS_ENDPOINT_URL_S3": f"http://{HOST}:{ports.s3}",
        "AWS_DEFAULT_REGION": REGION,
        # botocore must never probe the EC2 metadata address (169.254.169.254): the stack
        # talks to loopback only.
        "AWS_EC2_METADATA_DISABLED": "true",
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


def s3_healthy(port: int, timeout: float = 3.0) -> bool:
    """True when moto answers a list_buckets call."""
    try:
        _s3_client(port, timeout).list_buckets()
    except Exception:  # any botocore/connection error means "not yet"
        return False
    return True


def _s3_client(port: int, timeout: float = 10.0) -> Any:
    import boto3  # slow import; only needed while starting or checking
    from botocore.config import Config

    creds = load_secrets()
    return boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{port}",
        region_name=REGION,
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )


def create_buckets(port: int, buckets: list[str]) -> None:
    """Create each bucket unless it exists (moto keeps them in memory only)."""
    client = _s3_client(port)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for bucket in buckets:
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)


def mlflow_healthy(port: int, timeout: float = 3.0) -> bool:
    """True when the MLflow server answers its /health endpoint."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def smtp_healthy(port: int, timeout: float = 3.0) -> bool:
    """True when the sink greets with a 220 banner."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            banner = sock.recv(512)
            sock.sendall(b"QUIT\r\n")
    except OSError:
        return False
    return banner.startswith(b"220")


def airflow_health(port: int, timeout: float = 5.0) -> dict[str, Any] | None:
    """The JSON of ``/api/v2/monitor/health`` (no auth needed), or None if unreachable."""
    url = f"http://{HOST}:{port}/api/v2/monitor/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _heartbeat(component: dict[str, Any]) -> datetime | None:
    beat = next((v for k, v in component.items() if k.endswith("heartbeat") and v), None)
    return datetime.fromisoformat(beat) if beat else None


def airflow_healthy(health: dict[str, Any] | None, since: datetime | None = None) -> bool:
    """All four components healthy and, with ``since``, heartbeating after it.

    ``since`` matters on a restart: a job killed without a clean exit still counts as
    healthy for 30 s (its last heartbeat is recent), so the old run could pass for the new.
    """
    if not health:
        return False
    for name in AIRFLOW_COMPONENTS:
        component = health.get(name) or {}
        if component.get("status") != "healthy":
            return False
        beat = _heartbeat(component)
        if since and name != "metadatabase" and (beat is None or beat < since):
            return False
    return True


def _service_healthy(service: str, ports: Ports) -> bool:
    if service == "s3":
        return s3_healthy(ports.s3)
    if service == "smtp":
        return smtp_healthy(ports.smtp)
    if service == "mlflow":
        return mlflow_healthy(ports.mlflow)
    return airflow_healthy(airflow_health(ports.airflow))


# --------------------------------------------------------------------------- /proc helpers


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # the command name may contain spaces or ')'
    return fields[0], int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _live(pid: int) -> bool:
    """Running and not a zombie (zombies are dead, merely unreaped)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    members = []
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat and stat[2] == pgid and stat[0] not in ("Z", "X"):
            members.append(pid)
    return members


def _ancestors() -> set[int]:
    """This process and its ancestors: never signal the shell that ran us."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        stat = _proc_stat(pid)
        pid = stat[1] if stat else 0
    return pids


def _read_proc(pid: int, name: str) -> list[bytes]:
    try:
        return [x for x in Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0") if x]
    except OSError:
        return []


@dataclass(frozen=True)
class Leftover:
    """A process that references the state folder after the stack was stopped."""

    pid: int
    cmdline: str
    ours: bool  # started by the stack (marker) or an Airflow process of this AIRFLOW_HOME


def _is_airflow(argv: list[bytes]) -> bool:
    """An ``airflow ...`` command, also after setproctitle renamed it ("airflow scheduler -- ...")."""
    if argv and argv[0].startswith(b"airflow"):
        return True
    return any(Path(arg.decode(errors="replace")).name == "airflow" for arg in argv[:3])


def _classify(pid: int, state: bytes, marker: bytes) -> Leftover | None:
    environ, argv = _read_proc(pid, "environ"), _read_proc(pid, "cmdline")
    if not any(state in x for x in environ + argv) or not _live(pid):
        return None
    # A shell, editor or `tail -f` that merely mentions the folder is the user's: report it.
    ours = marker in environ or _is_airflow(argv)
    return Leftover(pid, b" ".join(argv).decode(errors="replace")[:160], ours)


def find_leftovers(state: Path) -> list[Leftover]:
    """Processes whose environment or command line references ``state``."""
    if not Path("/proc").is_dir():
        return []
    needle, marker = str(state).encode(), f"{MARKER_VAR}={state}".encode()
    skip = _ancestors()
    found = []
    for pid in _all_pids():
        if pid not in skip and (item := _classify(pid, needle, marker)):
            found.append(item)
    return found


# --------------------------------------------------------------------------- stopping


_children: dict[int, subprocess.Popen[bytes]] = {}  # started by this process: reap them


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(pgids: list[int], timeout: float) -> list[int]:
    """Wait until the groups have no live member; return the groups still alive."""
    deadline = time.monotonic() + timeout
    while True:
        _reap()
        alive = [g for g in pgids if group_members(g)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def _group_is_ours(pgid: int, marker: bytes) -> bool:
    return any(marker in _read_proc(pid, "environ") for pid in group_members(pgid))


def _stop_groups(stages: list[tuple[float, dict[str, int]]]) -> list[str]:
    """Stop the process groups stage by stage: SIGTERM a stage's groups (named services), wait
    until each has no live member, SIGKILL one still alive after the stage's grace (seconds).
    Return a report line per service: how long it took, or that it had to be killed."""
    report = []
    for grace, groups in stages:
        began = time.monotonic()
        for pgid in groups.values():
            _signal_group(pgid, signal.SIGTERM)
        pending = dict(groups)
        while pending:
            _reap()
            elapsed = time.monotonic() - began
            for name, pgid in list(pending.items()):
                if not group_members(pgid):
                    report.append(f"{name} stopped in {elapsed:.1f} s (process group {pgid})")
                elif elapsed >= grace:
                    _signal_group(pgid, signal.SIGKILL)
                    _wait_gone([pgid], 5.0)
                    report.append(f"{name} (process group {pgid}) ignored SIGTERM for {grace:.0f} s: killed")
                else:
                    continue
                del pending[name]
            time.sleep(0.1)
    return report


def _kill_pids(pids: list[int]) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while any(_live(p) for p in pids) and time.monotonic() < deadline:
            _reap()
            time.sleep(0.1)
        pids = [p for p in pids if _live(p)]
        if not pids:
            return


def _sweep(state: Path) -> list[str]:
    """Kill stack processes that escaped their group; report other references."""
    leftovers = find_leftovers(state)
    ours = [item for item in leftovers if item.ours]
    _kill_pids([item.pid for item in ours])
    lines = [f"killed stray pid {i.pid} (left its process group): {i.cmdline}" for i in ours]
    lines += [f"left alone pid {i.pid} (not started by the stack): {i.cmdline}" for i in leftovers if not i.ours]
    return lines


def stop() -> list[str]:
    """Stop every process of the stack (idempotent); return report lines."""
    with _locked(paths()):
        return _stop_unlocked()


def _stop_unlocked() -> list[str]:
    p, record = paths(), read_record()
    services = (record or {}).get("services", {})
    marker = f"{MARKER_VAR}={p.state}".encode()
    # After a reboot a recorded pgid may belong to someone else: signal only our groups.
    ours = {name: svc["pgid"] for name, svc in services.items() if _group_is_ours(svc["pgid"], marker)}
    stages = [(grace, {n: ours[n] for n in names if n in ours}) for grace, names in STOP_STAGES]
    report = _stop_groups(stages)
    report += _sweep(p.state)
    p.stack_file.unlink(missing_ok=True)
    return report


# --------------------------------------------------------------------------- starting


def _port_owner(port: int) -> str:
    """Best-effort description of who listens on ``port``."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:100]})"
    except Exception:  # psutil missing or access denied: the port number alone still helps
        pass
    return "another process"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def check_ports(ports: Ports) -> None:
    """Fail with a clear message if any port is already taken."""
    for service, port in asdict(ports).items():
        if not _port_free(port):
            raise StackError(
                f"port {port} for {service} on {HOST} is already in use by {_port_owner(port)}; "
                f"stop it or choose another port with {PORT_ENV[service]}=..."
            )


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


def _base_env(p: Paths) -> dict[str, str]:
    """Environment shared by all services: the caller's minus its Airflow settings.

    Inherited AIRFLOW_* variables are dropped: a pytest run (UNIT_TEST_MODE, a temp
    AIRFLOW_HOME) or another project's shell must not reconfigure the stack.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PATH"] = os.pathsep.join([str(p.bin), str(VENV_BIN), env.get("PATH", "")])
    env[MARKER_VAR] = str(p.state)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach .state/logs as they happen
    return env


def _commands(p: Paths, ports: Ports) -> dict[str, list[str]]:
    py = str(VENV_BIN / "python")
    return {
        "s3": [py, "-m", "moto.server", "-H", HOST, "-p", str(ports.s3)],
        "smtp": [
            py,
            "-m",
            "devstack.smtp_sink",
            "--folder",
            str(p.mail),
            "--host",
            HOST,
            "--port",
            str(ports.smtp),
        ],
        "airflow": [str(p.bin / "airflow"), "standalone"],
        "mlflow": [
            py,
            "-m",
            "mlflow",
            "server",
            "--host",
            HOST,
            "--port",
            str(ports.mlflow),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{p.mlflow / 'mlflow.db'}",
            # The server proxies artifacts, so clients need no S3 credentials of their own.
            "--artifacts-destination",
            f"s3://{model_buckets()[0]}/mlflow-artifacts",
        ],
    }


def _launch(name: str, argv: list[str], env: dict[str, str], p: Paths) -> subprocess.Popen[bytes]:
    """Start one service in its own session, logging to ``.state/logs/<name>.log``."""
    with open(p.log(name), "ab") as log:
        log.write(f"\n===== {datetime.now(UTC).isoformat()} start: {shlex.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop kills the whole tree
            umask=0o077,  # the DB, logs and password file stay private to this user
        )
    _children[proc.pid] = proc
    return proc


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in tail)


def wait_healthy(
    name: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, log: Path
) -> None:
    """Poll ``check`` until it passes; raise a StackError pointing at ``log`` otherwise."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}; see {log}\n{_log_tail(log)}")
        if time.monotonic() >= deadline:
            raise StackError(f"{name} not healthy after {timeout:.0f} s; see {log}\n{_log_tail(log)}")
        time.sleep(0.5)


def _record(p: Paths, ports: Ports, procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, Any]:
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
            for name, proc in procs.items()
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


def _timeout(var: str, default: float) -> float:
    return float(os.environ.get(var, default))


def _start_services(p: Paths, ports: Ports) -> None:
    env = {**_base_env(p), **airflow_env(ports)}
    commands, procs = _commands(p, ports), {}
    since = datetime.now(UTC)
    # Airflow first: it takes longest, and S3/SMTP come up while it migrates its DB.
    for name in ("airflow", "s3", "smtp", "mlflow"):
        procs[name] = _launch(name, commands[name], {**env, **MLFLOW_ENV} if name == "mlflow" else env, p)
        _write_record(_record(p, ports, procs))
    wait_healthy(
        "S3 (moto)",
        lambda: s3_healthy(ports.s3),
        procs["s3"],
        _timeout("DRIFTWATCH_S3_TIMEOUT", 60),
        p.log("s3"),
    )
    create_buckets(ports.s3, model_buckets())
    wait_healthy("SMTP sink", lambda: smtp_healthy(ports.smtp), procs["smtp"], 30, p.log("smtp"))
    wait_healthy("MLflow", lambda: mlflow_healthy(ports.mlflow), procs["mlflow"], 120, p.log("mlflow"))
    wait_healthy(
        "Airflow",
        lambda: airflow_healthy(airflow_health(ports.airflow), since),
        procs["airflow"],
        _timeout("DRIFTWATCH_AIRFLOW_TIMEOUT", 300),
        p.log("airflow"),
    )
    if p.password_file.exists():
        p.password_file.chmod(0o600)


def running_services() -> dict[str, bool]:
    """For each recorded service: does its process group still have live members?"""
    record = read_record() or {}
    return {name: bool(group_members(svc["pgid"])) for name, svc in record.get("services", {}).items()}


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
