"""The model store: log and register versions with lineage, hash, verify and load their files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from driftwatch.registry.common import (
    ARTIFACT_TAG,
    IDEMPOTENCY_TAG,
    IMPORTANCE_ARTIFACT,
    RegistryError,
    TamperedArtifactError,
    _client,
    _error_code,
    _get_version,
    _parse_model_uri,
    _quoted,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from driftwatch.config import ModelConfig

MODEL_ARTIFACT_NAME = "model"
# MLflow stores dataset digests in a VARCHAR(36) and rejects longer ones, so the digest is the
# sha256 prefix; the full hash goes in the dataset input's `sha256` tag.
DATASET_DIGEST_CHARS = 36
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_REPO_DIR = Path(__file__).resolve().parents[3]


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


BAKED_COMMIT_ENV = "DRIFTWATCH_GIT_COMMIT"


def code_commit(repo_dir: str | os.PathLike[str]) -> str:
    """The commit of the running code: the checkout's, else the one baked into the image, else "unknown".

    An image has no .git (.dockerignore drops it), so the Dockerfile bakes the commit in at build time.
    """
    baked = os.environ.get(BAKED_COMMIT_ENV, "").strip().lower()
    return git_commit(repo_dir) or (baked if _SHA1.match(baked) else "unknown")


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


# --- logging helpers --------------------------------------------------------------------


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


def _check_model_file_names(files: Mapping[str, bytes]) -> None:
    for name in files:
        if PurePosixPath(name).name != name or name in {"", ".", ".."} or "\\" in name:
            raise ValueError(f"model file names must be plain file names: {name!r}")


def _model_file_paths(folder: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write files that go inside the model's folder (mlflow's extra_files) and return their paths."""
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in files]


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
    model_files: dict[str, bytes] | None = None,
    tags: dict[str, str] | None = None,
    version_tags: dict[str, str] | None = None,
    idempotency_key: str | None = None,
    registry_uri: str | None = None,
    repo_dir: str | os.PathLike[str] | None = None,
    serialization_format: str = "skops",
) -> dict[str, Any]:
    """Log a trained model with its lineage in a new run and register it as a new version.

    With an `idempotency_key` (e.g. the Airflow run id), a retry returns the version already
    registered under that key instead of registering a duplicate. `model_files` go inside the
    model's folder (under extra_files/), so its artifact_sha256 covers them; `artifacts` sit next
    to it in the run, unhashed. `version_tags` are set on the version when it is created. Returns
    {version, run_id, model_uri, artifact_sha256, created}.
    """
    import mlflow
    from mlflow.models import infer_signature

    client = _client(tracking_uri, registry_uri)
    name = cfg.registry.registered_model
    if idempotency_key is not None:
        _quoted(idempotency_key)  # refuse an unsearchable key before doing any work
        existing = _find_by_idempotency_key(client, name, idempotency_key)
        if existing is not None:
            return _version_result(existing, created=False)

    _check_model_file_names(model_files or {})  # before a run exists that would be left half-logged
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
        "git_commit": code_commit(repo_dir or _REPO_DIR),
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
        with tempfile.TemporaryDirectory(prefix="driftwatch-model-files-") as files_dir:
            info = _log_model(
                model,
                example,
                signature=signature,
                serialization_format=serialization_format,
                trusted=trusted,
                predict_fn=predict_fn,
                extra_files=_model_file_paths(Path(files_dir), model_files or {}),
            )
        # Hash what was stored, not the local files, so the tag describes the registry's copy.
        with tempfile.TemporaryDirectory(prefix="driftwatch-hash-") as tmp:
            artifact_sha256 = tree_sha256(_download(info.artifact_path, Path(tmp), tracking_uri))
        version_tags = {**(version_tags or {}), ARTIFACT_TAG: artifact_sha256, **provenance}
        if idempotency_key is not None:
            version_tags[IDEMPOTENCY_TAG] = idempotency_key
        # Tags passed at creation mean no version is ever visible without its artifact hash.
        mv = client.create_model_version(
            name, source=info.model_uri, run_id=run.info.run_id, tags=version_tags, model_id=info.model_id
        )
        mlflow.set_tag("registered_version", str(mv.version))
    return _version_result(mv, created=True)


def _log_model(
    model: Any,
    example: pd.DataFrame,
    *,
    signature: Any,
    serialization_format: str,
    trusted: list[str] | None,
    predict_fn: str,
    extra_files: list[str],
) -> Any:
    """mlflow.sklearn.log_model in the active run, with the requirements pinned and our extra files."""
    import mlflow.sklearn

    return mlflow.sklearn.log_model(
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
        extra_files=extra_files or None,
    )


# --- lineage ----------------------------------------------------------------------------


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


def reference_data_uri(tracking_uri: str, name: str, version: str, *, registry_uri: str | None = None) -> str | None:
    """The data a version represents, its drift reference as champion: training plus holdout rows.

    Versions logged before that was recorded (no `lineage.reference_uri`) fall back to their
    training data; None when neither is recorded.
    """
    lineage = run_lineage(tracking_uri, name, version, registry_uri=registry_uri)
    recorded = lineage["lineage"].get("reference_uri")
    return recorded or next((d["uri"] for d in lineage["inputs"] if d["role"] == "training"), None)


def evaluated_importance(
    tracking_uri: str, name: str, version: str, *, registry_uri: str | None = None
) -> dict[str, Any] | None:
    """The version's permutation importance on its holdout, from its own evaluation; None if not recorded.

    It is the `evaluation/importance.json` its run holds (`record_evaluation`); versions evaluated
    before importance was recorded have none. Plain JSON: nothing is unpickled, so no hash check.
    """
    client = _client(tracking_uri, registry_uri)
    mv = _get_version(client, name, version)
    folder = IMPORTANCE_ARTIFACT.rpartition("/")[0]
    # Listing first: a missing artifact is an expected answer, not an error to tell from a network one.
    if not mv.run_id or not any(a.path == IMPORTANCE_ARTIFACT for a in client.list_artifacts(mv.run_id, folder)):
        return None
    with tempfile.TemporaryDirectory(prefix="driftwatch-importance-") as tmp:
        local = Path(client.download_artifacts(mv.run_id, IMPORTANCE_ARTIFACT, tmp))
        try:
            return json.loads(local.read_text(encoding="utf-8"))
        except ValueError as err:
            # Written that way: no retry can help, and the check reports it instead of failing.
            raise RegistryError(
                f"model {name!r} version {version}: {IMPORTANCE_ARTIFACT} is not JSON ({err})"
            ) from None
