"""Helpers of the reliability tests: tiny batches, S3 snapshots, the monitor's steps, a stoppable proxy."""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import threading
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from driftwatch import alerts, demo_data, layout, pipeline, storage
from driftwatch.artifacts import MANIFEST, WRITING
from driftwatch.config import ModelConfig
from driftwatch_airflow.hooks import send_email

BUCKET = "driftwatch-demo"
SCRIPT = "</script><script>alert(1)</script>"


def clean_frame(rows: int = 400, seed: int = 3, day: date = date(2026, 5, 1)) -> pd.DataFrame:
    """The features (with id, timestamp and PII) of one stable demo batch."""
    return demo_data.generate_scenario(day, days=1, seed=seed, rows_per_day=rows)[0].features.copy()


def pii_values(frame: pd.DataFrame) -> list[str]:
    """Real PII values of a batch plus the PII column name that is not an ordinary word."""
    return ["applicant_name", *frame["email"].head(25), *frame["applicant_name"].drop_duplicates().head(25)]


def land(client: Any, cfg: ModelConfig, day: str, name: str, data: bytes) -> str:
    """Put one object under incoming/dt=<day>/ as a producer would; returns its key."""
    key = layout.incoming_prefix(cfg, day) + name
    storage.write_bytes(client, cfg.storage.bucket, key, data, "application/octet-stream")
    return key


def snapshot(client: Any, bucket: str, prefix: str) -> dict[str, str]:
    """Every object under a prefix with the sha256 of its bytes."""
    return {
        o.key: storage.sha256_hex(storage.read_bytes(client, bucket, o.key))
        for o in storage.list_objects(client, bucket, prefix)
    }


# Fields that say when or how fast, not what: a rerun legitimately changes them.
VOLATILE_FIELDS = {"written_at", "duration_seconds", "delivered_at", "at"}


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def stable_snapshot(client: Any, bucket: str, prefix: str) -> dict[str, str]:
    """Like snapshot, but JSON documents are hashed without their timing fields, manifests by what they
    list, and Evidently's drift.html (which embeds random element ids) not by content."""
    digests = {}
    for o in storage.list_objects(client, bucket, prefix):
        data = storage.read_bytes(client, bucket, o.key)
        if o.key.endswith(MANIFEST):  # its hashes cover the volatile fields; manifest_problems checks them
            manifest = json.loads(data)
            data = json.dumps([manifest["status"], sorted(manifest["artifacts"])]).encode()
        elif o.key.endswith(".json"):
            data = json.dumps(_without_volatile(json.loads(data)), sort_keys=True).encode()
        elif o.key.endswith("/drift.html"):
            data = b"drift.html"
        digests[o.key] = storage.sha256_hex(data)
    return digests


def manifest_problems(client: Any, bucket: str, prefix: str) -> list[str]:
    """What is wrong with a manifest-last artifact set: missing or still-writing manifest, missing or
    changed artifacts."""
    manifest = storage.read_json(client, bucket, prefix + MANIFEST)
    if manifest is None:
        return [f"no {MANIFEST} under {prefix}"]
    if manifest.get("status") == WRITING:
        return [f"the set under {prefix} is still marked {WRITING!r} (never committed)"]
    problems = []
    for name, entry in manifest["artifacts"].items():
        _, key = storage.parse_s3_uri(entry["uri"])
        try:
            data = storage.read_bytes(client, bucket, key)
        except FileNotFoundError:
            problems.append(f"{name} listed but missing")
            continue
        if len(data) != entry["bytes"] or (entry.get("sha256") and storage.sha256_hex(data) != entry["sha256"]):
            problems.append(f"{name} differs from its manifest entry")
    return problems


def monitor_steps(client: Any, cfg: ModelConfig, day: str) -> dict[str, Any]:
    """What the monitor's validate_batch → route → quarantine_batch tasks do, without the scheduler loop."""
    summary = pipeline.validate_step(client, cfg, day)
    if summary["passed"]:
        return {"summary": summary, "quarantine": None}
    outcome = pipeline.quarantine_step(client, cfg, day, summary)
    message = alerts.quarantine_email(cfg, day, outcome["reason"], outcome["failures"], outcome["links"])
    send_email(cfg.alerts.smtp_conn_id, message, outbox=(client, cfg))
    return {"summary": summary, "quarantine": outcome}


def run_dag(dag: Any, day: date | None = None, conf: dict[str, Any] | None = None) -> tuple[Any, dict[str, str]]:
    """dag.test() for one logical date; returns the run and each task's final state."""
    logical = datetime.combine(day, datetime.min.time(), tzinfo=UTC) if day else None
    run = dag.test(logical_date=logical, run_conf=conf or {})
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def monitor_dag(cfg: ModelConfig, *, sensor_seconds: float | None = None) -> Any:
    """The monitor DAG of a config; with sensor_seconds, a sensor that gives up that fast."""
    from monitor import build_monitor_dag

    if sensor_seconds is not None:
        fast = {"sensor_timeout_minutes": sensor_seconds / 60, "sensor_poke_seconds": 1}
        cfg = cfg.model_copy(update={"monitor": cfg.monitor.model_copy(update=fast)})
    dag = build_monitor_dag(cfg)
    if sensor_seconds is not None:
        # dag.test() runs a deferred trigger inline and never enforces the deferral timeout, so
        # the sensor pokes in the task instead; its timeout and soft_fail are the same code path.
        dag.get_task("wait_for_batch").deferrable = False
    return dag


def quick_retries(cfg: ModelConfig, retries: int = 3) -> ModelConfig:
    """The config with a 1 s first retry delay (still exponential): a test waits seconds, not minutes."""
    monitor = cfg.monitor.model_copy(update={"retry_delay_seconds": 1, "retries": retries})
    return cfg.model_copy(update={"monitor": monitor})


def try_numbers(run: Any) -> dict[str, int]:
    return {ti.task_id: ti.try_number for ti in run.get_task_instances()}


def read_json(client: Any, key: str) -> Any:
    return json.loads(storage.read_bytes(client, BUCKET, key))


class StoppableProxy:
    """A TCP proxy on its own loopback port in front of a real server.

    `stop()` closes the listening socket and resets every open connection, so clients see what a
    stopped server looks like (connection refused); `start()` listens on the same port again. The
    server behind it keeps its state, which a restarted in-memory moto server would not. With
    `stop_on`, the proxy stops by itself when a request line matches, before forwarding it: an
    outage that begins in the middle of a task, at a chosen request.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.stop_on: re.Pattern[bytes] | None = None
        self.requests: list[str] = []  # request lines seen, e.g. "GET /bucket/key"
        self.refusals = 0  # requests cut off by a stop
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> StoppableProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = set(self._conns), set()
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave the port listening.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            _reset(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns.update({client, upstream})
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select(timeout=1.0):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if key.fileobj is client and self._trips(data):
                        self.refusals += 1
                        self.stop()
                        return
                    key.data.sendall(data)
                if not self.running:
                    return
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with self._lock:
                    self._conns.discard(sock)
                sock.close()

    def _trips(self, data: bytes) -> bool:
        lines = re.findall(rb"^(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/1\.[01]", data, flags=re.MULTILINE)
        tripped = False
        for method, path in lines:
            self.requests.append(f"{method.decode()} {path.decode()}")
            if self.stop_on is not None and self.stop_on.search(method + b" " + path):
                self.stop_on = None  # one outage per arming
                tripped = True
        return tripped


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a killed server's kernel would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass
