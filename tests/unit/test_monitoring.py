"""The monitoring read model: report-key validation, page data, charts and the rendered page."""

from __future__ import annotations

import struct
import zlib

import pytest

from driftwatch import monitoring
from driftwatch.reports import monitoring as pages

PREFIX = "driftwatch/credit_default/"
HOSTILE = '<script>alert("x")</script>'


def record(day: str, share: float | None, *, status: str = "passed", scores: dict | None = None, live=None) -> dict:
    """A history record shaped like the ones pipeline.drift_step / quarantine_step write."""
    rec = {"batch_date": day, "status": status, "rows": 500, "action": "none"}
    if status == "quarantined":
        rec.update(action="quarantined", drift=None, validation={"passed": False, "reason": "missing column age"})
    else:
        rec["drift"] = {"share": share, "threshold": 0.3, "scores": scores or {}, "drifted": []}
        if share is not None and share >= 0.3:
            rec.update(action="alert+retrain", reason="data drift: 50% of features drifted (age)")
    if live is not None:
        rec["live"] = live
    return rec


@pytest.mark.parametrize(
    "key",
    [
        PREFIX + "reports/dt=2026-11-15/drift.html",
        PREFIX + "reports/dt=2026-11-15/drift_decision.json",
        PREFIX + "quarantine/dt=2026-11-13/validation.html",
        PREFIX + "evaluations/manual__2026-11-16T10_00_00_00_00/evaluation.html",
    ],
)
def test_report_keys_of_the_pipeline_are_served_with_their_content_type(demo_cfg, key):
    cfg, content_type = monitoring.resolve_report([demo_cfg], key)
    assert cfg is demo_cfg
    assert content_type == ("text/html; charset=utf-8" if key.endswith(".html") else "application/json")


@pytest.mark.parametrize(
    "key",
    [
        PREFIX + "reports/dt=2026-11-15/../../../../incoming/dt=2026-11-15/batch.csv",
        PREFIX + "reports/dt=2026-11-15/%2e%2e/secret.html",
        PREFIX + "quarantine/dt=2026-11-13/data/batch.csv",  # quarantined raw data holds PII
        PREFIX + "quarantine/dt=2026-11-13/data/x.html",
        PREFIX + "staged/dt=2026-11-15/batch.parquet",
        PREFIX + "history/dt=2026-11-15.json",
        PREFIX + "reports//dt=2026-11-15/drift.html",
        PREFIX + "reports/dt=2026-11-15/drift.html/",
        PREFIX + "reports/dt=2026-11-15/.hidden.html",
        PREFIX + "reports/dt=2026-11-15\\..\\x.html",
        PREFIX + "reports/dt=2026-11-15/drift.exe",
        "/" + PREFIX + "reports/dt=2026-11-15/drift.html",
        "incoming/dt=2026-11-15/drift.html",
        "driftwatch/other_model/reports/dt=2026-11-15/drift.html",
        "",
    ],
)
def test_anything_else_is_refused(demo_cfg, key):
    assert monitoring.resolve_report([demo_cfg], key) is None


def test_exceedance_puts_distances_and_p_values_on_one_scale():
    assert monitoring.exceedance(0.2, 0.1, "wasserstein") == pytest.approx(2.0)
    assert monitoring.exceedance(0.02, 0.05, "chisquare") == pytest.approx(2.5)
    assert monitoring.exceedance(0.5, 0.05, "ks") == pytest.approx(0.1)
    assert monitoring.exceedance(0.0, 0.05, "ks") == monitoring.EXCEEDANCE_CAP
    assert monitoring.exceedance(None, 0.1, "psi") is None
    assert monitoring.exceedance(float("nan"), 0.1, "psi") is None


def test_page_data_from_history_records(demo_cfg):
    records = [
        record("2026-11-12", 0.0, scores={"age": 0.02, "channel": 0.9}),
        record("2026-11-13", None, status="quarantined"),
        record(
            "2026-11-14",
            0.5,
            scores={"age": 0.35, "channel": 0.001},
            live={"metric": "roc_auc", "value": 0.61, "evaluated": 0.74, "degraded": True},
        ),
    ]
    page = monitoring.build_model_page(
        demo_cfg,
        records,
        champion={"version": "2", "run_id": "abc", "tags": {"promoted_at": "2026-11-10T00:00:00+00:00"}},
        history=[
            {"action": "promote", "version": "1", "previous": None, "at": "2026-11-01", "by": "a", "reason": "boot"},
            {"action": "rollback", "version": "1", "previous": "2", "at": "2026-11-09", "by": "b", "reason": "bad"},
        ],
        versions=[{"version": "3", "status": "rejected", "detail": "no improvement", "aliases": [], "run_id": "r3"}],
        mlflow_url="http://mlflow:5000/",
    )
    assert [r.batch_date for r in page.rows] == ["2026-11-14", "2026-11-13", "2026-11-12"], "newest first"
    assert page.dates == ["2026-11-12", "2026-11-13", "2026-11-14"], "charts run oldest to newest"
    assert [r.batch_date for r in page.quarantines] == ["2026-11-13"]
    assert page.rows[1].reports == {"validation report": PREFIX + "quarantine/dt=2026-11-13/validation.html"}
    assert page.rows[0].reports["drift report"] == PREFIX + "reports/dt=2026-11-14/drift.html"
    assert page.shares == [0.0, None, 0.5]
    assert page.drift["age"] == [pytest.approx(0.2), None, pytest.approx(3.5)]
    assert page.drift["channel"][2] == monitoring.EXCEEDANCE_CAP  # chisquare p=0.001 vs 0.05 is 50x, capped
    assert page.performance == {"live": [None, None, 0.61], "evaluated": [None, None, 0.74]}
    assert [e["action"] for e in page.events] == ["rollback", "promote", "reject"]


def test_rendered_page_escapes_data_and_links_reports_and_mlflow(demo_cfg):
    records = [
        record("2026-11-12", 0.0, scores={"age": 0.02}),
        {**record("2026-11-13", None, status="quarantined"), "validation": {"reason": HOSTILE}},
        {**record("2026-11-14", 0.5, scores={"age": 0.35}), "reason": HOSTILE},
    ]
    page = monitoring.build_model_page(
        demo_cfg,
        records,
        champion={
            "version": "2",
            "run_id": "run-2",
            "tags": {"promoted_at": "2026-11-10", "promotion_reason": HOSTILE},
        },
        history=[{"action": "promote", "version": "2", "at": "2026-11-10", "by": HOSTILE, "reason": HOSTILE}],
        versions=[
            {"version": "2", "status": "champion", "detail": HOSTILE, "aliases": ["champion"], "run_id": "run-2"}
        ],
        mlflow_url="http://mlflow:5000",
    )
    html = pages.render_page("Model monitoring", pages.render_model_section(page, report_base="/dw/report"))
    assert "<script" not in html and "&lt;script&gt;" in html
    assert 'href="/dw/report/driftwatch/credit_default/reports/dt=2026-11-14/drift.html"' in html
    assert 'href="/dw/report/driftwatch/credit_default/quarantine/dt=2026-11-13/validation.html"' in html
    assert 'href="http://mlflow:5000/#/models/credit_default/versions/2"' in html
    assert 'href="http://mlflow:5000/#/runs/run-2"' in html
    assert "Champion: <b>v2</b> since 2026-11-10" in html
    assert html.count('class="dw-batch"') == 3
    assert html.count("<svg") == 2, "drift-share chart and per-feature grid (no live metric yet)"
    assert "http" not in html.replace("http://mlflow:5000", "").replace("http://www.w3.org/2000/svg", ""), (
        "nothing may be fetched from elsewhere"
    )


def test_line_chart_draws_each_series_and_the_threshold():
    svg = monitoring.line_chart_svg(
        ["2026-11-01", "2026-11-02", "2026-11-03"],
        {"a": [0.1, None, 0.5], "b": [0.2, 0.3, 0.4]},
        title="t <x>",
        threshold=0.3,
        y_max=1.0,
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 3, "a gap splits series a into two segments"
    assert 'class="dw-threshold"' in svg and "t &lt;x&gt;" in svg


def _decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 3 * width
    rows = [raw[i * stride + 1 : (i + 1) * stride] for i in range(height)]
    return width, height, rows


def test_bar_chart_png_is_a_valid_png_with_red_bars_over_the_threshold():
    width, height, rows = _decode_png(monitoring.bar_chart_png([0.1, 0.5], threshold=0.3, width=40, height=20))
    assert (width, height) == (40, 20)
    bottom = rows[height - 5]

    def pixel(x: int) -> tuple[int, int, int]:
        return tuple(bottom[3 * x : 3 * x + 3])

    assert pixel(10) == (9, 105, 218), "a bar under the threshold is blue"
    assert pixel(30) == (207, 34, 46), "a bar over the threshold is red"
    assert pixel(1) == (255, 255, 255)


def test_a_missing_batch_is_listed_without_report_links(demo_cfg):
    rows = monitoring.batch_rows(demo_cfg, [{"batch_date": "2026-11-20", "status": "missing", "action": "alert"}])
    assert [(r.status, r.reports) for r in rows] == [("missing", {})]
