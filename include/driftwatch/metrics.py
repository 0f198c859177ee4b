"""Every metric the pipeline reports, computed one way for the holdout evaluation and for live scoring.

A metric that cannot be computed on the rows given (one class only, no rows) is None, with the
reason in a second dict; nothing here raises because of the data it is given.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn import metrics as skm

from driftwatch.config import CLASSIFICATION_METRICS, REGRESSION_METRICS
from driftwatch.reports.markup import finite

THRESHOLD = 0.5


def classification_metrics(y_pos: np.ndarray, scores: np.ndarray) -> tuple[dict, dict]:
    """Binary metrics from positive-class indicators and scores; (values, reasons for None)."""
    values: dict[str, float | None] = dict.fromkeys(CLASSIFICATION_METRICS)
    reasons: dict[str, str] = {}
    if len(y_pos) == 0:
        return values, dict.fromkeys(CLASSIFICATION_METRICS, "no rows")
    predicted = scores >= THRESHOLD
    both = 0 < y_pos.sum() < len(y_pos)
    with warnings.catch_warnings():
        # Ill-defined metrics are reported as None with a reason; sklearn's warnings add nothing.
        warnings.simplefilter("ignore")
        if both:
            values["roc_auc"] = finite(skm.roc_auc_score(y_pos, scores))
        else:
            reasons["roc_auc"] = "undefined: the rows hold one class only"
        if y_pos.any():
            values["average_precision"] = finite(skm.average_precision_score(y_pos, scores))
        else:
            reasons["average_precision"] = "undefined: no positive rows"
        values["f1"] = finite(skm.f1_score(y_pos, predicted, zero_division=np.nan))
        if values["f1"] is None:
            reasons["f1"] = "undefined: no positive rows and no positive predictions"
        values["accuracy"] = finite(skm.accuracy_score(y_pos, predicted))
        if both:
            values["balanced_accuracy"] = finite(skm.balanced_accuracy_score(y_pos, predicted))
        else:
            reasons["balanced_accuracy"] = "undefined: the rows hold one class only"
        values["log_loss"] = finite(skm.log_loss(y_pos, np.clip(scores, 0.0, 1.0), labels=[False, True]))
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


def metric_values(y: np.ndarray, scores: np.ndarray, positive: Any, classification: bool) -> tuple[dict, dict]:
    if classification:
        return classification_metrics(y == positive, scores)
    return regression_metrics(y.astype("float64"), scores)
