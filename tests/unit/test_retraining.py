"""The retrain run's plan: why it trains, from which batches, against which champion (no network)."""

from __future__ import annotations

from datetime import date, timedelta

from driftwatch.retraining import plan_run

PARAMS = {"reason": "manual retrain", "as_of": None, "window_days": 10, "promote": True, "require_approval": False}


def test_a_manual_run_bootstraps_with_its_own_reason() -> None:
    plan = plan_run(PARAMS, "manual__1", [], champion=None)
    assert plan["bootstrap"] is True and plan["champion"] is None
    assert plan["reason"] == "manual retrain" and plan["drift_reports"] == []
    assert plan["as_of"] == (date.today() - timedelta(days=1)).isoformat()
    assert (plan["run_key"], plan["window_days"], plan["promote"]) == ("manual__1", 10, True)


def test_asset_events_give_the_reasons_once_each_and_the_latest_batch() -> None:
    events = [
        {"batch_date": "2026-01-03", "reason": "data drift: 40% of features", "drift_report": "s3://b/r1/drift.html"},
        {"batch_date": "2026-01-05", "reason": "concept drift: live roc_auc 0.61"},
        {"batch_date": "2026-01-04", "reason": "data drift: 40% of features", "drift_report": "s3://b/r2/drift.html"},
    ]
    plan = plan_run(PARAMS, "asset_triggered__2", events, champion={"version": "3"})
    assert plan["bootstrap"] is False and plan["champion"] == "3"
    assert plan["reason"] == "data drift: 40% of features; concept drift: live roc_auc 0.61"
    assert plan["as_of"] == "2026-01-05"
    assert plan["drift_reports"] == ["s3://b/r1/drift.html", "s3://b/r2/drift.html"]


def test_the_as_of_param_wins_over_the_events() -> None:
    plan = plan_run({**PARAMS, "as_of": "2026-01-02"}, "manual__3", [{"batch_date": "2026-01-05"}], None)
    assert plan["as_of"] == "2026-01-02"
