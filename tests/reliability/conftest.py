"""The reliability family: a collector that turns what each test verified into docs/reliability.md.

Tests call `figures.add(...)` with what they observed; the table is written at the end of the
session from those observations and from each test's pass/fail outcome, never from constants.
The file is written only when DRIFTWATCH_RELIABILITY_DOC names it (`make reliability` does), so
an ordinary `make test` leaves the checked-in copy alone.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = {
    "input": "Bad inputs",
    "fault": "Faults injected",
    "race": "Reruns and races",
    "security": "Security",
}
INTACT = "nothing lost, nothing duplicated"
MODULE_SECTIONS = {
    "test_hostile_batches.py": "input",
    "test_monitor_runs.py": "input",
    "test_service_faults.py": "fault",
    "test_registry_faults.py": "fault",
    "test_email_outbox.py": "fault",
    "test_scheduler_kill.py": "fault",
    "test_security.py": "security",
}
# Tests of other families that this table reports instead of duplicating them:
# (section, case, what that test asserts, nodeid). The row shows the test's actual pass/fail.
REUSED = [
    (
        "race",
        "two challengers promoted against the same champion (compare-and-set)",
        "first promoted, second refused with 'champion changed'; the alias names the first",
        "tests/integration/test_retrain_dag.py::test_compare_and_set_allows_one_promotion_of_two_challengers",
    ),
    (
        "security",
        "tampered model artifact (sha256 recorded at registration)",
        "TamperedArtifactError on verify, load, promote and rollback; the payload never ran; "
        "champion unchanged; a version without the tag is refused too",
        "tests/integration/test_registry.py::test_tampered_model_is_refused_before_unpickling",
    ),
]


@dataclass
class Row:
    section: str
    case: str
    outcome: str
    runs: int = 1
    intact: bool | None = None  # True only when the test checked that nothing was lost or duplicated
    nodeid: str = ""


@dataclass
class Collector:
    rows: list[Row] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # nodeid -> passed/failed/skipped (+ message)
    started: float = field(default_factory=time.monotonic)


_COLLECTOR = Collector()


class Figures:
    """What one test records for the table; rows of a failed test are shown as failed."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def add(self, section: str, case: str, outcome: str, *, intact: bool | None = None, runs: int = 1) -> None:
        assert section in SECTIONS, section
        _COLLECTOR.rows.append(Row(section, case, " ".join(outcome.split()), runs, intact, self.nodeid))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.nodeid)


@pytest.fixture(scope="session")
def airflow_db():
    """One fresh Airflow metadata DB (SQLite, in the test AIRFLOW_HOME) for the family's dag.test() runs."""
    from airflow.utils.db import resetdb

    resetdb(skip_init=False)


@pytest.fixture(scope="session")
def reference_bytes() -> bytes:
    from driftwatch import demo_data

    return demo_data.to_bytes(demo_data.generate_reference(seed=11, rows=1200), "parquet")


@pytest.fixture
def bucket(s3, demo_cfg, reference_bytes):
    """A freshly reset demo bucket holding only the reference data."""
    from driftwatch import storage

    storage.write_bytes(s3, demo_cfg.storage.bucket, demo_cfg.storage.reference_key, reference_bytes, "x")
    return s3


@pytest.fixture
def empty_registry(monkeypatch, tmp_path):
    """mlflow_default on an empty SQLite registry: the monitor runs before any champion exists."""
    extra = {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "http", "host": "x", "extra": extra}))


@pytest.fixture
def smtp_sink(tmp_path, monkeypatch):
    """A running SMTP sink the test may stop and start again on the same port (mail_dir cannot)."""
    from devstack.smtp_sink import SmtpSink

    sink = SmtpSink(tmp_path / "mail", port=0).start()
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": sink.port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "driftwatch@localhost", "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    sink._requested_port = sink.port  # a restart binds the same port again
    yield sink
    sink.stop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        previous = _COLLECTOR.outcomes.get(report.nodeid, "passed")
        if previous == "passed" or report.outcome != "passed":
            message = str(report.longrepr).strip().splitlines()[-1][:160] if report.longrepr else ""
            _COLLECTOR.outcomes[report.nodeid] = report.outcome + (f": {message}" if message else "")


def _reused_outcome(session: pytest.Session, nodeid: str) -> str | None:
    """The outcome of a test from another family, read from the terminal reporter's stats."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    found = None
    for outcome, reports in reporter.stats.items():
        if outcome not in ("passed", "failed", "error", "skipped"):
            continue  # "" holds setup/teardown reports of passing tests
        for report in reports:
            if getattr(report, "nodeid", None) != nodeid or getattr(report, "when", "call") not in ("call", "setup"):
                continue
            if outcome in ("failed", "error") or found is None:
                found = outcome
    return found


def _cell(text: str) -> str:
    # Escaped, so that a hostile value quoted in an outcome stays text wherever the Markdown is rendered.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def render(rows: list[Row], outcomes: dict[str, str], seconds: float) -> str:
    """The Markdown table of everything tried, grouped by section."""
    lines = [
        "# Reliability and security: what was tried and what happened",
        "",
        "Generated by the test suite (`make reliability`, which runs `tests/reliability` and the reused",
        f"integration tests named below); do not edit by hand. A row says *{INTACT}* only when its test checked it.",
        "",
        f"Last run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {seconds:.0f} s.",
        "",
    ]
    for section, title in SECTIONS.items():
        group = [r for r in rows if r.section == section]
        if not group:
            continue
        lines += [f"## {title} ({len(group)})", "", "| case | outcome | runs | lost or duplicated | test |"]
        lines.append("|---|---|---|---|---|")
        for row in group:
            status = outcomes.get(row.nodeid, "not run")
            if not status.startswith("passed"):
                outcome, intact = f"TEST {status}", "not verified"
            else:
                outcome = row.outcome
                intact = {True: INTACT, False: "LOSS OR DUPLICATE FOUND", None: "n/a"}[row.intact]
            test = re.sub(r"\[(.{0,40}).*\]$", lambda m: f"[{m.group(1)}]", row.nodeid.split("::", 1)[-1])
            lines.append(f"| {_cell(row.case)} | {_cell(outcome)} | {row.runs} | {intact} | `{_cell(test)}` |")
        lines.append("")
    lines += [
        "## Not covered",
        "",
        "- The scheduler kill runs a private Airflow (LocalExecutor, SQLite) and kills it at one point, during "
        "compute_drift; Airflow's detection of the dead scheduler is shortened there (orphan check every 10 s, "
        "not 300 s), so recovery with the defaults takes up to about 5 minutes. Killing the api-server, the "
        "dag-processor, the triggerer or a Celery worker is not tested.",
        "- The S3 outages go through a loopback proxy in front of moto that stops listening (connection "
        "refused), because a restarted moto server would come back empty; SMTP and MLflow outages use the "
        "same proxy (MLflow) or stop the real sink (SMTP).",
        "",
    ]
    counts = {s: sum(r.section == s for r in rows) for s in SECTIONS}
    failed = sum(1 for r in rows if not outcomes.get(r.nodeid, "").startswith("passed"))
    lines.append(
        "Totals: " + ", ".join(f"{counts[s]} {SECTIONS[s].lower()}" for s in SECTIONS) + f"; {failed} row(s) failing."
    )
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("DRIFTWATCH_RELIABILITY_DOC")
    if not target or not _COLLECTOR.rows:
        return
    rows, outcomes = list(_COLLECTOR.rows), dict(_COLLECTOR.outcomes)
    # A test that failed before recording anything still gets a row, so a failure is never invisible.
    recorded = {r.nodeid for r in rows}
    for nodeid, outcome in outcomes.items():
        if nodeid not in recorded and not outcome.startswith("passed"):
            module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
            section = MODULE_SECTIONS.get(module, "fault")
            rows.append(Row(section, nodeid.split("::", 1)[-1], "", 1, None, nodeid))
    for section, case, asserted, nodeid in REUSED:
        outcome = _reused_outcome(session, nodeid)
        rows.append(Row(section, case, asserted, 1, None, nodeid))
        outcomes[nodeid] = outcome or "not run in this session"
    path = Path(target) if Path(target).is_absolute() else REPO / target
    path.write_text(render(rows, outcomes, time.monotonic() - _COLLECTOR.started))
