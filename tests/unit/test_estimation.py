"""CBPE on small generated data: covariate shift is followed, concept drift is not (realized labels catch it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from driftwatch.estimation import estimate_performance, expected_metric, fit_estimator

SLOPE = 2.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _rows(rng: np.random.Generator, n: int, mean: float, slope: float = SLOPE) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(mean, 1), y ~ Bernoulli(sigmoid(slope * x - 0.5))."""
    x = rng.normal(mean, 1.0, size=n)
    return x, rng.random(n) < _sigmoid(slope * x - 0.5)


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    x, y = _rows(np.random.default_rng(1), 4000, 0.0)
    return LogisticRegression().fit(x[:, None], y)


def _scores(model: LogisticRegression, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x[:, None])[:, 1]


def _realized(metric: str, y: np.ndarray, scores: np.ndarray) -> float:
    predicted = scores >= 0.5
    return {
        "roc_auc": lambda: skm.roc_auc_score(y, scores),
        "accuracy": lambda: skm.accuracy_score(y, predicted),
        "f1": lambda: skm.f1_score(y, predicted),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, predicted),
    }[metric]()


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "f1", "balanced_accuracy"])
def test_realized_metric_matches_sklearn(metric: str) -> None:
    rng = np.random.default_rng(2)
    x, y = _rows(rng, 2000, 0.0)
    scores = np.round(_sigmoid(SLOPE * x - 0.5), 2)  # rounded: ties in score
    assert expected_metric(metric, y.astype(float), scores) == pytest.approx(_realized(metric, y, scores), abs=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "f1"])
def test_covariate_shift_estimate_covers_the_realized_metric(model: LogisticRegression, metric: str) -> None:
    rng = np.random.default_rng(3)
    x_hold, y_hold = _rows(rng, 5000, 0.0)
    estimator = fit_estimator(_scores(model, x_hold), y_hold, metric, seed=0)
    x_batch, y_batch = _rows(rng, 5000, 1.0)  # the inputs move, P(y|x) does not
    batch_scores = _scores(model, x_batch)
    estimate = estimate_performance(estimator, batch_scores)
    realized = _realized(metric, y_batch, batch_scores)
    assert estimate["method"] == "cbpe" and estimate["rows"] == 5000
    assert estimate["lower"] <= realized <= estimate["upper"]
    if metric != "roc_auc":  # a translated N(1, 1) leaves the AUC where it was; the threshold metrics move
        # The shift moves the metric out of the reference's own band: the estimate followed it.
        assert abs(estimate["value"] - estimator["reference_value"]) > estimate["upper"] - estimate["value"]


def test_concept_drift_with_unchanged_inputs_is_the_blind_spot(model: LogisticRegression) -> None:
    """Same inputs, a weaker and reversed P(y|x): the scores, hence the estimate, do not move.

    Only the realized metric, once labels arrive, shows the fall; the estimate cannot.
    """
    rng = np.random.default_rng(4)
    x_hold, y_hold = _rows(rng, 5000, 0.0)
    estimator = fit_estimator(_scores(model, x_hold), y_hold, "roc_auc", seed=0)
    x_batch, y_batch = _rows(rng, 5000, 0.0, slope=-0.5)
    batch_scores = _scores(model, x_batch)
    estimate = estimate_performance(estimator, batch_scores)
    assert estimate["value"] == pytest.approx(estimator["reference_value"], abs=0.02)
    assert _realized("roc_auc", y_batch, batch_scores) < estimate["lower"] - 0.2


def test_the_band_covers_a_small_holdouts_calibration_error() -> None:
    """A calibrator learned from 300 rows carries their noise: the band of a large batch must cover it."""
    rng = np.random.default_rng(4)
    x_batch, y_batch = _rows(rng, 20_000, 0.0)
    batch_scores = _sigmoid(0.4 * (SLOPE * x_batch - 0.5))  # miscalibrated: the isotonic map is kept
    realized = _realized("roc_auc", y_batch, batch_scores)
    covered = []
    for seed in range(20):
        x_hold, y_hold = _rows(np.random.default_rng(100 + seed), 300, 0.0)
        estimator = fit_estimator(_sigmoid(0.4 * (SLOPE * x_hold - 0.5)), y_hold, "roc_auc", seed=seed)
        if estimator["calibrated"]:  # when the map is not kept the raw scores are used: not this test's case
            estimate = estimate_performance(estimator, batch_scores)
            covered.append(estimate["lower"] <= realized <= estimate["upper"])
    assert len(covered) >= 10 and all(covered), covered


def test_calibration_kept_only_when_it_lowers_the_ece() -> None:
    rng = np.random.default_rng(5)
    x, y = _rows(rng, 5000, 0.0)
    logit = SLOPE * x - 0.5
    overconfident = fit_estimator(_sigmoid(3 * logit), y, "accuracy", seed=0)
    assert overconfident["calibrated"] and overconfident["calibrator"] is not None
    assert overconfident["ece_calibrated"] < overconfident["ece_raw"] / 2
    calibrated = fit_estimator(_sigmoid(logit), y, "accuracy", seed=0)
    assert not calibrated["calibrated"] and calibrated["calibrator"] is None
    # The map kept on overconfident scores brings the estimate back to the truth on new rows.
    x_new, y_new = _rows(rng, 20000, 0.0)
    scores = _sigmoid(3 * (SLOPE * x_new - 0.5))
    realized = _realized("roc_auc", y_new, scores)
    fitted = fit_estimator(_sigmoid(3 * logit), y, "roc_auc", seed=0)
    raw = {**fitted, "calibrated": False, "calibrator": None}
    assert abs(estimate_performance(fitted, scores)["value"] - realized) < 0.01
    assert abs(estimate_performance(raw, scores)["value"] - realized) > 0.03


@pytest.mark.parametrize(
    ("metric", "positive", "reason"),
    [
        ("average_precision", None, "CBPE supports"),
        ("log_loss", None, "CBPE supports"),
        ("rmse", None, "regression models are monitored on realized labels only"),
        ("r2", None, "regression models are monitored on realized labels only"),
        ("roc_auc", np.zeros(500, dtype=bool), "one class"),
        ("roc_auc", np.r_[np.zeros(20), np.ones(20)], "scored rows"),
    ],
)
def test_not_estimated_says_why(metric: str, positive: np.ndarray | None, reason: str) -> None:
    rng = np.random.default_rng(6)
    if positive is None:
        _, positive = _rows(rng, 500, 0.0)
    estimator = fit_estimator(rng.random(len(positive)), positive, metric)
    assert estimator["kind"] == "none" and reason in estimator["reason"]
    estimate = estimate_performance(estimator, rng.random(100))
    assert estimate == {"metric": metric, "value": None, "reason": estimator["reason"], "method": "none"}


def test_no_estimator_or_no_finite_scores_is_not_estimated(model: LogisticRegression) -> None:
    rng = np.random.default_rng(7)
    x, y = _rows(rng, 1000, 0.0)
    estimator = fit_estimator(_scores(model, x), y, "f1")
    assert estimate_performance(None, _scores(model, x))["value"] is None
    empty = estimate_performance(estimator, np.array([np.nan, np.inf]))
    assert empty["value"] is None and "no finite scores" in empty["reason"]
    with_nan = estimate_performance(estimator, np.r_[_scores(model, x[:300]), np.full(50, np.nan)])
    assert with_nan["rows"] == 300
    assert with_nan["value"] == estimate_performance(estimator, _scores(model, x[:300]))["value"]


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_estimator_round_trips_through_json(model: LogisticRegression, scale: float) -> None:
    rng = np.random.default_rng(8)
    x, y = _rows(rng, 3000, 0.0)
    estimator = fit_estimator(_sigmoid(scale * (SLOPE * x - 0.5)), y, "roc_auc", seed=3)
    loaded = json.loads(json.dumps(estimator))
    batch = _sigmoid(scale * (SLOPE * rng.normal(0.5, 1.0, 2000) - 0.5))
    assert loaded == estimator
    assert estimate_performance(loaded, batch) == estimate_performance(estimator, batch)
    assert json.loads(json.dumps(estimate_performance(loaded, batch))) == estimate_performance(estimator, batch)
