"""The "Model monitoring" page and a run's Reports tab, from the read model in driftwatch.monitoring."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from driftwatch.reports.charts import EXCEEDANCE_CAP, band_chart_svg, drift_grid_svg, line_chart_svg
from driftwatch.reports.markup import document, escape, finite, report_url
from driftwatch.reports.style import MONITORING_CSS, RULE

if TYPE_CHECKING:
    from driftwatch.monitoring import BatchRow, ModelPage, ShadowView


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


# --------------------------------------------------------------------------- shadow

SHADOW_STATUS_CSS = {"promoted": "ok", "rejected": "bad", "refused": "warn"}
VERDICT_CSS = {"promote": "ok", "reject": "bad"}


def _signed(value: Any) -> str:
    number = finite(value)
    return "" if number is None else f"{number:+.4f}"


def _difference(found: Mapping[str, Any]) -> str:
    """A paired difference with its interval ("+0.0123 [+0.0040, +0.0210]"); "" before there is one."""
    point = _signed(found.get("difference"))
    low, high = _signed(found.get("lower")), _signed(found.get("upper"))
    return point + (f" [{low}, {high}]" if point and low and high else "")


def _confidence(found: Mapping[str, Any] | None) -> str:
    level = finite((found or {}).get("confidence"))
    return "interval" if level is None else f"{level:.0%} interval"


def _shadow_summary(view: ShadowView, metric: str) -> str:
    """Who is in shadow beside whom since when and how far it got, or the last shadow's verdict, with reasons."""
    state = view.state
    version, champion, as_of = state.get("version"), state.get("champion"), state.get("as_of") or "?"
    counts = f"{view.scored} batch{'' if view.scored == 1 else 'es'} scored, {view.labelled} labelled"
    entered = f"entered shadow {state.get('started_at') or ''}: {state.get('reason') or ''}".strip(": ")
    if view.active:
        found = view.latest or {}
        line = (
            f"<b>v{escape(version)}</b> in shadow beside champion v{escape(champion)} since {escape(as_of)}: "
            f"{escape(counts)}"
        )
        if state.get("replaced"):
            line += f" (it replaced v{escape(state['replaced'])}, retired undecided)"
        reasons = [f"{found.get('verdict')}: {r}" for r in found.get("reasons") or []]
    else:
        found = state.get("verdict") or {}
        status = str(state.get("status") or "decided")
        css = SHADOW_STATUS_CSS.get(status, "warn")
        decided = f" on {escape(found['decided_on'])}" if found.get("decided_on") else ""
        line = (
            f'Last shadow: <b>v{escape(version)}</b> <span class="{css}">{escape(status)}</span>{decided} '
            f"(verdict {escape(found.get('verdict') or '-')}), beside champion v{escape(champion)} since "
            f"{escape(as_of)}: {escape(counts)}"
        )
        reasons = [str(r) for r in found.get("reasons") or []]
    difference = _difference(found)
    if difference:
        line += (
            f"; {escape(metric)} difference (challenger − champion) {escape(difference)} "
            f"({escape(_confidence(found))}, {escape(found.get('rows'))} labelled rows)"
        )
    holdout = state.get("holdout") or {}
    if _fmt_num(holdout.get("challenger")) and _fmt_num(holdout.get("champion")):
        line += (
            f'. <span class="muted">Holdout {escape(metric)}: challenger {_fmt_num(holdout["challenger"])}, '
            f"champion {_fmt_num(holdout['champion'])}.</span>"
        )
    out = [f'<p class="dw-shadow"{_attr("title", entered)}>{line}</p>']
    pending = ((view.latest or {}).get("pending_labels") or []) if view.active else []
    if pending:
        reasons.append("labels pending for " + ", ".join(map(str, pending)))
    if reasons:
        out.append('<ul class="dw-shadow-reasons">' + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul>")
    return "".join(out)


def _verdict_cell(evaluation: Mapping[str, Any] | None) -> str:
    if not evaluation:
        return '<span class="muted">-</span>'  # scored, not evaluated (yet)
    verdict = str(evaluation.get("verdict") or "")
    css = VERDICT_CSS.get(verdict, "muted")
    why = "; ".join(map(str, evaluation.get("reasons") or []))
    return f'<span class="{css}"{_attr("title", why)}>{escape(verdict)}</span>'


def _shadow_table(view: ShadowView, metric: str, classification: bool) -> str:
    """One row per shadow batch, newest first: how the two models' scores compare, then the paired difference."""
    compared = "<th>agreement</th>" if classification else "<th>mean |difference|</th>"
    rate = "<th>positive-rate change</th>" if classification else ""
    out = [
        f'<table class="dw-shadow-batches"><tr><th>batch</th><th>rows</th>{compared}<th>PSI</th>{rate}'
        f"<th>{escape(metric)} difference [{escape(_confidence(view.latest))}]</th><th>evaluation</th></tr>"
    ]
    for b in reversed(view.batches):
        if classification:
            agreement = "" if b["agreement"] is None else f"{b['agreement']:.1%}"
            change = "" if b["positive_rate_change"] is None else f"{b['positive_rate_change']:+.1%}"
            cells = f"<td>{agreement}</td><td>{_fmt_num(b['psi'])}</td><td>{change}</td>"
        else:
            cells = f"<td>{_fmt_num(b['mean_abs_difference'])}</td><td>{_fmt_num(b['psi'])}</td>"
        out.append(
            f'<tr class="dw-shadow-batch"><td>{escape(b["batch_date"])}</td><td>{escape(b["rows"] or "")}</td>'
            f"{cells}<td>{escape(_difference(b))}</td><td>{_verdict_cell(b['evaluation'])}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _shadow_charts(view: ShadowView, metric: str, classification: bool) -> str:
    """Agreement (regression: mean absolute difference) per batch, and the paired difference with its interval."""
    dates, charts = view.dates, []
    key = "agreement" if classification else "mean_abs_difference"
    compared = [v for v in view.series(key) if v is not None]
    if compared and classification:
        floor = min(math.floor(min(compared) * 10) / 10, 0.9)  # agreement sits near 1: start the axis below it
        charts.append(
            line_chart_svg(
                dates,
                {"agreement": view.series(key)},
                title="Shadow: agreement of challenger and champion",
                y_max=1.0,
                y_min=floor,
                y_format="{:.0%}",
            )
        )
    elif compared:
        charts.append(
            line_chart_svg(
                dates, {"mean |difference|": view.series(key)}, title="Shadow: mean absolute score difference"
            )
        )
    if any(v is not None for v in view.series("difference")):
        charts.append(
            band_chart_svg(
                dates,
                (view.series("lower"), [None] * len(dates), view.series("upper")),
                points=view.series("difference"),
                reference=[0.0] * len(dates),
                title=f"Shadow: {metric} difference, challenger − champion",
                names=(_confidence(view.latest), "difference", "no difference"),
                y_format="{:+.3f}",
            )
        )
    else:
        charts.append('<p class="muted">No paired difference yet: it needs labels on the shadow batches.</p>')
    return '<div class="charts">' + "".join(charts) + "</div>"


def render_shadow_section(page: ModelPage) -> str:
    """The challenger in shadow (or the last one's verdict), its batches and charts; a line, or nothing, without."""
    cfg, view = page.cfg, page.shadow
    if view is None:
        # Only a model in shadow mode says so: for the others a shadow is not expected.
        return '<h3>Shadow</h3><p class="muted">No challenger in shadow.</p>' if cfg.promotion.mode == "shadow" else ""
    metric, classification = cfg.evaluation.primary_metric, cfg.dataset.target.task == "classification"
    out = ["<h3>Shadow</h3>", _shadow_summary(view, metric)]
    if view.batches:
        out += [_shadow_table(view, metric, classification), _shadow_charts(view, metric, classification)]
    else:
        out.append('<p class="muted">No shadow batch in the batches shown.</p>')
    return "".join(out)


def render_model_section(page: ModelPage, *, report_base: str, dag_base: str | None = None) -> str:
    """One model's section: champion, batches, trend charts, shadow, quarantines, registry history."""
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

    out.append(render_shadow_section(page))

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
