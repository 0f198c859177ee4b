"""Batch scoring with the champion, and its live performance once labels arrive.

Live performance is what catches concept drift: the inputs can look unchanged while the
relationship between inputs and target has moved.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from driftwatch import history, ingest, layout, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client


def output_stats(scores: np.ndarray, task: str) -> dict[str, Any]:
    """The prediction distribution and the share of null or NaN outputs."""
    values = np.asarray(scores, dtype="float64")
    finite = values[np.isfinite(values)]
    stats: dict[str, Any] = {"rows": int(values.size), "null_outputs": int(values.size - finite.size)}
    if finite.size:
        q10, q50, q90 = np.quantile(finite, [0.1, 0.5, 0.9])
        stats.update(mean=float(finite.mean()), std=float(finite.std()), p10=float(q10), p50=float(q50), p90=float(q90))
        if task == "classification":
            stats["positive_rate"] = float((finite >= 0.5).mean())
    return stats


def score_batch(client: S3Client, cfg: ModelConfig, batch_date: str, model: Any, version: str) -> dict[str, Any]:
    """Score a staged batch row group by row group and store the predictions; return their statistics.

    Only the id and the feature columns are downloaded (ranged reads), and one row group of them
    is held at a time.
    """
    from driftwatch.profile import iter_columns
    from driftwatch.training import predict_scores

    source = storage.RangeReader(client, cfg.storage.bucket, layout.staged_key(cfg, batch_date))
    id_column = cfg.dataset.id_column
    ids: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    columns = [id_column, *cfg.dataset.feature_names]
    for chunk in iter_columns(source, columns, batch_rows=layout.staged_row_group_rows(cfg)):
        ids.append(chunk[id_column].to_numpy())
        scores.append(predict_scores(model, chunk, cfg))
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    predictions = pd.DataFrame(
        {
            id_column: np.concatenate(ids) if ids else np.zeros(0, dtype=object),
            "score": all_scores,
            "model_version": version,
        }
    )
    uri = ingest.write_parquet(client, cfg.storage.bucket, layout.predictions_key(cfg, batch_date), predictions)
    stats = output_stats(all_scores, cfg.dataset.target.task)
    return {"scored": True, "model_version": version, "predictions_uri": uri, **stats}


def metric_value(cfg: ModelConfig, labels: np.ndarray, scores: np.ndarray, positive: Any) -> float | None:
    """The primary metric on live rows (labels as the pipeline normalises them); None when undefined."""
    from driftwatch.metrics import metric_values

    scores = np.asarray(scores, dtype="float64")
    keep = np.isfinite(scores)
    classification = cfg.dataset.target.task == "classification"
    y = np.asarray(labels, dtype=object if classification else "float64")[keep]
    values, _ = metric_values(y, scores[keep], positive, classification)
    return values.get(cfg.evaluation.primary_metric)


def live_performance(
    client: S3Client,
    cfg: ModelConfig,
    batch_date: str,
    evaluated: float | None,
    positive: Any = None,
    lookback_days: int = 7,
    today: dict[str, Any] | None = None,
    model_classes: list[Any] | None = None,
) -> dict[str, Any]:
    """Measure the champion on every recent batch whose labels have arrived and that is not measured yet.

    Returns the measurements made and whether the latest one fell below the evaluated value
    by more than the configured tolerance. `positive` is the model's positive class. `today` is
    the record of `batch_date` as the caller is about to write it: its measurement is returned
    under "today" instead of being written, so that the record is written once.
    """
    from driftwatch import labels

    metric, tolerance = cfg.evaluation.primary_metric, cfg.evaluation.live_tolerance
    measured: list[dict[str, Any]] = []
    own: dict[str, Any] | None = None
    end = date.fromisoformat(batch_date)
    for offset in range(lookback_days, -1, -1):
        day = (end - timedelta(days=offset)).isoformat()
        record = today if day == batch_date and today is not None else history.read_record(client, cfg, day)
        if not record or "scoring" not in record or record.get("live"):
            continue
        found = labels.read_labels(client, cfg, day)
        if found is None:
            continue
        predictions = ingest.read_table(client, cfg.storage.bucket, layout.predictions_key(cfg, day))
        joined, info = labels.join_labels(predictions, found, cfg)
        target = joined[cfg.dataset.target.name]
        # Labels the model cannot be measured on are reported, never turned into a misleading metric.
        problems = labels.live_label_problems(target, cfg, model_classes)
        value = None if problems else metric_value(cfg, target.to_numpy(), joined["score"].to_numpy(), positive)
        live = {
            "metric": metric,
            "value": value,
            "rows": len(joined),
            "labels": {**info.to_dict(), "problems": problems},
            "model_version": record["scoring"]["model_version"],
            "evaluated": evaluated,
            "degraded": _degraded(value, evaluated, tolerance, cfg.evaluation.lower_is_better),
        }
        if record is today:
            own = live
        else:
            history.merge_into_record(client, cfg, day, {"live": live})
        measured.append({"batch_date": day, **live})
    latest = measured[-1] if measured else None
    degraded = bool(latest and latest["degraded"])
    reason = ""
    if degraded and latest:
        reason = (
            f"concept drift: live {metric} {latest['value']:.3f} on {latest['batch_date']} is below the "
            f"evaluated {evaluated:.3f} by more than {tolerance}"
        )
    return {"measured": measured, "degraded": degraded, "reason": reason, "today": own}


def _degraded(value: float | None, evaluated: float | None, tolerance: float, lower_is_better: bool) -> bool:
    if value is None or evaluated is None:
        return False
    return value > evaluated + tolerance if lower_is_better else value < evaluated - tolerance


def score_step(client: S3Client, cfg: ModelConfig, tracking_uri: str, batch_date: str) -> dict[str, Any]:
    """Score a valid batch with the current champion, then measure live performance where labels arrived."""
    from driftwatch import registry, training
    from driftwatch.registry import EVALUATED_TAG
    from driftwatch.reports.markup import finite

    name = cfg.registry.registered_model
    champion = registry.champion(tracking_uri, name)
    if champion is None:
        return {"scored": False, "reason": "no champion yet: the retrain DAG bootstraps one", "live": None}
    model = registry.load_model(tracking_uri, f"models:/{name}/{champion['version']}")
    scored = score_batch(client, cfg, batch_date, model, str(champion["version"]))
    evaluated = finite((champion.get("tags") or {}).get(EVALUATED_TAG))  # "unavailable" when undefined
    positive = training.positive_class(model, cfg) if training.is_classification(cfg) else None
    fields: dict[str, Any] = {"scoring": {k: v for k, v in scored.items() if k != "scored"}}
    classes = list(model.classes_) if hasattr(model, "classes_") else None
    live = live_performance(client, cfg, batch_date, evaluated, positive, today=dict(fields), model_classes=classes)
    own = live.pop("today")
    if own is not None:
        fields["live"] = own
    # As a step: a success after a failed try (a cleared task) replaces the failure its callback recorded.
    history.record_step(client, cfg, batch_date, "score_batch", {"done": True}, fields=fields)
    return {**scored, "live": live}


SCORING_FAILED = "score_batch failed (see its failure email): decided on data drift alone"


def scoring_outcome(scored: dict[str, Any] | None) -> dict[str, Any]:
    """What score_batch returned, or, when it failed and returned nothing, a result without live performance."""
    if scored is not None:
        return scored
    return {"scored": False, "failed": True, "reason": SCORING_FAILED, "live": None}


def decide_step(client: S3Client, cfg: ModelConfig, drift: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The combined decision, recorded as the batch's `decide` step (the action follows what is then done)."""
    decision = retraining_decision(drift, scored)
    outcome: dict[str, Any] = {"retrain": decision["retrain"], "reason": decision["reason"]}
    if scored.get("failed"):
        outcome["scoring"] = scored["reason"]
    history.record_step(client, cfg, drift["batch_date"], "decide", outcome)
    return decision


def retraining_decision(drift: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """Combine the data-drift decision with the live-performance one into a single request."""
    live = scored.get("live") or {}
    reasons = [r for r in (drift.get("reason"), live.get("reason")) if r]
    return {
        **drift,
        "retrain": bool(drift["retrain"] or live.get("degraded")),
        "reason": "; ".join(reasons),
        "live": live,
    }
