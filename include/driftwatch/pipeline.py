"""The monitor pipeline's steps, one function per Airflow task, returning small JSON-able dicts.

Each step reads its inputs from object storage and writes its outputs there under keys
derived from (model, batch date); only URIs, counts and small metric dicts are returned.
"""

from __future__ import annotations

from typing import Any

from driftwatch import history, ingest, layout, storage
from driftwatch.artifacts import MANIFEST, ArtifactSet
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client


def _reports(client: S3Client, cfg: ModelConfig, batch_date: str, entries: dict[str, Any] | None = None) -> ArtifactSet:
    reports = ArtifactSet(client, cfg.storage.bucket, layout.report_prefix(cfg, batch_date))
    reports.entries.update(entries or {})
    return reports


def _failure_rows(result: Any) -> list[dict[str, Any]]:
    return [
        {"check": o.description, "column": o.column, "detail": _observed_text(o.observed)}
        for o in result.critical_failures
    ]


def _observed_text(observed: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in observed.items() if v not in (None, [], "")]
    return "; ".join(parts)[:300]


def validate_step(client: S3Client, cfg: ModelConfig, batch_date: str) -> dict[str, Any]:
    """Ingest and validate one batch; stage it as typed Parquet when it passes."""
    from driftwatch import validation

    reports = _reports(client, cfg, batch_date)
    # A rerun must not leave the previous run's manifest pointing at artifacts being rewritten.
    storage.delete_object(client, cfg.storage.bucket, reports.prefix + MANIFEST)
    reference, reference_uri = ingest.load_reference(client, cfg)
    objects: list[str] = []
    try:
        batch = ingest.read_batch(client, cfg, batch_date)
        objects = [storage.s3_uri(cfg.storage.bucket, o.key) for o in batch.objects]
        frame = ingest.drop_pii(batch.frame, cfg)
        result = validation.validate_frame(frame, cfg, reference)
    except ingest.IngestError as err:
        frame = None
        result = validation.unreadable_result(err.reason, err.detail)
    reports.put_json("validation.json", result.to_dict())
    reports.put_text(
        "validation.html",
        validation.render_validation_html(result, model=cfg.name, batch_date=batch_date, sources=objects),
    )
    staged_uri = None
    if result.passed and frame is not None:
        staged = ingest.normalize_types(frame, cfg)
        staged_uri = ingest.write_parquet(client, cfg.storage.bucket, layout.staged_key(cfg, batch_date), staged)
    return {
        "batch_date": batch_date,
        "passed": result.passed,
        "rows": result.row_count,
        "reason": "" if result.passed else result.failure_reason(),
        "failures": _failure_rows(result),
        "warnings": len(result.warnings),
        "objects": objects,
        "staged_uri": staged_uri,
        "reference_uri": reference_uri,
        "artifacts": reports.entries,
    }


def quarantine_step(client: S3Client, cfg: ModelConfig, batch_date: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Copy a failed batch and its validation report under quarantine/; the original stays in place."""
    bucket = cfg.storage.bucket
    quarantine = ArtifactSet(client, bucket, layout.quarantine_prefix(cfg, batch_date))
    for uri in summary["objects"]:
        _, key = storage.parse_s3_uri(uri)
        name = "data/" + key.rsplit("/", 1)[-1]
        storage.copy_object(client, bucket, key, quarantine.prefix + name)
        quarantine.add_existing(name, quarantine.prefix + name, storage.object_size(client, bucket, key) or 0)
    for name in ("validation.json", "validation.html"):
        source = summary["artifacts"][name]
        _, key = storage.parse_s3_uri(source["uri"])
        storage.copy_object(client, bucket, key, quarantine.prefix + name)
        quarantine.add_existing(name, quarantine.prefix + name, source["bytes"], source["sha256"])
    quarantine.commit("quarantined", batch_date=batch_date, reason=summary["reason"], source_objects=summary["objects"])
    _reports(client, cfg, batch_date, summary["artifacts"]).commit("quarantined", reason=summary["reason"])
    links = {
        "quarantined copy": storage.s3_uri(bucket, quarantine.prefix),
        "validation report": quarantine.uri("validation.html"),
        "original batch": storage.s3_uri(bucket, layout.incoming_prefix(cfg, batch_date)),
    }
    record = {
        "status": "quarantined",
        "rows": summary["rows"],
        "validation": {"passed": False, "reason": summary["reason"], "warnings": summary["warnings"]},
        "drift": None,
        "action": "quarantined",
        "links": links,
    }
    history.write_record(client, cfg, batch_date, record)
    return {"reason": summary["reason"], "failures": summary["failures"], "links": links}


def drift_step(
    client: S3Client,
    cfg: ModelConfig,
    batch_date: str,
    summary: dict[str, Any],
    *,
    threshold_override: float | None = None,
    force_retrain: bool = False,
) -> dict[str, Any]:
    """Compare a staged batch with the champion's reference; write the report and the decision."""
    from driftwatch import drift

    bucket = cfg.storage.bucket
    current = ingest.read_table(client, *storage.parse_s3_uri(summary["staged_uri"]))
    reference, reference_uri = ingest.load_reference(client, cfg)
    result, html, report_json = drift.run_drift_report(reference, current, cfg, threshold_override=threshold_override)
    reports = _reports(client, cfg, batch_date, summary["artifacts"])
    reports.put_text("drift.html", html)
    reports.put_json("drift.json", report_json)
    retrain = result.dataset_drift or force_retrain
    reason = _retrain_reason(result, force_retrain)
    decision = {
        "batch_date": batch_date,
        "drifted_share": result.drifted_share,
        "share_threshold": result.share_threshold,
        "dataset_drift": result.dataset_drift,
        "n_features": len(result.features),
        "drifted_features": [
            {"name": f.name, "method": f.method, "score": f.score, "threshold": f.threshold}
            for f in result.drifted_features
        ],
        "retrain": retrain,
        "reason": reason,
        "reference_uri": reference_uri,
        "report_uri": reports.uri("drift.html"),
    }
    reports.put_json("drift_decision.json", decision)
    reports.commit("passed", decision={k: decision[k] for k in ("drifted_share", "dataset_drift", "retrain")})
    links = {"drift report": reports.uri("drift.html"), "validation report": reports.uri("validation.html")}
    record = {
        "status": "passed",
        "rows": summary["rows"],
        "validation": {"passed": True, "reason": "", "warnings": summary["warnings"]},
        "drift": {
            "share": result.drifted_share,
            "threshold": result.share_threshold,
            "dataset_drift": result.dataset_drift,
            "scores": {f.name: f.score for f in result.features},
            "drifted": [f.name for f in result.drifted_features],
        },
        "action": "alert+retrain" if retrain else "none",
        "reason": reason,
        "links": links,
    }
    history.write_record(client, cfg, batch_date, record)
    return {**decision, "links": links, "bucket": bucket}


def _retrain_reason(result: Any, force_retrain: bool) -> str:
    if result.dataset_drift:
        names = ", ".join(f.name for f in result.drifted_features[:5])
        return f"data drift: {result.drifted_share:.0%} of features drifted ({names})"
    return "forced from the trigger form" if force_retrain else ""
