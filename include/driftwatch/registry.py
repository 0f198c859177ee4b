"""The MLflow model registry: log, register, promote, reject, roll back and verify models.

Every function takes an explicit tracking URI (and optional registry URI): nothing here reads
or sets MLflow's global state at import time, and mlflow is imported inside functions because
it is slow to import. Champion and challenger are model version aliases (stages are deprecated).

Each registered version carries an `artifact_sha256` tag: a hash over every file of the
logged model. Models are only ever deserialized from a local copy whose hash was checked, so a
swapped model file is refused before any unpickling.

Run as `python -m driftwatch.registry smoke ...` for the fresh-process smoke test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from driftwatch.config import ModelConfig

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
HISTORY_LIMIT = 100  # registered-model tag values are capped at 100 kB by MLflow
ARTIFACT_TAG = "artifact_sha256"
IDEMPOTENCY_TAG = "idempotency_key"
EVALUATED_TAG = "evaluated_primary_metric"  # read by scoring to detect live degradation
MODEL_ARTIFACT_NAME = "model"
# MLflow stores dataset digests in a VARCHAR(36) and rejects longer ones, so the digest is the
# sha256 prefix; the full hash goes in the dataset input's `sha256` tag.
DATASET_DIGEST_CHARS = 36
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_INCLUDE_DIR = Path(__file__).resolve().parents[1]
_REPO_DIR = Path(__file__).resolve().parents[2]


class RegistryError(RuntimeError):
    """A registry operation was refused (unknown or rejected version) or could not run."""


class TamperedArtifactError(RegistryError):
    """A model version's files do not hash to the sha256 recorded when it was registered."""


# --- provenance -------------------------------------------------------------------------


def config_hash(cfg: ModelConfig) -> str:
    """sha256 of the canonical JSON of the validated config (defaults filled in)."""
    canonical = json.dumps(cfg.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _find_git_dir(start: Path) -> Path | None:
    """The .git folder of the checkout holding `start`, following `gitdir:` files of worktrees."""
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8").strip()
            if text.startswith("gitdir:"):
                return (folder / text.removeprefix("gitdir:").strip()).resolve()
            return None
    return None


def git_commit(repo_dir: str | os.PathLike[str]) -> str | None:
    """The commit checked out in `repo_dir`, read from .git without the git binary; None if unknown."""
    try:
        git_dir = _find_git_dir(Path(repo_dir).resolve())
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if _SHA1.match(head) else None
        ref = head.removeprefix("ref:").strip()
        # Linked worktrees keep their HEAD locally but share refs with the main repository.
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for base in (git_dir, common):
            loose = base / ref
            if loose.is_file():
                sha = loose.read_text(encoding="utf-8").strip()
                return sha if _SHA1.match(sha) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref and _SHA1.match(sha):
                    return sha
    except OSError:
        return None
    return None  # an unborn branch: no commit yet


# --- small helpers ----------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _client(tracking_uri: str, registry_uri: str | None = None) -> MlflowClient:
    """An MlflowClient bound to explicit URIs; the registry defaults to the tracking server.

    Passing the registry URI explicitly keeps MLFLOW_REGISTRY_URI in the environment from
    silently redirecting registrations elsewhere.
    """
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


@contextmanager
def _fluent_tracking(tracking_uri: str) -> Iterator[None]:
    """Point mlflow's fluent API (needed by mlflow.sklearn.log_model) at a URI for a block only."""
    # The private helper restores the previous *unset* state exactly; set_tracking_uri would
    # pin whatever default was resolved and leak it to later callers.
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        yield


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to `a.b` keys, dropping None values."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f"{name}."))
        elif value is not None:
            flat[name] = value
    return flat


def _numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flattened metrics as floats; a non-numeric value is a caller bug, so it raises."""
    out: dict[str, float] = {}
    for key, value in _flatten(metrics).items():
        if isinstance(value, bool | int | float) or hasattr(value, "__float__"):
            out[key] = float(value)
        else:
            raise TypeError(f"metric {key!r} is not numeric: {value!r}")
    return out


def _quoted(value: str) -> str:
    """Quote a value for an MLflow search filter; quotes inside would break the filter."""
    if "'" in value or "\\" in value:
        raise ValueError(f"value must not contain quotes or backslashes: {value!r}")
    return f"'{value}'"


def _error_code(err: Exception) -> str | None:
    return getattr(err, "error_code", None)


def _get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    """A model version, or RegistryError naming it when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as err:
        if _error_code(err) in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            raise RegistryError(f"model {name!r} has no version {version!r}") from None
        raise


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


# --- artifact hashing and verification ----------------------------------------------------


def tree_sha256(root: str | os.PathLike[str]) -> str:
    """sha256 over every file under `root`: relative POSIX path and content hash, in sorted order."""
    root = Path(root)
    outer = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        inner = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f"{path.relative_to(root).as_posix()}\0{inner.hexdigest()}\n".encode())
    return outer.hexdigest()


def _download(artifact_uri: str, dst: Path, tracking_uri: str) -> Path:
    """Download an artifact folder without deserializing anything."""
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(artifact_uri=artifact_uri, dst_path=str(dst), tracking_uri=tracking_uri))


def _download_verified(client: MlflowClient, mv: ModelVersion, dst: Path, tracking_uri: str) -> Path:
    """Download a version's model files and check them against its `artifact_sha256` tag.

    Loading later from this very copy (not a second download) leaves no window in which the
    stored files could be swapped between the check and the load.
    """
    expected = mv.tags.get(ARTIFACT_TAG)
    if not expected:
        raise TamperedArtifactError(
            f"model {mv.name!r} version {mv.version} has no {ARTIFACT_TAG} tag: it was not registered by "
            "driftwatch or the tag was removed; refusing to load it"
        )
    local = _download(client.get_model_version_download_uri(mv.name, mv.version), dst, tracking_uri)
    actual = tree_sha256(local)
    if actual != expected:
        raise TamperedArtifactError(
            f"model {mv.name!r} version {mv.version}: artifact sha256 mismatch "
            f"(registered {expected}, stored files now hash to {actual}); refusing to load it"
        )
    return local


def verify_artifact(tracking_uri: str, name: str, version: str, *, registry_uri: str | None = None) -> None:
    """Recompute the version's artifact sha256; TamperedArtifactError on mismatch or missing tag."""
    client = _client(tracking_uri, registry_uri)
    mv = _get_version(client, name, version)
    with tempfile.TemporaryDirectory(prefix="driftwatch-verify-") as tmp:
        _download_verified(client, mv, Path(tmp), tracking_uri)


def _parse_model_uri(client: MlflowClient, model_uri: str) -> ModelVersion:
    """Resolve `models:/<name>/<version>` or `models:/<name>@<alias>` to a model version."""
    if not model_uri.startswith("models:/"):
        raise RegistryError(f"expected models:/<name>/<version> or models:/<name>@<alias>, got {model_uri!r}")
    rest = model_uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        from mlflow.exceptions import MlflowException

        try:
            return client.get_model_version_by_alias(name, alias)
        except MlflowException as err:
            if _error_code(err) in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                raise RegistryError(f"model {name!r} has no alias {alias!r}") from None
            raise
    name, _, version = rest.rpartition("/")
    if not name or not version.isdigit():
        raise RegistryError(f"expected models:/<name>/<version> or models:/<name>@<alias>, got {model_uri!r}")
    return _get_version(client, name, version)


def load_model(tracking_uri: str, model_uri: str, *, registry_uri: str | None = None) -> Any:
    """Load a registered sklearn model after verifying its artifact hash."""
    import mlflow.sklearn

    client = _client(tracking_uri, registry_uri)
    mv = _parse_model_uri(client, model_uri)
    with tempfile.TemporaryDirectory(prefix="driftwatch-load-") as tmp:
        local = _download_verified(client, mv, Path(tmp), tracking_uri)
        return mlflow.sklearn.load_model(str(local))


# --- logging and registration -----------------------------------------------------------


def ensure_experiment(
    tracking_uri: str, name: str, *, artifact_location: str | None = None, registry_uri: str | None = None
) -> str:
    """The id of experiment `name`, created (optionally at `artifact_location`) when missing."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri, registry_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as err:
            # Another task created it between our read and our create.
            if _error_code(err) != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage != "active":
        raise RegistryError(f"experiment {name!r} is deleted; restore it or configure another registry.experiment")
    return experiment.experiment_id


def _ensure_registered_model(client: MlflowClient, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags={"managed_by": "driftwatch"}, description=description or None)
    except MlflowException as err:
        if _error_code(err) != "RESOURCE_ALREADY_EXISTS":
            raise


def _model_exists(client: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if _error_code(err) == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _find_by_idempotency_key(client: MlflowClient, name: str, key: str) -> ModelVersion | None:
    """The earliest version registered under `key`, if any."""
    if not _model_exists(client, name):
        return None
    found = client.search_model_versions(f"name = {_quoted(name)} and tags.{IDEMPOTENCY_TAG} = {_quoted(key)}")
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _version_result(mv: ModelVersion, created: bool) -> dict[str, Any]:
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "model_uri": f"models:/{mv.name}/{mv.version}",
        "artifact_sha256": mv.tags.get(ARTIFACT_TAG),
        "created": created,
    }


def _lineage_tags(lineage: Mapping[str, Any]) -> dict[str, str]:
    """Lineage fields as `lineage.<key>` run tags; the full record is also logged as lineage.json."""
    tags: dict[str, str] = {}
    for key, value in lineage.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        tags[f"lineage.{key}"] = text
    return tags


def _log_datasets(data: list[Mapping[str, Any]]) -> None:
    """Record each data file as a run input by URI and our sha256, without uploading the data."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    for entry in data:
        uri, sha256 = entry.get("uri"), entry.get("sha256")
        if not uri or not sha256:
            raise ValueError(f"lineage data entries need 'uri' and 'sha256': {dict(entry)!r}")
        role = str(entry.get("role") or "training")
        dataset = MetaDataset(
            source=resolve_dataset_source(uri),
            name=str(entry.get("name") or PurePosixPath(uri).name or uri),
            digest=str(sha256)[:DATASET_DIGEST_CHARS],
        )
        tags = {"sha256": str(sha256), "role": role}
        if entry.get("rows") is not None:
            tags["rows"] = str(entry["rows"])
        mlflow.log_input(dataset, context=role, tags=tags)


def _skops_trusted_types(model: Any) -> list[str]:
    """Types skops will not load by default (e.g. HistGradientBoosting's TreePredictor).

    The model was built in this process, so its types are trusted by construction. The list is
    written into the MLmodel file, which the artifact hash covers, so it cannot be widened later
    without the version failing verification.
    """
    import skops.io

    with tempfile.TemporaryDirectory(prefix="driftwatch-skops-") as tmp:
        path = Path(tmp) / "model.skops"
        skops.io.dump(model, path)
        return list(skops.io.get_untrusted_types(file=path))


def _write_artifacts(folder: Path, artifacts: Mapping[str, bytes]) -> None:
    for name, data in artifacts.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"artifact names must be relative paths without '..': {name!r}")
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def log_and_register(
    cfg: ModelConfig,
    model: Any,
    *,
    tracking_uri: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    input_example: pd.DataFrame,
    artifacts: dict[str, bytes] | None = None,
    tags: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    registry_uri: str | None = None,
    repo_dir: str | os.PathLike[str] | None = None,
    serialization_format: str = "skops",
) -> dict[str, Any]:
    """Log a trained model with its lineage in a new run and register it as a new version.

    With an `idempotency_key` (e.g. the Airflow run id), a retry returns the version already
    registered under that key instead of registering a duplicate. Returns {version, run_id,
    model_uri, artifact_sha256, created}.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    client = _client(tracking_uri, registry_uri)
    name = cfg.registry.registered_model
    if idempotency_key is not None:
        _quoted(idempotency_key)  # refuse an unsearchable key before doing any work
        existing = _find_by_idempotency_key(client, name, idempotency_key)
        if existing is not None:
            return _version_result(existing, created=False)

    features = cfg.dataset.feature_names
    missing = [f for f in features if f not in input_example.columns]
    if missing:
        raise ValueError(f"input_example lacks feature columns {missing}")
    # Only feature columns reach MLflow: ids, targets and PII stay out of the stored example.
    example = input_example[features].head(5)
    predict_fn = "predict_proba" if hasattr(model, "predict_proba") else "predict"
    signature = infer_signature(example, getattr(model, predict_fn)(example))

    provenance = {
        "config_sha256": config_hash(cfg),
        "git_commit": git_commit(repo_dir or _REPO_DIR) or "unknown",
    }
    run_tags = {
        **_lineage_tags(lineage),
        **(tags or {}),
        **provenance,
        "reason": str(lineage.get("reason") or ""),
        "model_name": cfg.name,
    }
    if idempotency_key is not None:
        run_tags[IDEMPOTENCY_TAG] = idempotency_key

    experiment_id = ensure_experiment(tracking_uri, cfg.registry.experiment, registry_uri=registry_uri)
    _ensure_registered_model(client, name, cfg.description)
    trusted = _skops_trusted_types(model) if serialization_format == "skops" else None
    with _fluent_tracking(tracking_uri), mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags(run_tags)
        flat_params = {k: str(v) for k, v in _flatten(params).items()}
        if flat_params:
            mlflow.log_params(flat_params)
        flat_metrics = _numeric_metrics(metrics)
        if flat_metrics:
            mlflow.log_metrics(flat_metrics)
        _log_datasets(list(lineage.get("data") or []))
        mlflow.log_text(json.dumps(lineage, indent=2, sort_keys=True, default=str), "lineage.json")
        if artifacts:
            with tempfile.TemporaryDirectory(prefix="driftwatch-artifacts-") as tmp:
                _write_artifacts(Path(tmp), artifacts)
                mlflow.log_artifacts(tmp)
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT_NAME,
            signature=signature,
            input_example=example,
            serialization_format=serialization_format,
            skops_trusted_types=trusted or None,
            pyfunc_predict_fn=predict_fn,
            # Explicit requirements skip MLflow's inference, which re-imports the model in a
            # subprocess (~10 s); a plain sklearn pipeline needs nothing beyond these.
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(
                include_cloudpickle=serialization_format == "cloudpickle",
                include_skops=serialization_format == "skops",
            ),
        )
        # Hash what was stored, not the local files, so the tag describes the registry's copy.
        with tempfile.TemporaryDirectory(prefix="driftwatch-hash-") as tmp:
            artifact_sha256 = tree_sha256(_download(info.artifact_path, Path(tmp), tracking_uri))
        version_tags = {ARTIFACT_TAG: artifact_sha256, **provenance}
        if idempotency_key is not None:
            version_tags[IDEMPOTENCY_TAG] = idempotency_key
        # Tags passed at creation mean no version is ever visible without its artifact hash.
        mv = client.create_model_version(
            name, source=info.model_uri, run_id=run.info.run_id, tags=version_tags, model_id=info.model_id
        )
        mlflow.set_tag("registered_version", str(mv.version))
    return _version_result(mv, created=True)


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
    primary: float,
    report_html: str,
    report_json: dict[str, Any],
    registry_uri: str | None = None,
) -> None:
    """Attach the evaluation report to the candidate's run and its primary metric to the version.

    The version tag is what live monitoring compares against once this version is champion.
    """
    client = _client(tracking_uri, registry_uri)
    _get_version(client, name, version)
    client.log_text(run_id, report_html, "evaluation/evaluation.html")
    client.log_text(
        run_id, json.dumps(report_json, indent=2, sort_keys=True, default=str), "evaluation/evaluation.json"
    )
    client.log_metric(run_id, "evaluation.primary", float(primary))
    client.set_model_version_tag(name, str(version), EVALUATED_TAG, str(float(primary)))
    client.set_model_version_tag(name, str(version), "evaluated_at", _now())


def run_lineage(tracking_uri: str, name: str, version: str, *, registry_uri: str | None = None) -> dict[str, Any]:
    """Where a version came from: config hash, commit, reason, lineage tags and its input datasets."""
    client = _client(tracking_uri, registry_uri)
    mv = _get_version(client, name, version)
    run = client.get_run(mv.run_id)
    tags = run.data.tags
    inputs = []
    for dataset_input in run.inputs.dataset_inputs:
        dataset = dataset_input.dataset
        input_tags = {t.key: t.value for t in dataset_input.tags}
        source = json.loads(dataset.source or "{}")
        inputs.append(
            {
                "name": dataset.name,
                "digest": dataset.digest,
                "uri": source.get("uri") or source.get("url"),
                "source_type": dataset.source_type,
                "role": input_tags.get("mlflow.data.context") or input_tags.get("role"),
                "sha256": input_tags.get("sha256"),
                "rows": int(input_tags["rows"]) if input_tags.get("rows", "").isdigit() else None,
            }
        )
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "config_hash": tags.get("config_sha256"),
        "git_commit": tags.get("git_commit"),
        "reason": tags.get("reason"),
        "idempotency_key": tags.get(IDEMPOTENCY_TAG),
        "artifact_sha256": mv.tags.get(ARTIFACT_TAG),
        "lineage": {k.removeprefix("lineage."): v for k, v in tags.items() if k.startswith("lineage.")},
        "inputs": inputs,
    }


def training_data_uri(tracking_uri: str, name: str, version: str, *, registry_uri: str | None = None) -> str | None:
    """The URI of the data a version was trained on, from its run's inputs; None if not recorded."""
    lineage = run_lineage(tracking_uri, name, version, registry_uri=registry_uri)
    return next((d["uri"] for d in lineage["inputs"] if d["role"] == "training"), None)


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
        return "retired", f"replaced by v{tags.get('replaced_by', '?')} at {tags['retired_at']}{rolled}"
    evaluated = f"evaluated {tags[EVALUATED_TAG]}" if EVALUATED_TAG in tags else "not evaluated yet"
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


# --- smoke test in a fresh process ------------------------------------------------------


def smoke_test(
    tracking_uri: str,
    model_uri: str,
    sample: pd.DataFrame,
    *,
    max_latency_ms: float,
    registry_uri: str | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Load the registered model in a fresh Python process and predict on `sample`.

    A fresh process proves the model loads from the registry alone, with nothing borrowed from
    the training process's memory. Failed checks come back as {passed: False, problems}; only
    infrastructure errors (process crash, unreachable registry, unknown version) raise.
    """
    # Resolve aliases here: an unknown version fails fast without a process, and the child
    # tests one fixed version even if the alias moves meanwhile.
    mv = _parse_model_uri(_client(tracking_uri, registry_uri), model_uri)
    pinned_uri = f"models:/{mv.name}/{mv.version}"
    with tempfile.TemporaryDirectory(prefix="driftwatch-smoke-") as tmp:
        sample_path, result_path = Path(tmp) / "sample.parquet", Path(tmp) / "result.json"
        sample.to_parquet(sample_path, index=False)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            # Progress bars would crowd the stderr tail reported on failure.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PYTHONPATH": os.pathsep.join(p for p in (str(_INCLUDE_DIR), os.environ.get("PYTHONPATH")) if p),
        }
        if registry_uri:
            env["MLFLOW_REGISTRY_URI"] = registry_uri
        command = [
            sys.executable,
            "-m",
            "driftwatch.registry",
            "smoke",
            "--model-uri",
            pinned_uri,
            "--sample",
            str(sample_path),
            "--max-latency-ms",
            repr(float(max_latency_ms)),
            "--output",
            str(result_path),
        ]
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RegistryError(f"smoke test of {model_uri} did not finish within {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not result_path.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RegistryError(f"smoke test process for {model_uri} failed (exit {proc.returncode}):\n{tail}")
        return {**json.loads(result_path.read_text(encoding="utf-8")), "model_uri": model_uri}


def _output_problems(output: Any, rows: int) -> list[str]:
    """Length, dtype and NaN checks on a model's predictions."""
    import numpy as np

    array = np.asarray(output)
    problems: list[str] = []
    if array.ndim == 0 or len(array) != rows:
        problems.append(f"output has {0 if array.ndim == 0 else len(array)} rows for {rows} input rows")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        problems.append(f"output dtype {array.dtype} is not numeric")
    elif np.isnan(array.astype(float)).any():
        problems.append(f"output has {int(np.isnan(array.astype(float)).sum())} NaN values")
    return problems


def _run_smoke(
    tracking_uri: str, registry_uri: str | None, model_uri: str, sample: pd.DataFrame, max_latency_ms: float
) -> dict[str, Any]:
    """The checks run inside the fresh process; registry errors propagate as infrastructure errors."""
    import mlflow.sklearn
    from mlflow.models import Model

    client = _client(tracking_uri, registry_uri)
    mv = _parse_model_uri(client, model_uri)
    result: dict[str, Any] = {
        "passed": False,
        "model_uri": model_uri,
        "version": str(mv.version),
        "rows": len(sample),
        "latency_ms": None,
        "load_ms": None,
        "max_latency_ms": max_latency_ms,
        "pid": os.getpid(),
        "problems": [],
    }
    problems: list[str] = result["problems"]
    with tempfile.TemporaryDirectory(prefix="driftwatch-smoke-model-") as tmp:
        try:
            local = _download_verified(client, mv, Path(tmp), tracking_uri)
        except TamperedArtifactError as err:
            problems.append(str(err))
            return result
        signature = Model.load(str(local / "MLmodel")).signature
        if signature is None:
            problems.append("model has no signature")
        else:
            absent = [c for c in signature.inputs.input_names() if c not in sample.columns]
            if absent:
                problems.append(f"sample lacks signature columns {absent}")
        started = time.perf_counter()
        try:
            model = mlflow.sklearn.load_model(str(local))
        except Exception as err:  # a model that cannot load is the failure this test exists to catch
            problems.append(f"model does not load: {type(err).__name__}: {err}")
            return result
        result["load_ms"] = round((time.perf_counter() - started) * 1000, 3)

    predict = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    result["output"] = predict.__name__
    try:
        # A one-row call first pays the one-off lazy imports and thread-pool start-up, which
        # can take seconds on a busy host; the budget is for predicting, not for warming up.
        started = time.perf_counter()
        predict(sample.head(1))
        result["warmup_ms"] = round((time.perf_counter() - started) * 1000, 3)
        started = time.perf_counter()
        output = predict(sample)
        latency_ms = (time.perf_counter() - started) * 1000
    except Exception as err:
        problems.append(f"prediction failed: {type(err).__name__}: {err}")
        return result
    result["latency_ms"] = round(latency_ms, 3)
    problems.extend(_output_problems(output, len(sample)))
    if latency_ms > max_latency_ms:
        problems.append(
            f"predicting {len(sample)} rows took {latency_ms:.1f} ms, over the {max_latency_ms:g} ms budget"
        )
    result["passed"] = not problems
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m driftwatch.registry smoke --model-uri ... --sample ... --output ...`."""
    parser = argparse.ArgumentParser(prog="python -m driftwatch.registry")
    commands = parser.add_subparsers(dest="command", required=True)
    smoke = commands.add_parser("smoke", help="smoke-test a registered model (uses MLFLOW_TRACKING_URI)")
    smoke.add_argument("--model-uri", required=True)
    smoke.add_argument("--sample", required=True, help="Parquet file of feature rows")
    smoke.add_argument("--max-latency-ms", type=float, required=True)
    smoke.add_argument("--output", required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)

    import pandas as pd

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        parser.error("MLFLOW_TRACKING_URI is not set")
    sample = pd.read_parquet(args.sample)
    result = _run_smoke(
        tracking_uri, os.environ.get("MLFLOW_REGISTRY_URI"), args.model_uri, sample, args.max_latency_ms
    )
    Path(args.output).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
