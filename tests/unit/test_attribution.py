"""Attribution drift in the monitor: the champion's importance on its labelled window against its evaluation's."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from driftwatch.attribution import FAILED, attribution_of, attribution_outcome, stored_problem
from driftwatch.importance import permutation_importance_table
from tests.unit.test_importance import fitted, toy_config, toy_frame

# The champion learned a target driven by x1 and a little by x2. (A champion that ignores x2
# entirely scores noise on labels that follow x2: every importance is about 0, the ranking is
# chance, and its live metric, not its ranking, shows the loss.)
LEARNED = (1.0, 0.4)
MOVED = (0.0, 1.0)  # the window's labels follow x2 alone
DAYS = ["2026-01-08", "2026-01-09"]


@pytest.fixture(scope="module")
def cfg():
    return toy_config()


@pytest.fixture(scope="module")
def champion(cfg):
    return fitted(cfg, weights=LEARNED)


@pytest.fixture(scope="module")
def evaluated(cfg, champion) -> dict:
    """The champion's own table from its evaluation: importance on a holdout of the world it learned."""
    holdout = toy_frame(600, seed=2, weights=LEARNED)
    return permutation_importance_table(champion, holdout, cfg, max_samples=2000, seed=0)


def window(weights: tuple, rows: int = 600) -> pd.DataFrame:
    """The labelled rows of a live window: the same seed gives the same inputs whatever the weights."""
    return toy_frame(rows, seed=3, weights=weights)


def test_labels_that_came_to_follow_another_feature_are_attribution_drift(cfg, champion, evaluated):
    moved, same = window(MOVED), window(LEARNED)
    features = cfg.dataset.feature_names
    pd.testing.assert_frame_equal(moved[features], same[features])  # inputs unchanged: only the labels moved
    assert (moved["y"] != same["y"]).mean() > 0.2

    result = attribution_of(champion, moved, evaluated, cfg, version="4", days=DAYS)
    assert result["measured"] is True and result["attribution_drift"] is True, result
    assert result["ndcg"] < cfg.evaluation.attribution_drift_threshold
    assert result["evaluated_top_features"][0] == "x1" and result["top_features"][0] == "x2"
    assert result["reason"].startswith(
        "attribution drift: v4's permutation importance on 600 labelled rows (2026-01-08..2026-01-09) "
        f"ranks the features unlike its evaluation (nDCG {result['ndcg']:.2f} < 0.9): now x2"
    )
    ranks = {row["feature"]: row for row in result["features"]}
    assert ranks["x1"]["evaluated_rank"] == 1 and ranks["x1"]["rank"] > 1 and ranks["x2"]["rank"] == 1
    assert (result["rows"], result["min_rows"], result["window_days"]) == (600, 200, 7)
    assert (result["since"], result["until"], result["model_version"]) == ("2026-01-08", "2026-01-09", "4")
    json.dumps(result, allow_nan=False)  # the history record and XCom take plain JSON


def test_the_same_relationship_keeps_the_ranking(cfg, champion, evaluated):
    result = attribution_of(champion, window(LEARNED), evaluated, cfg, version="4", days=DAYS)
    assert result["measured"] is True and result["attribution_drift"] is False, result
    assert result["ndcg"] >= cfg.evaluation.attribution_drift_threshold
    assert result["reason"] == "" and result["top_features"][:2] == ["x1", "x2"]


def test_at_most_importance_max_samples_rows_are_shuffled(cfg, champion, evaluated):
    capped = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"importance_max_samples": 100})})
    result = attribution_of(champion, window(LEARNED), evaluated, capped, version="4", days=DAYS)
    assert (result["rows"], result["sampled_rows"]) == (600, 100)


def test_fewer_rows_than_live_performance_needs_are_not_measured(cfg, champion, evaluated):
    result = attribution_of(champion, window(MOVED, rows=150), evaluated, cfg, version="4", days=DAYS)
    assert (result["measured"], result["ndcg"], result["attribution_drift"]) == (False, None, None)
    assert result["note"] == "150 labelled row(s) predicted by v4 in the last 7 day(s): 200 are needed to measure it"
    assert result["reason"] == ""


def test_labels_the_model_cannot_be_measured_on_are_not_measured_and_say_why(cfg, champion, evaluated):
    three = window(LEARNED).assign(y=lambda f: f["y"].where(f.index % 7 != 0, 2))
    assert "holds 3 classes" in attribution_of(champion, three, evaluated, cfg, version="4", days=DAYS)["note"]
    positives = window(LEARNED).query("y == 1")
    note = attribution_of(champion, positives, evaluated, cfg, version="4", days=DAYS)["note"]
    assert note.startswith("importance is undefined on these rows") and "one class" in note


def test_a_version_without_a_usable_stored_ranking_is_not_measured(cfg, evaluated):
    assert "evaluated before permutation importance was recorded" in stored_problem(None, "2", cfg)
    undefined = {"metric": "roc_auc", "features": [], "reason": "holdout has one class only"}
    assert stored_problem(undefined, "2", cfg).endswith("could not measure importance: holdout has one class only")
    assert "measured in 'rmse'" in stored_problem({**evaluated, "metric": "rmse"}, "2", cfg)
    assert stored_problem(evaluated, "2", cfg) is None


def test_a_failed_check_is_a_result_without_a_verdict():
    failed = attribution_outcome(None)
    assert (failed["failed"], failed["measured"], failed["attribution_drift"], failed["note"]) == (
        True,
        False,
        None,
        FAILED,
    )
    found = {"measured": True, "attribution_drift": False}
    assert attribution_outcome(found) is found
