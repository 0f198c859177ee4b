"""The read model behind the "Model monitoring" page and the report pages: Airflow-free.

Everything here is built from what the pipeline already writes: the per-batch history records
under ``<output_prefix>history/``, the report objects under ``reports/``, ``quarantine/`` and
``evaluations/``, and the MLflow registry (champion alias, version tags, ``champion_history``).
Charts are SVG (for the page) or a tiny PNG (for emails), drawn here in pure Python so that no
script, style or font is ever fetched from a CDN: many deployments are air-gapped.

Every value that comes from data (feature names, reasons, category values) is escaped.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote

from driftwatch import layout
from driftwatch.config import ModelConfig

P_VALUE_METHODS = frozenset({"ks", "chisquare"})  # same set as drift.P_VALUE_METHODS; drift imports numpy
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
# One path segment per level and a fixed suffix: nothing else under the pipeline's prefixes (the
# quarantined raw data under quarantine/dt=.../data/ included) can be served.
_DATED = re.compile(r"^(reports|quarantine)/dt=\d{4}-\d{2}-\d{2}/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(html|json)$")
_EVALUATION = re.compile(r"^evaluations/[A-Za-z0-9_=-][A-Za-z0-9_.=-]*/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(html|json)$")
EXCEEDANCE_CAP = 4.0  # drift scores are drawn as multiples of their threshold, capped for the axis

# --------------------------------------------------------------------------- report keys


def report_key_allowed(cfg: ModelConfig, key: str) -> bool:
    """True when ``key`` is one of this model's report objects (never raw or quarantined data)."""
    prefix = cfg.storage.output_prefix
    if not key.startswith(prefix) or "\\" in key or "\x00" in key:
        return False
    rest = key[len(prefix) :]
    if any(part in ("", ".", "..") for part in rest.split("/")):
        return False
    return bool(_DATED.match(rest) or _EVALUATION.match(rest))


def resolve_report(cfgs: Iterable[ModelConfig], key: str) -> tuple[ModelConfig, str] | None:
    """The model owning a report key and the content type to serve it with; None if refused."""
    for cfg in cfgs:
        if report_key_allowed(cfg, key):
            suffix = key[key.rfind(".") :]
            return cfg, CONTENT_TYPES[suffix]
    return None


def report_url(base_url: str, key: str) -> str:
    """The web address of a report object under a report base URL (``.../driftwatch/report``)."""
    return f"{base_url.rstrip('/')}/{quote(key, safe='/=')}"


def batch_report_keys(cfg: ModelConfig, batch_date: str, quarantined: bool) -> dict[str, str]:
    """The report objects a monitor run writes for one batch, by label."""
    if quarantined:
        prefix = layout.quarantine_prefix(cfg, batch_date)
        return {"validation report": prefix + "validation.html"}
    prefix = layout.report_prefix(cfg, batch_date)
    return {"drift report": prefix + "drift.html", "validation report": prefix + "validation.html"}


def evaluation_prefix(cfg: ModelConfig, run_id: str) -> str:
    """Where the retrain run ``run_id`` wrote its evaluation report (see retraining._safe_key)."""
    safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in run_id)
    return f"{cfg.storage.output_prefix}evaluations/{safe}/"


# --------------------------------------------------------------------------- page data


def exceedance(score: float | None, threshold: float, method: str) -> float | None:
    """How far past its threshold a score is: 1.0 is the threshold, above 1 is drift."""
    if score is None or not math.isfinite(score) or threshold <= 0:
        return None
    if method not in P_VALUE_METHODS:
        return min(score / threshold, EXCEEDANCE_CAP)
    return min(threshold / score, EXCEEDANCE_CAP) if score > 0 else EXCEEDANCE_CAP


@dataclass
class BatchRow:
    """One batch on the monitoring page."""

    batch_date: str
    status: str
    rows: int | None
    drift_share: float | None
    threshold: float | None
    drifted: list[str]
    action: str
    reason: str
    live: dict[str, Any] | None
    reports: dict[str, str] = field(default_factory=dict)


def batch_rows(cfg: ModelConfig, records: Sequence[Mapping[str, Any]]) -> list[BatchRow]:
    """History records as table rows, newest first, each with its report keys."""
    rows = []
    for record in records:
        day = str(record.get("batch_date", ""))
        drift = record.get("drift") or {}
        status = str(record.get("status", "unknown"))
        validation = record.get("validation") or {}
        rows.append(
            BatchRow(
                batch_date=day,
                status=status,
                rows=record.get("rows"),
                drift_share=drift.get("share"),
                threshold=drift.get("threshold"),
                drifted=list(drift.get("drifted") or []),
                action=str(record.get("action", "none")),
                reason=str(record.get("reason") or validation.get("reason") or ""),
                live=record.get("live"),
                # A missing or unreadable-record batch wrote no report to link to.
                reports=batch_report_keys(cfg, day, status == "quarantined")
                if day and status in ("passed", "quarantined")
                else {},
            )
        )
    return sorted(rows, key=lambda r: r.batch_date, reverse=True)


def drift_series(cfg: ModelConfig, records: Sequence[Mapping[str, Any]]) -> dict[str, list[float | None]]:
    """Per-feature exceedance over the batches, in date order (None where there was no drift run)."""
    ordered = sorted(records, key=lambda r: str(r.get("batch_date", "")))
    series: dict[str, list[float | None]] = {}
    for name in cfg.dataset.feature_names:
        method, threshold = cfg.drift_rule(name)
        series[name] = [
            exceedance(((r.get("drift") or {}).get("scores") or {}).get(name), threshold, method) for r in ordered
        ]
    return series


def performance_series(records: Sequence[Mapping[str, Any]]) -> dict[str, list[float | None]]:
    """Live primary metric against the champion's evaluated value, in date order."""
    ordered = sorted(records, key=lambda r: str(r.get("batch_date", "")))
    live = [(r.get("live") or {}) for r in ordered]
    return {
        "live": [_finite(m.get("value")) for m in live],
        "evaluated": [_finite(m.get("evaluated")) for m in live],
    }


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def registry_events(history: Sequence[Mapping[str, Any]], versions: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Promotions and rollbacks (the champion_history tag) and rejections, newest first."""
    events = [
        {
            "action": str(e.get("action", "")),
            "version": str(e.get("version", "")),
            "previous": e.get("previous"),
            "at": str(e.get("at", "")),
            "by": str(e.get("by", "")),
            "reason": str(e.get("reason", "")),
        }
        for e in history
    ]
    for v in versions:
        if v.get("status") == "rejected":
            events.append(
                {
                    "action": "reject",
                    "version": str(v.get("version", "")),
                    "previous": None,
                    "at": str(v.get("rejected_at") or ""),
                    "by": "promotion gate",
                    "reason": str(v.get("detail", "")),
                }
            )
    return sorted(events, key=lambda e: (e["at"], e["version"]), reverse=True)


@dataclass
class ModelPage:
    """Everything the monitoring page shows for one model."""

    cfg: ModelConfig
    champion: dict[str, Any] | None
    rows: list[BatchRow]
    dates: list[str]
    drift: dict[str, list[float | None]]
    shares: list[float | None]
    performance: dict[str, list[float | None]]
    events: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    mlflow_url: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def quarantines(self) -> list[BatchRow]:
        return [r for r in self.rows if r.status == "quarantined"]


def build_model_page(
    cfg: ModelConfig,
    records: Sequence[Mapping[str, Any]],
    *,
    champion: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    versions: Sequence[Mapping[str, Any]] = (),
    mlflow_url: str | None = None,
    errors: Sequence[str] = (),
) -> ModelPage:
    """Assemble one model's section from its history records and what the registry says."""
    ordered = sorted(records, key=lambda r: str(r.get("batch_date", "")))
    return ModelPage(
        cfg=cfg,
        champion=dict(champion) if champion else None,
        rows=batch_rows(cfg, ordered),
        dates=[str(r.get("batch_date", "")) for r in ordered],
        drift=drift_series(cfg, ordered),
        shares=[_finite((r.get("drift") or {}).get("share")) for r in ordered],
        performance=performance_series(ordered),
        events=registry_events(history, versions),
        versions=[dict(v) for v in versions],
        mlflow_url=mlflow_url.rstrip("/") if mlflow_url else None,
        errors=list(errors),
    )


def load_model_page(
    client: Any, cfg: ModelConfig, tracking_uri: str | None, *, last: int = 14, mlflow_url: str | None = None
) -> ModelPage:
    """Read one model's history from S3 and its registry state from MLflow, then build the section.

    A registry that cannot be reached leaves the batches visible with an error line: the page is
    most needed exactly when something is broken.
    """
    from driftwatch import history as batch_history

    records = batch_history.read_history(client, cfg, last=last)
    champion, events, versions, errors = None, [], [], []
    if tracking_uri:
        try:
            _probe(tracking_uri)
            from driftwatch import registry

            name = cfg.registry.registered_model
            champion = registry.champion(tracking_uri, name)
            versions = registry.version_summaries(tracking_uri, name)
            events = registry.champion_history(tracking_uri, name) if versions else []
        except Exception as err:  # any registry failure: show the batches anyway
            errors.append(f"MLflow registry unavailable: {type(err).__name__}: {str(err)[:200]}")
    return build_model_page(
        cfg, records, champion=champion, history=events, versions=versions, mlflow_url=mlflow_url, errors=errors
    )


def _probe(tracking_uri: str, timeout: float = 3.0) -> None:
    """Fail fast on an unreachable MLflow server: its client retries for minutes otherwise."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.request

    with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout):
        pass


# --------------------------------------------------------------------------- SVG charts

_PALETTE = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#57606a", "#0550ae")


def _points(values: Sequence[float | None], x0: float, dx: float, y: Any) -> list[list[tuple[float, float]]]:
    """Polyline segments (a None value breaks the line)."""
    segments: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x0 + i * dx, y(value)))
    return [s for s in segments if s]


def line_chart_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    threshold: float | None = None,
    y_max: float | None = None,
    y_format: str = "{:.2f}",
    width: int = 560,
    height: int = 200,
) -> str:
    """A small line chart with a legend and an optional dashed threshold line, as inline SVG."""
    left, right, top, bottom = 44, 12, 24, 36
    values = [v for vs in series.values() for v in vs if v is not None]
    high = y_max if y_max is not None else max([*values, threshold or 0.0, 1e-9])
    low = min([*values, 0.0]) if y_max is None else 0.0
    span = (high - low) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    dx = plot_w / max(len(labels) - 1, 1)

    def y(v: float) -> float:
        return top + plot_h - (min(max(v, low), high) - low) / span * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dw-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d0d7de"/>',
    ]
    for tick in (low, (low + high) / 2, high):
        parts.append(
            f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{escape(y_format.format(tick))}</text>"
        )
    step = max(1, math.ceil(len(labels) / 7))
    for i, label in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            parts.append(
                f'<text x="{left + i * dx:.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">'
                f"{escape(label[5:] if len(label) == 10 else label)}</text>"
            )
    if threshold is not None:
        parts.append(
            f'<line class="dw-threshold" x1="{left}" x2="{left + plot_w}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}" stroke="#cf222e" stroke-dasharray="4 3"/>'
        )
    for n, (name, vs) in enumerate(series.items()):
        color = _PALETTE[n % len(_PALETTE)]
        for segment in _points(vs, left, dx, y):
            coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}"/>' for px, py in segment]
        lx = left + n * 130
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 5}" font-size="10">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def drift_grid_svg(
    labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, columns: int = 4, cell: int = 150
) -> str:
    """Small multiples: one sparkline per feature, score as a multiple of its threshold (dashed at 1)."""
    cell_h, pad = 64, 6
    rows = max(1, math.ceil(len(series) / columns))
    width, height = columns * cell, rows * cell_h
    dx = (cell - 2 * pad) / max(len(labels) - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dw-chart dw-drift-grid" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>Per-feature drift over batches</title>'
    ]
    for n, (name, values) in enumerate(series.items()):
        ox, oy = (n % columns) * cell, (n // columns) * cell_h
        top, plot_h = oy + 16, cell_h - 24

        def y(v: float, top: float = top, plot_h: float = plot_h) -> float:
            return top + plot_h - min(v, EXCEEDANCE_CAP) / EXCEEDANCE_CAP * plot_h

        drifted = any(v is not None and v >= 1 for v in values[-1:])
        parts.append(
            f'<text x="{ox + pad}" y="{oy + 11}" font-size="10" font-weight="{"bold" if drifted else "normal"}">'
            f"{escape(name)}</text>"
        )
        parts.append(
            f'<rect x="{ox + pad}" y="{top}" width="{cell - 2 * pad}" height="{plot_h}" '
            'fill="#f6f8fa" stroke="#d0d7de"/>'
        )
        parts.append(
            f'<line x1="{ox + pad}" x2="{ox + cell - pad}" y1="{y(1.0):.1f}" y2="{y(1.0):.1f}" '
            'stroke="#cf222e" stroke-dasharray="3 2"/>'
        )
        for segment in _points(values, ox + pad, dx, y):
            coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
            parts.append(f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{coords}"/>')
        for i, value in enumerate(values):
            if value is not None and value >= 1:
                parts.append(f'<circle cx="{ox + pad + i * dx:.1f}" cy="{y(value):.1f}" r="2.5" fill="#cf222e"/>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- PNG (emails)


def _png(width: int, height: int, pixels: list[bytearray]) -> bytes:
    """Encode RGB rows as a PNG: signature, IHDR, one zlib-compressed IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in pixels)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bar_chart_png(
    values: Sequence[float | None],
    *,
    threshold: float | None = None,
    highlight_last: bool = True,
    width: int = 360,
    height: int = 90,
    y_max: float = 1.0,
) -> bytes:
    """Bars (e.g. drift share per batch) with a red threshold line; the last bar stands out.

    No text is drawn (that would need a font); the email says in words what the bars show.
    """
    background, axis, bar, last, over, red = (
        (255, 255, 255),
        (208, 215, 222),
        (9, 105, 218),
        (130, 80, 223),
        (207, 34, 46),
        (207, 34, 46),
    )
    pixels = [bytearray(background * width) for _ in range(height)]

    def paint(x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        for yy in range(max(0, y0), min(height, y1)):
            row = pixels[yy]
            for xx in range(max(0, x0), min(width, x1)):
                row[3 * xx : 3 * xx + 3] = bytes(color)

    margin = 4
    plot_h = height - 2 * margin
    paint(0, height - margin, width, height - margin + 1, axis)
    n = max(len(values), 1)
    slot = (width - 2 * margin) / n
    for i, value in enumerate(values):
        if value is None:
            continue
        h = round(min(max(value, 0.0), y_max) / y_max * plot_h)
        x0 = margin + round(i * slot + slot * 0.15)
        x1 = margin + round((i + 1) * slot - slot * 0.15)
        color = bar
        if threshold is not None and value >= threshold:
            color = over
        if highlight_last and i == len(values) - 1 and color == bar:
            color = last
        paint(x0, height - margin - max(h, 1), max(x1, x0 + 1), height - margin, color)
    if threshold is not None:
        ty = height - margin - round(min(threshold, y_max) / y_max * plot_h)
        for xx in range(margin, width - margin, 6):
            paint(xx, ty, xx + 3, ty + 1, red)
    return _png(width, height, pixels)


# --------------------------------------------------------------------------- HTML

PAGE_CSS = """
body{font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#1f2328;margin:16px;background:#fff}
h1{font-size:20px;margin:0 0 12px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:14px;margin:14px 0 6px}table{border-collapse:collapse;font-size:13px;margin:4px 0 8px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:bold}.warn{color:#9a6700}.muted{color:#57606a}
.error{background:#fff1f0;border:1px solid #cf222e;padding:6px}.charts{display:flex;flex-wrap:wrap;gap:16px}
a{color:#0969da}code{font-size:12px}
"""


def _fmt_share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _fmt_num(value: Any) -> str:
    number = _finite(value)
    return "" if number is None else f"{number:.3f}"


def _mlflow_links(page: ModelPage, version: str | None, run_id: str | None) -> str:
    """Links to the model version and its run in the MLflow UI."""
    if not page.mlflow_url:
        return ""
    name, base = quote(page.cfg.registry.registered_model, safe=""), escape(page.mlflow_url)
    links = []
    if version:
        href = f"{base}/#/models/{name}/versions/{quote(version, safe='')}"
        links.append(f'<a target="_blank" rel="noopener" href="{href}">model version</a>')
    if run_id:
        links.append(f'<a target="_blank" rel="noopener" href="{base}/#/runs/{quote(run_id, safe="")}">run</a>')
    return " · ".join(links)


def _status_cell(row: BatchRow) -> str:
    css = {"passed": "ok", "quarantined": "bad"}.get(row.status, "warn")
    return f'<span class="{css}">{escape(row.status)}</span>'


def _live_cell(live: Mapping[str, Any] | None) -> str:
    if not live or live.get("value") is None:
        return '<span class="muted">no labels yet</span>'
    css = "bad" if live.get("degraded") else "ok"
    return (
        f'<span class="{css}">{escape(str(live.get("metric", "")))} {_fmt_num(live.get("value"))}</span>'
        f' <span class="muted">(evaluated {_fmt_num(live.get("evaluated"))})</span>'
    )


def _report_links(row: BatchRow, report_base: str) -> str:
    return " · ".join(
        f'<a class="dw-report" href="{escape(report_url(report_base, key))}">{escape(label)}</a>'
        for label, key in row.reports.items()
    )


def render_model_section(page: ModelPage, *, report_base: str, dag_base: str | None = None) -> str:
    """One model's section: champion, batches, trend charts, quarantines, registry history."""
    cfg, out = page.cfg, []
    out.append(f'<section class="dw-model" id="model-{escape(cfg.name)}"><h2>{escape(cfg.name)}</h2>')
    if cfg.description:
        out.append(f'<p class="muted">{escape(cfg.description)}</p>')
    out += [f'<p class="error">{escape(e)}</p>' for e in page.errors]
    if page.champion:
        tags = page.champion.get("tags") or {}
        since = tags.get("promoted_at") or "unknown"
        out.append(
            f'<p class="dw-champion">Champion: <b>v{escape(str(page.champion.get("version")))}</b> since '
            f"{escape(str(since))}"
            + (f" — {escape(str(tags.get('promotion_reason')))}" if tags.get("promotion_reason") else "")
            + (f" (evaluated {cfg.evaluation.primary_metric} {_fmt_num(tags.get('evaluated_primary_metric'))})")
            + f" {_mlflow_links(page, str(page.champion.get('version')), page.champion.get('run_id'))}</p>"
        )
    else:
        out.append('<p class="dw-champion muted">No champion yet: the retrain DAG bootstraps one.</p>')
    if dag_base:
        out.append(
            "<p>DAGs: "
            + " · ".join(
                f'<a target="_top" href="{escape(dag_base)}/{kind}__{escape(cfg.name)}">{kind}</a>'
                for kind in ("monitor", "retrain", "rollback")
            )
            + "</p>"
        )

    out.append(f"<h3>Last {len(page.rows)} batches</h3>")
    if not page.rows:
        out.append('<p class="muted">No batch has been processed yet.</p>')
    else:
        out.append(
            '<table class="dw-batches"><tr><th>batch</th><th>rows</th><th>validation</th><th>drift share</th>'
            "<th>drifted features</th><th>live performance</th><th>action</th><th>reports</th></tr>"
        )
        for row in page.rows:
            share = _fmt_share(row.drift_share)
            if row.drift_share is not None and row.threshold is not None and row.drift_share >= row.threshold:
                share = f'<span class="bad">{share}</span>'
            action_css = "bad" if row.action not in ("none", "") else "muted"
            out.append(
                f'<tr class="dw-batch"><td>{escape(row.batch_date)}</td><td>{row.rows or ""}</td>'
                f"<td>{_status_cell(row)}</td><td>{share}</td><td>{escape(', '.join(row.drifted))}</td>"
                f"<td>{_live_cell(row.live)}</td>"
                f'<td><span class="{action_css}">{escape(row.action)}</span>'
                + (f'<br><span class="muted">{escape(row.reason[:200])}</span>' if row.reason else "")
                + f"</td><td>{_report_links(row, report_base)}</td></tr>"
            )
        out.append("</table>")

    if page.dates:
        threshold = cfg.drift.dataset_drift_share
        out.append('<h3>Trends</h3><div class="charts">')
        out.append(
            line_chart_svg(
                page.dates,
                {"drifted share": page.shares},
                title="Share of drifted features",
                threshold=threshold,
                y_max=1.0,
                y_format="{:.0%}",
            )
        )
        if any(v is not None for v in page.performance["live"]):
            out.append(
                line_chart_svg(
                    page.dates,
                    {
                        f"live {cfg.evaluation.primary_metric}": page.performance["live"],
                        "evaluated": page.performance["evaluated"],
                    },
                    title=f"Live vs evaluated {cfg.evaluation.primary_metric}",
                )
            )
        else:
            out.append('<p class="muted">Live performance: no labelled batch has been scored yet.</p>')
        out.append("</div>")
        out.append(
            '<p class="muted">Per-feature drift score as a multiple of its threshold (dashed line: threshold; '
            f"red dots: drifted; capped at {EXCEEDANCE_CAP:g}×).</p>"
        )
        out.append(drift_grid_svg(page.dates, page.drift))

    out.append("<h3>Recent quarantines</h3>")
    if page.quarantines:
        out.append('<table class="dw-quarantines"><tr><th>batch</th><th>reason</th><th>report</th></tr>')
        out += [
            f"<tr><td>{escape(r.batch_date)}</td><td>{escape(r.reason)}</td>"
            f"<td>{_report_links(r, report_base)}</td></tr>"
            for r in page.quarantines
        ]
        out.append("</table>")
    else:
        out.append('<p class="muted">None in the batches shown.</p>')

    out.append("<h3>Promotions, rejections and rollbacks</h3>")
    if page.events:
        out.append(
            '<table class="dw-events"><tr><th>when</th><th>what</th><th>version</th><th>by</th><th>reason</th>'
            "<th>MLflow</th></tr>"
        )
        runs = {str(v.get("version")): v.get("run_id") for v in page.versions}
        for e in page.events:
            what = e["action"] + (f" (from v{e['previous']})" if e.get("previous") else "")
            out.append(
                f"<tr><td>{escape(e['at'])}</td><td>{escape(what)}</td><td>v{escape(e['version'])}</td>"
                f"<td>{escape(e['by'])}</td><td>{escape(e['reason'])}</td>"
                f"<td>{_mlflow_links(page, e['version'], runs.get(e['version']))}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append('<p class="muted">No registry history yet.</p>')
    if page.versions:
        out.append(
            '<table class="dw-versions"><tr><th>version</th><th>aliases</th><th>status</th><th>detail</th>'
            "<th>MLflow</th></tr>"
        )
        out += [
            f"<tr><td>v{escape(str(v.get('version')))}</td><td>{escape(', '.join(v.get('aliases') or []))}</td>"
            f"<td>{escape(str(v.get('status', '')))}</td><td>{escape(str(v.get('detail', ''))[:300])}</td>"
            f"<td>{_mlflow_links(page, str(v.get('version')), v.get('run_id'))}</td></tr>"
            for v in page.versions
        ]
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def render_page(title: str, body: str) -> str:
    """A complete, self-contained HTML page (inline CSS, no script, nothing fetched)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def render_run_reports(
    dag_id: str, run_id: str, batch_date: str | None, reports: Mapping[str, str], report_base: str
) -> str:
    """The body of a run's Reports tab: links to its reports, the first HTML one embedded."""
    head = f"<p>Run <code>{escape(run_id)}</code> of <code>{escape(dag_id)}</code>"
    head += f", batch {escape(batch_date)}</p>" if batch_date else "</p>"
    if not reports:
        return (
            head + '<p class="muted">This run has no reports (yet): they appear when its tasks have written them.</p>'
        )
    items = "".join(
        f'<li><a class="dw-report" href="{escape(report_url(report_base, key))}" target="dw-report-frame">'
        f'{escape(label)}</a> <span class="muted">{escape(key)}</span></li>'
        for label, key in reports.items()
    )
    first = next((k for k in reports.values() if k.endswith(".html")), None)
    frame = (
        f'<iframe name="dw-report-frame" class="dw-report-frame" title="report" '
        f'src="{escape(report_url(report_base, first))}" '
        'style="width:100%;height:80vh;border:1px solid #d0d7de"></iframe>'
        if first
        else ""
    )
    return head + f"<ul>{items}</ul>{frame}"
