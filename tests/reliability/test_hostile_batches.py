"""Hostile and broken batches: each one quarantined with a specific reason, nothing else disturbed.

Most cases run the monitor's own validate → quarantine task code against the moto server and the
SMTP sink (seconds each); the ones whose behaviour depends on Airflow itself (the sensor, the
branch, the email task, the next day's run) go through the whole monitor DAG with dag.test().
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from devstack.smtp_sink import read_messages
from driftwatch import layout, pipeline, storage
from tests.reliability.support import (
    SCRIPT,
    clean_frame,
    land,
    manifest_problems,
    monitor_steps,
    pii_values,
    snapshot,
)

pytestmark = pytest.mark.integration

DAY = "2026-05-01"


def _csv(frame: pd.DataFrame, **kwargs) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode("utf-8")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _with(frame: pd.DataFrame, change: Callable[[pd.DataFrame], None]) -> pd.DataFrame:
    out = frame.copy()
    change(out)
    return out


def _nan_inf(f: pd.DataFrame) -> None:
    f["debt_to_income"] = f["debt_to_income"].astype(float)
    f.loc[f.index[:3], "debt_to_income"] = np.inf
    f.loc[f.index[3:5], "annual_income"] = -np.inf
    f.loc[f.index[5:15], "months_employed"] = np.nan  # plain missing values: allowed up to the null limit


def _old_ages(f: pd.DataFrame) -> None:
    f.loc[f.index[:7], "age"] = 140


def _non_utf8(frame: pd.DataFrame) -> bytes:
    f = frame.copy()
    f.loc[f.index[:4], "region"] = "sóuth"
    return f.to_csv(index=False).encode("latin-1")


def _damaged_page(frame: pd.DataFrame) -> bytes:
    """A Parquet file whose footer is intact but whose first data pages are overwritten."""
    data = bytearray(_parquet(frame))
    start = 4 + len(data) // 20  # past the "PAR1" magic, inside the first column chunks
    data[start : start + 256] = b"\xff" * 256
    return bytes(data)


@dataclass(frozen=True)
class Case:
    name: str
    label: str  # what the table calls it
    objects: Callable[[pd.DataFrame], dict[str, bytes]]  # file name -> bytes
    reason: str  # must appear in the quarantine reason
    max_batch_bytes: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("zero_byte", "zero-byte object", lambda f: {"part-000.csv": b""}, "empty file"),
    Case("header_only", "header-only CSV", lambda f: {"part-000.csv": _csv(f.head(0))}, "no rows"),
    Case("wrong_delimiter", "wrong delimiter (;)", lambda f: {"part-000.csv": _csv(f, sep=";")}, "wrong delimiter"),
    Case(
        "missing_column",
        "missing column",
        lambda f: {"part-000.csv": _csv(f.drop(columns=["credit_utilization"]))},
        "missing column credit_utilization",
    ),
    Case(
        "extra_column",
        "extra column",
        lambda f: {"part-000.csv": _csv(f.assign(internal_score=1.0))},
        "unexpected column(s) internal_score",
    ),
    Case(
        "renamed_column",
        "renamed column (age → applicant_age)",
        lambda f: {"part-000.csv": _csv(f.rename(columns={"age": "applicant_age"}))},
        "unexpected column(s) applicant_age",
    ),
    Case(
        "wrong_dtype",
        "wrong dtype (text in a numeric column)",
        lambda f: {"part-000.csv": _csv(_with(f, lambda g: g.__setitem__("age", "thirty")))},
        "age is not numeric",
    ),
    Case(
        "all_null",
        "all-null column",
        lambda f: {"part-000.csv": _csv(_with(f, lambda g: g.__setitem__("loan_amount", np.nan)))},
        "loan_amount is entirely null",
    ),
    Case("nan_inf", "NaN and ±inf", lambda f: {"part-000.csv": _csv(_with(f, _nan_inf))}, "holds infinite values"),
    Case(
        "out_of_range",
        "out-of-range values",
        lambda f: {"part-000.csv": _csv(_with(f, _old_ages))},
        "age out of range [18, 100] (7 rows)",
    ),
    Case(
        "duplicate_ids",
        "duplicate ids",
        lambda f: {"part-000.csv": _csv(pd.concat([f, f.head(5)], ignore_index=True))},
        "duplicate ids in application_id",
    ),
    Case("non_utf8", "non-UTF-8 bytes (latin-1)", lambda f: {"part-000.csv": _non_utf8(f)}, "not UTF-8 text"),
    Case(
        "truncated_parquet",
        "truncated Parquet",
        lambda f: {"part-000.parquet": _parquet(f)[: len(_parquet(f)) // 2]},
        "unreadable parquet",
    ),
    Case(
        "damaged_page",
        "damaged Parquet page (footer intact)",
        lambda f: {"part-000.parquet": _damaged_page(f)},
        "unreadable parquet",
    ),
    Case(
        "nested_column",
        "nested (list) column in Parquet",
        lambda f: {"part-000.parquet": _parquet(f.assign(age=[[30, 31]] * len(f)))},
        "nested column(s) age",
    ),
    Case(
        "gzip_as_csv",
        "gzip file named .csv",
        lambda f: {"part-000.csv": gzip.compress(_csv(f))},
        "gzip-compressed data in a .csv object",
    ),
    Case(
        "category_explosion",
        "category explosion (2000 unseen values)",
        lambda f: {"part-000.csv": _csv(f.assign(loan_purpose=[f"purpose-{i}" for i in range(len(f))]))},
        "loan_purpose category explosion",
    ),
    Case(
        "script_column_name",
        "HTML/script in a column name",
        lambda f: {"part-000.csv": _csv(f.assign(**{SCRIPT: "x"}))},
        "unexpected column(s) </script>",
    ),
    Case("empty_folder", "empty batch folder (only _SUCCESS)", lambda f: {"_SUCCESS": b""}, "empty batch folder"),
]
# Rows per case: the explosion needs thousands of distinct values, the others only a valid batch size.
ROWS = {"category_explosion": 2000}


def _email_parts(message) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def assert_quarantined(client, cfg, day: str, raw_before: dict[str, str], mail_dir, reason: str) -> dict:
    """The five promises of a quarantine; returns what the table reports."""
    bucket = cfg.storage.bucket
    assert snapshot(client, bucket, layout.incoming_prefix(cfg, day)) == raw_before, "raw batch changed"
    record = json.loads(storage.read_bytes(client, bucket, layout.history_key(cfg, day)))
    assert record["status"] == "quarantined" and record["drift"] is None
    assert reason in record["validation"]["reason"], record["validation"]["reason"]
    q_prefix = layout.quarantine_prefix(cfg, day)
    q_keys = {k[len(q_prefix) :] for k in snapshot(client, bucket, q_prefix)}
    data_copies = {"data/" + k.rsplit("/", 1)[-1] for k in raw_before if not k.endswith("_SUCCESS")}
    assert q_keys == {"validation.html", "validation.json", "manifest.json", *data_copies}, q_keys
    assert not manifest_problems(client, bucket, q_prefix)
    for key, digest in raw_before.items():
        copy = q_prefix + "data/" + key.rsplit("/", 1)[-1]
        if copy[len(q_prefix) :] in data_copies:
            assert storage.sha256_hex(storage.read_bytes(client, bucket, copy)) == digest, "copy differs"
    report_keys = set(snapshot(client, bucket, layout.report_prefix(cfg, day)))
    assert not {k for k in report_keys if "drift" in k.rsplit("/", 1)[-1]}, "drift ran on a quarantined batch"
    assert storage.object_size(client, bucket, layout.staged_key(cfg, day)) is None, "bad batch was staged"
    messages = read_messages(mail_dir)
    assert len(messages) == 1, [m["Subject"] for m in messages]
    assert "quarantined" in messages[0]["Subject"] and messages[0]["X-Driftwatch-Dedup-Key"].endswith("/quarantine")
    return {"reason": record["validation"]["reason"], "message": messages[0], "copies": len(data_copies)}


def assert_no_pii(client, cfg, markers: list[str], mail_dir, extra_text: str = "") -> None:
    """No PII value or PII column name in any report, record or email (quarantined raw copies excepted)."""
    texts = {
        key: storage.read_bytes(client, cfg.storage.bucket, key).decode("utf-8", "replace")
        for key in snapshot(client, cfg.storage.bucket, cfg.storage.output_prefix)
        if "/quarantine/" not in key or "/data/" not in key  # byte-for-byte copies of the raw batch
    }
    texts |= {f"email {i}": m.as_string() for i, m in enumerate(read_messages(mail_dir))}
    texts["logs"] = extra_text
    leaks = {name: [m for m in markers if m in text] for name, text in texts.items()}
    assert not {k: v for k, v in leaks.items() if v}, "PII leaked"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_batch_is_quarantined(case: Case, bucket, demo_cfg, mail_dir, figures):
    frame = clean_frame(rows=ROWS.get(case.name, 400))
    cfg = demo_cfg
    for name, data in case.objects(frame).items():
        land(bucket, cfg, DAY, name, data)
    raw_before = snapshot(bucket, cfg.storage.bucket, layout.incoming_prefix(cfg, DAY))

    result = monitor_steps(bucket, cfg, DAY)

    assert result["quarantine"] is not None, f"{case.name} passed validation"
    seen = assert_quarantined(bucket, cfg, DAY, raw_before, mail_dir, case.reason)
    text, html = _email_parts(seen["message"])
    assert_no_pii(bucket, cfg, pii_values(frame), mail_dir)
    if case.name == "script_column_name":
        report = storage.read_bytes(bucket, cfg.storage.bucket, layout.quarantine_prefix(cfg, DAY) + "validation.html")
        assert SCRIPT not in report.decode() and "&lt;/script&gt;&lt;script&gt;" in report.decode()
        assert SCRIPT not in html and "&lt;/script&gt;" in html
    figures.add(
        "input",
        case.label,
        f"quarantined: {seen['reason'][:110]}; report beside the copy; 1 email; no drift",
        intact=True,
    )


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ({"max_batch_rows": 1000}, "20000 rows, over storage.max_batch_rows (1000)"),
        ({"max_uncompressed_bytes": 100_000}, "over storage.max_uncompressed_bytes (100000)"),
    ],
    ids=["rows", "decoded_bytes"],
)
def test_a_parquet_bomb_is_quarantined_from_its_footer(limit, reason, bucket, demo_cfg, mail_dir, figures):
    # 20,000 copies of one row: a few kB on disk, far more once decoded.
    frame = clean_frame(rows=400)
    bomb = pd.concat([frame.head(1)] * 20_000, ignore_index=True)
    data = _parquet(bomb)
    cfg = demo_cfg.model_copy(update={"storage": demo_cfg.storage.model_copy(update=limit)})
    assert len(data) < cfg.storage.max_batch_bytes
    land(bucket, cfg, DAY, "part-000.parquet", data)
    raw_before = snapshot(bucket, cfg.storage.bucket, layout.incoming_prefix(cfg, DAY))

    result = monitor_steps(bucket, cfg, DAY)

    assert result["quarantine"] is not None
    assert_quarantined(bucket, cfg, DAY, raw_before, mail_dir, reason)
    figures.add("input", f"Parquet bomb ({next(iter(limit))})", f"quarantined from the footer: {reason}", intact=True)


def test_batch_over_the_size_limit_is_refused_before_download(bucket, demo_cfg, mail_dir, figures):
    """The limit is checked on the listed sizes: no GET of the object is ever sent."""
    frame = clean_frame(rows=400)
    data = _csv(frame)
    cfg = demo_cfg.model_copy(
        update={"storage": demo_cfg.storage.model_copy(update={"max_batch_bytes": len(data) // 2})}
    )
    key = land(bucket, cfg, DAY, "part-000.csv", data)
    raw_before = snapshot(bucket, cfg.storage.bucket, layout.incoming_prefix(cfg, DAY))
    downloads: list[str] = []
    bucket.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: downloads.append(params["url_path"]), unique_id="rel-get"
    )
    try:
        result = monitor_steps(bucket, cfg, DAY)
    finally:
        bucket.meta.events.unregister("before-call.s3.GetObject", unique_id="rel-get")

    assert result["quarantine"] is not None
    assert not [path for path in downloads if path.endswith(key.rsplit("/", 1)[-1])], downloads
    seen = assert_quarantined(bucket, cfg, DAY, raw_before, mail_dir, "batch too large")
    figures.add(
        "input",
        "file over the size limit",
        f"quarantined: {seen['reason']}; refused from the listed size, 0 GET requests for the object",
        intact=True,
    )


def test_script_in_values_is_escaped_in_every_report(bucket, demo_cfg, mail_dir, figures):
    """Markup in category values is data, not a contract breach: it passes, and no report lets it run."""
    frame = clean_frame(rows=400)
    frame.loc[frame.index[:40], "loan_purpose"] = SCRIPT  # 10% unseen: a warning, shown in the report
    land(bucket, demo_cfg, DAY, "part-000.csv", _csv(frame))

    result = monitor_steps(bucket, demo_cfg, DAY)
    assert result["quarantine"] is None, result["summary"]["reason"]
    pipeline.drift_step(bucket, demo_cfg, DAY, result["summary"])

    prefix = layout.report_prefix(demo_cfg, DAY)
    validation_html = storage.read_bytes(bucket, demo_cfg.storage.bucket, prefix + "validation.html").decode()
    drift_html = storage.read_bytes(bucket, demo_cfg.storage.bucket, prefix + "drift.html").decode()
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in validation_html, "the warning should show the value"
    for name, text in {"validation.html": validation_html, "drift.html": drift_html}.items():
        assert SCRIPT not in text and "<script>alert(1)" not in text, f"markup is live in {name}"
    assert "alert(1)" in drift_html, "the value should still be visible in the drift report"
    assert not manifest_problems(bucket, demo_cfg.storage.bucket, prefix)
    figures.add(
        "input",
        "HTML/script in values (10% of a category)",
        "accepted as data (unseen-category warning); inert in the GX validation report (escaped) and "
        "in Evidently's drift report (< > replaced before Evidently embeds values in a <script>)",
        intact=None,
    )


def test_batch_landing_after_the_sensor_gave_up_is_not_recorded_as_missing(bucket, demo_cfg, figures):
    land(bucket, demo_cfg, DAY, "part-000.csv", _csv(clean_frame()))
    with pytest.raises(RuntimeError, match="clear this run to process them"):
        pipeline.missing_batch_step(bucket, demo_cfg, DAY, waited_minutes=360)
    assert storage.object_size(bucket, demo_cfg.storage.bucket, layout.history_key(demo_cfg, DAY)) is None
    figures.add(
        "input",
        "batch that lands just after the sensor gave up",
        "record_missing_batch refuses with 'clear this run to process them' (the task fails visibly); "
        "nothing is recorded as missing",
        intact=True,
    )


def test_replaced_batch_rerun_alerts_again_only_when_the_reason_changed(bucket, demo_cfg, mail_dir, figures):
    """The dedup key names the alert; its content decides whether a rerun is news."""
    frame = clean_frame()
    land(bucket, demo_cfg, DAY, "part-000.csv", _csv(frame.drop(columns=["age"])))
    monitor_steps(bucket, demo_cfg, DAY)
    monitor_steps(bucket, demo_cfg, DAY)  # same batch, same reason: no second email
    land(bucket, demo_cfg, DAY, "part-000.csv", _csv(frame.drop(columns=["region"])))
    monitor_steps(bucket, demo_cfg, DAY)  # the producer replaced it with another broken file

    subjects = [m["Subject"] for m in read_messages(mail_dir)]
    assert len(subjects) == 2, subjects
    assert "missing column age" in subjects[0] and "missing column region" in subjects[1]
    keys = {m["X-Driftwatch-Dedup-Key"] for m in read_messages(mail_dir)}
    assert keys == {f"{demo_cfg.name}/{DAY}/quarantine"}
    figures.add(
        "race",
        "quarantined batch rerun 3 times; the producer replaced the file before the third",
        "2 emails: none for the identical rerun, one for the new reason (same dedup key, new content)",
        intact=True,
        runs=3,
    )
