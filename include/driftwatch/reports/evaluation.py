"""The evaluation report of one gate decision: champion and challenger side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from driftwatch.config import LOWER_IS_BETTER
from driftwatch.reports.charts import paired_bars_svg
from driftwatch.reports.markup import document, escape, finite
from driftwatch.reports.style import EVALUATION_CSS

if TYPE_CHECKING:
    from driftwatch.evaluation import GateDecision

# The table lists every feature; the chart only the challenger's top ones, so it stays readable.
CHART_FEATURES = 20


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, float):
        return escape(f"{value:.4f}")
    return escape(value)


def _delta(new: Any, old: Any, lower: bool) -> str:
    """Challenger minus champion, coloured by whether that is better for the metric."""
    new, old = finite(new), finite(old)
    if new is None or old is None:
        return '<span class="muted">—</span>'
    diff = new - old
    css = "muted" if diff == 0 else ("better" if (diff < 0) == lower else "worse")
    return f'<span class="{css}">{escape(f"{diff:+.4f}")}</span>'


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """An HTML table from already-escaped cells; the first `left` columns are left-aligned."""
    head = "".join(f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_section(challenger: dict, champion: dict | None) -> str:
    champ = champion or {}
    names = list(challenger.get("metrics") or {})
    names += [n for n in champ.get("metrics") or {} if n not in names]
    primary = (challenger.get("primary") or {}).get("name")
    rows = []
    for n in names:
        new, old = (challenger.get("metrics") or {}).get(n), (champ.get("metrics") or {}).get(n)
        label = f"<strong>{escape(n)}</strong> (primary)" if n == primary else escape(n)
        note = (challenger.get("unavailable") or {}).get(n, "")
        rows.append([label, _cell(old), _cell(new), _delta(new, old, n in LOWER_IS_BETTER), escape(note)])
    return _table(["metric", "champion", "challenger", "delta", "note"], rows)


def _per_class_section(challenger: dict, champion: dict | None) -> str:
    champ_rows = {r["label"]: r for r in (champion or {}).get("per_class") or []}
    rows = []
    for row in challenger.get("per_class") or []:
        old = champ_rows.get(row["label"], {})
        rows.append(
            [escape(row["label"])]
            + [f"{_cell(old.get(k))} → {_cell(row.get(k))}" for k in ("precision", "recall", "f1")]
            + [_cell(row.get("support"))]
        )
    if not rows:
        return ""
    return "<h2>Per class (champion → challenger)</h2>" + _table(
        ["class", "precision", "recall", "f1", "support"], rows
    )


def _confusion(evaluation: dict | None, title: str) -> str:
    cm = (evaluation or {}).get("confusion_matrix")
    if not cm:
        return f'<div><h3>{escape(title)}</h3><p class="muted">no confusion matrix</p></div>'
    labels = [escape(x) for x in cm["labels"]]
    rows = [[f"true {lab}"] + [_cell(v) for v in row] for lab, row in zip(labels, cm["matrix"], strict=True)]
    return f"<div><h3>{escape(title)}</h3>" + _table(["", *[f"pred {lab}" for lab in labels]], rows) + "</div>"


def _slices_section(challenger: dict, champion: dict | None) -> str:
    primary = challenger.get("primary") or {}
    lower = bool(primary.get("lower_is_better"))
    champ_slices = (champion or {}).get("slices") or {}
    parts = []
    for column, values in (challenger.get("slices") or {}).items():
        theirs = champ_slices.get(column, {})
        rows = []
        for value in sorted(set(values) | set(theirs)):
            new, old = values.get(value, {}), theirs.get(value, {})
            rows.append(
                [
                    escape(value),
                    _cell(new.get("rows", old.get("rows"))),
                    _cell(old.get("value")),
                    _cell(new.get("value")),
                    _delta(new.get("value"), old.get("value"), lower),
                    escape(new.get("reason", "")),
                ]
            )
        parts.append(
            f"<h3>{escape(column)}</h3>"
            + _table(
                ["value", "rows", f"champion {escape(primary.get('name', ''))}", "challenger", "delta", "note"], rows
            )
        )
    if not parts:
        return ""
    return "<h2>Slices</h2>" + "".join(parts)


def _importance_cell(mean: float | None, std: float | None) -> str:
    if mean is None:
        return _cell(None)
    return escape(f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else ""))


def _rank_change(change: int | None) -> str:
    return _cell(None) if change is None else escape(f"{change:+d}" if change else "0")


def _importance_row(row: dict, *, with_champion: bool) -> list[str]:
    """One feature's table cells, from a `compare_importance` row."""
    cells = [
        escape(row["feature"]),
        _importance_cell(row["challenger_mean"], row["challenger_std"]),
        _cell(row["challenger_rank"]),
    ]
    if with_champion:
        cells += [
            _importance_cell(row["champion_mean"], row["champion_std"]),
            _cell(row["champion_rank"]),
            _rank_change(row["rank_change"]),
        ]
    return cells


def _ndcg_text(importance: dict) -> str:
    """The attribution-drift sentence: how well the challenger's ranking agrees with the champion's."""
    ndcg, threshold = importance.get("ndcg"), importance.get("threshold")
    if ndcg is None:
        return '<p class="muted">Ranking agreement with the champion (nDCG): undefined.</p>'
    text = f"Ranking agreement with the champion's importances (nDCG): {ndcg:.3f}"
    if importance.get("attribution_drift"):
        return (
            f'<p><span class="worse">{escape(text)}, below {escape(threshold)}: attribution drift</span>; '
            "the challenger relies on other features than the champion did.</p>"
        )
    return f"<p>{escape(text)} (attribution drift below {escape(threshold)}).</p>"


def _importance_section(importance: dict | None, challenger_label: str, champion_label: str) -> str:
    """Permutation importance of both models: the method in a sentence, a bar chart and a table."""
    ours = (importance or {}).get("challenger")
    if not ours:
        return ""
    head = "<h2>Feature importance (permutation, on the holdout)</h2>"
    if not ours.get("features"):
        return head + f'<p class="muted">Not computed: {escape(ours.get("reason", "unknown reason"))}.</p>'
    theirs = importance.get("champion")
    change = "rises" if ours.get("lower_is_better") else "drops"
    parts = [
        head,
        f"<p>How much {escape(ours['metric'])} {change} when one feature's values are shuffled across "
        f"{escape(ours['rows'])} holdout rows: the mean ± std of {escape(ours['repeats'])} shuffles. "
        "Near 0: a feature the model does not use.</p>",
    ]
    paired = bool(theirs and theirs.get("features"))
    if theirs is not None and not paired:
        parts.append(f'<p class="muted">Champion not computed: {escape(theirs.get("reason", "unknown reason"))}.</p>')
    elif paired:
        parts.append(_ndcg_text(importance))
    rows = importance.get("comparison") or []
    shown = rows[:CHART_FEATURES]
    series = {challenger_label: [r["challenger_mean"] for r in shown]}
    errors = {challenger_label: [r["challenger_std"] for r in shown]}
    if paired:
        series[champion_label] = [r["champion_mean"] for r in shown]
        errors[champion_label] = [r["champion_std"] for r in shown]
    title = "Importance" + (f" (top {len(shown)} of {len(rows)})" if len(shown) < len(rows) else "")
    parts.append(paired_bars_svg([r["feature"] for r in shown], series, title=title, errors=errors))
    header = ["feature", "challenger importance", "rank"]
    if paired:
        header += ["champion importance", "rank", "rank change"]
    cells = [_importance_row(r, with_champion=paired) for r in rows]
    parts.append(_table(header, cells))
    if paired:
        parts.append('<p class="muted">Rank change: + means the feature matters more to the challenger.</p>')
    return "".join(parts)


def split_text(split: dict | None) -> str:
    """One sentence on how the holdout was taken, or "" when the split is not known."""
    if not split:
        return ""
    rows = f"{split.get('train_rows', '?')} training rows, {split.get('holdout_rows', '?')} holdout rows"
    if split.get("method") == "random":
        stratified = "stratified by class" if split.get("stratified") else "not stratified"
        text = (
            f"Random holdout of {split.get('holdout_fraction', 0):.0%} of the rows ({stratified}, "
            f"seed {split.get('seed')}): {rows}."
        )
        return text + (f" Why not by time: {split['reason']}." if split.get("reason") else "")
    dates = split.get("holdout_dates") or []
    span = f" ({dates[0]} to {dates[-1]})" if len(dates) > 1 else (f" ({dates[0]})" if dates else "")
    return f"Time-based holdout: the latest {len(dates)} batch date(s){span}: {rows}."


def render_evaluation_html(
    challenger: dict,
    champion: dict | None,
    decision: GateDecision,
    *,
    model: str,
    challenger_version: str,
    champion_version: str | None,
    split: dict | None = None,
    importance: dict | None = None,
) -> str:
    """A self-contained report (inline CSS, no scripts or external resources) of one gate decision.

    `split` is the holdout's, `importance` from `importance_report`.
    """
    from driftwatch.evaluation import gated_metric

    # The champion's value is looked up the way the gate reads it: the report shows the number decided on.
    primary = (challenger.get("primary") or {}).get("name", "")
    champion_primary = gated_metric(champion, primary) if champion else None
    verdict = "PROMOTE" if decision.passed else "REJECT"
    css = "pass" if decision.passed else "fail"
    champ_label = f"champion {champion_version}" if champion_version else "no champion (bootstrap)"
    primary = challenger.get("primary") or {}
    checks = [
        [
            escape(c.name),
            f'<span class="{"pass" if c.passed else "fail"}">{"pass" if c.passed else "FAIL"}</span>',
            escape(c.detail),
        ]
        for c in decision.checks
    ]
    body = [
        f"<h1>Evaluation of {escape(model)}: challenger {escape(challenger_version)} vs {escape(champ_label)}</h1>",
        f'<p><span class="verdict {css}">{verdict}</span></p>',
        "<h2>Primary metric</h2>",
        _table(
            ["metric", "champion", "challenger", "delta", "holdout rows"],
            [
                [
                    escape(primary.get("name", "")),
                    _cell(champion_primary),
                    _cell(primary.get("value")),
                    _delta(primary.get("value"), champion_primary, bool(primary.get("lower_is_better"))),
                    _cell(challenger.get("n")),
                ]
            ],
        ),
        f"<p>{escape(split_text(split))}</p>" if split else "",
        "<h2>Gate checks</h2>",
        _table(["check", "result", "detail"], checks, left=3),
        "<h2>All metrics</h2>",
        _metrics_section(challenger, champion),
        _per_class_section(challenger, champion),
    ]
    if challenger.get("confusion_matrix"):
        body += [
            "<h2>Confusion matrices</h2>",
            '<div class="pair">',
            _confusion(champion, champ_label),
            _confusion(challenger, f"challenger {challenger_version}"),
            "</div>",
        ]
    body.append(_slices_section(challenger, champion))
    body.append(_importance_section(importance, f"challenger {challenger_version}", champ_label))
    return document(f"{model} evaluation", "".join(body), EVALUATION_CSS)
