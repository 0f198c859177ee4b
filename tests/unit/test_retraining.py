"""The retrain run's plan and its as_of rules (no network)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from driftwatch.errors import PermanentError
from driftwatch.retraining import (
    AsOfBeforeChampion,
    as_of_date,
    check_as_of,
    check_holdout,
    plan_run,
    window_tags,
)

PARAMS = {"reason": "manual retrain", "as_of": None, "window_days": 10, "promote": True, "require_approval": False}
RUN_DATE = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)


def test_a_manual_run_bootstraps_with_its_own_reason() -> None:
    plan = plan_run(PARAMS, "manual__1", [], champion=None, run_date=RUN_DATE)
    assert plan["bootstrap"] is True and plan["champion"] is None and plan["champion_window"] is None
    assert plan["reason"] == "manual retrain" and plan["drift_reports"] == []
    assert (plan["run_key"], plan["window_days"], plan["promote"]) == ("manual__1", 10, True)


def test_without_as_of_or_events_the_run_learns_up_to_the_day_before_its_own_date() -> None:
    # The run's logical date, not the worker's clock: a rerun next month learns from the same batches.
    assert plan_run(PARAMS, "manual__1", [], None, run_date=RUN_DATE)["as_of"] == "2026-03-14"
    assert as_of_date(None, [], date(2026, 3, 1)) == "2026-02-28"
    # A data interval end at midnight UTC stands for the day it closes.
    assert as_of_date(None, [], datetime(2026, 3, 2, tzinfo=UTC)) == "2026-03-01"


def test_asset_events_give_the_reasons_once_each_and_the_latest_batch() -> None:
    events = [
        {"batch_date": "2026-01-03", "reason": "data drift: 40% of features", "drift_report": "s3://b/r1/drift.html"},
        {"batch_date": "2026-01-05", "reason": "concept drift: live roc_auc 0.61"},
        {"batch_date": "2026-01-04", "reason": "data drift: 40% of features", "drift_report": "s3://b/r2/drift.html"},
    ]
    plan = plan_run(PARAMS, "asset_triggered__2", events, champion={"version": "3"}, run_date=RUN_DATE)
    assert plan["bootstrap"] is False and plan["champion"] == "3"
    assert plan["reason"] == "data drift: 40% of features; concept drift: live roc_auc 0.61"
    assert plan["as_of"] == "2026-01-05"
    assert plan["drift_reports"] == ["s3://b/r1/drift.html", "s3://b/r2/drift.html"]


def test_the_as_of_param_wins_over_the_events() -> None:
    plan = plan_run(
        {**PARAMS, "as_of": "2026-01-02"}, "manual__3", [{"batch_date": "2026-01-05"}], None, run_date=RUN_DATE
    )
    assert plan["as_of"] == "2026-01-02"


WINDOW = {"start": "2026-03-01", "end": "2026-03-10"}


def test_an_as_of_whose_holdout_overlaps_the_champions_training_window_is_refused(demo_cfg) -> None:
    holdout_days = demo_cfg.training.holdout_days  # 2: the holdout up to 03-11 holds 03-10
    with pytest.raises(AsOfBeforeChampion) as refused:
        check_as_of("2026-03-11", WINDOW, "4", demo_cfg)
    message = str(refused.value)
    assert isinstance(refused.value, PermanentError)  # fail_fast: not retried
    assert "as_of 2026-03-11" in message and "v4" in message and "2026-03-01 to 2026-03-10" in message
    assert f"{holdout_days}-day holdout" in message and "use as_of >= 2026-03-12" in message
    with pytest.raises(AsOfBeforeChampion, match="use as_of >= 2026-03-12"):
        check_as_of("2026-02-01", WINDOW, "4", demo_cfg)  # before the window altogether


def test_an_as_of_past_the_window_or_no_window_passes(demo_cfg) -> None:
    check_as_of("2026-03-12", WINDOW, "4", demo_cfg)
    check_as_of("2020-01-01", None, "4", demo_cfg)  # a champion trained on undated (random split) data


def test_the_assembled_holdout_is_checked_too_for_days_that_had_no_labels() -> None:
    # as_of passed the plan's check, but unlabelled days pushed the holdout back into the window.
    split = {"method": "time", "holdout_dates": ["2026-03-09", "2026-03-12"]}
    with pytest.raises(AsOfBeforeChampion, match="holdout days are 2026-03-09, 2026-03-12"):
        check_holdout(split, WINDOW, "4", "2026-03-12")
    check_holdout({"method": "time", "holdout_dates": ["2026-03-11", "2026-03-12"]}, WINDOW, "4", "2026-03-12")
    check_holdout({"method": "random"}, WINDOW, "4", "2026-03-12")


def test_window_tags_name_the_first_and_last_training_date() -> None:
    split = {"train_dates": ["2026-03-02", "2026-03-01", "2026-03-05"], "holdout_dates": ["2026-03-06"]}
    assert window_tags(split) == {"training_window_start": "2026-03-01", "training_window_end": "2026-03-05"}
    assert window_tags({"method": "random"}) == {}
