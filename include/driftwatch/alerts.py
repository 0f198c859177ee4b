"""Alert emails: an HTML part with inline CSS (driftwatch.reports.emails) and a plain-text alternative.

Every value that comes from data (feature names, reasons, observed values) is escaped,
because column names and values in a batch are attacker-controlled. Subjects name the model,
the batch date and what happened; links point at the report pages the driftwatch Airflow
plugin serves, under `alerts.report_base_url` (or `$DRIFTWATCH_REPORT_BASE_URL`, which the
embedded stack sets), e.g. `http://airflow.example.com/driftwatch/report`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from driftwatch import monitoring
from driftwatch.config import ModelConfig
from driftwatch.reports import charts, emails
from driftwatch.reports.markup import escape
from driftwatch.reports.style import EMAIL_IMAGE

BASE_URL_ENV = "DRIFTWATCH_REPORT_BASE_URL"
TREND_CID = "drift-trend@driftwatch"
TREND_BATCHES = 14


def dedup_key(model: str, batch_date: str, kind: str) -> str:
    """The identity of an alert: a rerun of the same batch produces the same key."""
    return f"{model}/{batch_date}/{kind}"


def _message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@driftwatch>"


def _text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = [" | ".join(headers)]
    lines += [" | ".join(emails.cell_text(v) for v in row) for row in rows]
    return "\n".join(lines)


def _links_text(links: Mapping[str, str]) -> str:
    return "\n".join(f"- {label}: {uri}" for label, uri in links.items())


def _subject(text: str) -> str:
    """One header line: reasons from data may hold newlines, which a header must not."""
    return re.sub(r"\s+", " ", text).strip()[:250]


def _message(
    cfg: ModelConfig, subject: str, kind: str, batch_date: str, text: str, html: str, identity: str | None = None
) -> EmailMessage:
    """An alert. `identity` is what makes it this alert (its decision), apart from what changes on a rerun
    (a trend chart, the live table, a try number): two alerts of one key and identity are one alert, sent
    once, with one Message-ID; another identity is another alert, with its own Message-ID.
    """
    msg = EmailMessage()
    msg["Subject"] = _subject(subject)
    msg["From"] = cfg.alerts.sender
    msg["To"] = ", ".join(cfg.alerts.recipients)
    msg["Date"] = formatdate(usegmt=True)
    key = dedup_key(cfg.name, batch_date, kind)
    msg["Message-ID"] = _message_id(key if identity is None else f"{key}\n{_subject(identity)}")
    msg["X-Driftwatch-Dedup-Key"] = key
    if identity is not None:
        msg["X-Driftwatch-Content-Key"] = _subject(identity)
    msg["X-Driftwatch-Model"] = cfg.name
    msg["X-Driftwatch-Batch-Date"] = batch_date
    msg["X-Driftwatch-Kind"] = kind
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def quarantine_email(
    cfg: ModelConfig,
    batch_date: str,
    reason: str,
    failures: Sequence[Mapping[str, Any]],
    links: Mapping[str, str],
) -> EmailMessage:
    """The alert for a batch that failed a critical check and was quarantined."""
    links = report_links(cfg, links)
    subject = f"[driftwatch] {cfg.name} {batch_date}: batch quarantined ({reason[:120]})"
    headers = ("check", "column", "detail")
    rows = [(f.get("check"), f.get("column"), f.get("detail")) for f in failures]
    intro = (
        f"The batch of {batch_date} for model {cfg.name} failed {len(failures)} critical check(s) and was "
        "quarantined. No drift was computed and nothing was retrained. The original objects are untouched."
    )
    text = f"{intro}\n\nReason: {reason}\n\n{_text_table(headers, rows)}\n\nWhere to look:\n{_links_text(links)}\n"
    html = emails.page(
        f"{cfg.name} {batch_date}: batch quarantined",
        f"<p>{escape(intro)}</p><p><b>Reason:</b> {escape(reason)}</p>"
        f"{emails.table(headers, rows)}<p>Where to look:</p>{emails.links(links)}",
    )
    identity = f"{reason} | " + "; ".join(f"{f.get('check')} {f.get('column')}" for f in failures)
    return _message(cfg, subject, "quarantine", batch_date, text, html, identity)


def missing_batch_email(cfg: ModelConfig, batch_date: str, reason: str) -> EmailMessage:
    """The alert for a batch that did not arrive: nothing was done for that date."""
    subject = f"[driftwatch] {cfg.name} {batch_date}: missing batch"
    text = (
        f"The batch of {batch_date} for model {cfg.name} did not arrive: {reason}. Nothing was validated, "
        "scored or retrained for this date; the following days are not affected. When the batch lands, "
        "clear this run (or trigger the monitor with batch_date) to process it."
    )
    html = emails.page(f"{cfg.name} {batch_date}: missing batch", f"<p>{escape(text)}</p>")
    return _message(cfg, subject, "missing", batch_date, text + "\n", html, reason)


def failure_email(
    cfg: ModelConfig,
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    error: str,
    try_number: int,
    log_url: str | None,
    batch_date: str | None = None,
) -> EmailMessage:
    """The alert that a task failed for good (retries spent, or a permanent error): what stopped and where to look.

    One per failed task and run: a rerun that fails the same way produces the same alert, which
    the outbox does not send twice.
    """
    first_line = (error.strip().splitlines() or ["unknown error"])[0][:300]
    when = f" {batch_date}" if batch_date else ""
    subject = f"[driftwatch] {cfg.name}{when}: {task_id} failed in {dag_id}"
    text = (
        f"Task {task_id} of {dag_id} failed on try {try_number} (run {run_id}).\n"
        f"Error: {first_line}\n"
        f"Log: {log_url or 'see the task log in the Airflow UI'}\n\n"
        "The tasks that depend on it did not run; alerts that do not depend on it were sent on their own. "
        "Fix the cause, then clear the task in the Airflow UI to run it and what follows again."
    )
    rows = [("task", task_id), ("DAG", dag_id), ("run", run_id), ("try", try_number), ("error", first_line)]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    link = f'<p><a href="{escape(log_url)}">Open the log</a></p>' if log_url else ""
    html = emails.page(f"{cfg.name}{when}: {task_id} failed", f"<table>{table}</table>{link}")
    # The same error again on a later try (a rerun, a clear) is the same alert: the try and log link are not.
    kind = f"failed/{dag_id}/{run_id}/{task_id}"
    return _message(cfg, subject, kind, batch_date or "-", text + "\n", html, first_line)


def drift_email(
    cfg: ModelConfig,
    batch_date: str,
    decision: Mapping[str, Any],
    links: Mapping[str, str],
    trend: Sequence[Mapping[str, Any]] | None = None,
) -> EmailMessage:
    """The alert that requests retraining: data drift, falling live performance, or a forced run.

    `trend` is the model's recent history records (history.read_history): their drift shares
    become a small bar chart, attached as an inline image.
    """
    links = report_links(cfg, links)
    drifted = decision["drifted_features"]
    share, threshold = decision["drifted_share"], decision["share_threshold"]
    reason = decision.get("reason") or "dataset drift"
    action = decision.get("action", "retrain")
    if decision.get("dataset_drift"):
        headline = f"drift in {len(drifted)}/{decision['n_features']} features ({share:.0%}, threshold {threshold:.0%})"
    else:
        headline = reason.split(":")[0]
    subject = f"[driftwatch] {cfg.name} {batch_date}: {headline}; {ACTION_WORDS.get(action, action)}"
    headers = ("feature", "method", "score", "threshold")
    rows = [(f["name"], f["method"], f["score"], f["threshold"]) for f in drifted]
    intro = (
        f"Retraining policy for {cfg.name} after the batch of {batch_date}: {action}. {reason}. "
        f"Dataset drift share {share:.1%} (threshold {threshold:.1%})."
    )
    performance = _performance_rows(decision.get("estimate"), decision.get("live"))
    performance += _attribution_rows(decision.get("attribution"))
    perf_headers = ("measure", "metric", "value", "band / rows", "evaluated")
    text = f"{intro}\n\nDrifted features:\n{_text_table(headers, rows)}\n"
    html_body = f"<p>{escape(intro)}</p><p>Drifted features:</p>{emails.table(headers, rows)}"
    if performance:
        text += f"\nPerformance of the champion:\n{_text_table(perf_headers, performance)}\n"
        html_body += f"<p>Performance of the champion:</p>{emails.table(perf_headers, performance)}"
    chart = _trend_chart(trend or [], batch_date, threshold)
    if chart:
        caption = escape(chart[1])
        html_body += (
            f'<p>Drift share, last {caption}:</p><img src="cid:{TREND_CID}" width="360" height="90" '
            f'alt="drift share per batch" style="{EMAIL_IMAGE}">'
        )
        text += f"\nDrift share, last {chart[1]}.\n"
    text += f"\nWhere to look:\n{_links_text(links)}\n"
    html = emails.page(
        f"{cfg.name} {batch_date}: {ACTION_WORDS.get(action, action)}",
        html_body + f"<p>Where to look:</p>{emails.links(links)}",
    )
    identity = f"{reason} | " + "; ".join(f"{f['name']} {f['method']} {f['score']:.6g}" for f in drifted)
    msg = _message(cfg, subject, "drift", batch_date, text, html, identity)
    if chart:
        msg.get_body(("html",)).add_related(chart[0], "image", "png", cid=f"<{TREND_CID}>", filename="drift-trend.png")
    return msg


ACTION_WORDS = {
    "retrain": "retraining requested",
    "pending-labels": "retraining waits for labels",
    "cooldown": "not retrained (cooldown)",
    "alert-only": "alert only, not retrained",
    "joined": "joins the retrain already requested",
    "none": "no action",
}


def _performance_rows(estimate: Mapping[str, Any] | None, live: Mapping[str, Any] | None) -> list[tuple[Any, ...]]:
    """The estimate (label-free, with its band) and the realized value (labelled window), when there are any."""
    rows: list[tuple[Any, ...]] = []
    if estimate and estimate.get("value") is not None:
        band = f"[{estimate['lower']:.3f}, {estimate['upper']:.3f}]"
        rows.append(("estimated (no labels)", estimate["metric"], estimate["value"], band, estimate.get("evaluated")))
    elif estimate:
        rows.append(
            (
                "estimated (no labels)",
                estimate.get("metric"),
                "-",
                estimate.get("reason", ""),
                estimate.get("evaluated"),
            )
        )
    if live and live.get("rows"):
        value = live["value"] if live.get("value") is not None else "-"
        span = f"{live['rows']} rows, {live.get('since')}..{live.get('until')}, v{live.get('model_version')}"
        rows.append(("realized (labels)", live.get("metric"), value, span, live.get("evaluated")))
    return rows


def _attribution_rows(attribution: Mapping[str, Any] | None) -> list[tuple[Any, ...]]:
    """Attribution drift, when the check found it: the nDCG, the rows, and which features lead now and did then."""
    if not attribution or not attribution.get("attribution_drift"):
        return []
    span = (
        f"{attribution.get('rows')} rows, {attribution.get('since')}..{attribution.get('until')}, "
        f"v{attribution.get('model_version')}; now {', '.join(attribution.get('top_features') or [])}"
    )
    evaluated = f"nDCG 1 ({', '.join(attribution.get('evaluated_top_features') or [])})"
    return [("attribution drift (labels)", "importance nDCG", attribution.get("ndcg"), span, evaluated)]


def _trend_chart(records: Sequence[Mapping[str, Any]], batch_date: str, threshold: float) -> tuple[bytes, str] | None:
    """A PNG of the drift share per batch up to `batch_date`, and a caption; None without history."""
    shares: list[tuple[str, float | None]] = []
    for record in sorted(records, key=lambda r: str(r.get("batch_date", ""))):
        day = str(record.get("batch_date", ""))
        if day <= batch_date:
            shares.append((day, (record.get("drift") or {}).get("share")))
    shares = shares[-TREND_BATCHES:]
    if len(shares) < 2:
        return None
    png = charts.bar_chart_png([s for _, s in shares], threshold=threshold)
    values = ", ".join(f"{d[5:]} {'quarantined' if s is None else f'{s:.0%}'}" for d, s in shares)
    caption = f"{len(shares)} batches (red: at or over the {threshold:.0%} threshold; dashed: threshold): {values}"
    return png, caption


def report_base_url(cfg: ModelConfig) -> str | None:
    """Where the report pages are served: the config's `alerts.report_base_url`, else the environment."""
    return cfg.alerts.report_base_url or os.environ.get(BASE_URL_ENV) or None


def report_links(cfg: ModelConfig, uris: Mapping[str, str]) -> dict[str, str]:
    """S3 URIs of the reports, plus web links when a report base URL is configured.

    Only objects the report pages serve get a web link (not folders, not quarantined data), and
    a base URL ending in `/report` also yields the link to the Model monitoring page.
    """
    links = dict(uris)
    base = report_base_url(cfg)
    if base:
        prefix = f"s3://{cfg.storage.bucket}/"
        for label, uri in uris.items():
            key = uri[len(prefix) :] if uri.startswith(prefix) else ""
            if key and monitoring.report_key_allowed(cfg, key):
                links[f"{label} (web)"] = monitoring.report_url(base, key)
        if base.rstrip("/").endswith("/report"):
            links["model monitoring (web)"] = base.rstrip("/")[: -len("/report")] + "/monitoring"
    return links


def send(smtp_client: Any, msg: EmailMessage) -> list[str]:
    """Send through an open smtplib client; returns the recipients, raises if any was refused."""
    refused = smtp_client.send_message(msg)
    if refused:
        raise RuntimeError(f"SMTP server refused recipients: {sorted(refused)}")
    return [addr.strip() for addr in msg["To"].split(",")]


def _metric_rows(evaluation: Mapping[str, Any]) -> list[tuple[Any, Any, Any]]:
    challenger = (evaluation.get("challenger") or {}).get("metrics") or {}
    champion = (evaluation.get("champion") or {}).get("metrics") or {}
    return [(name, champion.get(name), challenger.get(name)) for name in sorted(set(challenger) | set(champion))]


def evaluation_email(
    cfg: ModelConfig,
    plan: Mapping[str, Any],
    candidate: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    outcome: Mapping[str, Any],
) -> EmailMessage:
    """Champion and challenger side by side, the gate's checks and what was done."""
    version, champion = candidate["version"], evaluation.get("champion_version")
    action = outcome["action"]
    as_of = f" {plan['as_of']}" if plan.get("as_of") else ""
    shown = "in shadow" if action == "shadow" else action
    subject = f"[driftwatch] {cfg.name}{as_of}: challenger v{version} {shown}" + (
        f" (champion v{champion})" if champion else " (bootstrap)"
    )
    metric_headers = ("metric", f"champion v{champion}" if champion else "champion (none)", f"challenger v{version}")
    metric_rows = _metric_rows(evaluation)
    check_headers = ("check", "passed", "detail")
    check_rows = [(c["name"], "yes" if c["passed"] else "NO", c["detail"]) for c in evaluation.get("checks", [])]
    reasons = list(outcome.get("reasons") or [])
    done = "put in shadow beside the champion" if action == "shadow" else action
    intro = f"Retraining of {cfg.name} ({plan['reason']}): challenger version {version} was {done}."
    links = report_links(cfg, {"evaluation report": evaluation.get("report_uri", "")})
    text = (
        f"{intro}\n"
        + (f"Reasons: {'; '.join(reasons)}\n" if reasons else "")
        + f"\n{_text_table(metric_headers, metric_rows)}\n\nGate:\n{_text_table(check_headers, check_rows)}\n"
        + f"\nWhere to look:\n{_links_text(links)}\n"
    )
    html = emails.page(
        f"{cfg.name}: challenger v{version} {action}",
        f"<p>{escape(intro)}</p>"
        + (f"<p><b>Reasons:</b> {escape('; '.join(reasons))}</p>" if reasons else "")
        + emails.table(metric_headers, metric_rows)
        + "<p>Gate:</p>"
        + emails.table(check_headers, check_rows)
        + f"<p>Where to look:</p>{emails.links(links)}",
    )
    return _message(cfg, subject, f"retrain-{plan['run_key']}", str(plan.get("as_of", "")), text, html)


def rollback_email(cfg: ModelConfig, outcome: Mapping[str, Any]) -> EmailMessage:
    """Who moved the champion back, from which version to which, and why."""
    subject = (
        f"[driftwatch] {cfg.name} {str(outcome.get('at', ''))[:10]}: champion rolled back "
        f"from v{outcome['from_version']} to v{outcome['to_version']}"
    )
    intro = (
        f"{outcome['actor']} moved the champion alias of {cfg.name} from version {outcome['from_version']} "
        f"to version {outcome['to_version']}. Reason: {outcome['reason']}"
    )
    links = report_links(cfg, {})
    html = emails.page(f"{cfg.name}: rollback", f"<p>{escape(intro)}</p>" + (emails.links(links) if links else ""))
    intro += f"\n\n{_links_text(links)}" if links else ""
    key = f"rollback-{outcome['from_version']}-{outcome['to_version']}-{outcome.get('at', '')}"
    return _message(cfg, subject, key, str(outcome.get("at", ""))[:10], intro + "\n", html)


_SHADOW_VERBS = {"promoted": "promoted to champion", "rejected": "rejected", "refused": "not promoted"}


def _signed(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def shadow_email(cfg: ModelConfig, outcome: Mapping[str, Any]) -> EmailMessage:
    """The verdict on a challenger in shadow: the paired interval, the batches and rows, and the slices."""
    version, champion, status = outcome["version"], outcome["champion"], outcome["status"]
    verb, metric = _SHADOW_VERBS.get(status, status), cfg.evaluation.primary_metric
    subject = f"[driftwatch] {cfg.name} {outcome['batch_date']}: shadow challenger v{version} {verb}"
    intro = (
        f"Challenger v{version} of {cfg.name} ran in shadow beside champion v{champion} for {outcome['batches']} "
        f"batch(es), {outcome['labelled_batches']} of them labelled, and was {verb}."
    )
    headers = ("figure", "value")
    rows = [
        (f"{metric} champion v{champion}", outcome.get("champion_value")),
        (f"{metric} challenger v{version}", outcome.get("challenger_value")),
        ("difference (challenger better: +)", _signed(outcome.get("difference"))),
        (
            f"{(outcome.get('confidence') or 0):.0%} paired bootstrap interval",
            f"[{_signed(outcome.get('lower'))}, {_signed(outcome.get('upper'))}]",
        ),
        ("labelled rows compared", outcome.get("rows")),
        ("slices worse beyond tolerance", ", ".join(outcome.get("worse_slices") or []) or "none"),
    ]
    slice_rows = [
        (s["slice"], s["rows"], _signed(s["difference"]), "WORSE" if s["worse"] else "ok")
        for s in outcome.get("slices") or []
    ]
    reasons = "; ".join(outcome.get("reasons") or [])
    links = report_links(cfg, {})
    text = f"{intro}\nReasons: {reasons}\n\n{_text_table(headers, rows)}\n"
    html_slices = ""
    if slice_rows:
        text += f"\nSlices:\n{_text_table(('slice', 'rows', 'difference', ''), slice_rows)}\n"
        html_slices = "<p>Slices:</p>" + emails.table(("slice", "rows", "difference", ""), slice_rows)
    text += f"\n{_links_text(links)}\n" if links else ""
    html = emails.page(
        f"{cfg.name}: shadow challenger v{version} {verb}",
        f"<p>{escape(intro)}</p><p><b>Reasons:</b> {escape(reasons)}</p>"
        + emails.table(headers, rows)
        + html_slices
        + (emails.links(links) if links else ""),
    )
    return _message(cfg, subject, f"shadow-{version}-{status}", outcome["batch_date"], text, html)
