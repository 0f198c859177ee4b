"""The retrain pipeline's steps: assemble data, train and register, evaluate, promote or reject.

Like `pipeline`, each function is one Airflow task: inputs and outputs live in object storage
and the MLflow registry, and only URIs, versions and small metric dicts are returned.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd

from driftwatch import history, ingest, labels, layout, storage
from driftwatch.artifacts import ArtifactSet
from driftwatch.config import ModelConfig
from driftwatch.errors import NotEnoughData, ReferenceMismatch
from driftwatch.storage import S3Client


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
    artifacts = ArtifactSet(client, cfg.storage.bucket, layout.training_prefix(cfg, plan["run_key"]))
    result = {
        "mode": "bootstrap" if bootstrap else "retrain",
        "as_of": as_of,
        "train": _store_frame(artifacts, "train.parquet", train),
        "holdout": _store_frame(artifacts, "holdout.parquet", holdout),
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


def as_of_date(requested: str | None, events: list[dict[str, Any]]) -> str:
    """The last batch date a retraining may learn from: the Param, else the latest triggering batch."""
    if requested:
        return layout.batch_date_str(requested)
    dates = [e["batch_date"] for e in events if e.get("batch_date")]
    return max(dates) if dates else (date.today() - timedelta(days=1)).isoformat()


def plan_run(
    params: dict[str, Any], run_id: str, events: list[dict[str, Any]], champion: dict[str, Any] | None
) -> dict[str, Any]:
    """Why a retrain run trains, from which data, and against which champion.

    `events` are the extras of the Asset events that triggered the run (none for a manual run).
    """
    reasons = [e.get("reason", "") for e in events if e.get("reason")] or [params["reason"]]
    return {
        "run_key": run_id,
        "bootstrap": champion is None,
        "champion": champion["version"] if champion else None,
        "reason": "; ".join(dict.fromkeys(reasons)),
        "as_of": as_of_date(params.get("as_of"), events),
        "window_days": params["window_days"],
        "promote": params["promote"],
        "require_approval": params["require_approval"],
        "drift_reports": [e["drift_report"] for e in events if e.get("drift_report")],
    }


def promote_reference(client: S3Client, cfg: ModelConfig, train_uri: str, version: str) -> str:
    """Make a new champion's training data the drift reference of the monitor DAG."""
    pointer = {"uri": train_uri, "model_version": version}
    return storage.write_json(client, cfg.storage.bucket, layout.reference_pointer_key(cfg), pointer)


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
    lineage = {
        "reason": plan["reason"],
        "mode": data["mode"],
        "as_of": data["as_of"],
        "airflow_run_id": plan["run_key"],
        "champion_at_training": plan["champion"] or "none",
        "drift_reports": plan["drift_reports"],
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
        metrics=metrics,
        lineage=lineage,
        input_example=training.feature_frame(train.head(5), cfg),
        artifacts=_drift_decisions(run.client, plan["drift_reports"]),
        idempotency_key=plan["run_key"],
    )
    registry.mark_challenger(run.tracking_uri, cfg.registry.registered_model, registered["version"])
    return {**registered, "fit": metrics}


def _summary(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    return {"primary": evaluation["primary"], "metrics": evaluation.get("metrics", {}), "rows": evaluation.get("n")}


def evaluate_candidate(run: RetrainRun, candidate: dict[str, Any]) -> dict[str, Any]:
    """Score champion and challenger on the same holdout, apply the gate, write the report."""
    from driftwatch import evaluation, registry
    from driftwatch.reports.evaluation import render_evaluation_html

    client, cfg, tracking_uri, plan, data = run.client, run.cfg, run.tracking_uri, run.plan, run.data
    holdout = load_frame(client, data["holdout"])
    name = cfg.registry.registered_model
    challenger = evaluation.evaluate(registry.load_model(tracking_uri, candidate["model_uri"]), holdout, cfg)
    champion = None
    if plan["champion"]:
        champion_model = registry.load_model(tracking_uri, f"models:/{name}/{plan['champion']}")
        champion = evaluation.evaluate(champion_model, holdout, cfg)
    decision = evaluation.gate(challenger, champion, cfg)
    html = render_evaluation_html(
        challenger,
        champion,
        decision,
        model=cfg.name,
        challenger_version=candidate["version"],
        champion_version=plan["champion"],
        split=data.get("split"),
    )
    report = {
        "challenger": challenger,
        "champion": champion,
        "gate": decision.to_dict(),
        "plan": plan,
        "split": data.get("split", {}),
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
    )
    return {
        "passed": decision.passed,
        "reasons": decision.reasons,
        "checks": [vars(c) for c in decision.checks],
        "challenger": _summary(challenger),
        "champion": _summary(champion),
        "champion_version": plan["champion"],
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
    """Promote (compare-and-set) a challenger that passed everything, else tag it rejected."""
    from driftwatch import references, registry

    client, cfg, tracking_uri, plan, data = run.client, run.cfg, run.tracking_uri, run.plan, run.data
    name, version = cfg.registry.registered_model, candidate["version"]
    reasons = [*evaluation["reasons"], *smoke.get("problems", [])]
    if not plan["promote"]:
        return {"action": "dry run", "version": version, "reasons": reasons or ["promote was false: nothing changed"]}
    if reasons:
        registry.reject(tracking_uri, name, version, reasons)
        return {"action": "rejected", "version": version, "reasons": reasons}
    # The new reference's drift profile exists before the alias moves: the first monitor run
    # after a promotion never pays for it, and one that cannot be profiled fails before anything moved.
    references.ensure_profile(client, cfg, data["train"]["uri"])
    result = registry.promote(
        tracking_uri, name, version, expected_champion=plan["champion"], reason=plan["reason"], actor=actor
    )
    if not result.get("promoted"):
        return {
            "action": "not promoted",
            "version": version,
            "reasons": [result.get("reason", "compare-and-set refused")],
        }
    promote_reference(client, cfg, data["train"]["uri"], version)
    return {"action": "promoted", "version": version, "previous_champion": plan["champion"], "reasons": []}


def reference_in_force(client: S3Client, cfg: ModelConfig, tracking_uri: str) -> dict[str, Any]:
    """Make sure the drift reference is the champion's training data; repair the pointer when it is not.

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
    train_uri = registry.training_data_uri(tracking_uri, name, champion["version"])
    if not train_uri:
        raise ReferenceMismatch(
            f"the drift reference of {cfg.name} names version {pointer.get('model_version')!r} but the champion is "
            f"v{champion['version']}, whose training data the registry does not record: roll back or promote "
            "through the rollback or retrain DAG, which writes the reference with the alias"
        )
    promote_reference(client, cfg, train_uri, champion["version"])
    return {"checked": True, "repaired": True, "from": pointer.get("model_version"), "to": champion["version"]}


def rollback_champion(
    client: S3Client, cfg: ModelConfig, tracking_uri: str, *, to_version: str | None, actor: str, reason: str
) -> dict[str, Any]:
    """Move the champion alias back and make that version's training data the drift reference."""
    from datetime import UTC, datetime

    from driftwatch import registry

    result = registry.rollback(
        tracking_uri, cfg.registry.registered_model, to_version=to_version, actor=actor, reason=reason
    )
    train_uri = registry.training_data_uri(tracking_uri, cfg.registry.registered_model, result["to_version"])
    if train_uri:
        promote_reference(client, cfg, train_uri, str(result["to_version"]))
    return {**result, "actor": actor, "reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds")}
