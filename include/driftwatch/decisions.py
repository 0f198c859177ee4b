"""The monitor's `decide` step: gather the policy's state, decide, and record why.

The policy itself (driftwatch.policy) is pure; this module reads what it needs from S3 (the
previous batches' drift, the pending request, the last retrain run's status, the labels that
have landed since the drift began), stores the pending request and the last request sent, and
writes the decision into the batch's history record.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from driftwatch import history, labels, layout, policy, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client

#: A request that no retrain run picked up within this time (a paused DAG) no longer blocks a new one.
REQUEST_STALE_AFTER = timedelta(hours=24)
#: Label files counted towards min_new_labelled_rows go back at most this far.
MAX_LABEL_LOOKBACK_DAYS = 60
STATE_ATTEMPTS = 8


def read_state(client: S3Client, cfg: ModelConfig) -> dict[str, Any]:
    """The policy's stored state: `pending`, `requested` and `last_promotion` (all may be None)."""
    stored = storage.read_json(client, cfg.storage.bucket, layout.policy_state_key(cfg)) or {}
    return {"pending": None, "requested": None, "last_promotion": None, **stored}


def update_state(client: S3Client, cfg: ModelConfig, fields: dict[str, Any]) -> dict[str, Any]:
    """Change some fields of the policy state; a concurrent writer's change is re-read, never lost."""
    bucket, key = cfg.storage.bucket, layout.policy_state_key(cfg)
    for _ in range(STATE_ATTEMPTS):
        stored, etag = storage.read_json_versioned(client, bucket, key)
        state = {"pending": None, "requested": None, "last_promotion": None, **(stored or {}), **fields}
        # A shadow's promotion is recorded by another task of the run: the later date always stays.
        state["last_promotion"] = max(
            filter(None, [(stored or {}).get("last_promotion"), state["last_promotion"]]), default=None
        )
        try:
            storage.write_json_if(client, bucket, key, state, etag)
            return state
        except storage.WriteConflict:
            continue
    raise storage.WriteConflict(f"s3://{bucket}/{key} changed {STATE_ATTEMPTS} times while it was updated")


def recent_drift(client: S3Client, cfg: ModelConfig, batch_date: str, count: int) -> list[tuple[str, bool]]:
    """Data-drift flags of the `count` batches before `batch_date` that were drift-checked, oldest first."""
    if count <= 0:
        return []
    objects = storage.list_objects(client, cfg.storage.bucket, layout.history_prefix(cfg))
    earlier = sorted(o.key for o in objects if o.key.endswith(".json") and layout.history_key_date(o.key) < batch_date)
    flags: list[tuple[str, bool]] = []
    for key in reversed(earlier):
        record = storage.read_json(client, cfg.storage.bucket, key) or {}
        if record.get("drift"):
            flags.append((layout.history_key_date(key), bool(record["drift"].get("dataset_drift"))))
        if len(flags) == count:
            break
    return list(reversed(flags))


def labelled_rows_since(client: S3Client, cfg: ModelConfig, onset: str, batch_date: str) -> int:
    """Labelled rows landed for the batches from `onset` to `batch_date`: what a retrain could learn from."""
    first, last = date.fromisoformat(onset), date.fromisoformat(batch_date)
    first = max(first, last - timedelta(days=MAX_LABEL_LOOKBACK_DAYS))
    rows = 0
    for offset in range((last - first).days + 1):
        found = labels.read_labels(client, cfg, (first + timedelta(days=offset)).isoformat())
        rows += 0 if found is None else len(found)
    return rows


def in_flight(requested: dict[str, Any] | None, status: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    """The request still queued or running: sent, and no retrain run that started after it has finished."""
    if not requested:
        return None
    asked = _instant(requested["at"])
    started = _instant((status or {}).get("started_at"))
    if started is not None and started >= asked:
        return None if (status or {}).get("state") == "finished" else requested
    return None if now - asked > REQUEST_STALE_AFTER else requested


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def last_promotion(state: dict[str, Any], status: dict[str, Any] | None, from_shadow: str | None = None) -> str | None:
    """The batch date of the latest promotion the policy knows of: stored, the last run's, or a shadow's."""
    status = status or {}
    promoted = status.get("promoted_on") if status.get("state") == "finished" and status.get("promoted") else None
    return max((d for d in (state.get("last_promotion"), promoted, from_shadow) if d), default=None)


def signals_of(
    cfg: ModelConfig,
    drift: dict[str, Any],
    scored: dict[str, Any],
    manual: bool,
    attribution: dict[str, Any] | None = None,
) -> policy.Signals:
    """The policy's view of one batch, from the drift decision, what scoring measured and the attribution check."""
    return policy.Signals(
        batch_date=drift["batch_date"],
        data_drift=bool(drift.get("dataset_drift")),
        drift_reason=drift.get("reason", "") if drift.get("dataset_drift") else "",
        extreme_features=list(drift.get("extreme_features") or []),
        estimate=scored.get("estimate"),
        realized=scored.get("live"),
        manual=manual,
        attribution=attribution,
    )


def decide_step(
    client: S3Client,
    cfg: ModelConfig,
    drift: dict[str, Any],
    scored: dict[str, Any],
    manual: bool = False,
    attribution: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decide for one batch, store the pending request and record the decision as the batch's `decide` step.

    `attribution` is what the attribution check measured (attribution.attribution_outcome); None
    (the fleet, a direct call) decides without it.
    """
    from driftwatch import shadow
    from driftwatch.retrain_status import read_retrain_status

    day = drift["batch_date"]
    signals = signals_of(cfg, drift, scored, manual, attribution)
    stored, status = read_state(client, cfg), read_retrain_status(client, cfg)
    in_shadow = shadow.read_state(client, cfg)
    recent = recent_drift(client, cfg, day, cfg.retraining.sustained_window - 1)
    pending = stored["pending"]
    onset = (pending or {}).get("onset") or policy.drift_onset(day, recent, cfg.retraining.sustained_window)
    realized = signals.realized or {}
    if realized.get("degraded") and realized.get("since"):
        onset = min(onset, realized["since"])
    requested = stored["requested"]
    if requested and requested.get("batch_date") == day:
        # A rerun of the day that sent the request decides as its first run did; request_retraining
        # then finds that request (same signals) and emits no second event.
        requested = None
    state = policy.PolicyState(
        recent_drift=recent,
        pending=pending,
        in_flight=in_flight(requested, status, datetime.now(UTC)),
        last_promotion=last_promotion(stored, status, shadow.promoted_on(in_shadow)),
        labelled_rows_since_onset=labelled_rows_since(client, cfg, onset, day),
        shadow=shadow.shadow_hold(in_shadow, day),
    )
    decision = policy.decide(cfg, signals, state)
    update_state(
        client, cfg, {"pending": None if decision.retrain else decision.pending, "last_promotion": state.last_promotion}
    )
    outcome: dict[str, Any] = {"retrain": decision.retrain, "alert": decision.alert, "reason": decision.reason}
    if scored.get("failed"):
        outcome["scoring"] = scored["reason"]
    if attribution and attribution.get("failed"):
        outcome["attribution"] = attribution["note"]
    record = {k: v for k, v in decision.to_dict().items() if k != "pending"}
    history.record_step(client, cfg, day, "decide", outcome, fields={"policy": record, "reason": decision.reason})
    return {
        **drift,
        "retrain": decision.retrain,
        "alert": decision.alert,
        "action": decision.action,
        "reason": decision.reason,
        "signal_key": signal_key(decision),
        "policy": record,
        "estimate": scored.get("estimate"),
        "live": scored.get("live") or {},
        "attribution": attribution,
    }


def signal_key(decision: policy.Decision) -> str:
    """What a retraining request is about, for its deduplication: the signals that fired, not their wording."""
    seen = decision.signals
    names = [
        name
        for name, fired in (
            ("data_drift", seen.get("sustained")),
            ("estimate_harm", seen.get("estimate_harm")),
            ("realized_degraded", seen.get("realized_degraded")),
            ("manual", seen.get("manual")),
        )
        if fired
    ]
    return "+".join(names) or "pending"


def note_request(client: S3Client, cfg: ModelConfig, batch_date: str, run_id: str) -> None:
    """Remember the request just sent, so that later signals join it while it is queued or running."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    update_state(client, cfg, {"requested": {"batch_date": batch_date, "run_id": run_id, "at": at}, "pending": None})
