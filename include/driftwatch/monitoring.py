"""The read model behind the "Model monitoring" page and the report pages: Airflow-free.

Everything here is built from what the pipeline already writes: the per-batch history records
under ``<output_prefix>history/``, the report objects under ``reports/``, ``quarantine/`` and
``evaluations/``, the shadow state under ``shadow/``, and the MLflow registry (champion alias,
version tags, ``champion_history``). The page, its charts and the PNG of emails are drawn by
driftwatch.reports; their functions are importable from here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftwatch import layout, storage
from driftwatch.config import ModelConfig

# Also re-exported: the webapp, alerts, devstack and tests use the page, charts and links from here.
from driftwatch.reports.charts import (  # noqa: F401
    EXCEEDANCE_CAP,
    band_chart_svg,
    bar_chart_png,
    drift_grid_svg,
    line_chart_svg,
)
from driftwatch.reports.markup import finite, report_url  # noqa: F401

P_VALUE_METHODS = frozenset({"ks", "chisquare"})  # same set as drift.P_VALUE_METHODS; drift imports numpy
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}

# --------------------------------------------------------------------------- report keys


def report_key_allowed(cfg: ModelConfig, key: str) -> bool:
    """True when ``key`` is one of this model's report objects (never raw or quarantined data)."""
    prefix = cfg.storage.output_prefix
    if not key.startswith(prefix) or "\\" in key or "\x00" in key:
        return False
    rest = key[len(prefix) :]
    if any(part in ("", ".", "..") for part in rest.split("/")):
        return False
    return bool(layout.SERVABLE_REPORT.match(rest))


def resolve_report(cfgs: Iterable[ModelConfig], key: str) -> tuple[ModelConfig, str] | None:
    """The model owning a report key and the content type to serve it with; None if refused."""
    for cfg in cfgs:
        if report_key_allowed(cfg, key):
            suffix = key[key.rfind(".") :]
            return cfg, CONTENT_TYPES[suffix]
    return None


def batch_report_keys(cfg: ModelConfig, batch_date: str, quarantined: bool) -> dict[str, str]:
    """The report objects a monitor run writes for one batch, by label."""
    if quarantined:
        prefix = layout.quarantine_prefix(cfg, batch_date)
        return {"validation report": prefix + "validation.html"}
    prefix = layout.report_prefix(cfg, batch_date)
    return {"drift report": prefix + "drift.html", "validation report": prefix + "validation.html"}


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
    estimate: dict[str, Any] | None = None
    # The retraining policy's decision ("retrain", "cooldown", ...), beside `action`: what was done.
    policy: str = ""
    policy_reason: str = ""
    # The champion's attribution check over the labelled window (attribution.attribution_step).
    attribution: dict[str, Any] | None = None


def batch_rows(cfg: ModelConfig, records: Sequence[Mapping[str, Any]]) -> list[BatchRow]:
    """History records as table rows, newest first, each with its report keys."""
    rows = []
    for record in records:
        day = str(record.get("batch_date", ""))
        drift = record.get("drift") or {}
        status = str(record.get("status", "unknown"))
        validation = record.get("validation") or {}
        policy = record.get("policy") or {}
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
                estimate=record.get("estimate"),
                policy=str(policy.get("action") or ""),
                policy_reason=str(policy.get("reason") or ""),
                attribution=record.get("attribution"),
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
    """The label-free estimate with its band, realized performance and the evaluated value, in date order.

    `realized` is the champion's metric over the labelled window the record names (or, in records
    written before windows, over the batch's own labels); None where labels were too few. The
    evaluated value comes from the estimate, else from the realized record: either has it.
    """
    ordered = sorted(records, key=lambda r: str(r.get("batch_date", "")))
    estimates = [r.get("estimate") or {} for r in ordered]
    lives = [r.get("live") or {} for r in ordered]
    pairs = zip(estimates, lives, strict=True)
    return {
        "estimated": [finite(e.get("value")) for e in estimates],
        "lower": [finite(e.get("lower")) for e in estimates],
        "upper": [finite(e.get("upper")) for e in estimates],
        "realized": [finite(m.get("value")) for m in lives],
        "evaluated": [_first_finite(e.get("evaluated"), m.get("evaluated")) for e, m in pairs],
    }


def attribution_series(records: Sequence[Mapping[str, Any]]) -> list[float | None]:
    """The nDCG of the champion's importance ranking against its evaluation's, in date order (None: not measured)."""
    ordered = sorted(records, key=lambda r: str(r.get("batch_date", "")))
    return [finite((r.get("attribution") or {}).get("ndcg")) for r in ordered]


def _first_finite(*values: Any) -> float | None:
    return next((n for n in map(finite, values) if n is not None), None)


# --------------------------------------------------------------------------- shadow


def _count(value: Any) -> int:
    """A count from a record: an int, or a list of what was counted (older shapes); 0 otherwise."""
    if isinstance(value, list | tuple):
        return len(value)
    number = finite(value)
    return int(number) if number is not None else 0


@dataclass
class ShadowView:
    """The challenger in shadow (or the last one's verdict) and what each of its batches showed."""

    state: dict[str, Any]  # shadow.read_state's object
    batches: list[dict[str, Any]]  # date order: each batch the version scored or was evaluated on
    scored: int  # shadow batches scored so far (all of them, not only the batches shown)
    labelled: int  # of which labelled, at the newest evaluation
    latest: dict[str, Any] | None  # the newest `shadow_evaluation` of this version

    @property
    def active(self) -> bool:
        return self.state.get("status") == "shadow"

    @property
    def dates(self) -> list[str]:
        return [b["batch_date"] for b in self.batches]

    def series(self, key: str) -> list[float | None]:
        return [b[key] for b in self.batches]


def shadow_view(state: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]]) -> ShadowView | None:
    """The shadow state beside its batches' `shadow` and `shadow_evaluation` fields; None before any shadow.

    A batch counts when it is after the challenger's as_of and its record names the state's version
    (as shadow.shadow_days counts them). The difference and its interval are the evaluation's, over
    all labelled shadow batches up to that batch.
    """
    if not state or not state.get("version"):
        return None
    version, as_of = str(state["version"]), str(state.get("as_of") or "")
    batches = []
    for record in sorted(records, key=lambda r: str(r.get("batch_date", ""))):
        day = str(record.get("batch_date", ""))
        scored, evaluated = record.get("shadow") or {}, record.get("shadow_evaluation") or {}
        scored = scored if str(scored.get("version")) == version else {}
        evaluated = evaluated if str(evaluated.get("version")) == version else {}
        if not (scored or evaluated) or day <= as_of:
            continue
        batches.append(
            {
                "batch_date": day,
                "scored": bool(scored),
                "rows": scored.get("rows"),
                **{
                    k: finite(scored.get(k))
                    for k in ("agreement", "mean_abs_difference", "psi", "positive_rate_change")
                },
                "evaluation": dict(evaluated) or None,
                **{k: finite(evaluated.get(k)) for k in ("difference", "lower", "upper")},
            }
        )
    evaluated_on = [b for b in batches if b["evaluation"]]
    latest = evaluated_on[-1]["evaluation"] if evaluated_on else None
    decided = state.get("verdict") or {}
    if decided:
        scored_count, labelled = _count(decided.get("batches")), _count(decided.get("labelled_batches"))
    elif latest:
        # The newest evaluation counted every shadow batch up to its own; batches scored since come on top.
        after = evaluated_on[-1]["batch_date"]
        since = sum(b["scored"] and b["batch_date"] > after for b in batches)
        scored_count, labelled = _count(latest.get("batches")) + since, _count(latest.get("labelled_batches"))
    else:
        scored_count, labelled = sum(b["scored"] for b in batches), 0
    return ShadowView(state=dict(state), batches=batches, scored=scored_count, labelled=labelled, latest=latest)


def not_estimated_reason(records: Sequence[Mapping[str, Any]]) -> str:
    """Why the newest batch with an estimate record has no estimate ("" when it has one or none was tried)."""
    for record in sorted(records, key=lambda r: str(r.get("batch_date", "")), reverse=True):
        estimate = record.get("estimate")
        if estimate:
            return "" if finite(estimate.get("value")) is not None else str(estimate.get("reason") or "")
    return ""


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
    not_estimated: str = ""  # why the newest batch has no estimate, for the empty performance chart
    attribution: list[float | None] = field(default_factory=list)  # nDCG per date
    shadow: ShadowView | None = None  # the challenger in shadow, or the last one's verdict

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
    shadow_state: Mapping[str, Any] | None = None,
) -> ModelPage:
    """Assemble one model's section from its history records, what the registry says and the shadow state."""
    ordered = sorted(records, key=lambda r: str(r.get("batch_date", "")))
    return ModelPage(
        cfg=cfg,
        champion=dict(champion) if champion else None,
        rows=batch_rows(cfg, ordered),
        dates=[str(r.get("batch_date", "")) for r in ordered],
        drift=drift_series(cfg, ordered),
        shares=[finite((r.get("drift") or {}).get("share")) for r in ordered],
        performance=performance_series(ordered),
        not_estimated=not_estimated_reason(ordered),
        attribution=attribution_series(ordered),
        shadow=shadow_view(shadow_state, ordered),
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
    shadow_state = None
    try:
        # shadow.read_state's object, read here: importing driftwatch.shadow would load numpy and pandas.
        shadow_state = storage.read_json(client, cfg.storage.bucket, layout.shadow_state_key(cfg))
    except Exception as err:  # an unreadable state must not hide the batches either
        errors.append(f"shadow state unreadable: {type(err).__name__}: {str(err)[:200]}")
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
    registry_view = {"champion": champion, "history": events, "versions": versions, "mlflow_url": mlflow_url}
    return build_model_page(cfg, records, **registry_view, errors=errors, shadow_state=shadow_state)


def _probe(tracking_uri: str, timeout: float = 3.0) -> None:
    """Fail fast on an unreachable MLflow server: its client retries for minutes otherwise."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.request

    with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout):
        pass
