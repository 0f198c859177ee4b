"""Shadow mode: a challenger that passed the gate scores live batches beside the champion, and
labels decide, by a paired bootstrap interval of the metric difference, whether it replaces it.

The state of the current (or last) shadow is one JSON object (`layout.shadow_state_key`); what
each shadow batch showed lives in that batch's history record (`shadow`, `shadow_evaluation`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from driftwatch import history, ingest, labels, layout, storage
from driftwatch.config import ModelConfig
from driftwatch.metrics import THRESHOLD, metric_value
from driftwatch.storage import S3Client

IN_SHADOW = "shadow"
PSI_BINS = 10
_PSI_EPS = 1e-4


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_state(client: S3Client, cfg: ModelConfig) -> dict[str, Any] | None:
    """The current shadow, or the last one's verdict; None before any."""
    return storage.read_json(client, cfg.storage.bucket, layout.shadow_state_key(cfg))


def is_active(state: dict[str, Any] | None) -> bool:
    return bool(state) and state.get("status") == IN_SHADOW


def write_state(client: S3Client, cfg: ModelConfig, state: dict[str, Any]) -> dict[str, Any]:
    storage.write_json(client, cfg.storage.bucket, layout.shadow_state_key(cfg), state)
    return state


def enter_shadow(
    client: S3Client,
    cfg: ModelConfig,
    tracking_uri: str,
    *,
    version: str,
    plan: dict[str, Any],
    reference_uri: str,
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """Put a challenger that passed the gate in shadow; retire the one it replaces. A rerun changes nothing."""
    from driftwatch import registry

    name = cfg.registry.registered_model
    previous = read_state(client, cfg)
    if is_active(previous) and previous["version"] == version:
        return {"action": "shadow", "version": version, "replaced": previous.get("replaced"), "reasons": []}
    replaced = None
    if is_active(previous):
        replaced = previous["version"]
        registry.retire_challenger(
            tracking_uri, name, replaced, replaced_by=version, reason=f"replaced in shadow by v{version}"
        )
    registry.mark_challenger(tracking_uri, name, version)
    registry.tag_version(
        tracking_uri, name, version, {"shadow_started_at": _now(), "shadow_champion": plan["champion"]}
    )
    state = {
        "status": IN_SHADOW,
        "version": version,
        "champion": plan["champion"],
        "as_of": plan["as_of"],
        "started_at": _now(),
        "reason": plan["reason"],
        "run_id": plan["run_key"],
        "reference_uri": reference_uri,
        "holdout": {k: (evaluation.get(k) or {}).get("primary") for k in ("challenger", "champion")},
        "replaced": replaced,
        "verdict": None,
    }
    write_state(client, cfg, state)
    notes = [f"in shadow beside champion v{plan['champion']} until labels decide"]
    if replaced:
        notes.append(f"replaces v{replaced} in shadow, which is retired undecided")
    return {"action": "shadow", "version": version, "replaced": replaced, "reasons": notes}


def keep_shadow_alias(client: S3Client, cfg: ModelConfig, tracking_uri: str) -> None:
    """Point `challenger` back at the version in shadow (registering a newer candidate moved it)."""
    from driftwatch import registry

    state = read_state(client, cfg)
    if is_active(state):
        registry.mark_challenger(tracking_uri, cfg.registry.registered_model, state["version"])


# --- per batch: the two models' scores side by side ----------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = PSI_BINS) -> float | None:
    """Population stability index of `actual` against `expected`, on quantile bins of `expected`."""
    expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
    if expected.size == 0 or actual.size == 0:
        return None
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    share_e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=edges.size + 1) / expected.size
    share_a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=edges.size + 1) / actual.size
    share_e, share_a = np.clip(share_e, _PSI_EPS, None), np.clip(share_a, _PSI_EPS, None)
    return float(np.sum((share_a - share_e) * np.log(share_a / share_e)))


def compare_scores(champion: np.ndarray, challenger: np.ndarray, task: str) -> dict[str, Any]:
    """Agreement (classification: the same side of the decision threshold), PSI and positive-rate change."""
    both = np.isfinite(champion) & np.isfinite(challenger)
    a, b = champion[both], challenger[both]
    found: dict[str, Any] = {"rows": int(both.sum()), "psi": psi(a, b)}
    if task == "classification":
        rate_a = float((a >= THRESHOLD).mean()) if a.size else None
        rate_b = float((b >= THRESHOLD).mean()) if b.size else None
        found.update(
            agreement=float(((a >= THRESHOLD) == (b >= THRESHOLD)).mean()) if a.size else None,
            positive_rate=rate_a,
            challenger_positive_rate=rate_b,
            positive_rate_change=None if rate_a is None or rate_b is None else rate_b - rate_a,
        )
    else:
        found.update(mean_abs_difference=float(np.abs(a - b).mean()) if a.size else None)
    return found


def batch_comparison(
    cfg: ModelConfig, version: str, champion_version: str, scores: np.ndarray, shadow: np.ndarray, seconds: dict
) -> dict[str, Any]:
    """What the history records for a shadow batch: the comparison and both models' latency."""
    rows = max(int(scores.size), 1)
    return {
        "version": version,
        "champion_version": champion_version,
        **compare_scores(scores, shadow, cfg.dataset.target.task),
        "champion_ms_per_1k": 1000 * seconds["champion"] * 1000 / rows,
        "challenger_ms_per_1k": 1000 * seconds["challenger"] * 1000 / rows,
    }


# --- once labels land: the paired comparison ------------------------------------------------


def _gain(challenger: float, champion: float, lower_is_better: bool) -> float:
    return champion - challenger if lower_is_better else challenger - champion


def paired_bootstrap(
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    metric: Any,
    *,
    cfg: ModelConfig,
) -> dict[str, Any]:
    """The metric difference (challenger better: positive) on the same rows, with a seeded paired
    bootstrap interval: each iteration resamples rows once and scores both models on them."""
    settings, lower = cfg.promotion, cfg.evaluation.lower_is_better
    rng = np.random.default_rng(settings.seed)
    a, b = metric(y, challenger), metric(y, champion)
    point = None if a is None or b is None else _gain(a, b, lower)
    rows = np.arange(len(y))
    if rows.size > settings.bootstrap_max_rows:
        rows = np.sort(rng.choice(rows, settings.bootstrap_max_rows, replace=False))
    diffs = []
    for _ in range(settings.bootstrap_iterations):
        pick = rows[rng.integers(0, rows.size, rows.size)]
        a, b = metric(y[pick], challenger[pick]), metric(y[pick], champion[pick])
        if a is not None and b is not None:
            diffs.append(_gain(a, b, lower))
    alpha = 1.0 - settings.confidence
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2]) if diffs else (None, None)
    return {
        "difference": point,
        "lower": None if low is None else float(low),
        "upper": None if high is None else float(high),
        "confidence": settings.confidence,
        "iterations": len(diffs),
        "resampled_rows": int(rows.size),
        "champion_value": b if point is not None else None,
        "challenger_value": None if point is None else metric(y, challenger),
    }


def slice_differences(frame: pd.DataFrame, metric: Any, cfg: ModelConfig, y: np.ndarray) -> list[dict[str, Any]]:
    """The point difference on every slice large enough to gate; `worse` beyond evaluation.slice_tolerance."""
    found = []
    for column in cfg.evaluation.slice_columns:
        if column not in frame.columns:
            continue
        values = frame[column].astype("string").fillna("(null)")
        for value, index in values.groupby(values).groups.items():
            pick = frame.index.get_indexer(index)
            if pick.size < cfg.evaluation.min_slice_rows:
                continue
            a = metric(y[pick], frame["challenger_score"].to_numpy()[pick])
            b = metric(y[pick], frame["score"].to_numpy()[pick])
            if a is None or b is None:
                continue
            gain = _gain(a, b, cfg.evaluation.lower_is_better)
            found.append(
                {
                    "slice": f"{column}={value}",
                    "rows": int(pick.size),
                    "difference": gain,
                    "worse": gain < -cfg.evaluation.slice_tolerance,
                }
            )
    return found


def shadow_days(client: S3Client, cfg: ModelConfig, state: dict[str, Any], until: str) -> list[str]:
    """The batches the challenger in shadow scored after its as_of, up to `until`."""
    return sorted(
        r["batch_date"]
        for r in history.read_history(client, cfg)
        if (r.get("shadow") or {}).get("version") == state["version"] and state["as_of"] < r["batch_date"] <= until
    )


def paired_rows(client: S3Client, cfg: ModelConfig, state: dict[str, Any], day: str) -> pd.DataFrame | None:
    """One shadow batch's labelled rows with both models' scores (and the slice columns); None before labels.

    Only rows the expected champion scored count: after a rollback the champion's predictions are
    another version's, and the comparison (like the compare-and-set) is with the champion it started beside.
    """
    from driftwatch.profile import iter_columns

    found = labels.read_labels(client, cfg, day)
    if found is None:
        return None
    bucket, id_column = cfg.storage.bucket, cfg.dataset.id_column
    champion = ingest.read_table(client, bucket, layout.predictions_key(cfg, day))
    challenger = ingest.read_table(client, bucket, layout.shadow_predictions_key(cfg, day))
    if len(champion) != len(challenger):
        raise ValueError(f"{day}: the champion scored {len(champion)} rows and the challenger {len(challenger)}")
    frame = champion[[id_column, "score", "model_version"]].copy()
    frame["challenger_score"] = challenger["score"].to_numpy()
    slices = [c for c in cfg.evaluation.slice_columns if c in cfg.dataset.feature_names]
    if slices:
        source = storage.RangeReader(client, bucket, layout.staged_key(cfg, day))
        parts = list(iter_columns(source, slices, batch_rows=layout.staged_row_group_rows(cfg)))
        staged = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=slices)
        for column in slices:
            frame[column] = staged[column].to_numpy()
    frame = frame[frame["model_version"].astype(str) == str(state["champion"])]
    joined, _info = labels.join_labels(frame, found, cfg)
    return joined


def shadow_verdict(cfg: ModelConfig, comparison: dict[str, Any], labelled: int, age_days: int) -> tuple[str, list[str]]:
    """`promote`, `reject` or `continue`, with the reasons in words."""
    settings, evaluation = cfg.promotion, cfg.evaluation
    interval, metric = comparison.get("interval") or {}, evaluation.primary_metric
    low, high, point = interval.get("lower"), interval.get("upper"), interval.get("difference")
    needed = evaluation.min_improvement
    if evaluation.improvement_mode == "relative" and interval.get("champion_value") is not None:
        needed = evaluation.min_improvement * abs(interval["champion_value"])
    worse = [s for s in comparison.get("slices", []) if s["worse"]]
    rows = comparison.get("rows", 0)
    enough = labelled >= settings.shadow_batches and rows >= settings.shadow_min_rows and low is not None
    said = (
        f"paired {metric} difference {point:+.4f}, {interval['confidence']:.0%} CI [{low:+.4f}, {high:+.4f}] "
        f"over {rows} labelled rows of {labelled} shadow batch(es)"
        if low is not None and point is not None
        else f"{rows} labelled row(s) of {labelled} shadow batch(es): no interval yet"
    )
    if enough and low > needed and not worse:
        return "promote", [f"{said}: the lower bound is above min_improvement {needed:.4f}"]
    if enough and high < 0:
        return "reject", [f"{said}: the upper bound is below 0, the challenger is worse"]
    slices = "; ".join(f"{s['slice']} {s['difference']:+.4f}" for s in worse)
    if age_days >= settings.shadow_max_days:
        why = f"the {settings.shadow_max_days}-day shadow window ended undecided ({said}"
        why += f"; slices worse beyond {evaluation.slice_tolerance}: {slices})" if worse else ")"
        return "reject", [why]
    if not enough:
        wait = f"waiting: {labelled} of {settings.shadow_batches} labelled shadow batches, {rows} of "
        return "continue", [f"{wait}{settings.shadow_min_rows} rows ({said})"]
    tail = f"; slices worse beyond {evaluation.slice_tolerance}: {slices}" if worse else ""
    return "continue", [f"{said}: not decided yet{tail}"]


def compare_shadow(
    client: S3Client, cfg: ModelConfig, state: dict[str, Any], batch_date: str, positive: Any
) -> dict[str, Any]:
    """The paired comparison over every labelled shadow batch up to `batch_date`."""
    days = shadow_days(client, cfg, state, batch_date)
    frames, pending = {}, []
    for day in days:
        rows = paired_rows(client, cfg, state, day)
        if rows is None:
            pending.append(day)
        else:
            frames[day] = rows
    result: dict[str, Any] = {
        "batches": len(days),
        "labelled_batches": sorted(frames),
        "pending_labels": pending,
        "rows": 0,
        "interval": None,
        "slices": [],
    }
    if not frames:
        return result
    joined = pd.concat(frames.values(), ignore_index=True)
    y = joined[cfg.dataset.target.name].to_numpy()

    def metric(truth: np.ndarray, scores: np.ndarray) -> float | None:
        return metric_value(cfg, truth, scores, positive)

    result["rows"] = int(len(joined))
    champion, challenger = joined["score"].to_numpy(), joined["challenger_score"].to_numpy()
    result["interval"] = paired_bootstrap(y, champion, challenger, metric, cfg=cfg)
    result["slices"] = slice_differences(joined, metric, cfg, y)
    return result


def promoted_on(state: dict[str, Any] | None) -> str | None:
    """The batch date a shadow's promotion was decided on (the policy's cooldown counts from it)."""
    if not state or state.get("status") != "promoted":
        return None
    return (state.get("verdict") or {}).get("decided_on")


def shadow_hold(state: dict[str, Any] | None, batch_date: str) -> dict[str, Any] | None:
    """The challenger in shadow the policy waits for; None when there is none (or it began after this batch)."""
    if not is_active(state) or state["as_of"] >= batch_date:
        return None
    return {"version": state["version"], "since": state["as_of"]}


def age_in_days(state: dict[str, Any], batch_date: str) -> int:
    return (date.fromisoformat(batch_date) - date.fromisoformat(state["as_of"])).days


# --- the monitor's evaluate_shadow task ---------------------------------------------------


def _compact(comparison: dict[str, Any]) -> dict[str, Any]:
    interval = comparison.get("interval") or {}
    keep = ("difference", "lower", "upper", "confidence", "champion_value", "challenger_value")
    return {
        "batches": comparison["batches"],
        "labelled_batches": len(comparison["labelled_batches"]),
        "pending_labels": comparison["pending_labels"],
        "rows": comparison["rows"],
        **{k: interval.get(k) for k in keep},
        "worse_slices": [s["slice"] for s in comparison.get("slices", []) if s["worse"]],
    }


def _promote(client: S3Client, cfg: ModelConfig, tracking_uri: str, state: dict, batch_date: str, why: str) -> dict:
    """Promote with the compare-and-set against the champion the shadow started beside."""
    from driftwatch import references, registry

    name, version = cfg.registry.registered_model, state["version"]
    references.ensure_profile(client, cfg, state["reference_uri"])
    result = registry.promote(
        tracking_uri,
        name,
        version,
        expected_champion=state["champion"],
        reason=f"shadow: {why}",
        actor="monitor:shadow",
    )
    if not result.get("promoted"):
        refused = f"{result.get('reason', 'compare-and-set refused')}: the shadow compared it with v{state['champion']}"
        registry.retire_challenger(tracking_uri, name, version, replaced_by=None, reason=refused)
        return {"status": "refused", "reasons": [refused]}
    references.promote_reference(client, cfg, state["reference_uri"], version)
    return {"status": "promoted", "reasons": []}


def shadow_step(client: S3Client, cfg: ModelConfig, tracking_uri: str, batch_date: str) -> dict[str, Any]:
    """Compare the challenger in shadow with the champion on its labelled batches; promote, reject or wait."""
    from driftwatch import registry, training

    state = read_state(client, cfg)
    if not is_active(state):
        return {"active": False, "status": (state or {}).get("status"), "version": (state or {}).get("version")}
    name, version = cfg.registry.registered_model, state["version"]
    positive = None
    if training.is_classification(cfg):
        positive = training.positive_class(
            registry.load_model(tracking_uri, f"models:/{name}/{state['champion']}"), cfg
        )
    comparison = compare_shadow(client, cfg, state, batch_date, positive)
    age = age_in_days(state, batch_date)
    verdict, reasons = shadow_verdict(cfg, comparison, len(comparison["labelled_batches"]), age)
    status = IN_SHADOW
    if verdict == "promote":
        done = _promote(client, cfg, tracking_uri, state, batch_date, reasons[0])
        status, reasons = done["status"], [*reasons, *done["reasons"]]
    elif verdict == "reject":
        registry.reject(tracking_uri, name, version, reasons)
        status = "rejected"
    summary = {
        "version": version,
        "champion": state["champion"],
        "verdict": verdict,
        "status": status,
        "age_days": age,
        "reasons": reasons,
        **_compact(comparison),
    }
    history.record_step(
        client,
        cfg,
        batch_date,
        "evaluate_shadow",
        {"done": True, "verdict": verdict},
        fields={"shadow_evaluation": summary},
    )
    if status != IN_SHADOW:
        write_state(
            client, cfg, {**state, "status": status, "verdict": {**summary, "decided_on": batch_date, "at": _now()}}
        )
    return {"active": True, "batch_date": batch_date, **summary, "slices": comparison["slices"]}
