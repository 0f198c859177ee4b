"""Challenger training: feature preparation, label join, time split, the pipeline and its estimators."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from driftwatch import demo_data, labels
from driftwatch.config import ModelConfig, parse_config
from driftwatch.evaluation import evaluate, holdout_estimator
from driftwatch.training import (
    build_pipeline,
    feature_frame,
    predict_scores,
    split_by_time,
    train,
)

DEMO = Path(__file__).resolve().parents[2] / "config" / "models" / "credit_default.yaml"
CLASSIFIERS = {
    "logistic_regression": {},
    "random_forest": {"n_estimators": 20, "max_depth": 6},
    "hist_gradient_boosting": {"max_iter": 40, "max_depth": 3},
}


def with_training(cfg: ModelConfig, **update) -> ModelConfig:
    """The config with some training fields replaced."""
    return cfg.model_copy(update={"training": cfg.training.model_copy(update=update)})


def regression_config() -> ModelConfig:
    """The demo config turned into a regression of annual_income on the other features."""
    raw = yaml.safe_load(DEMO.read_text())
    raw = copy.deepcopy(raw)
    raw["schema"]["target"] = {"name": "annual_income", "task": "regression"}
    raw["schema"]["features"] = [f for f in raw["schema"]["features"] if f["name"] != "annual_income"]
    raw["training"].update(estimator="ridge", hyperparameters={"alpha": 1.0}, min_training_rows=100)
    raw["evaluation"].update(primary_metric="rmse", metric_floor=None, min_improvement=0.0, slice_columns=["channel"])
    return parse_config(raw, source="regression.yaml")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return demo_data.generate_reference(rows=1500)


@pytest.fixture(scope="module")
def batches() -> list[demo_data.DemoBatch]:
    return demo_data.generate_scenario(date(2026, 1, 1), rows_per_day=300)


def test_feature_frame_keeps_only_features_in_config_order(cfg, reference):
    messy = reference.iloc[:5].copy()
    messy = messy[list(reversed(messy.columns))]  # column order must not matter
    messy["age"] = [30, np.inf, -np.inf, None, 41]
    messy["region"] = ["north", None, np.nan, 7, "south"]
    out = feature_frame(messy, cfg)
    assert list(out.columns) == cfg.dataset.feature_names
    assert all(out[n].dtype == "float64" for n in cfg.dataset.numeric_features)
    assert out["age"].isna().tolist() == [False, True, True, True, False]
    assert out["region"].tolist()[0] == "north" and out["region"].tolist()[3] == "7"
    assert out["region"].isna().tolist() == [False, True, True, False, False]
    assert not {"applicant_name", "email", "defaulted", "application_id"} & set(out.columns)
    pd.testing.assert_frame_equal(feature_frame(out, cfg), out)  # callers may apply it twice


def test_feature_frame_names_missing_columns(cfg, reference):
    with pytest.raises(ValueError, match="credit_utilization, channel"):
        feature_frame(reference.drop(columns=["channel", "credit_utilization"]), cfg)


@pytest.mark.parametrize("estimator", list(CLASSIFIERS))
def test_pipeline_handles_missing_values_and_unseen_categories(cfg, reference, estimator):
    model, info = train(with_training(cfg, estimator=estimator, hyperparameters=CLASSIFIERS[estimator]), reference)
    assert info["rows"] == 1500 and set(info["class_counts"]) == {"0", "1"}
    odd = reference.iloc[:6].copy()
    odd[cfg.dataset.numeric_features] = np.nan
    odd["employment_type"] = ["astronaut", None, "salaried", "retired", "pirate", np.nan]
    odd["channel"] = "carrier_pigeon"
    scores = predict_scores(model, odd, cfg)
    assert scores.shape == (6,) and np.all((scores >= 0) & (scores <= 1))


def test_training_is_deterministic(cfg, reference):
    fast = with_training(cfg, hyperparameters={"max_iter": 40, "max_depth": 3})
    first, _ = train(fast, reference)
    second, _ = train(fast, reference)
    assert np.array_equal(predict_scores(first, reference, fast), predict_scores(second, reference, fast))


@pytest.mark.parametrize("estimator", list(CLASSIFIERS))
def test_class_weight_and_seed_reach_the_estimator(cfg, estimator):
    estimator_cfg = with_training(cfg, estimator=estimator, hyperparameters=CLASSIFIERS[estimator], seed=11)
    model = build_pipeline(estimator_cfg).named_steps["model"]
    assert model.class_weight == "balanced" and model.random_state == 11
    unweighted = build_pipeline(with_training(estimator_cfg, class_weight=None)).named_steps["model"]
    assert unweighted.class_weight is None


def test_unknown_hyperparameter_names_it_and_the_estimator(cfg):
    with pytest.raises(ValueError, match=r"'max_dpeth'.*hist_gradient_boosting"):
        build_pipeline(with_training(cfg, hyperparameters={"max_dpeth": 3}))


def test_seed_cannot_be_set_as_a_hyperparameter(cfg):
    with pytest.raises(ValueError, match="training.seed"):
        build_pipeline(with_training(cfg, hyperparameters={"random_state": 1}))


def test_single_class_training_data_is_refused(cfg, reference):
    negatives = reference[reference["defaulted"] == 0]
    with pytest.raises(ValueError, match="single class"):
        train(with_training(cfg, estimator="logistic_regression", hyperparameters={}), negatives)


def test_positive_label_picks_the_probability_column(cfg, reference):
    lr = with_training(cfg, estimator="logistic_regression", hyperparameters={})
    model, _ = train(lr, reference)
    p_default = predict_scores(model, reference, lr)
    flipped = lr.model_copy(
        update={
            "dataset": lr.dataset.model_copy(
                update={"target": lr.dataset.target.model_copy(update={"positive_label": 0})}
            )
        }
    )
    assert np.allclose(predict_scores(model, reference, flipped), 1 - p_default)


def test_regression_config_path(reference):
    reg = regression_config()
    model, info = train(reg, reference)
    assert info["dropped_missing_target"] == int(reference["annual_income"].isna().sum()) > 0
    assert info["rows"] == 1500 - info["dropped_missing_target"] and info["target_std"] > 0
    predictions = predict_scores(model, reference.dropna(subset=["annual_income"]), reg)
    assert np.isfinite(predictions).all() and abs(predictions.mean() - info["target_mean"]) < 0.1 * info["target_mean"]
    report = evaluate(model, reference.iloc[:400], reg)
    assert set(report["metrics"]) == {"rmse", "mae", "r2"} and report["metrics"]["r2"] > 0
    assert report["n"] == 400 - int(reference["annual_income"].iloc[:400].isna().sum())
    assert "per_class" not in report and report["primary"]["lower_is_better"]
    assert sum(s["rows"] for s in report["slices"]["channel"].values()) == report["n"]
    estimator = holdout_estimator(model, reference.iloc[:400], reg)  # asked anyway: it says why not
    assert estimator["kind"] == "none" and estimator["metric"] == "rmse" and estimator["reason"]
    for estimator in ("random_forest_regressor", "hist_gradient_boosting_regressor"):
        step = build_pipeline(with_training(reg, estimator=estimator, hyperparameters={})).named_steps["model"]
        assert step.random_state == reg.training.seed and "class_weight" not in step.get_params()


def labelled_frames(cfg: ModelConfig, batches, kinds=("stable", "covariate_drift", "concept_drift")) -> dict:
    return {
        b.batch_date.isoformat(): labels.join_labels(b.features, b.labels, cfg)[0] for b in batches if b.kind in kinds
    }


def test_split_by_time_holds_out_the_latest_dates(cfg, batches):
    frames = labelled_frames(cfg, batches)
    shuffled = dict(reversed(frames.items()))  # the dict's order must not matter
    train_frame, holdout, info = split_by_time(shuffled, cfg)
    dates = sorted(frames)  # the scenario's dates of these kinds, whatever its phases
    assert info["holdout_dates"] == dates[-2:]
    assert info["train_dates"] == dates[-6:-2]
    assert info["unused_dates"] == dates[:-6] and info["unused_dates"][0] == "2026-01-01"
    assert len(train_frame) == info["train_rows"] == 1200 and len(holdout) == info["holdout_rows"] == 600
    assert set(holdout["application_id"].str[:8]) == {d.replace("-", "") for d in dates[-2:]}


def test_split_by_time_refuses_too_little_data(cfg, batches):
    frames = labelled_frames(cfg, batches)
    first = sorted(frames)[:3]
    with pytest.raises(ValueError, match="need at least 3 labelled batch dates"):
        split_by_time({k: frames[k] for k in first[:2]}, cfg)
    with pytest.raises(ValueError, match="only 300 training rows.*min_training_rows is 500"):
        split_by_time({k: frames[k] for k in first}, cfg)
    with pytest.raises(ValueError, match="not YYYY-MM-DD"):
        split_by_time({"yesterday": frames[first[0]], **frames}, cfg)
