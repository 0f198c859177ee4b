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
    assert page.performance["realized"] == [None, None, 0.61], "an old-shape live record still counts"
    assert page.performance["evaluated"] == [None, None, 0.74]
    assert page.performance["estimated"] == [None, None, None]
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


def estimate(value: float | None, evaluated: float = 0.74, **extra) -> dict:
    """An `estimate` field shaped like scoring.batch_estimate writes it (not estimated when value is None)."""
    if value is None:
        return {"metric": "roc_auc", "value": None, "reason": HOSTILE, "method": "none", "evaluated": evaluated}
    return {
        "metric": "roc_auc",
        "value": value,
        "lower": value - 0.05,
        "upper": value + 0.05,
        "sigma": 0.01,
        "rows": 2000,
        "calibrated": True,
        "method": "cbpe",
        "evaluated": evaluated,
        **extra,
    }


def live(value: float | None, rows: int = 1800, **extra) -> dict:
    """A `live` field of the windowed shape scoring.live_performance writes."""
    found = {
        "metric": "roc_auc",
        "model_version": "3",
        "value": value,
        "rows": rows,
        "min_rows": 200,
        "window_days": 7,
        "since": "2026-11-12",
        "until": "2026-11-14",
        "days": ["2026-11-12", "2026-11-14"],
        "evaluated": 0.74,
        "degraded": value is not None and value < 0.69,
        "by_version": {"2": {"rows": 300, "value": 0.7, "problems": []}},
        "reason": "",
        **extra,
    }
    if rows < 200:
        found["note"] = f"{rows} labelled row(s) predicted by v3 in the last 7 day(s): 200 are needed to measure it"
    return found


def performance_records() -> list[dict]:
    """Four batches: an old-shape live record, a not-estimated batch, and two with estimates and realized values."""
    old_live = {"metric": "roc_auc", "value": 0.72, "rows": 400, "labels": 400, "model_version": "2"}
    return [
        record("2026-11-11", 0.0, live={**old_live, "evaluated": 0.75, "degraded": False}),
        {**record("2026-11-12", 0.0, live=live(None, rows=40)), "estimate": estimate(None)},
        {
            **record("2026-11-13", 0.1, live=live(0.70)),
            "estimate": estimate(0.71),
            "policy": {"action": "none", "alert": False, "retrain": False, "reason": "no signal", "signals": {}},
        },
        {
            **record("2026-11-14", 0.5, live=live(0.61, reason="concept drift: live roc_auc 0.610 of v3")),
            "estimate": estimate(0.65),
            "policy": {"action": "pending-labels", "alert": True, "retrain": False, "reason": HOSTILE, "signals": {}},
        },
    ]


def test_performance_series_has_the_band_the_realized_points_and_the_evaluated_line():
    series = monitoring.performance_series(list(reversed(performance_records())))
    assert series["estimated"] == [None, None, 0.71, 0.65], "in date order; nothing before CBPE or when not estimated"
    assert series["lower"] == [None, None, pytest.approx(0.66), pytest.approx(0.60)]
    assert series["upper"] == [None, None, pytest.approx(0.76), pytest.approx(0.70)]
    assert series["realized"] == [0.72, None, 0.70, 0.61], "old shape counts; too few labelled rows give no point"
    assert series["evaluated"] == [0.75, 0.74, 0.74, 0.74], "from the estimate, else from the live record"
    assert monitoring.not_estimated_reason(performance_records()[:2]) == HOSTILE
    assert monitoring.not_estimated_reason(performance_records()) == "", "the newest batch is estimated"


def test_band_chart_draws_the_band_the_points_and_the_evaluated_line_with_escaped_text():
    labels = ["2026-11-11", "2026-11-12", HOSTILE, "2026-11-14"]
    svg = monitoring.band_chart_svg(
        labels,
        ([None, 0.6, 0.66, 0.6], [None, 0.65, 0.71, 0.65], [None, 0.7, 0.76, None]),
        points=[0.72, None, 0.7, 0.61],
        reference=[0.75, 0.74, 0.74, 0.74],
        title=f"Estimated {HOSTILE}",
        names=("estimated", HOSTILE, "evaluated"),
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('<polygon class="dw-band"') == 1, "the band spans the batches with both bounds"
    assert svg.count('<circle class="dw-realized"') == 3, "one point per realized value"
    assert svg.count('class="dw-evaluated"') == 1, "the evaluated line"
    assert svg.count("<polyline") == 2, "the estimate line and the evaluated line"
    assert "<script" not in svg and svg.count("&lt;script&gt;") == 5, "title (twice), axis, legend, tooltip"


def test_a_lone_estimate_is_still_drawn_as_a_band():
    svg = monitoring.band_chart_svg(["2026-11-14"], ([0.6], [0.65], [0.7]), points=[None], reference=[None], title="t")
    points = svg.split('<polygon class="dw-band"')[1].split('points="')[1].split('"')[0]
    assert len(points.split()) == 4, "a lone batch is widened into a small box"


def test_page_shows_the_performance_chart_and_the_policy_decision(demo_cfg):
    page = monitoring.build_model_page(demo_cfg, performance_records())
    newest = page.rows[0]
    assert (newest.policy, newest.policy_reason, newest.estimate["value"]) == ("pending-labels", HOSTILE, 0.65)
    assert page.rows[-1].policy == "", "a record written before the policy"
    html = pages.render_page("Model monitoring", pages.render_model_section(page, report_base="/dw/report"))
    assert "<script" not in html
    assert "Estimated (band), realized (points) and evaluated roc_auc" in html
    assert html.count('class="dw-band"') == 1 and html.count('class="dw-realized"') == 3
    assert "<th>policy</th>" in html and f'<span class="warn" title="{pages.escape(HOSTILE)}">pending-labels' in html
    assert "estimated 0.650 [0.600, 0.700]" in html and "realized 0.610" in html
    assert "(v3, 1800 rows, 11-12..11-14)" in html
    assert "too few labels (40 of 200 rows)" in html and "not estimated" in html
    assert "v2: 300 rows, 0.700" in html, "earlier versions' rows are in the tooltip"


def test_without_estimates_or_labels_a_sentence_replaces_the_performance_chart(demo_cfg):
    records = [{**record("2026-11-12", 0.0, live=live(None, rows=0)), "estimate": estimate(None)}]
    html = pages.render_model_section(monitoring.build_model_page(demo_cfg, records), report_base="/dw/report")
    assert 'class="dw-band"' not in html and "no batch has a label-free estimate" in html
    assert "Newest estimate: &lt;script&gt;" in html, "why it was not estimated, escaped"


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


def attribution_records() -> list[dict]:
    """A record before the check, one not measured, one whose ranking held and one with attribution drift."""
    held = {"measured": True, "model_version": "3", "ndcg": 0.97, "threshold": 0.9, "attribution_drift": False}
    held.update(rows=1800, since="2026-11-12", until="2026-11-13", top_features=["age"], reason="")
    drifted = {**held, "ndcg": 0.41, "attribution_drift": True, "reason": "attribution drift: nDCG 0.41 < 0.9"}
    drifted.update(top_features=[HOSTILE, "age"], evaluated_top_features=["credit_utilization", "age"])
    not_measured = {"measured": False, "ndcg": None, "attribution_drift": None, "note": "120 labelled row(s)"}
    return [
        record("2026-11-11", 0.0),
        {**record("2026-11-12", 0.0), "attribution": not_measured},
        {**record("2026-11-13", 0.0), "attribution": held},
        {**record("2026-11-14", 0.0), "attribution": drifted},
    ]


def test_the_page_shows_attribution_in_a_column_and_its_ndcg_against_the_threshold(demo_cfg):
    page = monitoring.build_model_page(demo_cfg, attribution_records())
    assert page.attribution == [None, None, 0.97, 0.41], "in date order; nothing where it was not measured"
    assert page.rows[0].attribution["attribution_drift"] is True and page.rows[-1].attribution is None
    html = pages.render_model_section(page, report_base="/dw/report")
    assert "<th>attribution</th>" in html and "<script" not in html
    assert '<span class="bad" title="attribution drift: nDCG 0.41 &lt; 0.9">nDCG 0.410</span>' in html
    assert f"now {pages.escape(HOSTILE)}, age; evaluated credit_utilization, age" in html
    assert 'title="1800 labelled rows of v3, 2026-11-12..2026-11-13; threshold 0.9">nDCG 0.970</span>' in html
    assert '<span class="muted" title="120 labelled row(s)">not measured</span>' in html
    chart = html.split("Attribution: nDCG of the importance ranking vs its evaluation")[2].split("</svg>")[0]
    assert 'class="dw-threshold"' in chart and chart.count("<circle") == 2, "the threshold and two measured batches"
    quiet = pages.render_model_section(monitoring.build_model_page(demo_cfg, attribution_records()[:2]), report_base="")
    assert "Attribution: nDCG" not in quiet, "no chart before a batch is measured"


def shadow_state(status: str = "shadow", verdict: dict | None = None, **extra) -> dict:
    """A shadow state object shaped like shadow.enter_shadow (and, once decided, shadow_step) writes it."""
    return {
        "status": status,
        "version": "3",
        "champion": "2",
        "as_of": "2026-11-10",
        "started_at": "2026-11-11T02:00:00+00:00",
        "reason": "data drift",
        "replaced": None,
        "holdout": {"challenger": 0.781, "champion": 0.752},
        "verdict": verdict,
        **extra,
    }


def shadow_scored(agreement: float, psi: float, change: float, version: str = "3") -> dict:
    """A record's `shadow` field, as shadow.batch_comparison writes it for a classifier."""
    return {
        "version": version,
        "champion_version": "2",
        "rows": 500,
        "psi": psi,
        "agreement": agreement,
        "positive_rate": 0.2,
        "challenger_positive_rate": 0.2 + change,
        "positive_rate_change": change,
        "champion_ms_per_1k": 3.1,
        "challenger_ms_per_1k": 4.2,
        "predictions_uri": "s3://bucket/driftwatch/credit_default/predictions/shadow.parquet",
    }


def shadow_evaluation(batches: int, labelled: int, difference: float | None, **extra) -> dict:
    """A record's `shadow_evaluation` field, as shadow.shadow_step writes it (no interval before labels)."""
    return {
        "version": "3",
        "champion": "2",
        "verdict": "continue",
        "status": "shadow",
        "age_days": batches,
        "reasons": [f"waiting: {labelled} of 3 labelled shadow batches"],
        "batches": batches,
        "labelled_batches": labelled,
        "pending_labels": [],
        "rows": 1000 * labelled,
        "difference": difference,
        "lower": None if difference is None else difference - 0.01,
        "upper": None if difference is None else difference + 0.02,
        "confidence": 0.95,
        "champion_value": None if difference is None else 0.75,
        "challenger_value": None if difference is None else 0.75 + difference,
        "worse_slices": [],
        **extra,
    }


def shadow_records() -> list[dict]:
    """An older version's shadow batch, the as_of batch, three evaluated shadow batches and one scored since."""
    return [
        {**record("2026-11-09", 0.0), "shadow": shadow_scored(0.5, 0.9, 0.3, version="1")},
        {**record("2026-11-10", 0.0), "shadow": shadow_scored(0.5, 0.9, 0.3)},  # on the as_of: not the shadow's
        {
            **record("2026-11-11", 0.0),
            "shadow": shadow_scored(0.97, 0.02, 0.01),
            "shadow_evaluation": shadow_evaluation(1, 0, None, pending_labels=["2026-11-11"]),
        },
        {
            **record("2026-11-12", 0.0),
            "shadow": shadow_scored(0.95, 0.04, -0.02),
            "shadow_evaluation": shadow_evaluation(2, 1, 0.012),
        },
        {
            **record("2026-11-13", 0.1),
            "shadow": shadow_scored(0.93, 0.05, 0.03),
            "shadow_evaluation": shadow_evaluation(3, 2, 0.015, reasons=[HOSTILE], pending_labels=["2026-11-13"]),
        },
        {**record("2026-11-14", 0.0), "shadow": shadow_scored(0.91, 0.06, 0.0)},  # not evaluated yet
    ]


def test_shadow_view_takes_the_shadows_batches_and_counts_them(demo_cfg):
    page = monitoring.build_model_page(demo_cfg, list(reversed(shadow_records())), shadow_state=shadow_state())
    view = page.shadow
    assert view is not None and view.active
    assert view.dates == ["2026-11-11", "2026-11-12", "2026-11-13", "2026-11-14"], "after as_of, of v3, in date order"
    assert (view.scored, view.labelled) == (4, 2), "3 counted by the newest evaluation, 1 scored since"
    assert view.series("agreement") == [0.97, 0.95, 0.93, 0.91]
    assert view.series("difference") == [None, 0.012, 0.015, None]
    assert view.series("lower") == [None, pytest.approx(0.002), pytest.approx(0.005), None]
    assert view.latest["reasons"] == [HOSTILE]
    assert monitoring.build_model_page(demo_cfg, shadow_records()).shadow is None, "no state: no shadow"


def test_the_page_shows_the_challenger_in_shadow_its_batches_and_charts(demo_cfg):
    page = monitoring.build_model_page(demo_cfg, shadow_records(), shadow_state=shadow_state(replaced="1"))
    html = pages.render_page("Model monitoring", pages.render_model_section(page, report_base="/dw/report"))
    assert "<script" not in html and "<li>continue: &lt;script&gt;" in html, "the evaluation's reasons, escaped"
    section = html.split("<h3>Shadow</h3>")[1].split("<h3>Recent quarantines</h3>")[0]
    assert (
        "<b>v3</b> in shadow beside champion v2 since 2026-11-10: 4 batches scored, 2 labelled "
        "(it replaced v1, retired undecided); roc_auc difference (challenger − champion) +0.0150 [+0.0050, +0.0350] "
        "(95% interval, 2000 labelled rows)"
    ) in section
    assert "Holdout roc_auc: challenger 0.781, champion 0.752" in section
    assert "labels pending for 2026-11-13" in section
    assert section.count('class="dw-shadow-batch"') == 4
    newest, evaluated = section.split('<tr class="dw-shadow-batch">')[1:3]
    assert newest.startswith("<td>2026-11-14</td><td>500</td><td>91.0%</td><td>0.060</td><td>+0.0%</td><td></td>")
    assert '<span class="muted">-</span>' in newest, "scored, not evaluated yet"
    assert "<td>93.0%</td><td>0.050</td><td>+3.0%</td><td>+0.0150 [+0.0050, +0.0350]</td>" in evaluated
    assert '<span class="muted" title="&lt;script&gt;' in evaluated
    agreement = section.split("Shadow: agreement of challenger and champion</title>")[1].split("</svg>")[0]
    assert agreement.count("<circle") == 4 and ">90%</text>" in agreement, "four batches, the axis from 90%"
    difference = section.split("Shadow: roc_auc difference, challenger − champion</title>")[1].split("</svg>")[0]
    assert difference.count('class="dw-band"') == 1, "the interval spans the two evaluated batches"
    assert difference.count('class="dw-realized"') == 2 and "2026-11-13: +0.015</title>" in difference
    assert difference.count('class="dw-evaluated"') == 1 and ">95% interval</text>" in difference, "0 line, legend"


def test_the_page_shows_the_last_shadows_verdict_and_its_reasons(demo_cfg):
    verdict = {
        **shadow_evaluation(5, 3, 0.02, verdict="promote", status="promoted"),
        "reasons": ["paired roc_auc difference +0.0200: the lower bound is above min_improvement 0.0050"],
        "decided_on": "2026-11-15",
    }
    state = shadow_state("promoted", verdict)
    records = [*shadow_records(), {**record("2026-11-15", 0.0), "shadow_evaluation": verdict}]
    page = monitoring.build_model_page(demo_cfg, records, shadow_state=state)
    assert (page.shadow.active, page.shadow.scored, page.shadow.labelled) == (False, 5, 3), "the verdict's counts"
    html = pages.render_model_section(page, report_base="/dw/report")
    assert (
        'Last shadow: <b>v3</b> <span class="ok">promoted</span> on 2026-11-15 (verdict promote), beside champion '
        "v2 since 2026-11-10: 5 batches scored, 3 labelled; roc_auc difference (challenger − champion) "
        "+0.0200 [+0.0100, +0.0400]"
    ) in html
    assert "<li>paired roc_auc difference +0.0200: the lower bound is above min_improvement 0.0050</li>" in html
    assert "labels pending" not in html, "a decided shadow waits for nothing"
    assert html.count('class="dw-shadow-batch"') == 5
    rejected = shadow_state("rejected", {**verdict, "verdict": "reject", "reasons": [HOSTILE]})
    html = pages.render_model_section(
        monitoring.build_model_page(demo_cfg, records, shadow_state=rejected), report_base=""
    )
    assert '<span class="bad">rejected</span>' in html and "<li>&lt;script&gt;" in html and "<script" not in html


def test_a_regression_shadow_shows_the_mean_absolute_difference(demo_cfg):
    target = demo_cfg.dataset.target.model_copy(update={"task": "regression"})
    cfg = demo_cfg.model_copy(update={"dataset": demo_cfg.dataset.model_copy(update={"target": target})})
    scored = {"version": "3", "champion_version": "2", "rows": 400, "psi": 0.03, "mean_abs_difference": 1.25}
    page = monitoring.build_model_page(
        cfg, [{**record("2026-11-12", 0.0), "shadow": scored}], shadow_state=shadow_state()
    )
    html = pages.render_model_section(page, report_base="")
    assert "<th>mean |difference|</th>" in html and "positive-rate" not in html and "agreement" not in html
    assert "<td>1.250</td><td>0.030</td><td></td>" in html
    assert "Shadow: mean absolute score difference" in html and "1 batch scored, 0 labelled" in html
    assert "No paired difference yet" in html


def test_without_a_shadow_state_the_section_is_one_line_or_nothing(demo_cfg):
    def mode(name: str):
        return demo_cfg.model_copy(update={"promotion": demo_cfg.promotion.model_copy(update={"mode": name})})

    shadowing = pages.render_model_section(
        monitoring.build_model_page(mode("shadow"), shadow_records()), report_base=""
    )
    assert '<h3>Shadow</h3><p class="muted">No challenger in shadow.</p>' in shadowing
    assert "dw-shadow" not in shadowing and "Shadow: agreement" not in shadowing
    immediate = pages.render_model_section(
        monitoring.build_model_page(mode("immediate"), shadow_records()), report_base=""
    )
    assert "<h3>Shadow</h3>" not in immediate, "a model that promotes at once expects no shadow"
    entered = monitoring.build_model_page(mode("immediate"), [record("2026-11-10", 0.0)], shadow_state=shadow_state())
    html = pages.render_model_section(entered, report_base="")
    assert "0 batches scored, 0 labelled" in html and "No shadow batch in the batches shown." in html


def test_load_model_page_reads_the_shadow_state_and_survives_an_unreadable_one(demo_cfg, monkeypatch):
    from driftwatch import history, layout, storage

    read = []

    def read_json(client, bucket, key):
        read.append((bucket, key))
        return shadow_state()

    monkeypatch.setattr(history, "read_history", lambda client, cfg, last=None: shadow_records())
    monkeypatch.setattr(storage, "read_json", read_json)
    page = monitoring.load_model_page(object(), demo_cfg, None)
    assert read == [(demo_cfg.storage.bucket, layout.shadow_state_key(demo_cfg))]
    assert page.shadow is not None and page.shadow.scored == 4 and page.errors == []

    def broken(client, bucket, key):
        raise PermissionError(HOSTILE)

    monkeypatch.setattr(storage, "read_json", broken)
    page = monitoring.load_model_page(object(), demo_cfg, None)
    assert page.shadow is None and len(page.rows) == 6
    assert page.errors == [f"shadow state unreadable: PermissionError: {HOSTILE}"]
