"""Permutation importance on the holdout, the champion/challenger comparison and attribution drift (nDCG)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftwatch.config import ModelConfig, parse_config
from driftwatch.importance import (
    compare_importance,
    importance_report,
    importance_summary,
    permutation_importance_table,
    ranking_ndcg,
)
from driftwatch.registry.aliases import importance_metrics
from driftwatch.training import train

NOISE = ("x2", "x3", "colour", "flag", "code")


def toy_config(task: str = "classification", estimator: str = "logistic_regression", metric: str = "roc_auc"):
    """A model of five features whose target depends on x1 alone (see `toy_frame`)."""
    target = {"name": "y", "task": task, **({"positive_label": 1} if task == "classification" else {})}
    features = [{"name": n, "type": "numeric"} for n in ("x1", "x2", "x3")]
    features += [{"name": n, "type": "categorical"} for n in ("colour", "flag", "code")]
    raw = {
        "name": "toy",
        "schema": {"id_column": "id", "target": target, "features": features},
        "storage": {"bucket": "toy-bucket", "reference_key": "reference/toy.parquet"},
        "alerts": {"recipients": ["ml@example.com"]},
        "monitor": {"start_date": "2026-01-01"},
        "training": {"estimator": estimator, "min_training_rows": 50},
        "evaluation": {"primary_metric": metric},
    }
    return parse_config(raw, source="toy.yaml")


def toy_frame(rows: int, seed: int, task: str = "classification", weights: tuple = (1.0, 0.0)) -> pd.DataFrame:
    """x1..x3 standard normal, three categorical noise columns (strings with nulls, booleans, int codes).

    The target is weights[0] * x1 + weights[1] * x2 plus a little noise: thresholded at 0 for
    classification. With the default weights only x1 matters, by construction.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    colour = rng.choice(np.array(["red", "green", "blue", None], dtype=object), size=rows)
    signal = weights[0] * x[:, 0] + weights[1] * x[:, 1] + 0.2 * rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "x1": x[:, 0],
            "x2": np.where(rng.random(rows) < 0.1, np.nan, x[:, 1]),  # nulls, imputed by the pipeline
            "x3": x[:, 2],
            "colour": colour,
            "flag": rng.random(rows) < 0.5,
            "code": rng.integers(0, 4, size=rows),
        }
    )
    frame["y"] = (signal > 0).astype(int) if task == "classification" else 3.0 * signal
    return frame


def fitted(cfg: ModelConfig, seed: int = 1, rows: int = 800, **kwargs):
    return train(cfg, toy_frame(rows, seed, cfg.dataset.target.task, **kwargs))[0]


@pytest.fixture(scope="module")
def clf_cfg() -> ModelConfig:
    return toy_config()


@pytest.fixture(scope="module")
def clf_model(clf_cfg):
    return fitted(clf_cfg)


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    return toy_frame(600, seed=2)


def by_feature(table: dict) -> dict[str, dict]:
    return {row["feature"]: row for row in table["features"]}


def test_the_feature_the_target_depends_on_ranks_first_and_noise_is_near_zero(clf_cfg, clf_model, holdout):
    table = permutation_importance_table(clf_model, holdout, clf_cfg, max_samples=2000, seed=0)
    features = by_feature(table)
    assert table["features"][0]["feature"] == "x1" and features["x1"]["rank"] == 1
    assert features["x1"]["mean"] > 0.2, table  # shuffling x1 costs most of the AUC above 0.5
    for name in NOISE:
        assert abs(features[name]["mean"]) < 0.02, (name, features[name])
    assert [row["rank"] for row in table["features"]] == list(range(1, 7))
    means = [row["mean"] for row in table["features"]]
    assert means == sorted(means, reverse=True)
    assert (table["metric"], table["rows"], table["repeats"], table["lower_is_better"]) == ("roc_auc", 600, 5, False)
    assert table["baseline"] > 0.9
    json.dumps(table, allow_nan=False)  # plain JSON, for the report and MLflow


def test_regression_importance_is_the_rise_of_a_lower_is_better_metric():
    cfg = toy_config("regression", "hist_gradient_boosting_regressor", "rmse")
    model = fitted(cfg)
    table = permutation_importance_table(
        model, toy_frame(600, seed=2, task="regression"), cfg, max_samples=2000, seed=0, repeats=3
    )
    features = by_feature(table)
    assert table["lower_is_better"] and table["repeats"] == 3
    assert table["features"][0]["feature"] == "x1"
    assert features["x1"]["mean"] > 2.0, table  # rmse rises from about 0.6 to about 4 without x1
    assert all(abs(features[n]["mean"]) < 0.05 * features["x1"]["mean"] for n in NOISE), table


def test_max_samples_caps_the_rows_with_a_stratified_seeded_sample(clf_cfg, clf_model, holdout):
    table = permutation_importance_table(clf_model, holdout, clf_cfg, max_samples=100, seed=3, repeats=2)
    assert table["rows"] == 100
    again = permutation_importance_table(clf_model, holdout, clf_cfg, max_samples=100, seed=3, repeats=2)
    assert again["features"] == table["features"]
    # Stratified: the sampled rows keep the holdout's share of positives (to the row).
    from driftwatch.importance import _sample

    y = holdout["y"].to_numpy()
    _, sampled = _sample(holdout, y, y == 1, max_samples=100, seed=3)
    assert abs(sampled.mean() - y.mean()) <= 0.01


def test_rows_without_a_target_are_left_out_and_an_undefined_metric_says_why(clf_cfg, clf_model, holdout):
    partial = holdout.copy()
    partial.loc[partial.index[:100], "y"] = np.nan
    assert permutation_importance_table(clf_model, partial, clf_cfg, max_samples=2000, seed=0, repeats=1)["rows"] == 500
    one_class = holdout[holdout["y"] == 1]
    table = permutation_importance_table(clf_model, one_class, clf_cfg, max_samples=2000, seed=0)
    assert table["features"] == [] and table["baseline"] is None
    assert "one class" in table["reason"]


def table_of(means: dict[str, float]) -> dict:
    """A hand-made importance table, ranked like `permutation_importance_table`'s."""
    ordered = sorted(means.items(), key=lambda kv: -kv[1])
    return {"features": [{"feature": f, "mean": m, "std": 0.01, "rank": i} for i, (f, m) in enumerate(ordered, 1)]}


REFERENCE = {"x1": 0.30, "x2": 0.05, "x3": 0.01, "colour": 0.0, "flag": -0.002}


def test_ndcg_is_one_for_the_same_ranking_and_low_when_the_top_feature_swaps_with_noise():
    assert ranking_ndcg(table_of(REFERENCE), table_of(REFERENCE)) == pytest.approx(1.0)
    # The same order with other magnitudes is the same ranking.
    assert ranking_ndcg(table_of(REFERENCE), table_of({k: v / 3 for k, v in REFERENCE.items()})) == pytest.approx(1.0)
    swapped = {**REFERENCE, "x1": 0.0, "colour": 0.30}
    assert ranking_ndcg(table_of(REFERENCE), table_of(swapped)) < 0.9
    # Two near-zero features trading places barely matter: relevance is the reference's importance.
    minor = {**REFERENCE, "x3": 0.0, "colour": 0.01}
    assert ranking_ndcg(table_of(REFERENCE), table_of(minor)) > 0.99


def test_ndcg_is_undefined_without_two_features_or_any_positive_reference_importance():
    assert ranking_ndcg(None, table_of(REFERENCE)) is None
    assert ranking_ndcg(table_of({"x1": 0.3}), table_of({"x1": 0.2})) is None
    assert ranking_ndcg(table_of({"x1": 0.0, "x2": -0.01}), table_of(REFERENCE)) is None


def test_compare_importance_gives_both_ranks_and_the_rank_change():
    challenger = table_of({"x1": 0.1, "x2": 0.3, "x3": 0.0})
    champion = table_of({"x1": 0.3, "x2": 0.1, "x3": 0.0, "old": 0.05})
    rows = {row["feature"]: row for row in compare_importance(challenger, champion)}
    assert [row["feature"] for row in compare_importance(challenger, champion)] == ["x2", "x1", "x3", "old"]
    assert (rows["x2"]["challenger_rank"], rows["x2"]["champion_rank"], rows["x2"]["rank_change"]) == (1, 2, 1)
    assert (rows["x1"]["challenger_mean"], rows["x1"]["champion_mean"], rows["x1"]["rank_change"]) == (0.1, 0.3, -1)
    assert rows["x3"]["rank_change"] == 1  # 4th of the champion's four, 3rd of the challenger's three
    assert rows["old"]["challenger_rank"] is None and rows["old"]["rank_change"] is None
    alone = compare_importance(challenger, None)
    assert all(row["champion_rank"] is None and row["rank_change"] is None for row in alone)


def test_a_champion_relying_on_another_feature_is_attribution_drift_on_unchanged_inputs(clf_cfg):
    # Same input distributions for both models; only which feature drives the target differs.
    holdout = toy_frame(600, seed=2, weights=(1.0, 0.5))
    champion = fitted(clf_cfg, weights=(0.0, 1.0))
    challenger = fitted(clf_cfg, weights=(1.0, 0.5))
    report = importance_report(challenger, champion, holdout, clf_cfg)
    assert report["champion"]["features"][0]["feature"] == "x2"
    assert report["challenger"]["features"][0]["feature"] == "x1"
    assert report["ndcg"] < clf_cfg.evaluation.attribution_drift_threshold and report["attribution_drift"] is True
    assert [row["feature"] for row in report["comparison"]][:2] == ["x1", "x2"]
    same = importance_report(challenger, challenger, holdout, clf_cfg)
    assert same["ndcg"] == pytest.approx(1.0) and same["attribution_drift"] is False
    summary = importance_summary(report)
    assert summary["top_features"][0] == "x1" and summary["attribution_drift"] is True
    json.dumps(report, allow_nan=False)


def test_a_bootstrap_has_no_champion_importance_and_no_verdict(clf_cfg, clf_model, holdout):
    report = importance_report(clf_model, None, holdout, clf_cfg)
    assert report["champion"] is None and report["ndcg"] is None and report["attribution_drift"] is None
    assert len(report["comparison"]) == 6


def test_mlflow_metric_names_of_the_importances():
    table = table_of({"x1": 0.3, "late/payments:90d": 0.1})
    table["features"].append({"feature": "undefined", "mean": None, "std": None, "rank": 3})
    assert importance_metrics(table) == {"importance.x1": 0.3, "importance.late_payments_90d": 0.1}
