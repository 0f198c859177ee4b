"""The label-free performance estimator each model version carries, read only from verified files.

The estimator (`driftwatch.estimation.fit_estimator` on the version's holdout scores) is logged
inside the model's own folder, under MLflow's `extra_files/`, before that folder is hashed: the
version's `artifact_sha256` covers it like the model file, and it is read back from a copy whose
hash was checked, never from the store directly.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from driftwatch.registry.common import RegistryError, _client, _get_version
from driftwatch.registry.store import _download_verified

ESTIMATOR_FILE = "estimator.json"
# Where mlflow's `extra_files` puts a file inside the model folder (mlflow.utils.model_utils.EXTRA_FILES_KEY).
EXTRA_FILES_DIR = "extra_files"


def estimator_file(estimator: dict[str, Any]) -> dict[str, bytes]:
    """The estimator as the model file `log_and_register(model_files=...)` stores with the model."""
    if not isinstance(estimator.get("kind"), str):
        raise ValueError(f"an estimator needs a 'kind' (cbpe or none), got {sorted(estimator)}")
    return {ESTIMATOR_FILE: json.dumps(estimator, indent=2, sort_keys=True, allow_nan=False).encode("utf-8")}


def load_estimator(tracking_uri: str, name: str, version: str, *, registry_uri: str | None = None) -> dict | None:
    """The version's estimator, from its hash-verified files; None for a version logged without one.

    Raises TamperedArtifactError when the model folder (the estimator included) no longer hashes
    to the version's `artifact_sha256`.
    """
    client = _client(tracking_uri, registry_uri)
    mv = _get_version(client, name, version)
    with tempfile.TemporaryDirectory(prefix="driftwatch-estimator-") as tmp:
        local = _download_verified(client, mv, Path(tmp), tracking_uri)
        path = local / EXTRA_FILES_DIR / ESTIMATOR_FILE
        if not path.is_file():
            return None  # versions registered before estimators were stored
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            # Hash-verified yet unreadable: it was written that way, so no retry can help.
            raise RegistryError(f"model {name!r} version {version}: {ESTIMATOR_FILE} is not JSON ({err})") from None
