"""The retrain status: whether a retrain run is in flight, and how the last one ended.

The retrain DAG writes it when a run starts (`plan`) and when it ends, whatever the outcome (its
teardown task); the monitor's retraining policy reads it to hold off while a retrain is in flight
and to know when the last promotion was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from driftwatch import layout, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client


def _iso(moment: datetime | None = None) -> str:
    return (moment.astimezone(UTC) if moment else datetime.now(UTC)).isoformat(timespec="seconds")


def read_retrain_status(client: S3Client, cfg: ModelConfig) -> dict[str, Any] | None:
    """The latest retrain run's status, None before the first run.

    {"state": "running", run_id, started_at, as_of} while a run is in flight; at its end, whatever
    the outcome, {"state": "finished", run_id, started_at, finished_at, promoted, version,
    promoted_on (the last batch date the promoted model learned from, else None)}. Both carry
    `last_promotion`, the latest promotion by any run ({version, promoted_on, run_id, at} or
    None), so a run that promotes nothing does not hide the one before it.
    """
    return storage.read_json(client, cfg.storage.bucket, layout.retrain_status_key(cfg))


def _last_promotion(previous: dict[str, Any] | None) -> dict[str, Any] | None:
    if not previous:
        return None
    if previous.get("promoted"):
        keys = ("version", "promoted_on", "run_id")
        return {**{k: previous.get(k) for k in keys}, "at": previous.get("finished_at")}
    return previous.get("last_promotion")


def promoted_on(data: dict[str, Any] | None, as_of: str | None) -> str | None:
    """The batch date a promotion counts from: the run's as_of, or for a bootstrap on the
    reference the reference's last dated day (None when undated).

    A bootstrap's as_of is only the run's date, not a batch it learned from: counted as the
    promotion date it would put the cooldown of the monitor's policy in the future of every batch.
    """
    if data is None or data.get("mode") != "bootstrap":
        return as_of
    split = data.get("split") or {}
    dates = [*(split.get("train_dates") or []), *(split.get("holdout_dates") or [])]
    return max(dates) if dates else None


def _write_status(client: S3Client, cfg: ModelConfig, status: dict[str, Any]) -> dict[str, Any]:
    storage.write_json(client, cfg.storage.bucket, layout.retrain_status_key(cfg), status)
    return status


def write_running_status(
    client: S3Client, cfg: ModelConfig, *, run_id: str, as_of: str, started_at: datetime | None = None
) -> dict[str, Any]:
    """Record that run `run_id` is in flight (a retried plan rewrites the same record)."""
    previous = read_retrain_status(client, cfg)
    status = {
        "state": "running",
        "run_id": run_id,
        "started_at": _iso(started_at),
        "as_of": as_of,
        "last_promotion": _last_promotion(previous),
    }
    return _write_status(client, cfg, status)


def write_finished_status(
    client: S3Client,
    cfg: ModelConfig,
    *,
    run_id: str,
    outcome: dict[str, Any] | None,
    candidate: dict[str, Any] | None,
    data: dict[str, Any] | None = None,
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """Record that run `run_id` ended and whether it promoted; `outcome` is apply_decision's result,
    `candidate` train_challenger's and `data` assemble_data's (each None when it did not run).

    No outcome (a task failed, or the approver said no) is a finished run that promoted nothing.
    The running record `plan` wrote gives started_at and as_of; `started_at` stands in without it.
    """
    previous = read_retrain_status(client, cfg)
    mine = previous if previous and previous.get("run_id") == run_id else {}
    promoted = (outcome or {}).get("action") == "promoted"
    status = {
        "state": "finished",
        "run_id": run_id,
        "started_at": mine.get("started_at") or _iso(started_at),
        "finished_at": _iso(),
        "promoted": promoted,
        "version": (outcome or {}).get("version") or (candidate or {}).get("version"),
        "promoted_on": promoted_on(data, mine.get("as_of")) if promoted else None,
        "as_of": mine.get("as_of"),
        "action": (outcome or {}).get("action"),
    }
    status["last_promotion"] = _last_promotion(status if promoted else previous)
    return _write_status(client, cfg, status)
