"""The validation report of one batch: every expectation, critical failures and warnings first."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from driftwatch.reports.markup import STATIC_CSP, document, escape
from driftwatch.reports.style import VALIDATION_CSS

if TYPE_CHECKING:
    from driftwatch.validation import ExpectationOutcome, ValidationResult


def _status(outcome: ExpectationOutcome) -> str:
    if outcome.skipped is not None:
        return '<span class="badge skip">skipped</span>'
    if outcome.success:
        return '<span class="badge pass">pass</span>'
    cls = "fail" if outcome.severity == "critical" else "warn"
    return f'<span class="badge {cls}">fail</span>'


def _observed_html(outcome: ExpectationOutcome) -> str:
    parts = [f"<code>{escape(k)}: {escape(json.dumps(v, default=str))}</code>" for k, v in outcome.observed.items()]
    if outcome.skipped is not None:
        parts.insert(0, f"<code>skipped: {escape(outcome.skipped)}</code>")
    return "<br>".join(parts)


def _table(outcomes: list[ExpectationOutcome], *, failures: bool) -> str:
    if not outcomes:
        return '<p class="none">None.</p>'
    head = "<tr><th>Status</th><th>Severity</th><th>Check</th><th>Column</th><th>Expectation</th><th>Observed</th></tr>"
    rows = [
        "<tr>"
        f"<td>{_status(o)}</td><td>{escape(o.severity)}</td>"
        f"<td>{escape(o.failure_text() if failures else o.description)}</td>"
        f"<td>{escape(o.column or '')}</td><td><code>{escape(o.expectation)}</code></td>"
        f"<td>{_observed_html(o)}</td>"
        "</tr>"
        for o in outcomes
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def render_validation_html(result: ValidationResult, *, model: str, batch_date: str, sources: list[str]) -> str:
    """A self-contained HTML report: no scripts, no external resources, every value escaped."""
    counts = result.to_dict()["counts"]
    badge = '<span class="badge pass">PASSED</span>' if result.passed else '<span class="badge fail">FAILED</span>'
    reason = f"<p>{escape(result.failure_reason())}</p>" if not result.passed else ""
    source_items = "".join(f"<li><code>{escape(s)}</code></li>" for s in sources) or '<li class="none">none</li>'
    count_text = ", ".join(f"{escape(k.replace('_', ' '))}: {escape(v)}" for k, v in counts.items())
    body = (
        f"<h1>Batch validation: {escape(model)} &middot; {escape(batch_date)}</h1>"
        f"<p>{badge}</p>{reason}"
        f"<dl><dt>Rows</dt><dd>{escape(result.row_count)}</dd>"
        f"<dt>Expectations</dt><dd>{count_text}</dd>"
        f"<dt>Sources</dt><dd><ul>{source_items}</ul></dd>"
        f"<dt>Great Expectations</dt><dd>{escape(result.gx_version or 'unknown')}</dd></dl>"
        f"<h2>Critical failures ({len(result.critical_failures)})</h2>{_table(result.critical_failures, failures=True)}"
        f"<h2>Warnings ({len(result.warnings)})</h2>{_table(result.warnings, failures=True)}"
        f"<h2>All expectations ({len(result.outcomes)})</h2>{_table(result.outcomes, failures=False)}"
    )
    # The report is opened from object storage or email: forbid anything but inline styles.
    return document(f"Validation {model} {batch_date}", body, VALIDATION_CSS, csp=STATIC_CSP)
