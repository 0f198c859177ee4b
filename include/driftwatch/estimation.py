"""Label-free performance estimation (CBPE: confidence-based performance estimation).

A classifier's scores, once calibrated, say how many of a batch's rows are expected to be
positive at each score; the expected confusion matrix (and, over all thresholds, the expected ROC
curve) gives the metric before any label arrives. It assumes P(y | score) is the one seen on the
holdout: it follows covariate shift, but concept drift with unchanged inputs leaves the estimate
where it was, and only realized labels catch that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from driftwatch.config import REGRESSION_METRICS

ESTIMATED_METRICS = ("roc_auc", "accuracy", "f1", "balanced_accuracy")
THRESHOLD = 0.5  # the pipeline predicts positive when score >= 0.5
MIN_ROWS = 50
ECE_BINS = 10
FOLDS = 5
BOOTSTRAPS = 50
BAND_SIGMAS = 3.0
REGRESSION_REASON = (
    "not estimated: CBPE needs class probabilities; regression models are monitored on realized labels only"
)


def not_estimated(metric: str, reason: str) -> dict[str, Any]:
    """The estimate of a metric that could not be estimated, with the reason."""
    return {"metric": metric, "value": None, "reason": reason, "method": "none"}


def _no_estimator(metric: str, reason: str) -> dict[str, Any]:
    return {"kind": "none", "metric": metric, "reason": reason}


def expected_calibration_error(probs: np.ndarray, positive: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-frequency bins: the row-weighted mean |mean probability - positive rate|."""
    order = np.argsort(probs, kind="stable")
    edges = np.linspace(0, len(probs), bins + 1).astype(np.int64)
    p_sums = np.add.reduceat(probs[order], edges[:-1])
    y_sums = np.add.reduceat(positive[order].astype(np.float64), edges[:-1])
    return float(np.sum(np.abs(p_sums - y_sums)) / len(probs))


def _isotonic(scores: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, positive)
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def _probabilities(calibrator: dict[str, list[float]] | None, scores: np.ndarray) -> np.ndarray:
    """P(positive) per row: the isotonic map (np.interp clips beyond its ends), else the clipped raw score."""
    if calibrator is None:
        return np.clip(scores, 0.0, 1.0)
    return np.interp(scores, calibrator["x"], calibrator["y"])


def _auc(p: np.ndarray, scores: np.ndarray) -> float:
    """Expected ROC AUC: p rows of each score count as true positives, 1-p as false ones; ties are one threshold."""
    order = np.argsort(-scores, kind="stable")
    s, tp = scores[order], np.cumsum(p[order])
    fp = np.arange(1, len(s) + 1) - tp
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the end of each run of equal scores
    with np.errstate(divide="ignore", invalid="ignore"):  # one expected class: NaN, reported as not estimated
        tpr, fpr = np.r_[0.0, tp[last]] / tp[-1], np.r_[0.0, fp[last]] / fp[-1]
    return float(np.trapezoid(tpr, fpr))


def expected_metric(metric: str, p: np.ndarray, scores: np.ndarray) -> float:
    """The metric when each row is positive with probability p; with p = the labels it is the realized metric."""
    if metric == "roc_auc":
        return _auc(p, scores)
    predicted = scores >= THRESHOLD
    tp, fp = float(p[predicted].sum()), float((1 - p[predicted]).sum())
    fn, tn = float(p[~predicted].sum()), float((1 - p[~predicted]).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return (tp + tn) / len(p)
        if metric == "f1":
            return float(np.float64(2 * tp) / (2 * tp + fp + fn))
        return float((np.float64(tp) / (tp + fn) + np.float64(tn) / (tn + fp)) / 2)


def _calibration_check(scores: np.ndarray, positive: np.ndarray, seed: int) -> tuple[float, float, bool]:
    """Mean held-out ECE of the raw scores and of an isotonic map fitted on the other folds; whether to keep it.

    Kept only when the mean gain exceeds two standard errors of the per-fold gains: on scores that
    are already calibrated the two ECEs are the same noise, and "lower" alone keeps the map by chance.
    """
    raw, calibrated = [], []
    for fit, held in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(scores, positive):
        raw.append(expected_calibration_error(np.clip(scores[held], 0.0, 1.0), positive[held]))
        probs = _probabilities(_isotonic(scores[fit], positive[fit]), scores[held])
        calibrated.append(expected_calibration_error(probs, positive[held]))
    gains = np.subtract(raw, calibrated)
    keep = bool(gains.mean() > 2 * gains.std(ddof=1) / np.sqrt(FOLDS))
    return float(np.mean(raw)), float(np.mean(calibrated)), keep


def _unit_sigma(metric: str, positive: np.ndarray, scores: np.ndarray, seed: int) -> float:
    """Bootstrap standard error of the realized metric on the holdout, times sqrt(rows): its error per sqrt(row)."""
    rng = np.random.default_rng(seed)
    labels = positive.astype(np.float64)
    values = []
    for _ in range(BOOTSTRAPS):
        rows = rng.integers(0, len(scores), len(scores))
        values.append(expected_metric(metric, labels[rows], scores[rows]))
    return float(np.nanstd(values) * np.sqrt(len(scores)))


def fit_estimator(scores: np.ndarray, positive: np.ndarray, metric: str, *, seed: int = 0) -> dict[str, Any]:
    """Fit on the model's scores over its labelled holdout; positive is a 0/1 (bool) array, 1 = positive class.

    The isotonic calibrator is kept only when it clearly lowers the held-out ECE (stratified folds);
    the result is a JSON-safe dict (kind "none" with a reason when the metric is not estimated).
    """
    if metric in REGRESSION_METRICS:
        return _no_estimator(metric, REGRESSION_REASON)
    if metric not in ESTIMATED_METRICS:
        return _no_estimator(metric, f"not estimated: CBPE supports {', '.join(ESTIMATED_METRICS)}, not {metric}")
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive).astype(bool)
    finite = np.isfinite(scores)
    scores, positive = scores[finite], positive[finite]
    if len(scores) < MIN_ROWS:
        return _no_estimator(metric, f"not estimated: the holdout has {len(scores)} scored rows (< {MIN_ROWS})")
    if positive.all() or not positive.any():
        return _no_estimator(metric, "not estimated: the holdout holds one class only")
    if min(positive.sum(), (~positive).sum()) < FOLDS:
        return _no_estimator(metric, f"not estimated: the holdout has fewer than {FOLDS} rows of one class")
    ece_raw, ece_calibrated, calibrated = _calibration_check(scores, positive, seed)
    return {
        "kind": "cbpe",
        "metric": metric,
        "calibrated": calibrated,
        "ece_raw": ece_raw,
        "ece_calibrated": ece_calibrated,
        "calibrator": _isotonic(scores, positive) if calibrated else None,
        "threshold": THRESHOLD,
        "reference_value": expected_metric(metric, positive.astype(np.float64), scores),
        "unit_sigma": _unit_sigma(metric, positive, scores, seed),
        "rows": int(len(scores)),
    }


def estimate_performance(estimator: dict[str, Any] | None, scores: np.ndarray) -> dict[str, Any]:
    """Estimated metric for a batch from its scores alone, with a ±3 sigma band (the batch's and the
    holdout's sampling error) clipped to [0, 1]."""
    if estimator is None:
        return not_estimated("unknown", "not estimated: no estimator was fitted")
    metric = estimator["metric"]
    if estimator.get("kind") != "cbpe":
        return not_estimated(metric, estimator.get("reason", "not estimated"))
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if len(scores) == 0:
        return not_estimated(metric, "not estimated: the batch has no finite scores")
    value = expected_metric(metric, _probabilities(estimator["calibrator"], scores), scores)
    if not np.isfinite(value):
        return not_estimated(metric, f"not estimated: {metric} is undefined on this batch's expected counts")
    # The calibrator learned P(y | score) from the holdout's rows, so their sampling error is in the
    # estimate too: on the demo's 345-row bootstrap holdout it was +0.03, twice the batch's own sigma.
    sigma = estimator["unit_sigma"] * np.sqrt(1.0 / len(scores) + 1.0 / estimator["rows"])
    return {
        "metric": metric,
        "value": value,
        "lower": float(max(0.0, value - BAND_SIGMAS * sigma)),
        "upper": float(min(1.0, value + BAND_SIGMAS * sigma)),
        "sigma": float(sigma),
        "rows": int(len(scores)),
        "calibrated": bool(estimator["calibrated"]),
        "method": "cbpe",
    }
