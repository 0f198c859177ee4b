"""Attribution drift in the monitor: does the champion still rely on the features its evaluation ranked first?

The champion's permutation importance (driftwatch.importance) on its recent labelled rows is
compared, by the nDCG of the rankings, with the importance stored from its own evaluation (its
table as the challenger of the retrain run that registered it). The rows are the ones live
performance measures (scoring.live_performance): labelled rows that champion version itself
predicted, pooled over the last `evaluation.live_window_days`, at least `evaluation.live_min_rows`
of them, with their features from the staged batches; at most `evaluation.importance_max_samples`
are shuffled. Labels are what make this a signal of its own: when the target comes to depend on
other features while every input keeps its distribution, the ranking moves and the drift checks,
which see inputs only, stay quiet.

Imported inside the monitor's tasks only; scikit-learn is imported once importance is computed.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import pandas as pd

from driftwatch import history, ingest, labels, layout, storage
from driftwatch.config import ModelConfig
from driftwatch.dtypes import text_values
from driftwatch.storage import S3Client

#: The monitor task's id: its step in the batch's history record.
STEP = "check_attribution"
#: Features named per ranking in the record, the page and the email.
TOP_FEATURES = 3
#: Features whose ranks the record keeps: the top of either ranking.
RECORDED_FEATURES = 5
FAILED = "check_attribution failed or did not run (see the failure emails): decided without attribution"


def not_measured(version: str | None, note: str, **window: Any) -> dict[str, Any]:
    """A result without a verdict; `note` says why (as live performance's `note` does)."""
    verdict = {"measured": False, "model_version": version, "ndcg": None, "attribution_drift": None, "reason": ""}
    return {**verdict, **window, "note": note}


def stored_problem(stored: dict[str, Any] | None, version: str, cfg: ModelConfig) -> str | None:
    """Why the evaluation's ranking cannot be the reference; None when it can."""
    if stored is None:
        return (
            f"v{version} has no stored importance: it was evaluated before permutation importance was recorded "
            "(the versions the retrain DAG registers from now on have it)"
        )
    if not stored.get("features"):
        return f"v{version}'s evaluation could not measure importance: {stored.get('reason') or 'no features'}"
    metric = cfg.evaluation.primary_metric
    if stored.get("metric") != metric:
        # Importance in another metric ranks what that metric rewards: not this metric's ranking.
        return f"v{version}'s importance was measured in {stored.get('metric')!r}, the primary metric is now {metric!r}"
    return None


def predicted_ids(client: S3Client, cfg: ModelConfig, day: str, version: str) -> set[str]:
    """The ids (canonical text) that model `version` scored on `day`; none when the day was not scored."""
    key = layout.predictions_key(cfg, day)
    if storage.object_size(client, cfg.storage.bucket, key) is None:
        return set()
    predictions = ingest.read_table(client, cfg.storage.bucket, key)
    mine = predictions.loc[predictions["model_version"].astype(str) == version, cfg.dataset.id_column]
    return set(text_values(mine).dropna())


def window_rows(client: S3Client, cfg: ModelConfig, batch_date: str, version: str) -> tuple[pd.DataFrame, list[str]]:
    """The labelled rows `version` predicted in the live window, features included, and the days they are from."""
    from driftwatch.retraining import labelled_batches

    window = cfg.evaluation.live_window_days
    first = (date.fromisoformat(batch_date) - timedelta(days=window - 1)).isoformat()
    # It counts labelled batches, not days: `window` of them hold every labelled day of the window.
    frames, _unlabelled = labelled_batches(client, cfg, batch_date, window)
    parts: dict[str, pd.DataFrame] = {}
    for day in sorted(d for d in frames if d >= first):
        frame = frames[day]
        part = frame[text_values(frame[cfg.dataset.id_column]).isin(predicted_ids(client, cfg, day, version))]
        if len(part):
            parts[day] = part
    rows = pd.concat(parts.values(), ignore_index=True) if parts else pd.DataFrame()
    return rows, list(parts)


def _window(cfg: ModelConfig, rows: pd.DataFrame, days: list[str]) -> dict[str, Any]:
    ev = cfg.evaluation
    since, until = (days[0], days[-1]) if days else (None, None)
    counts = {"rows": len(rows), "min_rows": ev.live_min_rows, "window_days": ev.live_window_days}
    return {**counts, "since": since, "until": until}


def too_few(cfg: ModelConfig, rows: pd.DataFrame, days: list[str], version: str) -> dict[str, Any] | None:
    """A "not measured" result when the window has fewer labelled rows of `version` than live performance needs."""
    window = _window(cfg, rows, days)
    if len(rows) >= cfg.evaluation.live_min_rows:
        return None
    note = (
        f"{len(rows)} labelled row(s) predicted by v{version} in the last {window['window_days']} day(s): "
        f"{window['min_rows']} are needed to measure it"
    )
    return not_measured(version, note, **window)


def _top(table: dict[str, Any]) -> list[str]:
    return [row["feature"] for row in table["features"][:TOP_FEATURES]]


def _ranks(live: dict[str, Any], stored: dict[str, Any]) -> list[dict[str, Any]]:
    """The top features of either ranking, in the live order, with both ranks: what moved, in a few rows."""
    evaluated = {row["feature"]: row for row in stored["features"]}
    keep = {row["feature"] for table in (live, stored) for row in table["features"][:RECORDED_FEATURES]}
    return [
        {
            "feature": row["feature"],
            "mean": row["mean"],
            "rank": row["rank"],
            "evaluated_mean": evaluated.get(row["feature"], {}).get("mean"),
            "evaluated_rank": evaluated.get(row["feature"], {}).get("rank"),
        }
        for row in live["features"]
        if row["feature"] in keep
    ]


def attribution_of(
    model: Any, rows: pd.DataFrame, stored: dict[str, Any], cfg: ModelConfig, *, version: str, days: list[str]
) -> dict[str, Any]:
    """The champion's importance on its labelled window `rows` against its evaluation's `stored` table, judged.

    `attribution_drift` is nDCG below `evaluation.attribution_drift_threshold`; `reason` words it for
    the policy. Too few rows, labels the model cannot be measured on, or an undefined metric or
    nDCG give a result that is not measured, with its `note`.
    """
    from driftwatch.importance import permutation_importance_table, ranking_ndcg

    if (short := too_few(cfg, rows, days, version)) is not None:
        return short
    ev, window = cfg.evaluation, _window(cfg, rows, days)
    classes = list(model.classes_) if hasattr(model, "classes_") else None
    problems = labels.live_label_problems(rows[cfg.dataset.target.name], cfg, classes)
    if problems:
        return not_measured(version, "; ".join(problems), **window)
    live = permutation_importance_table(
        model, rows, cfg, max_samples=ev.importance_max_samples, seed=cfg.training.seed, repeats=ev.importance_repeats
    )
    if not live["features"]:
        return not_measured(version, f"importance is undefined on these rows: {live.get('reason')}", **window)
    ndcg = ranking_ndcg(stored, live)
    if ndcg is None:
        return not_measured(version, "nDCG is undefined: no feature of the evaluation's ranking is above 0", **window)
    drift = ndcg < ev.attribution_drift_threshold
    result = {
        "measured": True,
        "model_version": version,
        "metric": live["metric"],
        "ndcg": round(ndcg, 4),
        "threshold": ev.attribution_drift_threshold,
        "attribution_drift": drift,
        **window,
        "sampled_rows": live["rows"],
        "top_features": _top(live),
        "evaluated_top_features": _top(stored),
        "features": _ranks(live, stored),
        "reason": "",
        "note": "",
    }
    if drift:
        result["reason"] = (
            f"attribution drift: v{version}'s permutation importance on {len(rows)} labelled rows "
            f"({window['since']}..{window['until']}) ranks the features unlike its evaluation (nDCG {ndcg:.2f} < "
            f"{ev.attribution_drift_threshold}): now {', '.join(result['top_features'])}; evaluated "
            f"{', '.join(result['evaluated_top_features'])}"
        )
    return result


def measure(client: S3Client, cfg: ModelConfig, tracking_uri: str, batch_date: str) -> dict[str, Any]:
    """The champion's attribution over the live window; the cheap reasons not to measure are checked first."""
    from driftwatch import registry

    name = cfg.registry.registered_model
    champion = registry.champion(tracking_uri, name)
    if champion is None:
        return not_measured(None, "no champion yet: the retrain DAG bootstraps one")
    version = str(champion["version"])
    try:
        stored = registry.evaluated_importance(tracking_uri, name, version)
    except registry.RegistryError as err:  # an unreadable table: reported, not retried
        return not_measured(version, str(err))
    problem = stored_problem(stored, version, cfg)
    if problem is not None or stored is None:  # the second for the type checker: no table is a problem
        return not_measured(version, problem or "no stored importance")
    rows, days = window_rows(client, cfg, batch_date, version)
    # Before the model is loaded: most days of a new champion end here.
    if (short := too_few(cfg, rows, days, version)) is not None:
        return short
    model = registry.load_model(tracking_uri, f"models:/{name}/{version}")
    return attribution_of(model, rows, stored, cfg, version=version, days=days)


def attribution_step(client: S3Client, cfg: ModelConfig, tracking_uri: str, batch_date: str) -> dict[str, Any]:
    """Measure the champion's attribution drift and record it as the batch's `attribution` (one write)."""
    started = time.perf_counter()
    result = measure(client, cfg, tracking_uri, batch_date)
    outcome = {"done": True, "measured": result["measured"], "attribution_drift": result["attribution_drift"]}
    # As a step: a success after a failed try (a cleared task) replaces the failure its callback recorded.
    # The timing stays out of the record, so that a rerun of the same batch leaves the record as it was.
    history.record_step(client, cfg, batch_date, STEP, outcome, fields={"attribution": result})
    return {**result, "seconds": round(time.perf_counter() - started, 2)}


def attribution_outcome(found: dict[str, Any] | None) -> dict[str, Any]:
    """What the attribution task returned, or, when it failed or never ran, a result without a verdict."""
    return found if found is not None else {**not_measured(None, FAILED), "failed": True}
