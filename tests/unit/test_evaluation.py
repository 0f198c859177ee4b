"""Holdout evaluation, the promotion gate and the HTML report."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftwatch import demo_data
from driftwatch.config import ModelConfig, load_config
from driftwatch.evaluation import GateDecision, evaluate, gate, holdout_estimator
from driftwatch.labels import join_labels
from driftwatch.reports.evaluation import render_evaluation_html
from driftwatch.training import split_by_time, train

DEMO = Path(__file__).resolve().parents[2] / "config" / "models" / "credit_default.yaml"
HOSTILE = "</script><script>alert(1)</script>"


def with_evaluation(cfg: ModelConfig, **update) -> ModelConfig:
    """The config with some evaluation fields replaced."""
    return cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update=update)})


def result(value: float | None, metric: str = "roc_auc", slices: dict | None = None, **metrics) -> dict:
    """A hand-made evaluation, shaped like `evaluate`'s output, for gate tests."""
    return {
        "n": 1000,
        "primary": {"name": metric, "value": value},
        "metrics": {metric: value, **metrics},
        "slices": slices or {},
    }


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    # The gate tests state their slice settings here, so tuning the demo config cannot move them.
    return with_evaluation(load_config(DEMO), slice_tolerance=0.03, min_slice_rows=50)


@pytest.fixture(scope="module")
def lr_cfg(cfg) -> ModelConfig:
    return cfg.model_copy(
        update={"training": cfg.training.model_copy(update={"estimator": "logistic_regression", "hyperparameters": {}})}
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return demo_data.generate_reference(rows=1500)


@pytest.fixture(scope="module")
def concept_frames(cfg) -> dict[str, pd.DataFrame]:
    batches = demo_data.generate_scenario(date(2026, 1, 1), rows_per_day=300)
    return {
        b.batch_date.isoformat(): join_labels(b.features, b.labels, cfg)[0]
        for b in batches
        if b.kind == "concept_drift"
    }


@pytest.fixture(scope="module")
def stable_holdout(cfg) -> pd.DataFrame:
    batch = demo_data.generate_scenario(date(2026, 1, 1), days=1, rows_per_day=600)[0]
    return join_labels(batch.features, batch.labels, cfg)[0]


@pytest.fixture(scope="module")
def lr_model(lr_cfg, reference):
    return train(lr_cfg, reference)[0]


def test_evaluate_reports_metrics_per_class_confusion_and_slices(lr_cfg, lr_model, stable_holdout):
    report = evaluate(lr_model, stable_holdout, lr_cfg)
    json.dumps(report, allow_nan=False)  # plain JSON, no numpy types, no NaN
    assert report["n"] == 600
    assert report["primary"]["name"] == "roc_auc" and 0.6 < report["primary"]["value"] <= 1
    assert set(report["metrics"]) == {"roc_auc", "average_precision", "f1", "accuracy", "balanced_accuracy", "log_loss"}
    assert all(isinstance(v, float) for v in report["metrics"].values())
    assert [row["label"] for row in report["per_class"]] == ["0", "1"]
    assert sum(row["support"] for row in report["per_class"]) == 600
    cm = report["confusion_matrix"]
    assert cm["labels"] == ["0", "1"] and np.array(cm["matrix"]).sum() == 600
    positives = int((stable_holdout["defaulted"] == 1).sum())
    assert sum(cm["matrix"][1]) == positives == report["per_class"][1]["support"]
    assert set(report["slices"]) == {"employment_type", "channel"}
    assert set(report["slices"]["channel"]) == set(demo_data.CHANNELS)
    assert sum(s["rows"] for s in report["slices"]["channel"].values()) == 600


def test_uncomputable_metrics_are_none_with_a_reason(lr_cfg, lr_model, stable_holdout):
    negatives = stable_holdout[stable_holdout["defaulted"] == 0].copy()
    negatives.loc[negatives.index[:5], "channel"] = None
    report = evaluate(lr_model, negatives, lr_cfg)
    json.dumps(report, allow_nan=False)
    assert report["primary"]["value"] is None and "one class" in report["primary"]["reason"]
    assert report["metrics"]["roc_auc"] is None and report["unavailable"]["roc_auc"]
    assert report["metrics"]["accuracy"] is not None and report["metrics"]["log_loss"] is not None
    assert report["slices"]["channel"]["(missing)"]["rows"] == 5
    assert all(s["value"] is None and s["reason"] for s in report["slices"]["channel"].values())
    decision = gate(report, None, lr_cfg)
    assert not decision.passed and "could not be computed" in decision.reasons[0]
    empty = evaluate(lr_model, negatives.iloc[:0], lr_cfg)
    assert empty["n"] == 0 and empty["metrics"]["log_loss"] is None and empty["unavailable"]["log_loss"] == "no rows"


def test_the_holdout_estimator_is_fitted_on_the_models_positive_class_scores(lr_cfg, lr_model, stable_holdout):
    from driftwatch.estimation import estimate_performance
    from driftwatch.training import predict_scores

    estimator = holdout_estimator(lr_model, stable_holdout, lr_cfg)
    json.dumps(estimator, allow_nan=False)  # stored as JSON in the model's folder
    assert estimator["kind"] == "cbpe" and estimator["metric"] == "roc_auc" and estimator["rows"] == 600
    assert {"ece_raw", "ece_calibrated", "calibrated"} <= set(estimator)
    realized = evaluate(lr_model, stable_holdout, lr_cfg)["primary"]["value"]
    # On its own holdout the estimate is close to the measured value: positive means the positive class.
    estimate = estimate_performance(estimator, predict_scores(lr_model, stable_holdout, lr_cfg))
    assert abs(estimate["value"] - realized) < 0.1


def test_a_holdout_of_one_class_gets_no_estimator_and_says_why(lr_cfg, lr_model, stable_holdout):
    negatives = stable_holdout[stable_holdout["defaulted"] == 0]
    estimator = holdout_estimator(lr_model, negatives, lr_cfg)
    assert estimator["kind"] == "none" and "one class" in estimator["reason"]


def test_bootstrap_passes_without_a_champion(cfg):
    decision = gate(result(0.75), None, cfg)
    assert decision.passed and decision.reasons == []
    assert {c.name: c.detail for c in decision.checks}["improvement"] == "no champion: bootstrap"
    assert decision.to_dict()["passed"] is True and len(decision.to_dict()["checks"]) == 4


def test_improvement_below_the_minimum_fails_with_the_numbers(cfg):
    decision = gate(result(0.812), result(0.809), cfg)
    assert not decision.passed
    assert decision.reasons == ["roc_auc 0.8120 vs champion 0.8090: +0.0030 < required +0.0050"]
    assert gate(result(0.805), result(0.800), cfg).passed  # exactly the minimum, despite float rounding
    passed = gate(result(0.812), result(0.801), cfg)
    assert passed.passed
    assert "roc_auc 0.8120 vs champion 0.8010: +0.0110 >= required +0.0050" in [c.detail for c in passed.checks]


def test_relative_improvement(cfg):
    relative = with_evaluation(cfg, improvement_mode="relative", min_improvement=0.02)
    # +0.015 absolute is +1.9% of 0.8: under 2%.
    assert not gate(result(0.815), result(0.80), relative).passed
    decision = gate(result(0.82), result(0.80), relative)
    assert decision.passed
    assert "+2.50% >= required +2.00%" in decision.checks[2].detail


def test_slice_regression_fails_and_small_slices_are_not_gated(cfg):
    champion = result(
        0.80, slices={"channel": {"online": {"rows": 400, "value": 0.82}, "broker": {"rows": 20, "value": 0.9}}}
    )
    worse = result(
        0.83, slices={"channel": {"online": {"rows": 400, "value": 0.78}, "broker": {"rows": 20, "value": 0.5}}}
    )
    decision = gate(worse, champion, cfg)
    assert not decision.passed
    assert len(decision.reasons) == 1
    assert "channel=online: roc_auc 0.7800 vs champion 0.8200 (-0.0400)" in decision.reasons[0]
    assert "broker" not in decision.reasons[0]  # 20 rows < min_slice_rows
    within = result(0.83, slices={"channel": {"online": {"rows": 400, "value": 0.80}}})
    assert gate(within, champion, cfg).passed


def test_floor_fails(cfg):
    decision = gate(result(0.65), None, cfg)
    assert not decision.passed and decision.reasons == ["roc_auc 0.6500 < floor 0.7000"]


def test_lower_is_better_metric_direction(cfg):
    log_loss = with_evaluation(cfg, primary_metric="log_loss", metric_floor=0.6, min_improvement=0.01)
    better = gate(result(0.40, "log_loss"), result(0.45, "log_loss"), log_loss)
    assert better.passed
    assert "(lower is better): +0.0500 >= required +0.0100" in better.checks[2].detail
    worse = gate(result(0.45, "log_loss"), result(0.40, "log_loss"), log_loss)
    assert not worse.passed and "-0.0500 < required +0.0100" in worse.reasons[0]
    ceiling = gate(result(0.65, "log_loss"), None, log_loss)
    assert ceiling.reasons == ["log_loss 0.6500 > ceiling 0.6000"]
    # The champion's log_loss is read from its metrics even when its primary was another metric.
    champion = result(0.80, log_loss=0.45)
    assert gate(result(0.40, "log_loss"), champion, log_loss).passed
    slices = with_evaluation(log_loss, slice_columns=["channel"], slice_tolerance=0.02)
    old = result(0.45, "log_loss", slices={"channel": {"online": {"rows": 300, "value": 0.40}}})
    new = result(0.40, "log_loss", slices={"channel": {"online": {"rows": 300, "value": 0.43}}})
    assert "channel=online" in gate(new, old, slices).reasons[0]


def test_concept_drift_challenger_beats_the_reference_model(cfg, reference, concept_frames):
    train_frame, holdout, info = split_by_time(concept_frames, cfg)
    # The scenario's last concept-drift days are the holdout, whatever its length.
    assert info["holdout_dates"] == sorted(concept_frames)[-cfg.training.holdout_days :]
    champion_model, _ = train(cfg, reference)
    challenger_model, _ = train(cfg, train_frame)
    champion, challenger = evaluate(champion_model, holdout, cfg), evaluate(challenger_model, holdout, cfg)
    assert challenger["primary"]["value"] > champion["primary"]["value"] + 0.05
    decision = gate(challenger, champion, cfg)
    assert decision.passed, decision.reasons
    assert not gate(champion, challenger, cfg).passed


def bootstrap_page(split: dict | None = None) -> str:
    """The report of a first challenger (no champion) that passed, with the holdout's description."""
    return render_evaluation_html(
        result(0.8), None, GateDecision(True, []), model="m", challenger_version="1", champion_version=None, split=split
    )


def test_html_is_self_contained_and_escapes_data(cfg):
    slices = {"channel": {HOSTILE: {"rows": 80, "value": 0.7}, "online": {"rows": 80, "value": 0.8}}}
    challenger = result(0.81, slices=slices, accuracy=0.9)
    challenger["confusion_matrix"] = {"labels": ["0", HOSTILE], "matrix": [[50, 5], [10, 15]]}
    challenger["per_class"] = [{"label": HOSTILE, "precision": 0.5, "recall": None, "f1": 0.4, "support": 25}]
    champion = result(0.80, slices={"channel": {HOSTILE: {"rows": 80, "value": 0.75}}})
    decision = gate(challenger, champion, cfg)
    page = render_evaluation_html(
        challenger, champion, decision, model="credit<default>", challenger_version="7", champion_version="6"
    )
    assert "<script" not in page.lower() and "alert(1)</script>" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "credit&lt;default&gt;" in page
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)
    assert "REJECT" in page and "FAIL" in page  # the hostile slice regressed by 0.05
    bootstrap = bootstrap_page()
    assert "no champion (bootstrap)" in bootstrap and "PROMOTE" in bootstrap


def test_the_report_says_how_the_holdout_was_taken(cfg):
    random_split = {
        "method": "random",
        "reason": "the reference has no timestamp column",
        "holdout_fraction": 0.2,
        "stratified": True,
        "seed": 42,
        "train_rows": 800,
        "holdout_rows": 200,
    }
    page = bootstrap_page(split=random_split)
    assert (
        "Random holdout of 20% of the rows (stratified by class, seed 42): 800 training rows, 200 holdout rows." in page
    )
    assert "Why not by time: the reference has no timestamp column." in page
    time_split = {"method": "time", "holdout_dates": ["2026-01-12", "2026-01-13"], "train_rows": 9, "holdout_rows": 3}
    page = bootstrap_page(split=time_split)
    assert "Time-based holdout: the latest 2 batch date(s) (2026-01-12 to 2026-01-13): 9 training rows" in page


def importance_table(means: dict[str, tuple[float, float]]) -> dict:
    """A hand-made `permutation_importance_table`: feature -> (mean, std), ranked by mean."""
    ordered = sorted(means.items(), key=lambda kv: -kv[1][0])
    return {
        "metric": "roc_auc",
        "lower_is_better": False,
        "rows": 480,
        "repeats": 5,
        "features": [{"feature": f, "mean": m, "std": s, "rank": i} for i, (f, (m, s)) in enumerate(ordered, 1)],
    }


def test_the_report_shows_both_models_feature_importance_and_attribution_drift(cfg):
    from driftwatch.importance import compare_importance, ranking_ndcg

    ours = importance_table({"income": (0.2512, 0.0101), HOSTILE: (0.0803, 0.0042), "age": (0.0011, 0.0005)})
    theirs = importance_table({"income": (0.0420, 0.0030), HOSTILE: (0.3107, 0.0200), "age": (0.0007, 0.0004)})
    ndcg = ranking_ndcg(theirs, ours)
    report = {
        "challenger": ours,
        "champion": theirs,
        "comparison": compare_importance(ours, theirs),
        "ndcg": ndcg,
        "threshold": 0.9,
        "attribution_drift": ndcg < 0.9,
    }
    page = render_evaluation_html(
        result(0.81),
        result(0.80),
        GateDecision(True, []),
        model="m",
        challenger_version="7",
        champion_version="6",
        importance=report,
    )
    section = page[page.index("<h2>Feature importance (permutation, on the holdout)</h2>") :]
    assert "<svg" in section and "challenger 7" in section and "champion 6" in section
    assert "0.2512 ± 0.0101" in section and "0.0420 ± 0.0030" in section  # both models' numbers
    assert "0.0803 ± 0.0042" in section and "0.3107 ± 0.0200" in section
    income = section[section.index('<td class="l">income</td>') :].split("</tr>")[0]
    assert [c.split("</td>")[0] for c in income.split("<td>")[1:]] == [
        "0.2512 ± 0.0101",
        "1",
        "0.0420 ± 0.0030",
        "2",
        "+1",
    ]
    assert f"(nDCG): {ndcg:.3f}, below 0.9: attribution drift" in section
    assert "alert(1)</script>" not in page and "&lt;/script&gt;&lt;script&gt;alert(1)" in section

    bootstrap = render_evaluation_html(
        result(0.81),
        None,
        GateDecision(True, []),
        model="m",
        challenger_version="1",
        champion_version=None,
        importance={**report, "champion": None, "comparison": compare_importance(ours, None), "ndcg": None},
    )
    alone = bootstrap[bootstrap.index("Feature importance (permutation") :]
    assert "0.2512 ± 0.0101" in alone and "champion importance" not in alone and "nDCG" not in alone
    assert "0.0420" not in alone


def test_the_report_says_why_importance_is_missing(cfg):
    missing = {"challenger": {"metric": "roc_auc", "features": [], "reason": "undefined: the rows hold one class only"}}
    page = render_evaluation_html(
        result(None),
        None,
        GateDecision(False, []),
        model="m",
        challenger_version="1",
        champion_version=None,
        importance=missing,
    )
    assert "Not computed: undefined: the rows hold one class only." in page
    assert "Feature importance" not in bootstrap_page()  # reports from before importance render as before
