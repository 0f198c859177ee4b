"""Batch scoring with the champion, and its live performance once labels arrive.

Live performance is what catches concept drift: the inputs can look unchanged while the
relationship between inputs and target has moved.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from driftwatch import history, ingest, labels, layout, storage
from driftwatch.config import ModelConfig
from driftwatch.metrics import metric_value
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


def score_batch(
    client: S3Client,
    cfg: ModelConfig,
    batch_date: str,
    model: Any,
    version: str,
    shadow: tuple[Any, str] | None = None,
) -> dict[str, Any]:
    """Score a staged batch row group by row group and store the predictions; return their statistics.

    Only the id and the feature columns are downloaded (ranged reads), and one row group of them
    is held at a time. A challenger in `shadow` (model, version) scores the same row groups in the
    same pass; its predictions go beside the champion's, with the comparison of the two.
    """
    from driftwatch.profile import iter_columns
    from driftwatch.training import predict_scores

    source = storage.RangeReader(client, cfg.storage.bucket, layout.staged_key(cfg, batch_date))
    id_column = cfg.dataset.id_column
    ids: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    shadow_scores: list[np.ndarray] = []
    seconds = {"champion": 0.0, "challenger": 0.0}
    columns = [id_column, *cfg.dataset.feature_names]
    for chunk in iter_columns(source, columns, batch_rows=layout.staged_row_group_rows(cfg)):
        ids.append(chunk[id_column].to_numpy())
        started = time.perf_counter()
        scores.append(predict_scores(model, chunk, cfg))
        seconds["champion"] += time.perf_counter() - started
        if shadow is not None:
            started = time.perf_counter()
            shadow_scores.append(predict_scores(shadow[0], chunk, cfg))
            seconds["challenger"] += time.perf_counter() - started
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=object)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    uri = _write_predictions(client, cfg, layout.predictions_key(cfg, batch_date), all_ids, all_scores, version)
    stats = output_stats(all_scores, cfg.dataset.target.task)
    result = {"scored": True, "model_version": version, "predictions_uri": uri, **stats, "scores": all_scores}
    if shadow is not None:
        from driftwatch.shadow import batch_comparison

        challenger = np.concatenate(shadow_scores) if shadow_scores else np.zeros(0)
        key = layout.shadow_predictions_key(cfg, batch_date)
        compared = batch_comparison(cfg, shadow[1], version, all_scores, challenger, seconds)
        result["shadow"] = {
            **compared,
            "predictions_uri": _write_predictions(client, cfg, key, all_ids, challenger, shadow[1]),
        }
    return result


def _write_predictions(
    client: S3Client, cfg: ModelConfig, key: str, ids: np.ndarray, scores: np.ndarray, version: str
) -> str:
    frame = pd.DataFrame({cfg.dataset.id_column: ids, "score": scores, "model_version": version})
    return ingest.write_parquet(client, cfg.storage.bucket, key, frame)


def live_performance(
    client: S3Client,
    cfg: ModelConfig,
    batch_date: str,
    version: str,
    evaluated: float | None,
    positive: Any = None,
    model_classes: list[Any] | None = None,
) -> dict[str, Any]:
    """The realized primary metric of model `version` over the labelled batches of the window.

    Only rows that `version` itself predicted are measured, against its own evaluated value:
    an earlier champion's predictions say nothing about the current one. Fewer than
    `evaluation.live_min_rows` labelled rows give no value. Other versions' rows are reported
    per version, without a verdict.
    """

    metric, window, min_rows = (
        cfg.evaluation.primary_metric,
        cfg.evaluation.live_window_days,
        cfg.evaluation.live_min_rows,
    )
    end = date.fromisoformat(batch_date)
    frames: dict[str, list[pd.DataFrame]] = {}
    days: dict[str, list[str]] = {}
    for offset in range(window - 1, -1, -1):
        day = (end - timedelta(days=offset)).isoformat()
        found = labels.read_labels(client, cfg, day)
        key = layout.predictions_key(cfg, day)
        if found is None or storage.object_size(client, cfg.storage.bucket, key) is None:
            continue
        joined, _info = labels.join_labels(ingest.read_table(client, cfg.storage.bucket, key), found, cfg)
        for model_version, part in joined.groupby(joined["model_version"].astype(str)):
            frames.setdefault(model_version, []).append(part)
            days.setdefault(model_version, []).append(day)
    by_version = {
        v: _measure(cfg, pd.concat(parts), positive, model_classes) for v, parts in frames.items() if v != version
    }
    own = frames.get(version)
    live = _measure(cfg, pd.concat(own), positive, model_classes) if own else {"rows": 0, "value": None, "problems": []}
    degraded = _degraded(live["value"], evaluated, cfg.evaluation.live_tolerance, cfg.evaluation.lower_is_better)
    result: dict[str, Any] = {
        "metric": metric,
        "model_version": version,
        **live,
        "min_rows": min_rows,
        "window_days": window,
        "since": (days.get(version) or [None])[0],
        "until": (days.get(version) or [None])[-1],
        "days": days.get(version, []),
        "evaluated": evaluated,
        "degraded": degraded,
        "by_version": by_version,
        "reason": "",
    }
    if live["rows"] < min_rows:
        result["note"] = (
            f"{live['rows']} labelled row(s) predicted by v{version} in the last {window} day(s): "
            f"{min_rows} are needed to measure it"
        )
    if degraded and evaluated is not None:
        result["reason"] = (
            f"concept drift: live {metric} {live['value']:.3f} of v{version} over {result['since']}..{result['until']} "
            f"({live['rows']} rows) is below its evaluated {evaluated:.3f} by more than {cfg.evaluation.live_tolerance}"
        )
    return result


def _measure(cfg: ModelConfig, joined: pd.DataFrame, positive: Any, model_classes: list[Any] | None) -> dict[str, Any]:
    """The primary metric on pooled labelled rows, or None when too few or unusable (the problems say why)."""
    target = joined[cfg.dataset.target.name]
    # Labels the model cannot be measured on are reported, never turned into a misleading metric.
    problems = labels.live_label_problems(target, cfg, model_classes)
    enough = len(joined) >= cfg.evaluation.live_min_rows
    value = None
    if enough and not problems:
        value = metric_value(cfg, target.to_numpy(), joined["score"].to_numpy(), positive)
    return {"rows": int(len(joined)), "value": value, "problems": problems}


def _degraded(value: float | None, evaluated: float | None, tolerance: float, lower_is_better: bool) -> bool:
    if value is None or evaluated is None:
        return False
    return value > evaluated + tolerance if lower_is_better else value < evaluated - tolerance


def batch_estimate(
    cfg: ModelConfig, estimator: dict[str, Any] | None, scores: np.ndarray, evaluated: float | None
) -> dict[str, Any]:
    """The label-free estimate of the primary metric for the batch, beside the evaluated value."""
    from driftwatch import estimation

    metric = cfg.evaluation.primary_metric
    if estimator is None:
        found = estimation.not_estimated(metric, "the champion has no stored estimator (registered before CBPE)")
    else:
        found = estimation.estimate_performance(estimator, scores)
    return {**found, "evaluated": evaluated}


def score_step(client: S3Client, cfg: ModelConfig, tracking_uri: str, batch_date: str) -> dict[str, Any]:
    """Score a valid batch with the current champion, estimate its performance, measure it where labels arrived."""
    from driftwatch import registry, training
    from driftwatch.registry import EVALUATED_TAG
    from driftwatch.reports.markup import finite

    name = cfg.registry.registered_model
    champion = registry.champion(tracking_uri, name)
    if champion is None:
        return {"scored": False, "reason": "no champion yet: the retrain DAG bootstraps one", "live": None}
    version = str(champion["version"])
    model = registry.load_model(tracking_uri, f"models:/{name}/{version}")
    scored = score_batch(client, cfg, batch_date, model, version, _shadow_model(client, cfg, tracking_uri, version))
    scores = scored.pop("scores")
    evaluated = finite((champion.get("tags") or {}).get(EVALUATED_TAG))  # "unavailable" when undefined
    estimate = batch_estimate(cfg, registry.load_estimator(tracking_uri, name, version), scores, evaluated)
    positive = training.positive_class(model, cfg) if training.is_classification(cfg) else None
    classes = list(model.classes_) if hasattr(model, "classes_") else None
    live = live_performance(client, cfg, batch_date, version, evaluated, positive, classes)
    compared = scored.pop("shadow", None)
    fields = {"scoring": {k: v for k, v in scored.items() if k != "scored"}, "estimate": estimate, "live": live}
    if compared is not None:
        fields["shadow"] = compared
    # As a step: a success after a failed try (a cleared task) replaces the failure its callback recorded.
    history.record_step(client, cfg, batch_date, "score_batch", {"done": True}, fields=fields)
    return {**scored, "estimate": estimate, "live": live, "shadow": compared}


def _shadow_model(client: S3Client, cfg: ModelConfig, tracking_uri: str, champion: str) -> tuple[Any, str] | None:
    """The challenger in shadow and its version, when one is (and it is not the champion by now)."""
    from driftwatch import registry, shadow

    state = shadow.read_state(client, cfg)
    if not shadow.is_active(state) or str(state["version"]) == champion:
        return None
    name = cfg.registry.registered_model
    return registry.load_model(tracking_uri, f"models:/{name}/{state['version']}"), str(state["version"])


SCORING_FAILED = "score_batch failed (see its failure email): decided on data drift alone"


def scoring_outcome(scored: dict[str, Any] | None) -> dict[str, Any]:
    """What score_batch returned, or, when it failed and returned nothing, a result without live performance."""
    if scored is not None:
        return scored
    return {"scored": False, "failed": True, "reason": SCORING_FAILED, "live": None}
