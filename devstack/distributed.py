"""A real distributed Airflow on one machine: CeleryExecutor, PostgreSQL, Redis, two workers.

usage: python -m devstack.distributed up | stop STATE_DIR   (tests/distributed drive it too)

On 127.0.0.1, each in its own process group: the machine's PostgreSQL (databases driftwatch_dist and
driftwatch_dist_mlflow, dropped at stop; DRIFTWATCH_DIST_PG_URL=postgresql://USER:PW@HOST:PORT) and
Redis (DRIFTWATCH_DIST_REDIS_URL, default redis://127.0.0.1:6379/5, flushed), moto S3, the SMTP sink,
MLflow, and Airflow (db migrate, scheduler, dag-processor, triggerer, api-server, workers worker-a and
worker-b). Ports: DRIFTWATCH_DIST_{S3,SMTP,MLFLOW,API}_PORT (9655, 8125, 5055, 8181). Also
DRIFTWATCH_DIST_START_TIMEOUT (s) and DRIFTWATCH_DIST_WORKER_CONCURRENCY (1). The workers share no
local disk (own HOME, TMPDIR, AIRFLOW_HOME); task logs go through S3 (remote logging), and each
worker records its name as the tasks' hostname. State: a temporary folder (mode 0700). Linux only.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack import procs, services
from devstack.procs import HOST
from devstack.services import ADMIN_USER, REPO_ROOT, VENV_BIN, Service

DB_NAME = "driftwatch_dist"
MLFLOW_DB_NAME = "driftwatch_dist_mlflow"
WORKERS = ("worker-a", "worker-b")
LOG_BUCKET = "driftwatch-dist-logs"
MLFLOW_BUCKET = "driftwatch-dist-mlflow"
DEFAULT_PORTS = {"api": 8181, "s3": 9655, "smtp": 8125, "mlflow": 5055}
PORT_ENV = {name: f"DRIFTWATCH_DIST_{name.upper()}_PORT" for name in DEFAULT_PORTS}
PG_URL_ENV = "DRIFTWATCH_DIST_PG_URL"
REDIS_URL_ENV = "DRIFTWATCH_DIST_REDIS_URL"
DEFAULT_PG_USERS = ("postgres", "root")
DEFAULT_REDIS_URL = f"redis://{HOST}:6379/5"
HOSTNAME_VAR = "DRIFTWATCH_WORKER_HOSTNAME"
S3_CONFIG = {"timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}}
# Airflow's components besides the api-server and the workers: their arguments after `airflow`.
CONTROL_PLANE = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
RECORD_NAME = "cluster.json"


class DistributedError(procs.StackError):
    """A prerequisite is missing, or a component did not start."""


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the workers: their own name."""
    return os.environ.get(HOSTNAME_VAR) or socket.getfqdn()


def _require(module: str, missing: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DistributedError(f"{missing} is not installed in the project's venv") from None


def _pg_url(default: str) -> Any:
    """$DRIFTWATCH_DIST_PG_URL, else ``default``: a server's URL for psycopg2, without a database."""
    from sqlalchemy.engine import make_url

    return make_url(os.environ.get(PG_URL_ENV) or default).set(drivername="postgresql+psycopg2", database=None)


def _pg_connect(url: Any) -> Any:
    import psycopg2

    server = {"host": url.host or HOST, "port": url.port or 5432, "user": url.username}
    conn = psycopg2.connect(**server, password=url.password or None, dbname="postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".")


def check_postgres() -> Any:
    """The URL of a reachable server where we may create databases."""
    psycopg2 = _require("psycopg2", "the PostgreSQL driver (pip install psycopg2-binary)")
    errors = []
    for url in dict.fromkeys(_pg_url(f"postgresql://{user}@{HOST}:5432") for user in DEFAULT_PG_USERS):
        try:
            with contextlib.closing(_pg_connect(url)) as conn, conn.cursor() as cur:
                cur.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
                row = cur.fetchone()
        except psycopg2.Error as exc:
            errors.append(f"{url.render_as_string(hide_password=True)}: {_one_line(exc)}")
            continue
        if row and row[0]:
            return url
        errors.append(f"{url.username}: may not create databases")
    raise DistributedError(
        f"PostgreSQL is required but not usable: {'; '.join(errors)}. Start a local PostgreSQL on {HOST}:5432 "
        f"(trust auth for user postgres or root), or set {PG_URL_ENV}=postgresql://USER:PASSWORD@HOST:PORT"
    )


def check_redis() -> str:
    redis = _require("redis", "the redis client (pip install redis)")
    url = os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL)
    try:
        _redis(url).ping()
    except redis.RedisError as exc:
        raise DistributedError(
            f"Redis is required but not reachable at {url}: {_one_line(exc)}. Start a local Redis on {HOST}:6379, "
            f"or set {REDIS_URL_ENV}=redis://HOST:PORT/DB (a database number nothing else uses: it is flushed)"
        ) from None
    return url


def _drop_databases(pg: Any, create: bool = False) -> None:
    with contextlib.closing(_pg_connect(pg)) as conn, conn.cursor() as cur:
        for database in (DB_NAME, MLFLOW_DB_NAME):
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            if create:
                cur.execute(f'CREATE DATABASE "{database}"')


class Cluster(services.Launcher):
    """The services of one distributed stack in ``state``: :meth:`start` them, :meth:`stop` them."""

    def __init__(
        self, state: Path, pg: Any, redis_url: str, ports: dict[str, int], workers: tuple[str, ...], extra_env: dict
    ) -> None:
        self.state, self.pg, self.redis_url, self.ports = state, pg, redis_url, ports
        self.workers, self.extra_env = workers, extra_env
        self.creds, self.admin_password = services.new_secrets(), secrets.token_urlsafe(18)
        self.mail_dir, self.airflow_home, self.mlflow_home = (state / n for n in ("mail", "airflow", "mlflow-home"))
        self.password_file = state / "auth" / "passwords.json"
        self.api_url, self.s3_endpoint, self.mlflow_url = (f"http://{HOST}:{ports[n]}" for n in ("api", "s3", "mlflow"))
        head = {"state_dir": str(state), "pg": pg.render_as_string(hide_password=True)}
        head |= {"databases": [DB_NAME, MLFLOW_DB_NAME], "redis_url": redis_url, "ports": ports}
        super().__init__(state / "logs", state / RECORD_NAME, head)

    def worker_dir(self, name: str) -> Path:
        return self.state / "workers" / name

    def worker_home(self, name: str) -> Path:
        return self.worker_dir(name) / "airflow"

    def db_url(self, database: str) -> str:
        return self.pg.set(database=database).render_as_string(hide_password=False)

    def airflow_env(self) -> dict[str, str]:
        db = self.db_url(DB_NAME)
        return {
            **services.shared_airflow_env(self.airflow_home, db, self.ports, self.creds, self.password_file),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
            # Explicit +psycopg2: SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3.
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": os.environ.get("DRIFTWATCH_DIST_WORKER_CONCURRENCY", "1"),
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__API__WORKERS": "1",
            # Task logs go to S3 as they would between machines; the api-server reads them there.
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{LOG_BUCKET}/airflow",
            "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
            "GX_ANALYTICS_ENABLED": "false",
        }

    def worker_env(self, name: str) -> dict[str, str]:
        own = self.worker_dir(name)
        return {
            "AIRFLOW_HOME": str(self.worker_home(name)),
            "HOME": str(own),
            **dict.fromkeys(("TMPDIR", "TMP", "TEMP"), str(own / "tmp")),
            # A literal path: under `python -m devstack.distributed` this module is __main__.
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.distributed.worker_hostname",
            HOSTNAME_VAR: name,
            # devstack (for worker_hostname) besides the domain package.
            "PYTHONPATH": os.pathsep.join([services.PYTHONPATH, str(REPO_ROOT)]),
        }

    def start(self) -> None:
        began, airflow, home = time.monotonic(), str(VENV_BIN / "airflow"), self.airflow_home
        own = [folder for name in self.workers for folder in (self.worker_dir(name) / "tmp", self.worker_home(name))]
        for folder in (self.logs, self.mail_dir, home, self.password_file.parent, self.mlflow_home, *own):
            folder.mkdir(parents=True, exist_ok=True)
        # SimpleAuthManager only generates passwords for users missing from this file.
        services.write_private(self.password_file, json.dumps({ADMIN_USER: self.admin_password}) + "\n")
        _drop_databases(self.pg, create=True)
        _redis(self.redis_url).flushdb()
        # Without the caller's MLFLOW_* (pytest's SQLite tracking URI would override mlflow_default).
        env = {k: v for k, v in services.base_env(self.state).items() if not k.startswith("MLFLOW_")}
        env |= {**self.airflow_env(), **self.extra_env}
        timeout = float(os.environ.get("DRIFTWATCH_DIST_START_TIMEOUT", 420))
        mlflow = {
            # From the environment rather than argv: a password in the URL stays out of `ps`.
            "MLFLOW_BACKEND_STORE_URI": self.db_url(MLFLOW_DB_NAME),
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{MLFLOW_BUCKET}/artifacts",
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "HOME": str(self.mlflow_home),
        }
        buckets = [*services.model_buckets(), LOG_BUCKET, MLFLOW_BUCKET]
        table = services.backing_services(self.ports, self.creds, self.mail_dir, buckets, mlflow, timeout, S3_CONFIG)
        migrated = lambda: self.procs["db-migrate"].poll() == 0  # noqa: E731
        table["db-migrate"] = Service([airflow, "db", "migrate"], home, migrated, timeout, "airflow db migrate")
        self.launch(table, env)
        self.wait("s3", "db-migrate")

        api_ready = functools.partial(services.airflow_up, self.ports["api"], datetime.now(UTC))
        table = {name: Service([airflow, *argv], home) for name, argv in CONTROL_PLANE.items()}
        table["api-server"] = Service([airflow, "api-server"], home, api_ready, timeout)
        for name in self.workers:
            argv = [airflow, "celery", "worker", "--celery-hostname", name, "--skip-serve-logs"]
            argv += ["--without-mingle", "--without-gossip"]
            ready = lambda n=name: f"celery@{n}" in self.celery_nodes()  # noqa: E731
            table[name] = Service(argv, self.worker_dir(name), ready, timeout, env=self.worker_env(name))
        self.launch(table, env)
        self.wait("smtp", "api-server")
        self.check_alive(*table)
        self.wait(*self.workers, "mlflow")
        self.timings["start total"] = round(time.monotonic() - began, 1)

    def s3_client(self) -> Any:
        return services.s3_client(self.ports["s3"], self.creds, **S3_CONFIG)

    def celery_nodes(self) -> set[str]:
        from celery import Celery

        app = Celery(broker=self.redis_url)
        try:
            replies = app.control.ping(timeout=2.0) or []
        except Exception:  # broker hiccup: "not yet"
            return set()
        finally:
            app.close()
        return {node for reply in replies for node in reply}

    def service_pid(self, name: str) -> int:
        return self.procs[name].pid

    def log_tails(self, lines: int = 25) -> str:
        return "\n".join(f"--- {self.log(name)}\n{procs.log_tail(self.log(name), lines)}" for name in self.procs)

    def stop(self) -> list[str]:
        return stop_state(self.state, self.pg, self.redis_url)


def stop_state(state: Path, pg: Any = None, redis_url: str | None = None) -> list[str]:
    """Stop the cluster recorded in ``<state>/cluster.json`` and drop its databases."""
    record = services.read_json(state / RECORD_NAME) or {}
    report = services.stop_recorded(state, record.get("services", {}))
    # The record hides the password; a server that needs one is named in DRIFTWATCH_DIST_PG_URL.
    if pg := pg or (record.get("pg") and _pg_url(record["pg"])):
        try:
            _drop_databases(pg)
        except Exception as exc:
            report.append(f"could not drop {DB_NAME} on PostgreSQL: {exc}")
    if redis_url := redis_url or record.get("redis_url"):
        with contextlib.suppress(Exception):
            _redis(redis_url).flushdb()
    return report


def start(state: Path | None = None, workers: int = len(WORKERS), extra_env: dict[str, str] | None = None) -> Cluster:
    """Check the prerequisites, start everything (``extra_env`` added last); on failure stop and raise."""
    pg, redis_url = check_postgres(), check_redis()
    ports = services.ports_from_env(DEFAULT_PORTS, PORT_ENV, DistributedError)
    procs.check_ports(ports, PORT_ENV, DistributedError)
    if not (VENV_BIN / "airflow").exists():
        raise DistributedError(f"{VENV_BIN / 'airflow'} not found: run this with the project's venv python")
    _require("airflow.providers.celery", "apache-airflow-providers-celery (CeleryExecutor needs it)")
    if not 1 <= workers <= 26:
        raise DistributedError(f"between 1 and 26 workers, not {workers}")
    names = tuple(f"worker-{chr(ord('a') + i)}" for i in range(workers))
    state = state or Path(tempfile.mkdtemp(prefix="driftwatch-dist-"))
    services.make_private_dir(state)
    cluster = Cluster(state, pg, redis_url, ports, names, extra_env or {})
    try:
        cluster.start()
    except BaseException:
        print(f"distributed start failed: stopping what started (logs kept in {state})", file=sys.stderr)
        services.print_lines(cluster.stop(), file=sys.stderr)
        raise
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = services.parser("devstack.distributed", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start in the foreground; Ctrl-C stops and cleans up")
    sub.add_parser("stop", help="clean up after a run that could not (its state folder)").add_argument("state_dir")
    args = parser.parse_args(argv)
    if args.command == "stop":
        services.print_lines(stop_state(Path(args.state_dir).resolve()))
        print("stopped")
        return 0
    stop_requested, began = [], time.monotonic()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.append(signum))
    try:
        cluster = start()
    except procs.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"distributed stack up in {time.monotonic() - began:.0f} s; state {cluster.state}")
        print(f"  airflow  {cluster.api_url}  (user {ADMIN_USER}, password {cluster.admin_password})")
        print(f"  s3       {cluster.s3_endpoint}    mail {cluster.mail_dir}")
        print(f"  mlflow   {cluster.mlflow_url}")
        print("  workers  " + ", ".join(sorted(cluster.celery_nodes())))
        print("Ctrl-C stops everything and drops the databases.")
        with contextlib.suppress(KeyboardInterrupt):
            procs.poll_until(lambda: stop_requested, float("inf"), 1.0)
    finally:
        services.print_lines(cluster.stop(), "  stop: ")
        print(f"distributed stack logs kept in {cluster.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
