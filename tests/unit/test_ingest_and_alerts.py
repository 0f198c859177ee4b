"""Parsing batch bytes, size limits, PII removal and alert emails (no network)."""

from __future__ import annotations

import gzip
import io

import pandas as pd
import pytest

from driftwatch import alerts, ingest, layout
from driftwatch.storage import ObjectInfo

HOSTILE = "</script><script>alert(1)</script>"


def test_csv_and_parquet_parse():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    assert ingest.parse_object(frame.to_csv(index=False).encode(), "csv", "k.csv").equals(frame)
    assert ingest.parse_object(buffer.getvalue(), "parquet", "k.parquet").equals(frame)


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        (b"", "csv", "empty file"),
        (b"\xff\xfe\x00bad,bytes\n\x80\x81,1\n", "csv", "not UTF-8 text"),
        (b"PAR1\x00\x01truncated", "parquet", "unreadable parquet"),
        (gzip.compress(b"a,b\n1,2\n"), "csv", "gzip-compressed data in a .csv object"),
    ],
)
def test_unreadable_objects_give_a_named_reason(data, fmt, reason):
    with pytest.raises(ingest.IngestError) as err:
        ingest.parse_object(data, fmt, "incoming/dt=2026-01-01/x")
    assert err.value.reason == reason
    assert "incoming/dt=2026-01-01/x" in str(err.value) or reason == "empty file"


def test_size_limit_is_checked_before_reading():
    objects = [ObjectInfo("a.csv", 600, "e1"), ObjectInfo("b.csv", 500, "e2")]
    assert ingest.check_batch_size(objects, 1100) == 1100
    with pytest.raises(ingest.IngestError, match="batch too large: 1100 bytes in 2 object"):
        ingest.check_batch_size(objects, 1000)


def test_drop_unused_columns_removes_only_configured_columns(demo_cfg):
    frame = pd.DataFrame({"email": ["a@b.c"], "applicant_name": ["A"], "age": [30]})
    assert list(ingest.drop_unused_columns(frame, demo_cfg).columns) == ["age"]


def test_batch_date_normalisation():
    assert layout.batch_date_str("2026-01-05") == "2026-01-05"
    assert layout.batch_date_str("2026-01-05T00:00:00+00:00") == "2026-01-05"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        layout.batch_date_str("05/01/2026")


def test_batch_format_by_suffix():
    assert layout.batch_format("x/part-0.CSV") == "csv"
    assert layout.batch_format("x/part-0.parquet") == "parquet"
    assert layout.batch_format("x/part-0.json") is None


def decision(feature_name: str = "age") -> dict:
    return {
        "drifted_share": 0.5,
        "share_threshold": 0.3,
        "n_features": 4,
        "reason": "data drift",
        "drifted_features": [{"name": feature_name, "method": "wasserstein", "score": 0.31, "threshold": 0.1}],
    }


def test_drift_email_has_text_and_html_parts_and_a_dedup_key(demo_cfg):
    msg = alerts.drift_email(demo_cfg, "2026-01-08", decision(), {"drift report": "s3://b/k/drift.html"})
    assert msg.get_content_type() == "multipart/alternative"
    assert "credit_default" in msg["Subject"] and "2026-01-08" in msg["Subject"] and "drift" in msg["Subject"]
    assert msg["X-Driftwatch-Dedup-Key"] == "credit_default/2026-01-08/drift"
    again = alerts.drift_email(demo_cfg, "2026-01-08", decision(), {})
    assert again["Message-ID"] == msg["Message-ID"], "a rerun must produce the same Message-ID"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<table" in html and "style=" in html
    assert "age | wasserstein | 0.31 | 0.1" in text
    assert "s3://b/k/drift.html" in text


def test_values_from_data_are_escaped_in_emails(demo_cfg):
    msg = alerts.drift_email(demo_cfg, "2026-01-08", decision(HOSTILE), {"report": HOSTILE})
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    quarantine = alerts.quarantine_email(
        demo_cfg, "2026-01-05", HOSTILE, [{"check": HOSTILE, "column": HOSTILE, "detail": HOSTILE}], {}
    )
    assert "<script>" not in quarantine.get_body(("html",)).get_content()


def test_report_links_add_web_urls_only_when_configured(demo_cfg):
    uris = {"drift report": "s3://driftwatch-demo/driftwatch/credit_default/reports/dt=2026-01-08/drift.html"}
    assert alerts.report_links(demo_cfg, uris) == uris
    with_base = demo_cfg.model_copy(
        update={"alerts": demo_cfg.alerts.model_copy(update={"report_base_url": "http://x/reports/"})}
    )
    links = alerts.report_links(with_base, uris)
    assert links["drift report (web)"] == "http://x/reports/driftwatch/credit_default/reports/dt=2026-01-08/drift.html"
