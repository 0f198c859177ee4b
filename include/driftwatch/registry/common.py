"""Names shared by the registry modules: aliases, tags, exceptions and MLflow client helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
CHALLENGER = "challenger"
ARTIFACT_TAG = "artifact_sha256"
IDEMPOTENCY_TAG = "idempotency_key"
EVALUATED_TAG = "evaluated_primary_metric"  # read by scoring to detect live degradation
# The version's permutation importance from its evaluation, on its run; read by the monitor's attribution check.
IMPORTANCE_ARTIFACT = "evaluation/importance.json"


class RegistryError(RuntimeError):
    """A registry operation was refused (unknown or rejected version) or could not run."""


class TamperedArtifactError(RegistryError):
    """A model version's files do not hash to the sha256 recorded when it was registered."""


def _client(tracking_uri: str, registry_uri: str | None = None) -> MlflowClient:
    """An MlflowClient bound to explicit URIs; the registry defaults to the tracking server.

    Passing the registry URI explicitly keeps MLFLOW_REGISTRY_URI in the environment from
    silently redirecting registrations elsewhere.
    """
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


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
