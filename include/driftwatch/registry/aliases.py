"""Champion and challenger aliases: promote (compare-and-set), reject, roll back, and history.

Also the evaluation record a version carries and the read-side summaries of every version.
"""

from __future__ import annotations

import json
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftwatch.registry.common import (
    CHALLENGER,
    CHAMPION,
    EVALUATED_TAG,
    IMPORTANCE_ARTIFACT,
    RegistryError,
    _client,
    _error_code,
    _get_version,
    _quoted,
)
from driftwatch.registry.store import _download_verified

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

HISTORY_TAG = "champion_history"
HISTORY_LIMIT = 100  # registered-model tag values are capped at 100 kB by MLflow
# MLflow metric names allow letters, digits, "_", "-", "." and spaces (and "/" and ":", left out
# here so a feature name can never read as a path).
_METRIC_UNSAFE = re.compile(r"[^\w.\- ]")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _alias(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None (also when the model is not registered yet)."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as err:
        if _error_code(err) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    # The SQL store returns alias targets as ints, the REST store as strings.
    version = aliases.get(alias)
    return None if version is None else str(version)


def _delete_alias_if(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Remove an alias only while it still points at `version`."""
    if _alias(client, name, alias) == str(version):
        client.delete_registered_model_alias(name, alias)


def _delete_tags(client: MlflowClient, mv: ModelVersion, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in mv.tags:
            client.delete_model_version_tag(mv.name, mv.version, key)


def _is_rejected(mv: ModelVersion) -> bool:
    return mv.tags.get("rejected") == "true"


# --- champion, challenger and history ---------------------------------------------------


def champion(tracking_uri: str, name: str, *, registry_uri: str | None = None) -> dict[str, Any] | None:
    """The version behind the `champion` alias with its tags and its run's metrics, or None."""
    client = _client(tracking_uri, registry_uri)
    version = _alias(client, name, CHAMPION)
    if version is None:
        return None
    mv = client.get_model_version(name, version)
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "model_uri": f"models:/{name}/{mv.version}",
        "tags": dict(mv.tags),
        "metrics": dict(metrics),
    }


def champion_history(tracking_uri: str, name: str, *, registry_uri: str | None = None) -> list[dict[str, Any]]:
    """Every champion change recorded on the registered model, oldest first."""
    return _history(_client(tracking_uri, registry_uri), name)


def _history(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    return json.loads(raw) if raw else []


def _append_history(client: MlflowClient, name: str, entry: dict[str, Any]) -> None:
    history = [*_history(client, name), entry][-HISTORY_LIMIT:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history, separators=(",", ":")))


def _previous_champion(history: list[dict[str, Any]], current: str | None) -> str | None:
    """The champion before `current`, skipping champions that were already rolled back from.

    Replays the history as a stack: a promotion pushes; a rollback unwinds to its target (or
    pushes it when it was never champion), so rolling back twice walks further back instead
    of flip-flopping between the last two versions.
    """
    stack: list[str] = []
    for entry in history:
        version = str(entry["version"])
        if entry.get("action") == "rollback" and version in stack:
            del stack[stack.index(version) + 1 :]
        else:
            stack.append(version)
    if current is not None and stack and stack[-1] == current:
        stack.pop()
    return stack[-1] if stack else None


def mark_challenger(tracking_uri: str, name: str, version: str, *, registry_uri: str | None = None) -> None:
    """Point the `challenger` alias at the version under evaluation."""
    client = _client(tracking_uri, registry_uri)
    mv = _get_version(client, name, version)
    if _is_rejected(mv):
        raise RegistryError(f"model {name!r} version {version} was rejected; it cannot be the challenger")
    client.set_registered_model_alias(name, CHALLENGER, str(mv.version))


def promote(
    tracking_uri: str,
    name: str,
    version: str,
    *,
    expected_champion: str | None,
    reason: str,
    actor: str,
    registry_uri: str | None = None,
) -> dict[str, Any]:
    """Make `version` the champion if the champion is still the one it was evaluated against.

    A compare-and-set on the alias: when another promotion happened since evaluation, this
    refuses with {promoted: False, reason} instead of overwriting the newer champion. MLflow
    has no atomic alias update, so the check narrows the race but cannot close it; promotions
    of one model should still be serialized (e.g. an Airflow pool of size 1).
    """
    client = _client(tracking_uri, registry_uri)
    version = str(version)
    mv = _get_version(client, name, version)
    if _is_rejected(mv):
        raise RegistryError(f"model {name!r} version {version} was rejected; refusing to promote it")
    # Verify before re-reading the champion: the download is the slow part, and the re-read
    # should sit as close to the alias update as possible.
    with tempfile.TemporaryDirectory(prefix="driftwatch-verify-") as tmp:
        _download_verified(client, mv, Path(tmp), tracking_uri)

    current = _alias(client, name, CHAMPION)
    history = _history(client, name)
    if current == version and history and str(history[-1].get("version")) == version:
        # A retried task whose first attempt already promoted: report success, change nothing.
        return {"promoted": True, "already_champion": True, "version": version, "previous_champion": None}
    expected = None if expected_champion is None else str(expected_champion)
    # An earlier attempt moved the alias, then lost the server before its bookkeeping (the history
    # entry is written last): finish that promotion instead of reporting it done.
    resumed = current == version
    if current != expected and not resumed:
        return {
            "promoted": False,
            "version": version,
            "champion": current,
            "reason": f"champion changed from {expected or 'none'} to {current or 'none'} since evaluation",
        }
    previous = expected if resumed else current

    at = _now()
    if not resumed:
        client.set_registered_model_alias(name, CHAMPION, version)
    for key, value in {
        "promoted_at": at,
        "promoted_by": actor,
        "promotion_reason": reason,
        "previous_champion": previous or "none",
    }.items():
        client.set_model_version_tag(name, version, key, value)
    _delete_tags(client, mv, ("retired_at", "replaced_by"))
    if previous is not None:
        client.set_model_version_tag(name, previous, "retired_at", at)
        client.set_model_version_tag(name, previous, "replaced_by", version)
    _delete_alias_if(client, name, CHALLENGER, version)
    _append_history(
        client,
        name,
        {"action": "promote", "version": version, "previous": previous, "at": at, "by": actor, "reason": reason},
    )
    return {"promoted": True, "version": version, "previous_champion": previous, "promoted_at": at}


def reject(tracking_uri: str, name: str, version: str, reasons: list[str], *, registry_uri: str | None = None) -> None:
    """Mark a challenger as rejected by the gate, with the reasons, and drop its challenger alias."""
    client = _client(tracking_uri, registry_uri)
    version = str(version)
    _get_version(client, name, version)
    if _alias(client, name, CHAMPION) == version:
        raise RegistryError(f"model {name!r} version {version} is the champion; roll back before rejecting it")
    client.set_model_version_tag(name, version, "rejected", "true")
    client.set_model_version_tag(name, version, "rejection_reasons", json.dumps(list(reasons)))
    client.set_model_version_tag(name, version, "rejected_at", _now())
    _delete_alias_if(client, name, CHALLENGER, version)


def retire_challenger(
    tracking_uri: str,
    name: str,
    version: str,
    *,
    replaced_by: str | None,
    reason: str,
    registry_uri: str | None = None,
) -> None:
    """End a challenger's shadow without a verdict on it (replaced, or its champion changed)."""
    client = _client(tracking_uri, registry_uri)
    version = str(version)
    _get_version(client, name, version)
    client.set_model_version_tag(name, version, "retired_at", _now())
    client.set_model_version_tag(name, version, "replaced_by", replaced_by or "none")
    client.set_model_version_tag(name, version, "retirement_reason", reason[:500])
    _delete_alias_if(client, name, CHALLENGER, version)


def tag_version(
    tracking_uri: str, name: str, version: str, tags: dict[str, Any], *, registry_uri: str | None = None
) -> None:
    """Set tags on a model version (values as text)."""
    client = _client(tracking_uri, registry_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def rollback(
    tracking_uri: str,
    name: str,
    *,
    to_version: str | None = None,
    actor: str,
    reason: str,
    registry_uri: str | None = None,
) -> dict[str, Any]:
    """Move the champion alias back: to `to_version`, or by default to the previous champion.

    Refuses (RegistryError) unknown or rejected versions and the current champion; a version
    whose files no longer match their hash raises TamperedArtifactError.
    """
    client = _client(tracking_uri, registry_uri)
    current = _alias(client, name, CHAMPION)
    history = _history(client, name)
    target = str(to_version) if to_version is not None else _previous_champion(history, current)
    if target is None:
        raise RegistryError(f"model {name!r} has no previous champion to roll back to (champion: {current})")
    mv = _get_version(client, name, target)
    if target == current:
        raise RegistryError(f"model {name!r} version {target} is already the champion")
    if _is_rejected(mv):
        raise RegistryError(
            f"model {name!r} version {target} was rejected ({mv.tags.get('rejection_reasons', 'no reasons')}); "
            "refusing to roll back to it"
        )
    with tempfile.TemporaryDirectory(prefix="driftwatch-verify-") as tmp:
        _download_verified(client, mv, Path(tmp), tracking_uri)

    at = _now()
    client.set_registered_model_alias(name, CHAMPION, target)
    marks = {"rolled_back_at": at, "rolled_back_by": actor, "rollback_reason": reason}
    promoted = {
        "promoted_at": at,
        "promoted_by": actor,
        "promotion_reason": f"rollback: {reason}",
        "previous_champion": current or "none",
    }
    for key, value in {**marks, **promoted}.items():
        client.set_model_version_tag(name, target, key, value)
    _delete_tags(client, mv, ("retired_at", "replaced_by"))
    if current is not None:
        for key, value in {**marks, "retired_at": at, "replaced_by": target}.items():
            client.set_model_version_tag(name, current, key, value)
    _append_history(
        client,
        name,
        {"action": "rollback", "version": target, "previous": current, "at": at, "by": actor, "reason": reason},
    )
    return {"rolled_back": True, "from_version": current, "to_version": target, "rolled_back_at": at}


# --- evaluation records and read-side summaries ------------------------------------------


def record_evaluation(
    tracking_uri: str,
    name: str,
    version: str,
    run_id: str,
    *,
    primary: float | None,
    report_html: str,
    report_json: dict[str, Any],
    importance: dict[str, Any] | None = None,
    registry_uri: str | None = None,
) -> None:
    """Attach the evaluation report to the candidate's run and its primary metric to the version.

    `importance` (the candidate's `permutation_importance_table`) goes to the run as
    `evaluation/importance.json` and one `importance.<feature>` metric per feature.

    The version tag is what live monitoring compares against once this version is champion. A
    primary metric the holdout cannot define (one class only) is recorded as unavailable: the gate
    has rejected such a challenger already, and the run must end in that rejection, not a crash.
    """
    client = _client(tracking_uri, registry_uri)
    _get_version(client, name, version)
    client.log_text(run_id, report_html, "evaluation/evaluation.html")
    client.log_text(
        run_id, json.dumps(report_json, indent=2, sort_keys=True, default=str), "evaluation/evaluation.json"
    )
    if importance is not None:
        _log_importance(client, run_id, importance)
    if primary is None:
        client.set_model_version_tag(name, str(version), EVALUATED_TAG, "unavailable")
    else:
        client.log_metric(run_id, "evaluation.primary", float(primary))
        client.set_model_version_tag(name, str(version), EVALUATED_TAG, str(float(primary)))
    client.set_model_version_tag(name, str(version), "evaluated_at", _now())


def importance_metrics(importance: dict[str, Any]) -> dict[str, float]:
    """`importance.<feature>` run metrics: the mean importances, names reduced to what MLflow accepts."""
    return {
        "importance." + _METRIC_UNSAFE.sub("_", row["feature"]): float(row["mean"])
        for row in importance.get("features") or []
        if row.get("mean") is not None
    }


def _log_importance(client: MlflowClient, run_id: str, importance: dict[str, Any]) -> None:
    from mlflow.entities import Metric

    client.log_text(run_id, json.dumps(importance, indent=2, sort_keys=True), IMPORTANCE_ARTIFACT)
    stamp = int(datetime.now(UTC).timestamp() * 1000)
    metrics = [Metric(key, value, stamp, 0) for key, value in importance_metrics(importance).items()]
    if metrics:
        # One request for all features, not one per feature.
        client.log_batch(run_id, metrics=metrics)


def _status(mv: ModelVersion, aliases: list[str]) -> tuple[str, str]:
    """A version's state in the promotion lifecycle and the human reason behind it."""
    tags = mv.tags
    if CHAMPION in aliases:
        by = f" (by {tags['promoted_by']} at {tags.get('promoted_at', '?')})" if "promoted_by" in tags else ""
        return "champion", f"{tags.get('promotion_reason', '')}{by}"
    if _is_rejected(mv):
        return "rejected", "; ".join(json.loads(tags.get("rejection_reasons") or "[]"))
    if "retired_at" in tags:
        rolled = f"; rolled back: {tags['rollback_reason']}" if "rollback_reason" in tags else ""
        if "retirement_reason" in tags:
            return "retired", f"{tags['retirement_reason']} at {tags['retired_at']}"
        return "retired", f"replaced by v{tags.get('replaced_by', '?')} at {tags['retired_at']}{rolled}"
    evaluated = f"evaluated {tags[EVALUATED_TAG]}" if EVALUATED_TAG in tags else "not evaluated yet"
    if CHALLENGER in aliases and "shadow_started_at" in tags:
        return "shadow", f"{evaluated}; in shadow since {tags['shadow_started_at']}"
    return ("challenger" if CHALLENGER in aliases else "registered"), evaluated


def version_summaries(tracking_uri: str, name: str, *, registry_uri: str | None = None) -> list[dict[str, Any]]:
    """Every version of a model, oldest first, with aliases, lifecycle status and its reason."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri, registry_uri)
    try:
        alias_map = client.get_registered_model(name).aliases
    except MlflowException as err:
        if _error_code(err) == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    summaries = []
    for mv in sorted(client.search_model_versions(f"name = {_quoted(name)}"), key=lambda v: int(v.version)):
        # Versions returned by search carry no aliases on the SQL store: take them from the model.
        aliases = sorted(a for a, v in alias_map.items() if str(v) == str(mv.version))
        status, detail = _status(mv, aliases)
        summaries.append(
            {
                "version": str(mv.version),
                "aliases": aliases,
                "status": status,
                "detail": detail,
                "run_id": mv.run_id,
                EVALUATED_TAG: mv.tags.get(EVALUATED_TAG),
            }
        )
    return summaries
