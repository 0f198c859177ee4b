"""The per-model batch history (one JSON record per batch date) and the alerts' delivery records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from driftwatch import layout, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client

UPDATE_ATTEMPTS = 8


def update_record(
    client: S3Client,
    cfg: ModelConfig,
    batch_date: str,
    change: Callable[[dict[str, Any] | None], dict[str, Any]],
) -> str:
    """The one writer of batch records: read, `change`, write back only if nobody wrote in between.

    `change` gets the stored record (without `model` and `batch_date`; None when there is none)
    and returns the new one. When another task or run wrote the record meanwhile, the write is
    refused (an S3 conditional write on the ETag) and `change` runs again on what they wrote, so
    no update is lost.
    """
    bucket, key = cfg.storage.bucket, layout.history_key(cfg, batch_date)
    for _ in range(UPDATE_ATTEMPTS):
        stored, etag = storage.read_json_versioned(client, bucket, key)
        if stored is not None:
            stored = {k: v for k, v in stored.items() if k not in ("model", "batch_date")}
        payload = {"model": cfg.name, "batch_date": batch_date, **change(stored)}
        try:
            return storage.write_json_if(client, bucket, key, payload, etag)
        except storage.WriteConflict:
            continue
    raise storage.WriteConflict(
        f"the history record {storage.s3_uri(bucket, key)} changed {UPDATE_ATTEMPTS} times while this task "
        "updated it: another run of the same batch date is writing it; let that run finish"
    )


def write_record(client: S3Client, cfg: ModelConfig, batch_date: str, record: dict[str, Any]) -> str:
    """Store the record of one batch in place of what is there (a rerun of the date replaces it)."""
    return update_record(client, cfg, batch_date, lambda _stored: record)


def merge_into_record(client: S3Client, cfg: ModelConfig, batch_date: str, fields: dict[str, Any]) -> str:
    """Add or replace top-level fields of a batch's record, keeping everything else in it."""
    return update_record(client, cfg, batch_date, lambda stored: {**(stored or {"status": "unknown"}), **fields})


def read_record(client: S3Client, cfg: ModelConfig, batch_date: str) -> dict[str, Any] | None:
    return storage.read_json(client, cfg.storage.bucket, layout.history_key(cfg, batch_date))


def read_history(client: S3Client, cfg: ModelConfig, last: int | None = None) -> list[dict[str, Any]]:
    """All batch records of a model in date order, or the `last` N of them."""
    objects = storage.list_objects(client, cfg.storage.bucket, layout.history_prefix(cfg))
    objects = [o for o in objects if o.key.endswith(".json")]
    if last is not None:
        objects = objects[-last:]
    return [json.loads(storage.read_bytes(client, cfg.storage.bucket, o.key)) for o in objects]


# --- what each step of a run did for its batch ---------------------------------------------
# The record's `action` is what really happened, written by the steps that did it: a run whose
# alert could not be sent must not show "alert+retrain" on the monitoring page. Steps are named
# by their task id, so that a task's success on a rerun replaces the failure its callback recorded.

ACTION_STEPS = (("alert_drift", "alert"), ("request_retraining", "retrain"))


def record_step(
    client: S3Client,
    cfg: ModelConfig,
    batch_date: str,
    step: str,
    outcome: dict[str, Any],
    fields: dict[str, Any] | None = None,
) -> str:
    """Record one step's outcome under `steps.<step>` (and its `fields`, in the same write); recompute `action`."""

    def change(stored: dict[str, Any] | None) -> dict[str, Any]:
        record = {**(stored or {"status": "unknown"}), **(fields or {})}
        record["steps"] = {**record.get("steps", {}), step: outcome}
        record["action"] = final_action(record["steps"])
        return record

    return update_record(client, cfg, batch_date, change)


def final_action(steps: dict[str, dict[str, Any]]) -> str:
    """ "alert+retrain", "alert", "retrain", "none" or "pending", plus the steps that failed.

    `steps.decide.retrain` says whether anything was due (`sends: false` for a check that never
    sends, the fleet's); `steps.alert_drift.done` and `steps.request_retraining.done` say what
    was done; a step with `failed` is named.
    """
    decision = steps.get("decide")
    done = [label for name, label in ACTION_STEPS if (steps.get(name) or {}).get("done")]
    if done:
        action = "+".join(done)
    elif decision is not None and not decision.get("retrain"):
        action = "none"
    elif decision is not None and decision.get("sends") is False:
        action = "retrain advised (not sent: a fleet check sends nothing)"
    else:
        action = "pending"
    failed = sorted(name for name, outcome in steps.items() if (outcome or {}).get("failed"))
    return f"{action} ({', '.join(failed)} failed)" if failed else action


# --- one line per batch: what a terminal shows -------------------------------------------

TABLE_ROW = "{:<11} {:<8} {:>6}  {:<12} {:>11}  {:<17} {:<15} {}"


def summary_row(batch_date: str, record: dict[str, Any] | None) -> dict[str, Any]:
    """What a batch's record says in one row: rows, validation, drift share, estimate, policy, action."""
    record = record or {}
    return {
        "batch_date": batch_date,
        "rows": record.get("rows"),
        "validation": record.get("status", "no record"),
        "drift_share": (record.get("drift") or {}).get("share"),
        "action": record.get("action", "none"),
        "policy": (record.get("policy") or {}).get("action") or "-",
        "estimate": estimate_text(record.get("estimate")),
        "reason": record.get("reason") or (record.get("validation") or {}).get("reason", ""),
    }


def estimate_text(estimate: dict[str, Any] | None) -> str:
    """'0.71 [0.66,0.76]': the label-free estimate and its band; '-' when there is none."""
    if not estimate or estimate.get("value") is None:
        return "-"
    low, high = estimate.get("lower"), estimate.get("upper")
    band = f" [{low:.2f},{high:.2f}]" if low is not None and high is not None else ""
    return f"{estimate['value']:.2f}{band}"


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """A header, then one line per summary_row (its `run_state`, when a caller added it, else "-")."""
    lines = [TABLE_ROW.format("batch", "run", "rows", "validation", "drift share", "estimate", "policy", "action")]
    for r in rows:
        share = "" if r["drift_share"] is None else f"{r['drift_share']:.0%}"
        cells = (r["batch_date"], r.get("run_state", "-"), r["rows"] or 0, r["validation"], share, r["estimate"])
        lines.append(TABLE_ROW.format(*cells, r["policy"], r["action"]))
    return lines


# --- alert delivery records ---------------------------------------------------------------
# An alert's dedup key (model/batch date/kind) names its records, so a rerun finds what an earlier
# attempt delivered and does not send the same alert twice, and an alert that could not be sent
# is kept in the bucket, with the whole message, instead of vanishing with a failed task.


def alert_content_sha256(message: EmailMessage) -> str:
    """What makes two sends the same alert: subject and plain text, not the Date header.

    An alert whose text changes from try to try (a failure email names the try and its log)
    says what identifies it in X-Driftwatch-Content-Key instead.
    """
    if message["X-Driftwatch-Content-Key"]:
        return hashlib.sha256(f"{message['Subject']}\n{message['X-Driftwatch-Content-Key']}".encode()).hexdigest()
    body = message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    return hashlib.sha256(f"{message['Subject']}\n{text}".encode()).hexdigest()


def _alert_fields(message: EmailMessage) -> dict[str, Any]:
    return {
        "dedup_key": message["X-Driftwatch-Dedup-Key"],
        "message_id": message["Message-ID"],
        "subject": message["Subject"],
        "recipients": [a.strip() for a in str(message["To"] or "").split(",") if a.strip()],
        "content_sha256": alert_content_sha256(message),
    }


def was_delivered(client: S3Client, cfg: ModelConfig, message: EmailMessage) -> bool:
    """True when this very alert (same key and content) was delivered before, e.g. by a cleared run."""
    key = message["X-Driftwatch-Dedup-Key"]
    if not key:
        return False
    record = storage.read_json(client, cfg.storage.bucket, layout.alert_record_key(cfg, key, "delivered"))
    return bool(record) and record.get("content_sha256") == alert_content_sha256(message)


def record_delivered(client: S3Client, cfg: ModelConfig, message: EmailMessage, attempts: int) -> str:
    """Remember a delivered alert so that a rerun of the same batch does not send it again."""
    payload = {**_alert_fields(message), "attempts": attempts, "delivered_at": _now()}
    key = layout.alert_record_key(cfg, message["X-Driftwatch-Dedup-Key"] or message["Message-ID"], "delivered")
    return storage.write_json(client, cfg.storage.bucket, key, payload)


def record_undelivered(client: S3Client, cfg: ModelConfig, message: EmailMessage, error: str, attempts: int) -> str:
    """Keep an alert the SMTP server did not take: the message itself (.eml) and why it failed."""
    record_key = layout.alert_record_key(cfg, message["X-Driftwatch-Dedup-Key"] or message["Message-ID"], "undelivered")
    eml_key = record_key.removesuffix(".json") + ".eml"
    eml_uri = storage.write_bytes(client, cfg.storage.bucket, eml_key, message.as_bytes(), "message/rfc822")
    payload = {**_alert_fields(message), "attempts": attempts, "error": error[:500], "eml": eml_uri, "at": _now()}
    return storage.write_json(client, cfg.storage.bucket, record_key, payload)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- retraining requests ------------------------------------------------------------------
# A cleared or rerun monitor run must not request retraining of the same batch again: a second
# Asset event would start a second retrain run and register a duplicate model version. Requests
# are keyed on model, batch date and the signals that fired, not on the reason's wording, which
# a rerun may phrase differently (another live window, another estimate).


def earlier_retraining_request(
    client: S3Client, cfg: ModelConfig, batch_date: str, signal: str, run_id: str
) -> dict[str, Any] | None:
    """The request another run already made for this batch and signal; a retry of the same run gets None."""
    record = storage.read_json(client, cfg.storage.bucket, layout.retraining_request_key(cfg, batch_date))
    if record and record.get("signal") == signal and record.get("run_id") != run_id:
        return record
    return None


def record_retraining_request(
    client: S3Client, cfg: ModelConfig, batch_date: str, signal: str, reason: str, run_id: str
) -> str:
    payload = {"batch_date": batch_date, "signal": signal, "reason": reason, "run_id": run_id, "at": _now()}
    return storage.write_json(client, cfg.storage.bucket, layout.retraining_request_key(cfg, batch_date), payload)
