"""The retraining policy: every signal of a batch becomes one decision with its reason.

Signals: data drift over the share threshold, a single feature gone wild, the label-free
performance estimate (CBPE), realized performance once labels land, attribution drift (the
champion's feature ranking on those labels moved from its evaluation's), and a manual request.
Rules, in order: a retrain already queued or running is joined, not queued again; realized
degradation and manual requests act at once; data drift must be sustained (K of the last M
batches) and, when an estimate exists, harmful; no retrain within the cooldown after a
promotion, or while a challenger is in shadow, unless realized performance fell; and none
before enough labelled rows from the drifted batches exist to learn the new world from.
Attribution drift alerts and never retrains
alone: it says how the champion's use of the features changed, not that it costs anything; with
realized degradation the retrain is due anyway, and the reason says both. Pure functions: the
monitor's `decide` task gathers the state and stores the result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Literal

from driftwatch.config import ModelConfig

Action = Literal["retrain", "pending-labels", "cooldown", "alert-only", "joined", "none"]
ACTIONS: tuple[Action, ...] = ("retrain", "pending-labels", "cooldown", "alert-only", "joined", "none")


@dataclass(frozen=True)
class Signals:
    """What one batch says: each field is one signal the policy weighs."""

    batch_date: str
    data_drift: bool
    drift_reason: str = ""
    extreme_features: list[dict[str, Any]] = field(default_factory=list)
    estimate: dict[str, Any] | None = None
    realized: dict[str, Any] | None = None
    manual: bool = False
    attribution: dict[str, Any] | None = None


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between batches, as the `decide` task read it."""

    recent_drift: list[tuple[str, bool]] = field(default_factory=list)
    pending: dict[str, Any] | None = None
    in_flight: dict[str, Any] | None = None
    last_promotion: str | None = None
    labelled_rows_since_onset: int = 0
    shadow: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    """The policy's verdict: whether to alert, whether to request a retrain now, and why."""

    action: Action
    alert: bool
    retrain: bool
    reason: str
    signals: dict[str, Any]
    pending: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_harm(estimate: dict[str, Any] | None, tolerance: float, lower_is_better: bool) -> bool | None:
    """True when the estimate falls below the evaluated value by more than `tolerance`; None without one."""
    if not estimate or estimate.get("value") is None or estimate.get("evaluated") is None:
        return None
    value, evaluated = float(estimate["value"]), float(estimate["evaluated"])
    return value > evaluated + tolerance if lower_is_better else value < evaluated - tolerance


def drift_onset(batch_date: str, recent: list[tuple[str, bool]], window: int) -> str:
    """The first drifted batch of the current window: labels from there on show the new world."""
    drifted = [day for day, flag in recent[-(window - 1) :] if flag] if window > 1 else []
    return min([*drifted, batch_date])


def summarize_signals(cfg: ModelConfig, signals: Signals, state: PolicyState) -> dict[str, Any]:
    """The signals as they are recorded in the batch's history, with what each rule made of them."""
    policy = cfg.retraining
    window = state.recent_drift[-(policy.sustained_window - 1) :] if policy.sustained_window > 1 else []
    drifted = sum(flag for _, flag in window) + int(signals.data_drift)
    tolerance = policy.estimate_tolerance if policy.estimate_tolerance is not None else cfg.evaluation.live_tolerance
    realized = signals.realized or {}
    return {
        "data_drift": signals.data_drift,
        "drifted_batches": drifted,
        "of_batches": len(window) + 1,
        "sustained": signals.data_drift and drifted >= policy.sustained_batches,
        "extreme_features": [f["feature"] for f in signals.extreme_features],
        "estimate_harm": estimate_harm(signals.estimate, tolerance, cfg.evaluation.lower_is_better),
        "realized_degraded": bool(realized.get("degraded")),
        "attribution_drift": bool((signals.attribution or {}).get("attribution_drift")),
        "manual": signals.manual,
        "labelled_rows_since_onset": state.labelled_rows_since_onset,
    }


def decide(cfg: ModelConfig, signals: Signals, state: PolicyState) -> Decision:
    """One decision for the batch of `signals.batch_date`; see the module docstring for the rules."""
    policy = cfg.retraining
    seen = summarize_signals(cfg, signals, state)
    reasons = _reasons(cfg, signals, seen)
    # A pending request waiting for labels is shown in the record, not emailed again every day.
    alert = bool(reasons)
    wants, why = _wants_retrain(cfg, signals, state, seen)
    if not wants and seen["attribution_drift"]:
        why = "; ".join(filter(None, [why, _attribution_alone(cfg, signals.realized)]))
    if not wants:
        action: Action = "alert-only" if alert else "none"
        return Decision(action, alert, False, "; ".join([*reasons, why] if why else reasons), seen, state.pending)
    reason = "; ".join(dict.fromkeys([*reasons, *((state.pending or {}).get("reasons") or [])])) or why
    if state.in_flight:
        run = state.in_flight.get("run_id") or "a queued run"
        return Decision("joined", alert, False, f"{reason}; joins the retrain already requested ({run})", seen)
    urgent = seen["realized_degraded"] or signals.manual
    if state.shadow and not urgent:
        note = f"challenger v{state.shadow['version']} is in shadow since {state.shadow['since']}: "
        note += "retraining on this drift waits for its verdict"
        return Decision("cooldown", alert, False, f"{reason}; {note}", seen)
    if state.last_promotion and not urgent:
        days = (date.fromisoformat(signals.batch_date) - date.fromisoformat(state.last_promotion)).days
        if 0 <= days < policy.cooldown_days:
            note = f"cooldown: the champion was promoted on {state.last_promotion}, {days} day(s) ago"
            note += f" (< {policy.cooldown_days})"
            return Decision("cooldown", alert, False, f"{reason}; {note}", seen)
    onset = (state.pending or {}).get("onset") or _onset(cfg, signals, state)
    if not urgent and state.labelled_rows_since_onset < policy.min_new_labelled_rows:
        pending = {
            "onset": onset,
            "since": (state.pending or {}).get("since") or signals.batch_date,
            "reasons": list(dict.fromkeys([*((state.pending or {}).get("reasons") or []), *reasons])),
        }
        note = (
            f"waiting for labels: {state.labelled_rows_since_onset} labelled row(s) from batches since {onset}, "
            f"{policy.min_new_labelled_rows} needed"
        )
        return Decision("pending-labels", alert, False, f"{reason}; {note}", seen, pending)
    return Decision("retrain", True, True, reason, seen)


def _onset(cfg: ModelConfig, signals: Signals, state: PolicyState) -> str:
    realized = signals.realized or {}
    if realized.get("degraded") and realized.get("since"):
        return str(realized["since"])
    return drift_onset(signals.batch_date, state.recent_drift, cfg.retraining.sustained_window)


def _reasons(cfg: ModelConfig, signals: Signals, seen: dict[str, Any]) -> list[str]:
    """What is wrong with this batch, in words: every signal that fired."""
    reasons = [signals.drift_reason] if signals.data_drift and signals.drift_reason else []
    if signals.data_drift and not signals.drift_reason:
        reasons.append("data drift")
    reasons += [f"{f['feature']} gone wild: {f['why']}" for f in signals.extreme_features]
    estimate = signals.estimate or {}
    if seen["estimate_harm"]:
        reasons.append(
            f"{_estimate_text(estimate)} is below the evaluated {estimate['evaluated']:.3f} by more than the tolerance"
        )
    if seen["realized_degraded"]:
        reasons.append(
            signals.realized["reason"] if (signals.realized or {}).get("reason") else "realized performance fell"
        )
    if seen["attribution_drift"]:
        reasons.append((signals.attribution or {}).get("reason") or "attribution drift")
    if signals.manual:
        reasons.append("retraining forced by hand")
    return reasons


def _attribution_alone(cfg: ModelConfig, realized: dict[str, Any] | None) -> str:
    """Why attribution drift without realized degradation only alerts, with the live value that says so."""
    realized, metric = realized or {}, cfg.evaluation.primary_metric
    if realized.get("value") is not None and realized.get("evaluated") is not None:
        live = (
            f"live {metric} {realized['value']:.3f} is not worse than the evaluated {realized['evaluated']:.3f} "
            f"by more than {cfg.evaluation.live_tolerance}"
        )
    else:
        live = f"live {metric} is not measured"
    return f"attribution drift alerts; it retrains only with realized degradation ({live})"


def _wants_retrain(cfg: ModelConfig, signals: Signals, state: PolicyState, seen: dict[str, Any]) -> tuple[bool, str]:
    """Whether any signal asks for a retrain, or why the ones that fired do not."""
    if signals.manual or seen["realized_degraded"] or state.pending:
        return True, "a retrain request is pending" if state.pending else ""
    if seen["estimate_harm"]:
        return (True, "") if seen["sustained"] or not signals.data_drift else (False, _not_sustained(cfg, seen))
    if not signals.data_drift:
        return False, "a single feature alerts; it does not retrain alone" if signals.extreme_features else ""
    if not seen["sustained"]:
        return False, _not_sustained(cfg, seen)
    if seen["estimate_harm"] is False and not cfg.retraining.retrain_on_harmless_drift:
        estimate = signals.estimate or {}
        return False, (
            f"harmless drift: {_estimate_text(estimate)} stays within the tolerance of the evaluated "
            f"{estimate['evaluated']:.3f}"
        )
    return True, ""


def _estimate_text(estimate: dict[str, Any]) -> str:
    return f"estimated {estimate['metric']} {estimate['value']:.3f} [{estimate['lower']:.3f}, {estimate['upper']:.3f}]"


def _not_sustained(cfg: ModelConfig, seen: dict[str, Any]) -> str:
    return (
        f"not sustained yet: drift on {seen['drifted_batches']} of the last {seen['of_batches']} batch(es), "
        f"{cfg.retraining.sustained_batches} of {cfg.retraining.sustained_window} needed"
    )
