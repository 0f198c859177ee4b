"""The "Model monitoring" page and a run's Reports tab, from the read model in driftwatch.monitoring."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from driftwatch.reports.charts import EXCEEDANCE_CAP, band_chart_svg, drift_grid_svg, line_chart_svg
from driftwatch.reports.markup import document, escape, finite, report_url
from driftwatch.reports.style import MONITORING_CSS, RULE

if TYPE_CHECKING:
    from driftwatch.monitoring import BatchRow, ModelPage


def _fmt_share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _fmt_num(value: Any) -> str:
    number = finite(value)
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


# Only a retrain requested now is red; the decisions that hold one back are amber, so they are noticed.
POLICY_CSS = {"retrain": "bad", "none": "muted"}


def _attr(name: str, text: Any) -> str:
    """An attribute with escaped text (a tooltip), or nothing when there is no text."""
    return f' {name}="{escape(text)}"' if text else ""


def _estimate_line(estimate: Mapping[str, Any] | None) -> str:
    """The label-free estimate and its band, or why there is none; "" for records without one."""
    if not estimate:
        return ""
    if finite(estimate.get("value")) is None:
        return f'<span class="muted"{_attr("title", estimate.get("reason"))}>not estimated</span>'
    band = ""
    if finite(estimate.get("lower")) is not None and finite(estimate.get("upper")) is not None:
        band = f" [{_fmt_num(estimate.get('lower'))}, {_fmt_num(estimate.get('upper'))}]"
    how = f"label-free estimate ({estimate.get('method', '')}, {estimate.get('rows', '?')} rows)"
    uncalibrated = "" if estimate.get("calibrated", True) else ' <span class="warn">uncalibrated</span>'
    return f'<span title="{escape(how)}">estimated {_fmt_num(estimate.get("value"))}{band}</span>{uncalibrated}'


def _window(live: Mapping[str, Any]) -> str:
    """Whose rows and which days a realized value covers (records before windows give rows only)."""
    parts = [f"v{live['model_version']}"] if live.get("model_version") else []
    if live.get("rows"):
        parts.append(f"{live['rows']} rows")
    if live.get("since") and live.get("until"):
        parts.append(f"{str(live['since'])[5:]}..{str(live['until'])[5:]}")
    return ", ".join(parts)


def _others(live: Mapping[str, Any]) -> str:
    """Earlier versions' labelled rows in the window, for the tooltip: they are not the champion's verdict."""
    by_version = live.get("by_version")
    if not isinstance(by_version, Mapping):
        return ""
    return "; ".join(
        f"v{v}: {m.get('rows', 0)} rows, {_fmt_num(m.get('value')) or 'no value'}"
        for v, m in by_version.items()
        if isinstance(m, Mapping)
    )


def _realized_line(live: Mapping[str, Any] | None) -> str:
    """Realized performance over the labelled window, or why there is none yet."""
    if not live:
        return '<span class="muted">no labels yet</span>'
    if finite(live.get("value")) is None:
        rows, needed, problems = live.get("rows") or 0, live.get("min_rows"), live.get("problems") or []
        text = "no labels yet"
        if problems:
            text = "labels unusable"
        elif rows and needed:
            text = f"too few labels ({rows} of {needed} rows)"
        why = live.get("note") or "; ".join(map(str, problems))
        return f'<span class="muted"{_attr("title", why)}>{escape(text)}</span>'
    css = "bad" if live.get("degraded") else "ok"
    tooltip = " — ".join(t for t in (str(live.get("reason") or ""), _others(live)) if t)
    window = _window(live)
    return f'<span class="{css}"{_attr("title", tooltip)}>realized {_fmt_num(live.get("value"))}</span>' + (
        f' <span class="muted">({escape(window)})</span>' if window else ""
    )


def _performance_cell(row: BatchRow) -> str:
    """Estimated, realized and evaluated values of the primary metric, one a line."""
    live, estimate = row.live or {}, row.estimate or {}
    evaluated = finite(estimate.get("evaluated"))
    evaluated = evaluated if evaluated is not None else finite(live.get("evaluated"))
    lines = [_estimate_line(row.estimate), _realized_line(row.live)]
    if evaluated is not None:
        lines.append(f'<span class="muted">evaluated {_fmt_num(evaluated)}</span>')
    return "<br>".join(line for line in lines if line)


def _policy_cell(row: BatchRow) -> str:
    """The retraining policy's decision, its reason as a tooltip and, when it adds to the batch's reason, below."""
    if not row.policy:
        return '<span class="muted">-</span>'  # records written before the policy
    css = POLICY_CSS.get(row.policy, "warn")
    cell = f'<span class="{css}"{_attr("title", row.policy_reason)}>{escape(row.policy)}</span>'
    if row.policy_reason and row.policy_reason != row.reason:
        cell += f'<br><span class="muted">{escape(row.policy_reason[:200])}</span>'
    return cell


def _attribution_cell(row: BatchRow) -> str:
    """The nDCG of the champion's importance ranking against its evaluation's: red below the threshold."""
    found = row.attribution
    if not found:
        return '<span class="muted">-</span>'  # records written before the check, or not drift-checked
    if finite(found.get("ndcg")) is None:
        return f'<span class="muted"{_attr("title", found.get("note"))}>not measured</span>'
    css = "bad" if found.get("attribution_drift") else "ok"
    tooltip = found.get("reason") or (
        f"{found.get('rows')} labelled rows of v{found.get('model_version')}, "
        f"{found.get('since')}..{found.get('until')}; threshold {found.get('threshold')}"
    )
    cell = f'<span class="{css}"{_attr("title", tooltip)}>nDCG {_fmt_num(found.get("ndcg"))}</span>'
    if found.get("attribution_drift"):
        now, then = ", ".join(found.get("top_features") or []), ", ".join(found.get("evaluated_top_features") or [])
        cell += f'<br><span class="muted">now {escape(now)}; evaluated {escape(then)}</span>'
    return cell


def _attribution_chart(page: ModelPage) -> str:
    """The nDCG per batch against its threshold; nothing until a batch has been measured."""
    if not any(v is not None for v in page.attribution):
        return ""
    return line_chart_svg(
        page.dates,
        {"nDCG": page.attribution},
        title="Attribution: nDCG of the importance ranking vs its evaluation",
        threshold=page.cfg.evaluation.attribution_drift_threshold,
        y_max=1.0,
        y_format="{:.2f}",
    )


def _report_links(row: BatchRow, report_base: str) -> str:
    return " · ".join(
        f'<a class="dw-report" href="{escape(report_url(report_base, key))}">{escape(label)}</a>'
        for label, key in row.reports.items()
    )


def _performance_chart(page: ModelPage) -> str:
    """Estimated (band), realized (points) and evaluated (line) performance, or a sentence when there is none."""
    perf, metric = page.performance, page.cfg.evaluation.primary_metric
    if not any(v is not None for key in ("estimated", "lower", "upper", "realized") for v in perf[key]):
        why = f" Newest estimate: {page.not_estimated}." if page.not_estimated else ""
        return (
            f'<p class="muted">Performance: no batch has a label-free estimate or enough labels to measure '
            f"{escape(metric)} yet.{escape(why)}</p>"
        )
    return band_chart_svg(
        page.dates,
        (perf["lower"], perf["estimated"], perf["upper"]),
        points=perf["realized"],
        reference=perf["evaluated"],
        title=f"Estimated (band), realized (points) and evaluated {metric}",
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
            f'<p class="dw-champion">Champion: <b>v{escape(page.champion.get("version"))}</b> since '
            f"{escape(since)}"
            + (f" — {escape(tags.get('promotion_reason'))}" if tags.get("promotion_reason") else "")
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
            f"<th>drifted features</th><th>performance ({escape(cfg.evaluation.primary_metric)})</th>"
            "<th>attribution</th><th>policy</th>"
            "<th>action</th><th>reports</th></tr>"
        )
        for row in page.rows:
            share = _fmt_share(row.drift_share)
            if row.drift_share is not None and row.threshold is not None and row.drift_share >= row.threshold:
                share = f'<span class="bad">{share}</span>'
            action_css = "bad" if row.action not in ("none", "") else "muted"
            out.append(
                f'<tr class="dw-batch"><td>{escape(row.batch_date)}</td><td>{row.rows or ""}</td>'
                f"<td>{_status_cell(row)}</td><td>{share}</td><td>{escape(', '.join(row.drifted))}</td>"
                f"<td>{_performance_cell(row)}</td><td>{_attribution_cell(row)}</td><td>{_policy_cell(row)}</td>"
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
        out.append(_performance_chart(page))
        out.append(_attribution_chart(page))
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
            f"<tr><td>v{escape(v.get('version'))}</td><td>{escape(', '.join(v.get('aliases') or []))}</td>"
            f"<td>{escape(v.get('status', ''))}</td><td>{escape(str(v.get('detail', ''))[:300])}</td>"
            f"<td>{_mlflow_links(page, str(v.get('version')), v.get('run_id'))}</td></tr>"
            for v in page.versions
        ]
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def render_page(title: str, body: str) -> str:
    """A complete, self-contained HTML page (inline CSS, no script, nothing fetched)."""
    return document(title, f"<h1>{escape(title)}</h1>{body}", MONITORING_CSS)


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
        f'style="width:100%;height:80vh;border:{RULE}"></iframe>'
        if first
        else ""
    )
    return head + f"<ul>{items}</ul>{frame}"
