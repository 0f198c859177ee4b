"""Prediction statistics and live metrics (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from driftwatch import alerts, scoring


def test_output_stats_counts_nan_outputs_and_positive_rate():
    stats = scoring.output_stats(np.array([0.1, 0.9, np.nan, 0.7]), "classification")
    assert stats["rows"] == 4 and stats["null_outputs"] == 1
    assert stats["positive_rate"] == pytest.approx(2 / 3)
    assert 0.1 <= stats["p10"] <= stats["p50"] <= stats["p90"] <= 0.9


def test_metric_value_handles_single_class_and_nans(demo_cfg):
    roc, acc = (
        demo_cfg.model_copy(update={"evaluation": demo_cfg.evaluation.model_copy(update={"primary_metric": m})})
        for m in ("roc_auc", "accuracy")
    )
    y = np.array([0, 1, 0, 1])
    assert scoring.metric_value(roc, y, np.array([0.1, 0.9, 0.2, 0.8]), positive=1) == 1.0
    assert scoring.metric_value(roc, np.array([1, 1]), np.array([0.3, 0.4]), positive=1) is None
    assert scoring.metric_value(acc, y, np.array([0.1, np.nan, 0.2, 0.8]), positive=1) == 1.0
    yes_no = np.array(["no", "yes", "no", "yes"], dtype=object)
    assert scoring.metric_value(roc, yes_no, np.array([0.1, 0.9, 0.2, 0.8]), positive="yes") == 1.0


@pytest.mark.parametrize(
    ("value", "evaluated", "lower", "expected"),
    [(0.70, 0.80, False, True), (0.76, 0.80, False, False), (0.40, 0.30, True, True), (None, 0.8, False, False)],
)
def test_degradation_is_direction_aware(value, evaluated, lower, expected):
    assert scoring._degraded(value, evaluated, 0.05, lower) is expected


def test_evaluation_email_puts_champion_and_challenger_side_by_side(demo_cfg):
    plan = {"reason": "data drift", "run_key": "manual__1", "as_of": "2026-01-12"}
    evaluation = {
        "champion_version": "1",
        "champion": {"metrics": {"roc_auc": 0.71}},
        "challenger": {"metrics": {"roc_auc": 0.74}},
        "checks": [{"name": "improvement", "passed": True, "detail": "roc_auc 0.740 vs 0.710"}],
        "report_uri": "s3://b/evaluations/manual__1/evaluation.html",
    }
    message = alerts.evaluation_email(demo_cfg, plan, {"version": "2"}, evaluation, {"action": "promoted"})
    assert message["Subject"] == "[driftwatch] credit_default 2026-01-12: challenger v2 promoted (champion v1)"
    text = message.get_body(("plain",)).get_content()
    assert "roc_auc | 0.71 | 0.74" in text and "improvement | yes" in text
