"""The SMTP sink stores real SMTP deliveries on loopback as parseable .eml files."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from devstack.smtp_sink import SmtpSink, message_file_name, read_messages

REPO_ROOT = Path(__file__).resolve().parents[2]


def _alert(subject: str, to: list[str], bcc: list[str] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "driftwatch@localhost"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content("Drift detected (plain text part).")
    msg.add_alternative("<html><body><h1>Drift detected</h1><p>PSI 0.31</p></body></html>", subtype="html")
    if bcc:
        msg["Bcc"] = ", ".join(bcc)
    return msg


def _send(port: int, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(msg)


@pytest.fixture
def sink(tmp_path: Path):
    with SmtpSink(tmp_path / "mail") as running:
        yield running


def test_message_round_trips_through_disk(sink: SmtpSink) -> None:
    assert sink.port > 0
    _send(sink.port, _alert("[driftwatch] credit_default: drift", ["a@example.com", "b@example.com"]))

    files = list(sink.folder.glob("*.eml"))
    assert len(files) == 1
    [msg] = read_messages(sink.folder)
    assert msg["Subject"] == "[driftwatch] credit_default: drift"
    assert [a.addr_spec for a in msg["To"].addresses] == ["a@example.com", "b@example.com"]
    assert msg["X-Envelope-To"] == "<a@example.com>, <b@example.com>"
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "<h1>Drift detected</h1>" in html.get_content()
    plain = msg.get_body(preferencelist=("plain",))
    assert plain is not None and "plain text part" in plain.get_content()


def test_second_message_gets_second_file_in_arrival_order(sink: SmtpSink) -> None:
    _send(sink.port, _alert("first", ["a@example.com"]))
    _send(sink.port, _alert("second", ["a@example.com"], bcc=["audit@example.com"]))

    names = sorted(p.name for p in sink.folder.glob("*.eml"))
    assert len(names) == 2 and names[0] != names[1]
    first, second = read_messages(sink.folder)
    assert (first["Subject"], second["Subject"]) == ("first", "second")
    # smtplib strips Bcc from the headers; the envelope header keeps the recipient visible.
    assert "Bcc" not in second
    assert "<audit@example.com>" in second["X-Envelope-To"]
    assert not list(sink.folder.glob(".*.tmp")), "temp files must be renamed away"


def test_identical_messages_in_same_instant_do_not_collide(sink: SmtpSink) -> None:
    msg = _alert("same", ["a@example.com"])
    for _ in range(3):
        _send(sink.port, msg)
    assert len(list(sink.folder.glob("*.eml"))) == 3


def test_file_name_is_utc_timestamp_then_hash() -> None:
    name = message_file_name(b"x", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert name.startswith("20260102T030405.000006Z-") and name.endswith(".eml")


def test_refuses_non_loopback_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing"):
        SmtpSink(tmp_path, host="0.0.0.0")


def test_missing_folder_reads_as_empty(tmp_path: Path) -> None:
    assert read_messages(tmp_path / "nope") == []


def test_standalone_process(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.smtp_sink", "--folder", str(folder), "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split(",")[0])
        _send(port, _alert("from the standalone sink", ["a@example.com"]))
        deadline = time.monotonic() + 10
        while not list(folder.glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m["Subject"] for m in read_messages(folder)] == ["from the standalone sink"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
