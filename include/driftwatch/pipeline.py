"""The monitor pipeline's steps, one function per Airflow task, returning small JSON-able dicts.

Each step reads its inputs from object storage and writes its outputs there under keys
derived from (model, batch date); only URIs, counts and small metric dicts are returned.
"""

from __future__ import annotations

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from driftwatch import history, ingest, layout, storage
from driftwatch.artifacts import ArtifactSet
from driftwatch.config import ModelConfig
from driftwatch.errors import PermanentError
from driftwatch.storage import S3Client

log = logging.getLogger(__name__)


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


def validate_step(
    client: S3Client, cfg: ModelConfig, batch_date: str, tracking_uri: str | None = None
) -> dict[str, Any]:
    """Ingest and validate one batch; stage it as typed Parquet when it passes.

    With the registry's `tracking_uri`, the drift reference is first checked against the champion
    (and repaired); a registry that cannot be reached leaves the reference as it is, with a warning.
    """
    from driftwatch import references, retraining, validation
    from driftwatch.reports.validation import render_validation_html

    if tracking_uri is not None:
        try:
            checked = retraining.reference_in_force(client, cfg, tracking_uri)
            if checked.get("repaired"):
                log.warning(
                    "the drift reference of %s named v%s; repaired to the champion v%s",
                    cfg.name,
                    checked["from"],
                    checked["to"],
                )
        except PermanentError:
            raise
        except Exception:
            log.warning("could not check the drift reference of %s against the registry", cfg.name, exc_info=True)
    reports = _reports(client, cfg, batch_date)
    # Until drift or quarantine commits the set, readers see it as being written (a rerun included).
    reports.begin(batch_date=batch_date)
    # The stored profile holds the reference's ranges and categories: no rescan of the reference.
    stored = references.load_profile(client, cfg)
    reference, reference_uri = stored.profile, stored.data_uri
    objects: list[str] = []
    # Parquet batches are copied to local files and read a column group at a time: memory holds
    # one column's worth of the batch, not all of it.
    with tempfile.TemporaryDirectory(prefix="driftwatch-batch-") as spool, ThreadPoolExecutor(1) as background:
        staging = None
        try:
            batch = ingest.read_batch(client, cfg, batch_date, spool=Path(spool))
            objects = [storage.s3_uri(cfg.storage.bucket, o.key) for o in batch.objects]
            data = ingest.drop_unused_columns(batch.data, cfg)
            # The staged copy is written on the second core while GX validates on the first; it
            # leaves the machine only if the batch passes, and a failed write of a failed batch is moot.
            staging = background.submit(ingest.write_staged_file, Path(spool) / "staged.parquet", data, cfg)
            result = validation.validate_frame(data, cfg, reference)
        except ingest.IngestError as err:
            # An unreadable batch is quarantined too: its objects are copied, never touched.
            # A damaged page found while validating carries no objects: the batch's are known by then.
            objects = [storage.s3_uri(cfg.storage.bucket, o.key) for o in err.objects] or objects
            result = validation.unreadable_result(err.reason, err.detail)
        staged_path = None
        if result.passed and staging is not None:
            try:
                staged_path = staging.result()
            except ingest.IngestError as err:  # e.g. files whose column types cannot be stacked
                result = validation.unreadable_result(err.reason, err.detail)
        reports.put_json("validation.json", result.to_dict())
        reports.put_text(
            "validation.html",
            render_validation_html(result, model=cfg.name, batch_date=batch_date, sources=objects),
        )
        staged_uri = None
        if staged_path is not None:
            staged_uri = ingest.upload_staged(client, cfg, layout.staged_key(cfg, batch_date), staged_path)
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


def drift_partitions(cfg: ModelConfig, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The partitions a staged batch is profiled in, one mapped task each (one for most batches)."""
    from driftwatch import drift_check

    plan = drift_check.plan_partitions(summary["rows"], layout.staged_row_group_rows(cfg), cfg.drift.partition_rows)
    return [{**p.to_dict(), "batch_date": summary["batch_date"], "staged_uri": summary["staged_uri"]} for p in plan]


def profile_partition_step(client: S3Client, cfg: ModelConfig, part: dict[str, Any]) -> dict[str, Any]:
    """Profile one partition of a staged batch against the reference; store its profile and sample share.

    Only the partition's row groups are downloaded (ranged reads), so a worker holds one
    partition, never the whole batch.
    """
    from driftwatch import drift_check, references

    bucket = cfg.storage.bucket
    stored = references.load_profile(client, cfg)
    source = storage.RangeReader(client, *storage.parse_s3_uri(part["staged_uri"]))
    partition = drift_check.Partition.from_dict(part)
    seed = drift_check.sample_seed(part["batch_date"])
    batch, sample = drift_check.profile_partition(source, stored.profile, cfg, seed=seed, partition=partition)
    day = part["batch_date"]
    profile_key = layout.partition_key(cfg, day, partition.index, ".profile.json")
    profile_uri = storage.write_bytes(client, bucket, profile_key, batch.to_json().encode(), "application/json")
    sample_key = layout.partition_key(cfg, day, partition.index, ".sample.parquet")
    sample_uri = ingest.write_parquet(client, bucket, sample_key, sample)
    return {
        "index": partition.index,
        "rows": batch.rows,
        "reference_profile_id": stored.profile.profile_id,
        "profile_uri": profile_uri,
        "sample_uri": sample_uri,
    }


def _read_partition(client: S3Client, part: dict[str, Any]) -> tuple[Any, Any]:
    from driftwatch.profile import BatchProfile

    batch = BatchProfile.from_json(storage.read_bytes(client, *storage.parse_s3_uri(part["profile_uri"])))
    sample = ingest.read_table(client, *storage.parse_s3_uri(part["sample_uri"]))
    return batch, sample


def drift_step(
    client: S3Client,
    cfg: ModelConfig,
    batch_date: str,
    summary: dict[str, Any],
    *,
    partitions: list[dict[str, Any]] | None = None,
    threshold_override: float | None = None,
    force_retrain: bool = False,
) -> dict[str, Any]:
    """Merge the partition profiles, decide drift on all rows, write the sampled report and the decision.

    Without `partitions` (the fleet DAG, a direct call) the partitions are profiled here, in turn.
    """
    from driftwatch import drift_check, profile, references

    bucket = cfg.storage.bucket
    if partitions is None:
        partitions = [profile_partition_step(client, cfg, part) for part in drift_partitions(cfg, summary)]
    stored = references.load_profile(client, cfg)
    stale = [p for p in partitions if p["reference_profile_id"] != stored.profile.profile_id]
    if stale:
        # A promotion moved the reference between profiling and this task (a retrain finished in
        # between): the batch is profiled again here, against the reference now in force.
        log.warning(
            "the reference of %s changed while its batch was being profiled: profiling %d partition(s) again "
            "against %s",
            cfg.name,
            len(stale),
            stored.data_uri,
        )
        plans = {plan["index"]: plan for plan in drift_partitions(cfg, summary)}
        partitions = [profile_partition_step(client, cfg, plans[p["index"]]) if p in stale else p for p in partitions]
        stored = references.load_profile(client, cfg)
        if any(p["reference_profile_id"] != stored.profile.profile_id for p in partitions):
            raise RuntimeError(
                f"the reference of {cfg.name} changed again while its batch was being profiled: "
                "the task's retry profiles it against the reference then in force"
            )
    parts = [_read_partition(client, p) for p in sorted(partitions, key=lambda p: p["index"])]
    # Evidently embeds category values unescaped inside a <script> element of its HTML report.
    reference_sample = ingest.inert_markup(references.read_sample(client, stored), cfg)
    assessment = drift_check.assess(
        stored.profile,
        reference_sample,
        parts,
        cfg,
        seed=drift_check.sample_seed(batch_date),
        threshold_override=threshold_override,
        prepare_sample=lambda sample: ingest.inert_markup(sample, cfg),
    )
    result, reference_uri = assessment.result, stored.data_uri
    reports = _reports(client, cfg, batch_date, summary["artifacts"])
    reports.put_text("drift.html", assessment.html)
    reports.put_json("drift.json", assessment.report_json)
    retrain = result.dataset_drift or force_retrain
    reason = _retrain_reason(result, force_retrain)
    # One feature gone wild is a signal of its own: the retraining policy alerts on it, whatever the share.
    extreme = profile.extreme_features(stored.profile, result, cfg.retraining)
    entry = ("name", "method", "score", "threshold", "outside_range_share", "score_ratio")
    decision = {
        "batch_date": batch_date,
        "drifted_share": result.drifted_share,
        "share_threshold": result.share_threshold,
        "dataset_drift": result.dataset_drift,
        "n_features": len(result.features),
        "drifted_features": [{k: d[k] for k in entry} for d in (f.to_dict() for f in result.drifted_features)],
        "extreme_features": extreme,
        "retrain": retrain,
        "reason": reason,
        "reference_uri": reference_uri,
        "reference_profile": stored.prefix_uri,
        "report_uri": reports.uri("drift.html"),
        **assessment.summary(),
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
            "extreme_features": extreme,
        },
        # What was done is recorded by the steps that do it (history.record_step); until then:
        "action": "pending",
        "reason": reason,
        "links": links,
    }
    history.update_record(client, cfg, batch_date, lambda stored: {**_scored_fields(stored), **record})
    return {**decision, "links": links, "bucket": bucket}


def _scored_fields(stored: dict[str, Any] | None) -> dict[str, Any]:
    """What scoring recorded for the batch: a drift check (the fleet's, a rerun's) must not erase it.

    A monitor run's score_batch and check_attribution replace them afterwards; each names the model
    version it measured.
    """
    return {k: v for k, v in (stored or {}).items() if k in ("scoring", "estimate", "live", "attribution")}


def _retrain_reason(result: Any, force_retrain: bool) -> str:
    if result.dataset_drift:
        names = ", ".join(f.name for f in result.drifted_features[:5])
        return f"data drift: {result.drifted_share:.0%} of features drifted ({names})"
    return "forced from the trigger form" if force_retrain else ""


def check_batch(client: S3Client, cfg: ModelConfig, batch_date: str) -> dict[str, Any]:
    """Validate one batch, then quarantine it or decide drift; no email, no Asset event (the fleet path)."""
    summary = validate_step(client, cfg, batch_date)
    if not summary["passed"]:
        quarantine_step(client, cfg, batch_date, summary)
        return {"model": cfg.name, "passed": False, "drifted_share": None, "retrain": False}
    drift = drift_step(client, cfg, batch_date, summary)
    outcome = {"retrain": drift["retrain"], "reason": drift["reason"], "sends": False}
    history.record_step(client, cfg, batch_date, "decide", outcome)
    return {"model": cfg.name, "passed": True, "drifted_share": drift["drifted_share"], "retrain": drift["retrain"]}


def missing_batch_step(client: S3Client, cfg: ModelConfig, batch_date: str, waited_minutes: int) -> dict[str, Any]:
    """Record a batch that never arrived; refuse when objects are there after all, so a rerun picks them up."""
    prefix = layout.incoming_prefix(cfg, batch_date)
    found = storage.list_objects(client, cfg.storage.bucket, prefix)
    if found:
        raise RuntimeError(
            f"the wait for s3://{cfg.storage.bucket}/{prefix} ended without the batch, but {len(found)} object(s) "
            "are there now: clear this run to process them"
        )
    reason = f"no object under s3://{cfg.storage.bucket}/{prefix} after waiting {waited_minutes} min"
    record = {"status": "missing", "rows": 0, "validation": None, "drift": None, "action": "missing batch"}
    history.write_record(client, cfg, batch_date, {**record, "reason": reason, "links": {}})
    return {"batch_date": batch_date, "reason": reason}
