"""Every metric the pipeline reports, computed one way for the holdout evaluation and for live scoring.

A metric that cannot be computed on the rows given (one class only, no rows) is None, with the
reason in a second dict; nothing here raises because of the data it is given.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn import metrics as skm

from driftwatch.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, ModelConfig
from driftwatch.reports.markup import finite

THRESHOLD = 0.5


def _binary(y_pos: np.ndarray, scores: np.ndarray, name: str) -> tuple[float | None, str | None]:
    """One binary metric and, when it is None, why."""
    both = 0 < y_pos.sum() < len(y_pos)
    predicted = scores >= THRESHOLD
    if name in ("roc_auc", "balanced_accuracy") and not both:
        return None, "undefined: the rows hold one class only"
    if name == "average_precision" and not y_pos.any():
        return None, "undefined: no positive rows"
    value = {
        "roc_auc": lambda: skm.roc_auc_score(y_pos, scores),
        "average_precision": lambda: skm.average_precision_score(y_pos, scores),
        "f1": lambda: skm.f1_score(y_pos, predicted, zero_division=np.nan),
        "accuracy": lambda: skm.accuracy_score(y_pos, predicted),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y_pos, predicted),
        "log_loss": lambda: skm.log_loss(y_pos, np.clip(scores, 0.0, 1.0), labels=[False, True]),
    }[name]()
    found = finite(value)
    if found is None:
        # Only f1 can get here from the data alone (zero_division=nan); the others are finite on any rows.
        return None, "undefined: no positive rows and no positive predictions" if name == "f1" else "undefined"
    return found, None


def classification_metrics(
    y_pos: np.ndarray, scores: np.ndarray, names: tuple[str, ...] = CLASSIFICATION_METRICS
) -> tuple[dict, dict]:
    """Binary metrics (`names`, default all) from positive-class indicators and scores; (values, reasons for None)."""
    values: dict[str, float | None] = dict.fromkeys(names)
    if len(y_pos) == 0:
        return values, dict.fromkeys(names, "no rows")
    reasons: dict[str, str] = {}
    with warnings.catch_warnings():
        # Ill-defined metrics are reported as None with a reason; sklearn's warnings add nothing.
        warnings.simplefilter("ignore")
        for name in names:
            values[name], reason = _binary(y_pos, scores, name)
            if reason is not None:
                reasons[name] = reason
    return values, reasons


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> tuple[dict, dict]:
    """rmse, mae and r2; (values, reasons for None)."""
    values: dict[str, float | None] = dict.fromkeys(REGRESSION_METRICS)
    if len(y) == 0:
        return values, dict.fromkeys(REGRESSION_METRICS, "no rows")
    reasons: dict[str, str] = {}
    values["rmse"] = finite(skm.root_mean_squared_error(y, predicted))
    values["mae"] = finite(skm.mean_absolute_error(y, predicted))
    if len(y) < 2 or np.all(y == y[0]):
        reasons["r2"] = "undefined: fewer than two rows or a constant target"
    else:
        values["r2"] = finite(skm.r2_score(y, predicted))
    return values, reasons


def metric_values(
    y: np.ndarray, scores: np.ndarray, positive: Any, classification: bool, only: str | None = None
) -> tuple[dict, dict]:
    """Every metric of the task, or just `only` (what a scorer called per shuffle needs); (values, reasons)."""
    if classification:
        names = (only,) if only in CLASSIFICATION_METRICS else CLASSIFICATION_METRICS
        return classification_metrics(y == positive, scores, names)
    return regression_metrics(y.astype("float64"), scores)


def metric_value(cfg: ModelConfig, labels: np.ndarray, scores: np.ndarray, positive: Any) -> float | None:
    """The primary metric on live rows (labels as the pipeline normalises them); None when undefined."""
    scores = np.asarray(scores, dtype="float64")
    keep = np.isfinite(scores)
    classification = cfg.dataset.target.task == "classification"
    y = np.asarray(labels, dtype=object if classification else "float64")[keep]
    values, _ = metric_values(y, scores[keep], positive, classification, only=cfg.evaluation.primary_metric)
    return values.get(cfg.evaluation.primary_metric)
