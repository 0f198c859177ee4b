"""The MLflow model registry: log, register, promote, reject, roll back and verify models.

Every function takes an explicit tracking URI (and optional registry URI): nothing here reads
or sets MLflow's global state at import time, and mlflow is imported inside functions because
it is slow to import. Champion and challenger are model version aliases (stages are deprecated).

Each registered version carries an `artifact_sha256` tag: a hash over every file of the
logged model. Models are only ever deserialized from a local copy whose hash was checked, so a
swapped model file is refused before any unpickling.

The version's label-free performance estimator lives inside the model's folder, so the same
hash covers it; `load_estimator` reads it from a verified copy only.

Modules: `common` (shared names and client helpers), `store` (logging, registration, hashing,
loading, lineage), `estimator` (the stored performance estimator), `aliases` (champion/challenger
lifecycle) and `smoke` (fresh-process smoke test, run as `python -m driftwatch.registry smoke ...`).
"""

from driftwatch.registry.aliases import (
    HISTORY_LIMIT,
    HISTORY_TAG,
    champion,
    champion_history,
    mark_challenger,
    promote,
    record_evaluation,
    reject,
    retire_challenger,
    rollback,
    tag_version,
    version_summaries,
)
from driftwatch.registry.common import (
    ARTIFACT_TAG,
    CHALLENGER,
    CHAMPION,
    EVALUATED_TAG,
    IDEMPOTENCY_TAG,
    IMPORTANCE_ARTIFACT,
    RegistryError,
    TamperedArtifactError,
)
from driftwatch.registry.estimator import ESTIMATOR_FILE, estimator_file, load_estimator
from driftwatch.registry.smoke import main, smoke_test
from driftwatch.registry.store import (
    DATASET_DIGEST_CHARS,
    MODEL_ARTIFACT_NAME,
    config_hash,
    ensure_experiment,
    evaluated_importance,
    git_commit,
    load_model,
    log_and_register,
    reference_data_uri,
    run_lineage,
    training_data_uri,
    tree_sha256,
    verify_artifact,
)

__all__ = [
    "ARTIFACT_TAG",
    "CHALLENGER",
    "CHAMPION",
    "DATASET_DIGEST_CHARS",
    "ESTIMATOR_FILE",
    "EVALUATED_TAG",
    "HISTORY_LIMIT",
    "HISTORY_TAG",
    "IDEMPOTENCY_TAG",
    "IMPORTANCE_ARTIFACT",
    "MODEL_ARTIFACT_NAME",
    "RegistryError",
    "TamperedArtifactError",
    "champion",
    "champion_history",
    "config_hash",
    "ensure_experiment",
    "evaluated_importance",
    "estimator_file",
    "git_commit",
    "load_estimator",
    "load_model",
    "log_and_register",
    "main",
    "mark_challenger",
    "promote",
    "record_evaluation",
    "reference_data_uri",
    "reject",
    "retire_challenger",
    "rollback",
    "run_lineage",
    "smoke_test",
    "tag_version",
    "training_data_uri",
    "tree_sha256",
    "verify_artifact",
    "version_summaries",
]
