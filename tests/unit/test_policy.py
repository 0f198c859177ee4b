"""The retraining policy: one test per rule, each built so that breaking the rule fails it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from driftwatch import alerts, decisions, policy, shadow
from driftwatch.config import RetrainingPolicy

DAY = "2026-03-10"


@pytest.fixture
def cfg(demo_cfg):
    """The demo model with the documented policy defaults (the demo's own config tunes them)."""
    evaluation = demo_cfg.evaluation.model_copy(update={"live_tolerance": 0.05})
    return demo_cfg.model_copy(update={"retraining": RetrainingPolicy(), "evaluation": evaluation})


def estimate(value: float, evaluated: float = 0.80, half: float = 0.02) -> dict:
    return {"metric": "roc_auc", "value": value, "lower": value - half, "upper": value + half, "evaluated": evaluated}


def signals(**kw) -> policy.Signals:
    base = {"batch_date": DAY, "data_drift": True, "drift_reason": "data drift: 50% of features drifted (age)"}
    return policy.Signals(**{**base, **kw})


def state(**kw) -> policy.PolicyState:
    base = {"recent_drift": [("2026-03-08", False), ("2026-03-09", True)], "labelled_rows_since_onset": 5000}
    return policy.PolicyState(**{**base, **kw})


def test_sustained_drift_with_labels_and_no_estimate_retrains(cfg):
    decision = policy.decide(cfg, signals(), state())
    assert (decision.action, decision.retrain, decision.alert) == ("retrain", True, True)
    assert decision.signals["drifted_batches"] == 2 and decision.signals["sustained"] is True


def test_drift_on_one_batch_of_three_alerts_only(cfg):
    decision = policy.decide(cfg, signals(), state(recent_drift=[("2026-03-08", False), ("2026-03-09", False)]))
    assert (decision.action, decision.retrain, decision.alert) == ("alert-only", False, True)
    assert "not sustained yet: drift on 1 of the last 3" in decision.reason


def test_k_of_m_is_read_from_the_config(cfg):
    one_of_one = cfg.model_copy(
        update={"retraining": cfg.retraining.model_copy(update={"sustained_batches": 1, "sustained_window": 1})}
    )
    decision = policy.decide(one_of_one, signals(), state(recent_drift=[]))
    assert decision.action == "retrain"


def test_harmless_drift_alerts_without_retraining_unless_configured(cfg):
    harmless = signals(estimate=estimate(0.79))
    decision = policy.decide(cfg, harmless, state())
    assert (decision.action, decision.retrain, decision.alert) == ("alert-only", False, True)
    assert "harmless drift" in decision.reason and decision.signals["estimate_harm"] is False
    eager = cfg.model_copy(update={"retraining": cfg.retraining.model_copy(update={"retrain_on_harmless_drift": True})})
    assert policy.decide(eager, harmless, state()).action == "retrain"


def test_harmful_estimate_retrains_and_says_so(cfg):
    decision = policy.decide(cfg, signals(estimate=estimate(0.70)), state())
    assert decision.action == "retrain" and decision.signals["estimate_harm"] is True
    assert "estimated roc_auc 0.700 [0.680, 0.720] is below the evaluated 0.800" in decision.reason


def test_estimate_tolerance_overrides_the_live_tolerance(cfg):
    strict = cfg.model_copy(update={"retraining": cfg.retraining.model_copy(update={"estimate_tolerance": 0.005})})
    assert policy.decide(cfg, signals(estimate=estimate(0.79)), state()).action == "alert-only"
    assert policy.decide(strict, signals(estimate=estimate(0.79)), state()).action == "retrain"


def test_retraining_waits_for_labels_from_the_drift_onset(cfg):
    decision = policy.decide(cfg, signals(), state(labelled_rows_since_onset=120))
    assert (decision.action, decision.retrain) == ("pending-labels", False)
    assert decision.pending == {"onset": "2026-03-09", "since": DAY, "reasons": [signals().drift_reason]}
    assert "120 labelled row(s) from batches since 2026-03-09, 500 needed" in decision.reason


def test_a_pending_request_fires_when_the_labels_land_even_without_new_drift(cfg):
    pending = {"onset": "2026-03-09", "since": "2026-03-10", "reasons": ["data drift: 50% of features drifted (age)"]}
    quiet = signals(batch_date="2026-03-12", data_drift=False, drift_reason="")
    waiting = policy.decide(cfg, quiet, state(pending=pending, labelled_rows_since_onset=100))
    assert waiting.action == "pending-labels" and waiting.pending["onset"] == "2026-03-09"
    assert waiting.alert is False  # a pending request is shown in the record, not emailed every day
    fired = policy.decide(cfg, quiet, state(pending=pending, labelled_rows_since_onset=900))
    assert (fired.action, fired.retrain, fired.alert) == ("retrain", True, True)
    assert fired.reason == pending["reasons"][0]


def test_cooldown_after_a_promotion_unless_realized_performance_fell(cfg):
    recent = state(last_promotion="2026-03-08")
    cooled = policy.decide(cfg, signals(), recent)
    assert cooled.action == "cooldown" and "promoted on 2026-03-08, 2 day(s) ago (< 3)" in cooled.reason
    realized = {"degraded": True, "reason": "concept drift: live roc_auc 0.61", "since": "2026-03-05"}
    assert policy.decide(cfg, signals(realized=realized), recent).action == "retrain"
    assert policy.decide(cfg, signals(), state(last_promotion="2026-03-07")).action == "retrain"


def test_one_retrain_at_a_time_new_signals_join_the_queued_one(cfg):
    flight = {"run_id": "scheduled__2026-03-09", "batch_date": "2026-03-09", "at": "2026-03-10T00:00:00+00:00"}
    decision = policy.decide(cfg, signals(), state(in_flight=flight))
    assert (decision.action, decision.retrain, decision.alert) == ("joined", False, True)
    assert "joins the retrain already requested (scheduled__2026-03-09)" in decision.reason


def test_realized_degradation_acts_at_once_without_data_drift(cfg):
    realized = {"degraded": True, "reason": "concept drift: live roc_auc 0.610 of v2", "since": "2026-03-05"}
    quiet = signals(data_drift=False, drift_reason="", realized=realized)
    decision = policy.decide(cfg, quiet, state(labelled_rows_since_onset=0))
    assert decision.action == "retrain" and decision.reason.startswith("concept drift")


def test_a_feature_gone_wild_alerts_alone_and_does_not_retrain(cfg):
    wild = [{"feature": "annual_income", "why": "97% of values outside the reference range [9000, 250000]"}]
    decision = policy.decide(cfg, signals(data_drift=False, drift_reason="", extreme_features=wild), state())
    assert (decision.action, decision.alert, decision.retrain) == ("alert-only", True, False)
    assert "annual_income gone wild: 97% of values outside" in decision.reason


def test_manual_request_passes_sustained_cooldown_and_labels(cfg):
    forced = signals(data_drift=False, drift_reason="", manual=True)
    decision = policy.decide(cfg, forced, state(last_promotion=DAY, labelled_rows_since_onset=0))
    assert decision.action == "retrain" and "forced by hand" in decision.reason


def test_a_quiet_batch_decides_none(cfg):
    decision = policy.decide(cfg, signals(data_drift=False, drift_reason=""), state())
    assert (decision.action, decision.alert, decision.retrain, decision.reason) == ("none", False, False, "")


@pytest.mark.parametrize(
    ("sustained", "harm", "realized", "key"),
    [(True, None, False, "data_drift"), (True, True, True, "data_drift+estimate_harm+realized_degraded")],
)
def test_requests_are_keyed_on_their_signals_not_their_wording(sustained, harm, realized, key):
    seen = {"sustained": sustained, "estimate_harm": harm, "realized_degraded": realized, "manual": False}
    assert decisions.signal_key(policy.Decision("retrain", True, True, "any wording", seen)) == key


def test_a_request_is_in_flight_until_a_retrain_started_after_it_finishes():
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    asked = {"run_id": "r1", "at": "2026-03-10T10:00:00+00:00"}
    assert decisions.in_flight(asked, None, now) == asked
    older = {"state": "finished", "started_at": "2026-03-10T09:00:00+00:00"}
    assert decisions.in_flight(asked, older, now) == asked
    assert decisions.in_flight(asked, {"state": "running", "started_at": "2026-03-10T10:00:05Z"}, now) == asked
    assert decisions.in_flight(asked, {"state": "finished", "started_at": "2026-03-10T10:00:05Z"}, now) is None
    assert decisions.in_flight(asked, None, now + timedelta(days=2)) is None  # never picked up: stale


def test_the_drift_email_says_what_the_policy_decided(cfg):
    decision = {
        "batch_date": DAY,
        "dataset_drift": True,
        "drifted_share": 0.5,
        "share_threshold": 0.3,
        "n_features": 12,
        "drifted_features": [],
        "action": "alert-only",
        "reason": "data drift; harmless drift: estimated roc_auc 0.790",
        "estimate": estimate(0.79),
        "live": {"metric": "roc_auc", "rows": 0, "value": None},
    }
    message = alerts.drift_email(cfg, DAY, decision, {})
    assert message["Subject"].endswith("alert only, not retrained")
    text = message.get_body(("plain",)).get_content()
    assert "estimated (no labels) | roc_auc | 0.79 | [0.770, 0.810] | 0.8" in text
    assert "realized" not in text


def attribution(drift: bool, ndcg: float = 0.48) -> dict:
    """What the monitor's attribution check records (attribution.attribution_of), with or without drift."""
    reason = "attribution drift: v2's permutation importance on 900 labelled rows ranks the features unlike its "
    reason += f"evaluation (nDCG {ndcg:.2f} < 0.9): now channel, age; evaluated credit_utilization, age"
    return {
        "measured": True,
        "model_version": "2",
        "ndcg": ndcg if drift else 0.97,
        "threshold": 0.9,
        "attribution_drift": drift,
        "rows": 900,
        "since": "2026-03-04",
        "until": "2026-03-09",
        "top_features": ["channel", "age"] if drift else ["credit_utilization", "age"],
        "evaluated_top_features": ["credit_utilization", "age"],
        "reason": reason if drift else "",
    }


LIVE_WITHIN = {"metric": "roc_auc", "value": 0.79, "evaluated": 0.80, "degraded": False, "reason": ""}
LIVE_FELL = {**LIVE_WITHIN, "value": 0.70, "degraded": True, "since": "2026-03-04", "reason": "concept drift: live"}


def test_attribution_drift_alone_alerts_and_does_not_retrain_while_live_performance_holds(cfg):
    quiet = signals(data_drift=False, drift_reason="", realized=LIVE_WITHIN, attribution=attribution(True))
    decision = policy.decide(cfg, quiet, state())
    assert (decision.action, decision.alert, decision.retrain) == ("alert-only", True, False)
    assert decision.signals["attribution_drift"] is True and decision.signals["realized_degraded"] is False
    assert decision.reason.startswith("attribution drift: v2's permutation importance on 900 labelled rows")
    assert decision.reason.endswith(
        "attribution drift alerts; it retrains only with realized degradation "
        "(live roc_auc 0.790 is not worse than the evaluated 0.800 by more than 0.05)"
    )


def test_attribution_drift_with_realized_degradation_retrains_at_once_and_says_both(cfg):
    degraded = signals(data_drift=False, drift_reason="", realized=LIVE_FELL, attribution=attribution(True))
    decision = policy.decide(cfg, degraded, state(last_promotion="2026-03-09", labelled_rows_since_onset=0))
    assert (decision.action, decision.retrain) == ("retrain", True)
    assert decision.reason.startswith("concept drift: live; attribution drift: v2's")
    assert "retrains only with realized degradation" not in decision.reason
    # The request is keyed on what acts: a rerun whose check failed emits no second event.
    assert decisions.signal_key(decision) == "realized_degraded"


def test_a_measured_ranking_that_holds_changes_no_decision(cfg):
    for kw in ({}, {"data_drift": False, "drift_reason": ""}, {"estimate": estimate(0.79)}):
        base = policy.decide(cfg, signals(**kw), state())
        held = policy.decide(cfg, signals(**kw, attribution=attribution(False)), state())
        assert (held.action, held.alert, held.retrain, held.reason) == (
            base.action,
            base.alert,
            base.retrain,
            base.reason,
        )
        assert held.signals["attribution_drift"] is False


def test_attribution_drift_does_not_turn_harmless_drift_into_a_retrain(cfg):
    harmless = signals(estimate=estimate(0.79), realized=LIVE_WITHIN, attribution=attribution(True))
    decision = policy.decide(cfg, harmless, state())
    assert (decision.action, decision.retrain) == ("alert-only", False)
    assert "harmless drift" in decision.reason and "attribution drift alerts" in decision.reason


def test_the_drift_email_names_attribution_drift(cfg):
    decision = {
        "batch_date": DAY,
        "dataset_drift": False,
        "drifted_share": 0.0,
        "share_threshold": 0.3,
        "n_features": 12,
        "drifted_features": [],
        "action": "alert-only",
        "reason": attribution(True)["reason"],
        "live": LIVE_WITHIN,
        "attribution": attribution(True),
    }
    message = alerts.drift_email(cfg, DAY, decision, {})
    assert message["Subject"].endswith(f"{DAY}: attribution drift; alert only, not retrained")
    text = message.get_body(("plain",)).get_content()
    row = "attribution drift (labels) | importance nDCG | 0.48 | 900 rows, 2026-03-04..2026-03-09, v2; now channel, age"
    assert row + " | nDCG 1 (credit_utilization, age)" in text
    held = alerts.drift_email(cfg, DAY, {**decision, "attribution": attribution(False)}, {})
    assert "attribution drift (labels)" not in held.get_body(("plain",)).get_content()


def test_a_challenger_in_shadow_holds_data_drift_but_not_realized_degradation(cfg):
    held = policy.decide(cfg, signals(), state(shadow={"version": "3", "since": "2026-03-08"}))
    assert (held.action, held.retrain, held.alert) == ("cooldown", False, True)
    assert "challenger v3 is in shadow since 2026-03-08" in held.reason
    degraded = {"degraded": True, "reason": "concept drift: live roc_auc fell", "since": "2026-03-09"}
    urgent = policy.decide(cfg, signals(realized=degraded), state(shadow={"version": "3", "since": "2026-03-08"}))
    assert urgent.action == "retrain", "a champion getting worse is not made to wait for the shadow"


def test_shadow_hold_starts_after_the_challengers_as_of():
    active = {"status": "shadow", "version": "3", "as_of": "2026-03-08"}
    assert shadow.shadow_hold(active, "2026-03-09") == {"version": "3", "since": "2026-03-08"}
    assert shadow.shadow_hold(active, "2026-03-08") is None, "a rerun of the batch that trained it"
    assert shadow.shadow_hold({**active, "status": "promoted"}, "2026-03-09") is None
    assert shadow.shadow_hold(None, "2026-03-09") is None


def test_a_promotion_from_shadow_starts_the_cooldown():
    promoted = {"status": "promoted", "verdict": {"decided_on": "2026-03-09"}}
    assert (
        decisions.last_promotion({"last_promotion": "2026-03-01"}, None, shadow.promoted_on(promoted)) == "2026-03-09"
    )
    assert shadow.promoted_on({**promoted, "status": "rejected"}) is None
