"""The retrain pipeline's steps: assemble data, train and register, evaluate, promote or reject.

Like `pipeline`, each function is one Airflow task: inputs and outputs live in object storage
and the MLflow registry, and only URIs, versions and small metric dicts are returned.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from driftwatch import history, ingest, labels, layout, storage
from driftwatch.artifacts import ArtifactSet, read_manifest
from driftwatch.config import ModelConfig
from driftwatch.errors import NotEnoughData, PermanentError, ReferenceMismatch

# The status functions are part of this module's API too (the DAG and the monitor call them here).
from driftwatch.retrain_status import read_retrain_status as read_retrain_status
from driftwatch.retrain_status import write_finished_status as write_finished_status
from driftwatch.retrain_status import write_running_status
from driftwatch.storage import S3Client

# Version tags with the first and last batch date a version was trained on (absent: random split).
WINDOW_TAGS = ("training_window_start", "training_window_end")


class AsOfBeforeChampion(PermanentError, ValueError):
    """The requested as_of would put holdout days inside the champion's training window."""


@dataclass(frozen=True)
class RetrainRun:
    """What the retrain steps after assembly work on: the model's S3 client, config and MLflow URI,
    and the two records every later task receives from Airflow, the plan (`plan_run`) and the
    stored training and holdout sets (`assemble_data`)."""

    client: S3Client
    cfg: ModelConfig
    tracking_uri: str
    plan: dict[str, Any]
    data: dict[str, Any]


def labelled_batches(
    client: S3Client, cfg: ModelConfig, as_of: str, window_days: int
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The most recent validated batches up to `as_of` that have labels, joined by id.

    Returns the labelled frames by date and the dates skipped for lack of labels.
    """
    records = [r for r in history.read_history(client, cfg) if r["status"] == "passed" and r["batch_date"] <= as_of]
    frames: dict[str, pd.DataFrame] = {}
    skipped: list[str] = []
    for record in sorted(records, key=lambda r: r["batch_date"], reverse=True):
        day = record["batch_date"]
        found = labels.read_labels(client, cfg, day)
        if found is None:
            skipped.append(day)
            continue
        staged = ingest.read_table(client, cfg.storage.bucket, layout.staged_key(cfg, day))
        frames[day], _ = labels.join_labels(staged, found, cfg)
        if len(frames) == window_days:
            break
    return frames, skipped


def _store_frame(artifacts: ArtifactSet, name: str, frame: pd.DataFrame) -> dict[str, Any]:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    artifacts.put(name, buffer.getvalue(), "application/vnd.apache.parquet")
    entry = artifacts.entries[name]
    return {"uri": entry["uri"], "sha256": entry["sha256"], "rows": len(frame)}


def _store_reference(
    artifacts: ArtifactSet, cfg: ModelConfig, run_key: str, train: pd.DataFrame, holdout: pd.DataFrame
) -> dict[str, Any]:
    """Training plus holdout rows: what the challenger represents, so its drift reference if promoted.

    The training split alone would leave out the newest days, and batches like them would keep
    drifting against the new champion's reference and request retraining again.
    """
    key = layout.training_reference_key(cfg, run_key)
    data = ingest.to_parquet_bytes(pd.concat([train, holdout], ignore_index=True))
    storage.write_bytes(artifacts.client, artifacts.bucket, key, data, ingest.PARQUET_TYPE)
    sha256 = storage.sha256_hex(data)
    artifacts.add_existing(key.removeprefix(artifacts.prefix), key, len(data), sha256)
    return {"uri": storage.s3_uri(artifacts.bucket, key), "sha256": sha256, "rows": len(train) + len(holdout)}


def assemble_data(client: S3Client, cfg: ModelConfig, plan: dict[str, Any]) -> dict[str, Any]:
    """Build the training set and the holdout (time-based, or random for an undated reference); store both.

    From the plan (`plan_run`): its run_key, bootstrap, as_of and window_days (empty: the config's).
    """
    from driftwatch import references, training

    bootstrap, as_of = plan["bootstrap"], plan["as_of"]
    window = plan.get("window_days") or cfg.training.window_days
    skipped: list[str] = []
    if bootstrap:
        reference, reference_uri = references.load_reference_frame(client, cfg)
        sources = [reference_uri]
        train, holdout, split = training.split_reference(reference, cfg)
    else:
        frames, skipped = labelled_batches(client, cfg, as_of, window)
        sources = [storage.s3_uri(cfg.storage.bucket, layout.staged_key(cfg, d)) for d in sorted(frames)]
        if len(frames) <= cfg.training.holdout_days:
            raise NotEnoughData(
                f"{len(frames)} validated, labelled batch(es) up to {as_of} (unlabelled: {skipped or 'none'}); "
                f"need more than training.holdout_days={cfg.training.holdout_days}: wait for labels, or lower it"
            )
        windowed = cfg.model_copy(update={"training": cfg.training.model_copy(update={"window_days": window})})
        train, holdout, split = training.split_by_time(frames, windowed)
        if cfg.training.include_reference:
            reference, reference_uri = references.load_reference_frame(client, cfg)
            train = pd.concat([reference, train], ignore_index=True)
            sources.append(reference_uri)
    check_holdout(split, plan.get("champion_window"), plan.get("champion"), as_of)
    artifacts = ArtifactSet(client, cfg.storage.bucket, layout.training_prefix(cfg, plan["run_key"]))
    result = {
        "mode": "bootstrap" if bootstrap else "retrain",
        "as_of": as_of,
        "train": _store_frame(artifacts, "train.parquet", train),
        "holdout": _store_frame(artifacts, "holdout.parquet", holdout),
        "reference": _store_reference(artifacts, cfg, plan["run_key"], train, holdout),
        "split": split,
        "sources": sources,
        "skipped_unlabelled": sorted(skipped),
    }
    artifacts.commit("assembled", **{k: result[k] for k in ("mode", "as_of", "split", "sources")})
    return result


def load_frame(client: S3Client, entry: dict[str, Any]) -> pd.DataFrame:
    """Read a stored training or holdout frame, refusing it if its bytes changed since assembly."""
    bucket, key = storage.parse_s3_uri(entry["uri"])
    data = storage.read_bytes(client, bucket, key)
    if storage.sha256_hex(data) != entry["sha256"]:
        raise ValueError(f"{entry['uri']} changed since it was assembled (sha256 mismatch)")
    return pd.read_parquet(io.BytesIO(data))


def run_day(run_date: date | datetime | str) -> date:
    """The calendar day (UTC) of a run's logical date, data interval end or run_after."""
    if isinstance(run_date, datetime):
        return (run_date.astimezone(UTC) if run_date.tzinfo else run_date).date()
    return date.fromisoformat(layout.batch_date_str(run_date))


def as_of_date(requested: str | None, events: list[dict[str, Any]], run_date: date | datetime | str) -> str:
    """The last batch date a retraining may learn from: the Param, else the latest triggering batch,
    else the day before the run's date (the last whole day of batches).

    The run's date, not the worker's clock: a cleared or late-starting run learns from the same
    batches as its first attempt, in whatever timezone the worker runs.
    """
    if requested:
        return layout.batch_date_str(requested)
    dates = [e["batch_date"] for e in events if e.get("batch_date")]
    return max(dates) if dates else (run_day(run_date) - timedelta(days=1)).isoformat()


def window_tags(split: dict[str, Any]) -> dict[str, str]:
    """The version tags of a time split's training window; none for a random split (no dates)."""
    dates = split.get("train_dates") or []
    return dict(zip(WINDOW_TAGS, (min(dates), max(dates)), strict=True)) if dates else {}


def _window_of(train_dates: list[str]) -> dict[str, str] | None:
    return {"start": min(train_dates), "end": max(train_dates)} if train_dates else None


def champion_window(client: S3Client, cfg: ModelConfig, tracking_uri: str, champion: dict[str, Any]) -> dict | None:
    """The first and last batch date the champion was trained on; None when it has no dated window.

    From its version tags; for versions registered before those, from the manifest its training
    data was assembled with (the split lists the dates), found through the run's lineage.
    """
    from driftwatch import registry

    tags = champion.get("tags") or {}
    if all(tags.get(t) for t in WINDOW_TAGS):
        return {"start": tags[WINDOW_TAGS[0]], "end": tags[WINDOW_TAGS[1]]}
    train_uri = registry.training_data_uri(tracking_uri, cfg.registry.registered_model, champion["version"])
    if not train_uri:
        return None
    bucket, key = storage.parse_s3_uri(train_uri)
    manifest = read_manifest(client, bucket, key.rsplit("/", 1)[0] + "/") or {}
    return _window_of((manifest.get("split") or {}).get("train_dates") or [])


def earliest_as_of(window: dict[str, str], cfg: ModelConfig) -> str:
    """The first as_of whose holdout of daily batches starts after the champion's training window."""
    return (date.fromisoformat(window["end"]) + timedelta(days=cfg.training.holdout_days)).isoformat()


def _too_early(as_of: str, window: dict[str, str], champion: str | None, why: str, fix: str) -> AsOfBeforeChampion:
    return AsOfBeforeChampion(
        f"as_of {as_of} is too early for a fair comparison: champion v{champion} was trained on batches "
        f"{window['start']} to {window['end']}, and {why}, so the champion would be judged on its own training "
        f"data; use as_of >= {fix}"
    )


def check_as_of(as_of: str, window: dict[str, str] | None, champion: str | None, cfg: ModelConfig) -> None:
    """Refuse an as_of whose holdout days would fall inside the champion's training window."""
    if window is None:
        return
    earliest = earliest_as_of(window, cfg)
    if as_of < earliest:
        why = f"the {cfg.training.holdout_days}-day holdout up to {as_of} would hold days it learned from"
        raise _too_early(as_of, window, champion, why, f"{earliest} (the triggering batch, or leave as_of empty)")


def check_holdout(split: dict[str, Any], window: dict[str, str] | None, champion: str | None, as_of: str) -> None:
    """The same rule on the holdout actually assembled: unlabelled or missing days reach further back."""
    holdout_dates = split.get("holdout_dates") or []
    if window is None or not holdout_dates or min(holdout_dates) > window["end"]:
        return
    why = f"its labelled holdout days are {', '.join(holdout_dates)}"
    raise _too_early(as_of, window, champion, why, "a date whose latest labelled batches come after " + window["end"])


def plan_run(
    params: dict[str, Any],
    run_id: str,
    events: list[dict[str, Any]],
    champion: dict[str, Any] | None,
    *,
    run_date: date | datetime | str,
    champion_window: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Why a retrain run trains, from which data, and against which champion.

    `events` are the extras of the Asset events that triggered the run (none for a manual run);
    `run_date` is the run's logical date (or data interval end); `champion_window` the champion's
    training dates, which assembly checks the holdout against.
    """
    reasons = [e.get("reason", "") for e in events if e.get("reason")] or [params["reason"]]
    return {
        "run_key": run_id,
        "bootstrap": champion is None,
        "champion": champion["version"] if champion else None,
        "champion_window": champion_window,
        "reason": "; ".join(dict.fromkeys(reasons)),
        "as_of": as_of_date(params.get("as_of"), events, run_date),
        "window_days": params["window_days"],
        "promote": params["promote"],
        "require_approval": params["require_approval"],
        "drift_reports": [e["drift_report"] for e in events if e.get("drift_report")],
    }


def plan(
    client: S3Client,
    cfg: ModelConfig,
    tracking_uri: str,
    params: dict[str, Any],
    run_id: str,
    events: list[dict[str, Any]],
    *,
    run_date: date | datetime | str,
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """The retrain DAG's first task: record the run as running, then plan it against the champion.

    Refuses (AsOfBeforeChampion, not retried) an as_of whose holdout would reach into the
    champion's training window.
    """
    from driftwatch import registry

    as_of = as_of_date(params.get("as_of"), events, run_date)
    write_running_status(client, cfg, run_id=run_id, as_of=as_of, started_at=started_at)
    champion = registry.champion(tracking_uri, cfg.registry.registered_model)
    window = champion_window(client, cfg, tracking_uri, champion) if champion else None
    planned = plan_run(params, run_id, events, champion, run_date=run_date, champion_window=window)
    check_as_of(planned["as_of"], window, planned["champion"], cfg)
    return planned


def _drift_decisions(client: S3Client, report_uris: list[str]) -> dict[str, bytes]:
    """The small decision JSON next to each triggering drift report, for the MLflow run."""
    found: dict[str, bytes] = {}
    for uri in report_uris:
        bucket, key = storage.parse_s3_uri(uri.rsplit("/", 1)[0] + "/drift_decision.json")
        try:
            found[f"triggering_drift/{key.replace('/', '_')}"] = storage.read_bytes(client, bucket, key)
        except FileNotFoundError:
            continue
    return found


def train_and_register(run: RetrainRun) -> dict[str, Any]:
    """Fit the challenger and register it with its lineage; a rerun returns the same version."""
    from driftwatch import registry, training

    cfg, plan, data = run.cfg, run.plan, run.data
    train = load_frame(run.client, data["train"])
    model, fit = training.train(cfg, train)
    # Fitted before the model is logged, so it goes inside the model's hashed folder.
    estimator = _holdout_estimator(run, model)
    lineage = {
        "reason": plan["reason"],
        "mode": data["mode"],
        "as_of": data["as_of"],
        "airflow_run_id": plan["run_key"],
        "champion_at_training": plan["champion"] or "none",
        "drift_reports": plan["drift_reports"],
        # Older runs' XComs have no reference: their training data stands in, as it did before.
        "reference_uri": (data.get("reference") or data["train"])["uri"],
        "data": [
            {
                "uri": data["train"]["uri"],
                "sha256": data["train"]["sha256"],
                "rows": data["train"]["rows"],
                "role": "training",
            },
            {
                "uri": data["holdout"]["uri"],
                "sha256": data["holdout"]["sha256"],
                "rows": data["holdout"]["rows"],
                "role": "holdout",
            },
        ],
    }
    params = {
        "estimator": cfg.training.estimator,
        "class_weight": cfg.training.class_weight,
        "seed": cfg.training.seed,
        "window_days": plan["window_days"],
        "holdout_days": cfg.training.holdout_days,
        # A random holdout (a reference without timestamps) is said on the run, with its reason.
        "holdout_method": data["split"].get("method", "time"),
        **({"holdout_reason": data["split"]["reason"]} if data["split"].get("reason") else {}),
        **{f"hp.{k}": v for k, v in cfg.training.hyperparameters.items()},
    }
    metrics = {k: v for k, v in fit.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    registered = registry.log_and_register(
        cfg,
        model,
        tracking_uri=run.tracking_uri,
        params=params,
        metrics={**metrics, "estimator": estimator_figures(estimator)},
        lineage=lineage,
        input_example=training.feature_frame(train.head(5), cfg),
        artifacts=_drift_decisions(run.client, plan["drift_reports"]),
        model_files=registry.estimator_file(estimator),
        tags={"estimator.kind": estimator["kind"], **_reason_tag(estimator)},
        version_tags={**window_tags(data["split"]), "estimator_kind": estimator["kind"]},
        idempotency_key=plan["run_key"],
    )
    registry.mark_challenger(run.tracking_uri, cfg.registry.registered_model, registered["version"])
    return {**registered, "fit": metrics, "estimator": estimator["kind"]}


ESTIMATOR_FIGURES = ("ece_raw", "ece_calibrated", "calibrated")


def _holdout_estimator(run: RetrainRun, model: Any) -> dict[str, Any]:
    from driftwatch import evaluation

    return evaluation.holdout_estimator(model, load_frame(run.client, run.data["holdout"]), run.cfg)


def estimator_figures(estimator: dict[str, Any]) -> dict[str, float]:
    """The estimator's calibration figures as run metrics (calibrated as 0/1); none for kind "none"."""
    figures = {k: estimator.get(k) for k in ESTIMATOR_FIGURES}
    return {k: float(v) for k, v in figures.items() if isinstance(v, bool | int | float)}


def _reason_tag(estimator: dict[str, Any]) -> dict[str, str]:
    # MLflow caps tag values at 8000 characters; a reason is a sentence.
    return {"estimator.reason": str(estimator["reason"])[:500]} if estimator.get("reason") else {}


def _summary(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    return {"primary": evaluation["primary"], "metrics": evaluation.get("metrics", {}), "rows": evaluation.get("n")}


def evaluate_candidate(run: RetrainRun, candidate: dict[str, Any]) -> dict[str, Any]:
    """Score champion and challenger on the same holdout, apply the gate, write the report.

    The report also holds both models' permutation importance on that holdout (not gated).
    """
    from driftwatch import evaluation, registry
    from driftwatch.importance import importance_report, importance_summary
    from driftwatch.reports.evaluation import render_evaluation_html

    client, cfg, tracking_uri, plan, data = run.client, run.cfg, run.tracking_uri, run.plan, run.data
    holdout = load_frame(client, data["holdout"])
    name = cfg.registry.registered_model
    challenger_model = registry.load_model(tracking_uri, candidate["model_uri"])
    challenger = evaluation.evaluate(challenger_model, holdout, cfg)
    champion = champion_model = None
    if plan["champion"]:
        champion_model = registry.load_model(tracking_uri, f"models:/{name}/{plan['champion']}")
        champion = evaluation.evaluate(champion_model, holdout, cfg)
    decision = evaluation.gate(challenger, champion, cfg)
    importance = importance_report(challenger_model, champion_model, holdout, cfg)
    html = render_evaluation_html(
        challenger,
        champion,
        decision,
        model=cfg.name,
        challenger_version=candidate["version"],
        champion_version=plan["champion"],
        split=data.get("split"),
        importance=importance,
    )
    report = {
        "challenger": challenger,
        "champion": champion,
        "gate": decision.to_dict(),
        "plan": plan,
        "split": data.get("split", {}),
        "importance": importance,
    }
    artifacts = ArtifactSet(client, cfg.storage.bucket, layout.evaluation_prefix(cfg, plan["run_key"]))
    artifacts.put_text("evaluation.html", html)
    artifacts.put_json("evaluation.json", report)
    artifacts.commit("evaluated", passed=decision.passed, challenger_version=candidate["version"])
    registry.record_evaluation(
        tracking_uri,
        name,
        candidate["version"],
        candidate["run_id"],
        primary=challenger["primary"]["value"],
        report_html=html,
        report_json=report,
        importance=importance["challenger"],
    )
    return {
        "passed": decision.passed,
        "reasons": decision.reasons,
        "checks": [vars(c) for c in decision.checks],
        "challenger": _summary(challenger),
        "champion": _summary(champion),
        "champion_version": plan["champion"],
        "importance": importance_summary(importance),
        "report_uri": artifacts.uri("evaluation.html"),
    }


def smoke_test_candidate(run: RetrainRun, candidate: dict[str, Any]) -> dict[str, Any]:
    """Load the registered version by its models:/ URI in a fresh process and predict a sample."""
    from driftwatch import registry, training

    sample = training.feature_frame(load_frame(run.client, run.data["holdout"]).head(200), run.cfg)
    return registry.smoke_test(
        run.tracking_uri, candidate["model_uri"], sample, max_latency_ms=run.cfg.evaluation.smoke_max_latency_ms
    )


def apply_decision(
    run: RetrainRun, candidate: dict[str, Any], evaluation: dict[str, Any], smoke: dict[str, Any], *, actor: str
) -> dict[str, Any]:
    """Promote (compare-and-set) a challenger that passed everything, else tag it rejected.

    A promoted challenger's training plus holdout rows become the drift reference. With
    `promotion.mode: shadow` (and a champion to compare with) it goes into shadow instead.
    """
    from driftwatch import references, registry, shadow

    client, cfg, tracking_uri, plan, data = run.client, run.cfg, run.tracking_uri, run.plan, run.data
    name, version = cfg.registry.registered_model, candidate["version"]
    reasons = [*evaluation["reasons"], *smoke.get("problems", [])]
    if not plan["promote"]:
        shadow.keep_shadow_alias(client, cfg, tracking_uri)
        return {"action": "dry run", "version": version, "reasons": reasons or ["promote was false: nothing changed"]}
    if reasons:
        registry.reject(tracking_uri, name, version, reasons)
        # A challenger already in shadow stays there: this candidate's registration moved its alias.
        shadow.keep_shadow_alias(client, cfg, tracking_uri)
        return {"action": "rejected", "version": version, "reasons": reasons}
    reference_uri = (data.get("reference") or data["train"])["uri"]
    if cfg.promotion.mode == "shadow" and plan["champion"]:
        return shadow.enter_shadow(
            client, cfg, tracking_uri, version=version, plan=plan, reference_uri=reference_uri, evaluation=evaluation
        )
    # The new reference's drift profile exists before the alias moves: the first monitor run
    # after a promotion never pays for it, and one that cannot be profiled fails before anything moved.
    references.ensure_profile(client, cfg, reference_uri)
    result = registry.promote(
        tracking_uri, name, version, expected_champion=plan["champion"], reason=plan["reason"], actor=actor
    )
    if not result.get("promoted"):
        return {
            "action": "not promoted",
            "version": version,
            "reasons": [result.get("reason", "compare-and-set refused")],
        }
    references.promote_reference(client, cfg, reference_uri, version)
    return {"action": "promoted", "version": version, "previous_champion": plan["champion"], "reasons": []}


def reference_in_force(client: S3Client, cfg: ModelConfig, tracking_uri: str) -> dict[str, Any]:
    """Make sure the drift reference is the champion's data; repair the pointer when it is not.

    A promotion or rollback that failed between moving the alias and writing the pointer would
    otherwise leave the monitor comparing batches with another model's data. Without a champion
    (before the bootstrap) the configured reference is in force and nothing is checked.
    """
    from driftwatch import registry

    name = cfg.registry.registered_model
    champion = registry.champion(tracking_uri, name)
    if champion is None:
        return {"checked": False, "reason": "no champion yet"}
    pointer = storage.read_json(client, cfg.storage.bucket, layout.reference_pointer_key(cfg)) or {}
    if str(pointer.get("model_version")) == champion["version"]:
        return {"checked": True, "repaired": False, "model_version": champion["version"]}
    reference_uri = registry.reference_data_uri(tracking_uri, name, champion["version"])
    if not reference_uri:
        raise ReferenceMismatch(
            f"the drift reference of {cfg.name} names version {pointer.get('model_version')!r} but the champion is "
            f"v{champion['version']}, whose training data the registry does not record: roll back or promote "
            "through the rollback or retrain DAG, which writes the reference with the alias"
        )
    from driftwatch.references import promote_reference

    promote_reference(client, cfg, reference_uri, champion["version"])
    return {"checked": True, "repaired": True, "from": pointer.get("model_version"), "to": champion["version"]}


def rollback_champion(
    client: S3Client, cfg: ModelConfig, tracking_uri: str, *, to_version: str | None, actor: str, reason: str
) -> dict[str, Any]:
    """Move the champion alias back and make that version's data the drift reference."""
    from driftwatch import registry

    result = registry.rollback(
        tracking_uri, cfg.registry.registered_model, to_version=to_version, actor=actor, reason=reason
    )
    reference_uri = registry.reference_data_uri(tracking_uri, cfg.registry.registered_model, result["to_version"])
    if reference_uri:
        from driftwatch.references import promote_reference

        promote_reference(client, cfg, reference_uri, str(result["to_version"]))
    return {**result, "actor": actor, "reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds")}
