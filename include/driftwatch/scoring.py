"""Batch scoring with the champion, and its live performance once labels arrive.

Live performance is what catches concept drift: the inputs can look unchanged while the
relationship between inputs and target has moved.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from driftwatch import history, ingest, layout
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client


def predictions_key(cfg: ModelConfig, batch_date: str) -> str:
    return f"{cfg.storage.output_prefix}predictions/dt={batch_date}/predictions.parquet"


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
    """Score a staged batch, store the predictions and add their statistics to the batch record."""
    from driftwatch.training import feature_frame, predict_scores

    staged = ingest.read_table(client, cfg.storage.bucket, layout.staged_key(cfg, batch_date))
    scores = predict_scores(model, feature_frame(staged, cfg), cfg)
    predictions = pd.DataFrame(
        {cfg.dataset.id_column: staged[cfg.dataset.id_column].to_numpy(), "score": scores, "model_version": version}
    )
    uri = ingest.write_parquet(client, cfg.storage.bucket, predictions_key(cfg, batch_date), predictions)
    stats = output_stats(scores, cfg.dataset.target.task)
    _update_record(client, cfg, batch_date, {"scoring": {"model_version": version, "predictions_uri": uri, **stats}})
    return {"scored": True, "model_version": version, "predictions_uri": uri, **stats}


def _update_record(client: S3Client, cfg: ModelConfig, batch_date: str, fields: dict[str, Any]) -> None:
    record = history.read_record(client, cfg, batch_date) or {"status": "unknown"}
    record.pop("model", None)
    record.pop("batch_date", None)
    history.write_record(client, cfg, batch_date, {**record, **fields})


def metric_value(name: str, y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """One primary metric on live data; None when it cannot be computed (e.g. a single class)."""
    from sklearn import metrics

    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype="float64")
    mask = np.isfinite(scores)
    y_true, scores = y_true[mask], scores[mask]
    if y_true.size == 0:
        return None
    labels = (scores >= 0.5).astype(int)
    single_class = np.unique(y_true).size < 2
    computations = {
        "roc_auc": lambda: None if single_class else metrics.roc_auc_score(y_true, scores),
        "average_precision": lambda: None if single_class else metrics.average_precision_score(y_true, scores),
        "f1": lambda: metrics.f1_score(y_true, labels, zero_division=0),
        "accuracy": lambda: metrics.accuracy_score(y_true, labels),
        "balanced_accuracy": lambda: metrics.balanced_accuracy_score(y_true, labels),
        "log_loss": lambda: metrics.log_loss(y_true, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1]),
        "rmse": lambda: math.sqrt(metrics.mean_squared_error(y_true, scores)),
        "mae": lambda: metrics.mean_absolute_error(y_true, scores),
        "r2": lambda: metrics.r2_score(y_true, scores),
    }
    value = computations[name]()
    return None if value is None else float(value)


def live_performance(
    client: S3Client, cfg: ModelConfig, batch_date: str, evaluated: float | None, lookback_days: int = 7
) -> dict[str, Any]:
    """Measure the champion on every recent batch whose labels have arrived and that is not measured yet.

    Returns the measurements made and whether the latest one fell below the evaluated value
    by more than the configured tolerance.
    """
    from driftwatch.retraining import read_labels

    metric, tolerance = cfg.evaluation.primary_metric, cfg.evaluation.live_tolerance
    measured: list[dict[str, Any]] = []
    end = date.fromisoformat(batch_date)
    for offset in range(lookback_days, -1, -1):
        day = (end - timedelta(days=offset)).isoformat()
        record = history.read_record(client, cfg, day)
        if not record or "scoring" not in record or record.get("live"):
            continue
        labels = read_labels(client, cfg, day)
        if labels is None:
            continue
        predictions = ingest.read_table(client, cfg.storage.bucket, predictions_key(cfg, day))
        joined = predictions.merge(labels, on=cfg.dataset.id_column, how="inner")
        value = metric_value(metric, joined[cfg.dataset.target.name].to_numpy(), joined["score"].to_numpy())
        live = {
            "metric": metric,
            "value": value,
            "rows": len(joined),
            "model_version": record["scoring"]["model_version"],
            "evaluated": evaluated,
            "degraded": _degraded(value, evaluated, tolerance, cfg.evaluation.lower_is_better),
        }
        _update_record(client, cfg, day, {"live": live})
        measured.append({"batch_date": day, **live})
    latest = measured[-1] if measured else None
    degraded = bool(latest and latest["degraded"])
    reason = ""
    if degraded and latest:
        reason = (
            f"concept drift: live {metric} {latest['value']:.3f} on {latest['batch_date']} is below the "
            f"evaluated {evaluated:.3f} by more than {tolerance}"
        )
    return {"measured": measured, "degraded": degraded, "reason": reason}


def _degraded(value: float | None, evaluated: float | None, tolerance: float, lower_is_better: bool) -> bool:
    if value is None or evaluated is None:
        return False
    return value > evaluated + tolerance if lower_is_better else value < evaluated - tolerance


def score_step(client: S3Client, cfg: ModelConfig, tracking_uri: str, batch_date: str) -> dict[str, Any]:
    """Score a valid batch with the current champion, then measure live performance where labels arrived."""
    from driftwatch import registry
    from driftwatch.registry import EVALUATED_TAG

    name = cfg.registry.registered_model
    champion = registry.champion(tracking_uri, name)
    if champion is None:
        return {"scored": False, "reason": "no champion yet: the retrain DAG bootstraps one", "live": None}
    model = registry.load_model(tracking_uri, f"models:/{name}/{champion['version']}")
    scored = score_batch(client, cfg, batch_date, model, str(champion["version"]))
    evaluated = (champion.get("tags") or {}).get(EVALUATED_TAG)
    live = live_performance(client, cfg, batch_date, float(evaluated) if evaluated is not None else None)
    return {**scored, "live": live}


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
