"""S3 for the bench: moto's server mode on a loopback port, and a client that times its own transfers.

The server runs as its own process in its own process group, started and stopped by the bench
(`moto_server`); the monitor-stage children reach it over HTTP like the tasks reach S3 or MinIO.
Its CPU time is the server's, not the task's: it shows in wall time only.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.drift_data import BATCH_DATE

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# The requests whose time and bytes are added up; listing goes through a paginator (one request).
DOWNLOADS = ("get_object", "download_file")
UPLOADS = ("put_object", "upload_fileobj")
TIMED = frozenset({*DOWNLOADS, *UPLOADS, "head_object"})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL to whatever is left of it after STOP_TIMEOUT."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group outlived the leader, or a hung leader
    proc.wait()


@dataclass(frozen=True)
class Server:
    endpoint: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system); its threads serve every request."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def moto_server(log_path: Path) -> Iterator[Server]:
    """A moto S3 server on a free loopback port for the duration of the block, then stopped with its group."""
    port = _free_port()
    endpoint = f"http://{HOST}:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(endpoint):
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not answer on {endpoint} within {START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        yield Server(endpoint, proc.pid)
    finally:
        _stop_group(proc)


def client(endpoint: str) -> Any:
    """A boto3 S3 client on the bench's server (moto takes any key pair)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


class TimedClient:
    """An S3 client that adds up, per operation, its requests, their seconds and the bytes they moved.

    A get_object body is read inside the timed call: every caller reads bodies whole at once, so
    the download's time belongs to the request. Managed transfers (download_file, upload_fileobj)
    are timed as one call, their parts included.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.ops: dict[str, dict[str, float]] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in TIMED:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            moved = 0
            if name == "upload_fileobj":  # the transfer closes the file when it is done
                moved = os.fstat((args[0] if args else kwargs["Fileobj"]).fileno()).st_size
            elif name == "put_object":
                moved = len(kwargs.get("Body") or b"")
            started = time.perf_counter()
            result = attr(*args, **kwargs)
            if name == "get_object":
                body = result["Body"].read()
                result = {**result, "Body": io.BytesIO(body)}
                moved = len(body)
            elif name == "download_file":
                moved = Path(args[2] if len(args) > 2 else kwargs["Filename"]).stat().st_size
            self._add(name, time.perf_counter() - started, moved)
            return result

        return timed

    def _add(self, name: str, seconds: float, moved: int) -> None:
        with self._lock:
            op = self.ops.setdefault(name, {"requests": 0, "seconds": 0.0, "bytes": 0})
            op["requests"] += 1
            op["seconds"] += seconds
            op["bytes"] += moved

    def totals(self) -> tuple[float, int, int]:
        """Seconds, bytes and count of every timed request so far."""
        with self._lock:
            ops = self.ops.values()
            return (
                sum(o["seconds"] for o in ops),
                int(sum(o["bytes"] for o in ops)),
                int(sum(o["requests"] for o in ops)),
            )


def summary(ops: dict[str, dict[str, float]]) -> dict[str, float]:
    """Downloads, uploads and other requests of one or more TimedClient.ops, added up."""
    out: dict[str, float] = {}
    for label, names in (("download", DOWNLOADS), ("upload", UPLOADS), ("head", ("head_object",))):
        out[f"{label}_seconds"] = sum(ops[n]["seconds"] for n in names if n in ops)
        out[f"{label}_bytes"] = sum(ops[n]["bytes"] for n in names if n in ops)
        out[f"{label}_requests"] = sum(ops[n]["requests"] for n in names if n in ops)
    return out


def merged_ops(*children: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The ops of several children's results, operation by operation."""
    total: dict[str, dict[str, float]] = {}
    for child in children:
        for name, op in child.get("s3_ops", {}).items():
            into = total.setdefault(name, {"requests": 0, "seconds": 0.0, "bytes": 0})
            for key, value in op.items():
                into[key] += value
    return total


def _batch_key(cfg: Any) -> str:
    from driftwatch import layout

    return layout.incoming_prefix(cfg, BATCH_DATE) + "part-00000.parquet"


def _upload(client: Any, cfg: Any, key: str, path: Path) -> None:
    from driftwatch import ingest, storage

    with open(path, "rb") as source:
        storage.upload_file(client, cfg.storage.bucket, key, source, ingest.PARQUET_TYPE)


def seed_reference(client: Any, cfg: Any, reference: Path) -> None:
    """The bench's bucket, holding the reference data at its configured key."""
    client.create_bucket(Bucket=cfg.storage.bucket)
    _upload(client, cfg, cfg.storage.reference_key, reference)


def land_batch(client: Any, cfg: Any, batch: Path) -> None:
    """The batch as a producer lands it: one Parquet object under the batch date's incoming prefix."""
    _upload(client, cfg, _batch_key(cfg), batch)


def clear_batch(client: Any, cfg: Any) -> None:
    """Delete the batch and its staged copy: moto holds every object in memory."""
    from driftwatch import layout

    for key in (_batch_key(cfg), layout.staged_key(cfg, BATCH_DATE)):
        client.delete_object(Bucket=cfg.storage.bucket, Key=key)
