"""SMTP sink: accepts every message on loopback (no auth, no relay) and saves it as an .eml file.

usage: python -m devstack.smtp_sink --folder F --port P, or in-process: with SmtpSink(folder) as sink
"""

from __future__ import annotations

import argparse
import email.policy
import hashlib
import ipaddress
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from devstack.procs import free_ports

DEFAULT_PORT = 8025
# Reported in the SMTP banner; fixed so aiosmtpd never calls socket.getfqdn(), which can
# block on DNS in a sandbox without network.
SERVER_NAME = "driftwatch-smtp-sink"


def message_file_name(raw: bytes, received: datetime) -> str:
    stamp = received.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{hashlib.sha256(raw).hexdigest()[:10]}.eml"


def read_messages(folder: str | os.PathLike[str]) -> list[EmailMessage]:
    parser = BytesParser(policy=email.policy.default)
    return [parser.parsebytes(path.read_bytes()) for path in sorted(Path(folder).glob("*.eml"))]


class SmtpSink:
    """``port=0`` picks a free port; read the real one from ``.port`` after ``start()``."""

    def __init__(self, folder: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"SmtpSink accepts mail without authentication; refusing to bind {host}")
        self.folder, self.host, self.port = Path(folder), host, port
        self._controller: Controller | None = None
        self._lock, self._last = threading.Lock(), datetime.min.replace(tzinfo=UTC)

    def start(self) -> SmtpSink:
        if self._controller is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Picked here: aiosmtpd's readiness check would connect to port 0. A restart binds it again.
            self.port = self.port or free_ports(host=self.host)[0]
            controller = Controller(self, hostname=self.host, port=self.port, server_hostname=SERVER_NAME)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Save with the envelope as headers (Bcc stays visible), atomically (globbers never see half)."""
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        eol = b"\r\n" if b"\r\n" in content[:4096] else b"\n"
        head = f"X-Envelope-From: <{envelope.mail_from or ''}>".encode() + eol
        raw = head + f"X-Envelope-To: {', '.join(f'<{r}>' for r in envelope.rcpt_tos)}".encode() + eol + content
        with self._lock:  # strictly increasing even within one clock tick, so names keep arrival order
            self._last = received = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        path = self.folder / message_file_name(raw, received)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.smtp_sink", description=__doc__)
    parser.add_argument("--folder", required=True, help="where .eml files are written")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    args = parser.parse_args(argv)
    # Blocked before the server thread starts (it inherits the mask), so only sigwait sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        sink = SmtpSink(args.folder, host=args.host, port=args.port).start()
    except (OSError, ValueError) as exc:
        print(f"smtp sink: cannot start on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"smtp sink listening on {sink.host}:{sink.port}, saving to {sink.folder}", flush=True)
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        sink.stop()
    print("smtp sink stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
