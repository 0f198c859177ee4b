"""Alert emails: an HTML part with inline CSS and a plain-text alternative.

Every value that comes from data (feature names, reasons, observed values) is escaped,
because column names and values in a batch are attacker-controlled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from html import escape
from typing import Any

from driftwatch.config import ModelConfig

_TABLE = "border-collapse:collapse;font-family:Arial,sans-serif;font-size:13px"
_CELL = "border:1px solid #d0d7de;padding:4px 8px;text-align:left"
_HEAD = _CELL + ";background:#f6f8fa"


def dedup_key(model: str, batch_date: str, kind: str) -> str:
    """The identity of an alert: a rerun of the same batch produces the same key."""
    return f"{model}/{batch_date}/{kind}"


def _message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@driftwatch>"


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f'<th style="{_HEAD}">{escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{escape(_fmt(v))}</td>' for v in row) + "</tr>" for row in rows
    )
    return f'<table style="{_TABLE}"><tr>{head}</tr>{body}</table>'


def _text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = [" | ".join(headers)]
    lines += [" | ".join(_fmt(v) for v in row) for row in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _links_html(links: Mapping[str, str]) -> str:
    items = "".join(f"<li>{escape(label)}: <code>{escape(uri)}</code></li>" for label, uri in links.items())
    return f"<ul>{items}</ul>"


def _links_text(links: Mapping[str, str]) -> str:
    return "\n".join(f"- {label}: {uri}" for label, uri in links.items())


def _message(cfg: ModelConfig, subject: str, kind: str, batch_date: str, text: str, html: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.alerts.sender
    msg["To"] = ", ".join(cfg.alerts.recipients)
    msg["Date"] = formatdate(usegmt=True)
    key = dedup_key(cfg.name, batch_date, kind)
    msg["Message-ID"] = _message_id(key)
    msg["X-Driftwatch-Dedup-Key"] = key
    msg["X-Driftwatch-Model"] = cfg.name
    msg["X-Driftwatch-Batch-Date"] = batch_date
    msg["X-Driftwatch-Kind"] = kind
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def _page(title: str, body: str) -> str:
    return (
        '<html><body style="font-family:Arial,sans-serif;font-size:14px;color:#1f2328">'
        f'<h2 style="margin:0 0 8px 0">{escape(title)}</h2>{body}</body></html>'
    )


def quarantine_email(
    cfg: ModelConfig,
    batch_date: str,
    reason: str,
    failures: Sequence[Mapping[str, Any]],
    links: Mapping[str, str],
) -> EmailMessage:
    """The alert for a batch that failed a critical check and was quarantined."""
    subject = f"[driftwatch] {cfg.name} {batch_date}: batch quarantined ({reason[:120]})"
    headers = ("check", "column", "detail")
    rows = [(f.get("check"), f.get("column"), f.get("detail")) for f in failures]
    intro = (
        f"The batch of {batch_date} for model {cfg.name} failed {len(failures)} critical check(s) and was "
        "quarantined. No drift was computed and nothing was retrained. The original objects are untouched."
    )
    text = f"{intro}\n\nReason: {reason}\n\n{_text_table(headers, rows)}\n\nWhere to look:\n{_links_text(links)}\n"
    html = _page(
        f"{cfg.name} {batch_date}: batch quarantined",
        f"<p>{escape(intro)}</p><p><b>Reason:</b> {escape(reason)}</p>"
        f"{_html_table(headers, rows)}<p>Where to look:</p>{_links_html(links)}",
    )
    return _message(cfg, subject, "quarantine", batch_date, text, html)


def drift_email(
    cfg: ModelConfig,
    batch_date: str,
    decision: Mapping[str, Any],
    links: Mapping[str, str],
) -> EmailMessage:
    """The alert for a batch whose dataset drift share crossed the threshold."""
    drifted = decision["drifted_features"]
    share, threshold = decision["drifted_share"], decision["share_threshold"]
    reason = decision.get("reason") or "dataset drift"
    subject = (
        f"[driftwatch] {cfg.name} {batch_date}: drift in {len(drifted)}/{decision['n_features']} features "
        f"({share:.0%}, threshold {threshold:.0%}); retraining requested"
    )
    headers = ("feature", "method", "score", "threshold")
    rows = [(f["name"], f["method"], f["score"], f["threshold"]) for f in drifted]
    intro = (
        f"Dataset drift share {share:.1%} reached the threshold of {threshold:.1%} for model {cfg.name} "
        f"on the batch of {batch_date} ({reason}). A retraining run has been requested."
    )
    text = f"{intro}\n\nDrifted features:\n{_text_table(headers, rows)}\n\nWhere to look:\n{_links_text(links)}\n"
    html = _page(
        f"{cfg.name} {batch_date}: data drift",
        f"<p>{escape(intro)}</p><p>Drifted features:</p>{_html_table(headers, rows)}"
        f"<p>Where to look:</p>{_links_html(links)}",
    )
    return _message(cfg, subject, "drift", batch_date, text, html)


def report_links(cfg: ModelConfig, uris: Mapping[str, str]) -> dict[str, str]:
    """S3 URIs of the reports, plus web links when a report base URL is configured."""
    links = dict(uris)
    base = cfg.alerts.report_base_url
    if base:
        prefix = f"s3://{cfg.storage.bucket}/"
        for label, uri in uris.items():
            if uri.startswith(prefix):
                links[f"{label} (web)"] = f"{base.rstrip('/')}/{uri[len(prefix) :]}"
    return links


def send(smtp_client: Any, msg: EmailMessage) -> list[str]:
    """Send through an open smtplib client; returns the recipients, raises if any was refused."""
    refused = smtp_client.send_message(msg)
    if refused:
        raise RuntimeError(f"SMTP server refused recipients: {sorted(refused)}")
    return [addr.strip() for addr in msg["To"].split(",")]
