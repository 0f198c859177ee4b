"""Per-model configuration: one YAML file per monitored model, validated by pydantic.

Only pydantic and PyYAML are imported here, because DAG files load the configs while they
are parsed and parsing must stay fast.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from driftwatch.errors import PermanentError

NUMERIC_DRIFT_METHODS = ("wasserstein", "ks", "psi", "jensenshannon", "kl_div", "hellinger")
CATEGORICAL_DRIFT_METHODS = ("jensenshannon", "chisquare", "psi", "kl_div", "hellinger")
DriftMethod = Literal["wasserstein", "ks", "psi", "jensenshannon", "chisquare", "kl_div", "hellinger"]
Severity = Literal["critical", "warning"]

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "models"
_NAME = r"^[a-z][a-z0-9_]{1,62}$"
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


def _yaml_scalar_text(value: Any) -> Any:
    """A YAML number or boolean as the text a batch holds (1, not 1.0; True); anything else unchanged.

    dtypes.text_value does the same for data; it is not imported here, to keep pandas out of DAG parsing.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int | float) else value


class ConfigError(PermanentError, ValueError):
    """A model config file is missing, unreadable or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Feature(_Strict):
    """One input column of the model."""

    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical"]
    min: float | None = Field(default=None, description="Hard lower bound: violations are critical.")
    max: float | None = Field(default=None, description="Hard upper bound: violations are critical.")
    allowed_values: list[str] | None = Field(
        default=None, description="Closed category set: values outside it are critical."
    )

    @field_validator("allowed_values", mode="before")
    @classmethod
    def _values_as_text(cls, values: Any) -> Any:
        # YAML reads [1, 2] and [true, false] as numbers and booleans; batches compare them as text.
        if not isinstance(values, list):
            return values
        return [_yaml_scalar_text(v) for v in values]

    max_null_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    drift_method: DriftMethod | None = None
    drift_threshold: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _check_kind_specific_fields(self) -> Feature:
        if self.type == "categorical" and (self.min is not None or self.max is not None):
            raise ValueError("min/max apply to numeric features only")
        if self.type == "numeric" and self.allowed_values is not None:
            raise ValueError("allowed_values applies to categorical features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.drift_method is not None:
            allowed = NUMERIC_DRIFT_METHODS if self.type == "numeric" else CATEGORICAL_DRIFT_METHODS
            if self.drift_method not in allowed:
                raise ValueError(
                    f"drift_method {self.drift_method!r} does not apply to {self.type} features; "
                    f"use one of {', '.join(allowed)}"
                )
        return self


class Target(_Strict):
    name: str = Field(min_length=1)
    task: Literal["classification", "regression"] = "classification"
    # bool first: YAML's `true` must stay a boolean, not become the integer 1.
    positive_label: bool | int | str | None = Field(
        default=None, description="The class that counts as positive; default: the larger class label."
    )

    @model_validator(mode="after")
    def _positive_label_fits_task(self) -> Target:
        if self.task == "regression" and self.positive_label is not None:
            raise ValueError("positive_label applies to classification only: remove it, or set task: classification")
        return self


class DatasetSchema(_Strict):
    """Columns of a batch: id, timestamp, features, target and the PII never to be reported."""

    id_column: str = Field(min_length=1)
    timestamp_column: str | None = None
    target: Target
    features: list[Feature] = Field(min_length=1)
    pii_columns: list[str] = Field(default_factory=list)
    ignored_columns: list[str] = Field(
        default_factory=list,
        description="Columns a batch may carry that the model does not use: dropped at ingest, never validated.",
    )

    @model_validator(mode="after")
    def _check_columns_are_distinct(self) -> DatasetSchema:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {', '.join(duplicates)}")
        special = {self.id_column, self.target.name} | ({self.timestamp_column} - {None})
        clash = sorted(special & set(names))
        if clash:
            raise ValueError(f"id, timestamp and target columns cannot also be features: {clash}")
        leaked = sorted(set(self.pii_columns) & (set(names) | special))
        if leaked:
            raise ValueError(f"PII columns cannot be features, id, timestamp or target: {leaked}")
        used = sorted(set(self.ignored_columns) & (set(names) | special | set(self.pii_columns)))
        if used:
            raise ValueError(f"ignored_columns cannot be features, id, timestamp, target or PII: {used}")
        return self

    @property
    def unused_columns(self) -> list[str]:
        """Columns dropped at ingest: the PII and the ignored ones."""
        return [*self.pii_columns, *self.ignored_columns]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    def feature(self, name: str) -> Feature:
        for candidate in self.features:
            if candidate.name == name:
                return candidate
        raise KeyError(name)


class StorageConfig(_Strict):
    """Where batches arrive and where the pipeline writes. Raw batches are only ever read."""

    aws_conn_id: str = "aws_default"
    bucket: Annotated[str, Field(pattern=_BUCKET)]
    incoming_prefix: str = "incoming/"
    labels_prefix: str = "labels/"
    output_prefix: str = Field(
        default="", description="Prefix for everything the pipeline writes; defaults to driftwatch/<model>/."
    )
    reference_key: str = Field(min_length=1, description="Initial reference data (CSV or Parquet).")
    max_batch_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_batch_rows: int = Field(
        default=50_000_000, gt=0, description="Rows a batch may hold, read from Parquet footers before any data."
    )
    max_uncompressed_bytes: int = Field(
        default=4 * 1024**3,
        gt=0,
        description="Decoded size a Parquet batch may claim in its footers: a small file can hide a huge one.",
    )
    formats: list[Literal["csv", "parquet"]] = Field(default_factory=lambda: ["csv", "parquet"], min_length=1)

    @field_validator("incoming_prefix", "labels_prefix", "output_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a relative key prefix without '..'")
        return value if not value or value.endswith("/") else value + "/"


class ExpectationRule(_Strict):
    """An extra Great Expectations expectation, named by its GX class."""

    expectation: str = Field(pattern=r"^Expect[A-Za-z]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    severity: Severity = "critical"


class ValidationConfig(_Strict):
    min_rows: int = Field(default=1, ge=1)
    max_rows: int | None = Field(default=None, ge=1)
    max_null_fraction: float = Field(default=0.2, ge=0.0, le=1.0, description="Default per feature; warning.")
    max_unseen_category_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    reference_range_margin: float = Field(
        default=0.5, ge=0.0, description="Widening of the reference min/max, as a share of its span; warning."
    )
    unique_ids: bool = True
    rules: list[ExpectationRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rows(self) -> ValidationConfig:
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError("max_rows is smaller than min_rows")
        return self


class DriftConfig(_Strict):
    numeric_method: DriftMethod = "wasserstein"
    numeric_threshold: float = Field(default=0.1, gt=0.0)
    categorical_method: DriftMethod = "jensenshannon"
    categorical_threshold: float = Field(default=0.1, gt=0.0)
    dataset_drift_share: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Share of drifted features that triggers retraining."
    )
    report_sample_rows: int = Field(
        default=20_000,
        ge=1_000,
        le=1_000_000,
        description=(
            "Rows of the batch and of the reference that the Evidently report is computed on; "
            "the drift decision always uses every row."
        ),
    )
    partition_rows: int = Field(
        default=2_000_000,
        ge=100,
        description=(
            "A staged batch with more rows is profiled in partitions of at most this many rows, one "
            "mapped Airflow task each, whose profiles merge into exactly the single-pass decision."
        ),
    )

    @model_validator(mode="after")
    def _methods_fit_types(self) -> DriftConfig:
        if self.numeric_method not in NUMERIC_DRIFT_METHODS:
            raise ValueError(f"numeric_method {self.numeric_method!r} does not apply to numeric features")
        if self.categorical_method not in CATEGORICAL_DRIFT_METHODS:
            raise ValueError(f"categorical_method {self.categorical_method!r} does not apply to categories")
        return self


class AlertConfig(_Strict):
    smtp_conn_id: str = "smtp_default"
    sender: str = "driftwatch@localhost"
    recipients: list[str] = Field(min_length=1)
    report_base_url: str | None = Field(default=None, description="Base URL linked from emails.")

    @field_validator("recipients")
    @classmethod
    def _emails(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _EMAIL.match(v)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return values


class MonitorConfig(_Strict):
    schedule: str = "@daily"
    start_date: date
    sensor_timeout_minutes: int = Field(default=6 * 60, ge=1)
    sensor_poke_seconds: int = Field(default=60, ge=1)
    retries: int = Field(default=3, ge=2)
    retry_delay_seconds: int = Field(default=30, ge=1)
    task_timeout_minutes: int = Field(
        default=120,
        ge=1,
        description=(
            "Longest a task may run (sensors and approvals keep their own timeouts): a hung task then "
            "fails, and its failure email goes out, instead of the run waiting forever."
        ),
    )


CLASSIFICATION_METRICS = ("roc_auc", "average_precision", "f1", "accuracy", "balanced_accuracy", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}


class TrainingConfig(_Strict):
    """How a challenger is trained: estimator, hyperparameters and the data window."""

    estimator: Literal[
        "logistic_regression",
        "random_forest",
        "hist_gradient_boosting",
        "ridge",
        "random_forest_regressor",
        "hist_gradient_boosting_regressor",
    ] = "logistic_regression"
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    class_weight: Literal["balanced"] | None = Field(default="balanced", description="Classification only.")
    window_days: int = Field(default=7, ge=1, description="Most recent validated, labelled batches to train on.")
    holdout_days: int = Field(default=2, ge=1, description="The latest labelled days, kept as the time-based test set.")
    holdout_fraction: float = Field(
        default=0.2,
        gt=0.0,
        le=0.5,
        description=(
            "Share of the reference held out (seeded, stratified) when the first model is trained on a "
            "reference without a timestamp column."
        ),
    )
    min_training_rows: int = Field(default=200, ge=10)
    include_reference: bool = Field(default=False, description="Also train on the champion's reference data.")
    seed: int = 42

    @model_validator(mode="after")
    def _holdout_fits(self) -> TrainingConfig:
        if self.holdout_days >= self.window_days:
            raise ValueError("holdout_days must be smaller than window_days")
        return self


class EvaluationConfig(_Strict):
    """The promotion gate: every part configurable."""

    primary_metric: str = "roc_auc"
    min_improvement: float = Field(default=0.005, ge=0.0, description="Over the champion on the primary metric.")
    improvement_mode: Literal["absolute", "relative"] = "absolute"
    metric_floor: float | None = Field(default=None, description="The challenger must reach at least this.")
    slice_columns: list[str] = Field(default_factory=list, description="Categorical features to slice metrics by.")
    slice_tolerance: float = Field(default=0.02, ge=0.0, description="Largest allowed regression on any slice.")
    min_slice_rows: int = Field(default=30, ge=1, description="Smaller slices are reported but not gated.")
    smoke_max_latency_ms: float = Field(default=2000.0, gt=0, description="For predicting the smoke-test sample.")
    live_tolerance: float = Field(
        default=0.05, ge=0.0, description="Live primary metric below the evaluated one by more than this retrains."
    )
    live_min_rows: int = Field(
        default=200, ge=1, description="Labelled rows a model version needs in the window before it is measured."
    )
    live_window_days: int = Field(
        default=7, ge=1, description="Live performance pools the labelled batches of this many days."
    )
    importance_max_samples: int = Field(
        default=2000, ge=50, description="Holdout rows (a seeded, class-stratified sample) permutation importance uses."
    )
    importance_repeats: int = Field(default=5, ge=1, description="Shuffles of each feature in permutation importance.")
    attribution_drift_threshold: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description=(
            "nDCG of the challenger's importance ranking against the champion's below this is reported as "
            "attribution drift (the models rely on different features); reported, not gated. The monitor "
            "applies it to the champion's ranking on its labelled window against its evaluation's: it alerts, "
            "and never retrains alone."
        ),
    )

    @property
    def lower_is_better(self) -> bool:
        return self.primary_metric in LOWER_IS_BETTER


class RetrainingPolicy(_Strict):
    """When a signal becomes a retrain: each rule can be loosened, and every decision records its reason."""

    sustained_batches: int = Field(default=2, ge=1, description="Data drift on K of the last M batches acts...")
    sustained_window: int = Field(default=3, ge=1, description="...out of this many batches (M).")
    retrain_on_harmless_drift: bool = Field(
        default=False,
        description="Data drift whose estimated performance stays inside its band alerts; it retrains only if true.",
    )
    estimate_tolerance: float | None = Field(
        default=None,
        ge=0.0,
        description="Estimate below the evaluated value by more than this is harm; default: live_tolerance.",
    )
    min_new_labelled_rows: int = Field(
        default=500, ge=0, description="Labelled rows from batches at or after the drift onset before training."
    )
    cooldown_days: int = Field(
        default=3, ge=0, description="No retrain within this many days of a promotion unless realized performance fell."
    )
    outlier_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="A numeric feature with more than this share of values outside the reference range alerts alone.",
    )
    extreme_score_factor: float = Field(
        default=10.0, gt=1.0, description="A feature whose drift score is this many times its threshold alerts alone."
    )

    @model_validator(mode="after")
    def _k_of_m(self) -> RetrainingPolicy:
        if self.sustained_batches > self.sustained_window:
            raise ValueError("retraining.sustained_batches must not exceed retraining.sustained_window")
        return self


class RegistryConfig(_Strict):
    """Where models are registered: an MLflow tracking server reached through an Airflow connection."""

    mlflow_conn_id: str = "mlflow_default"
    registered_model: str = Field(default="", description="Defaults to the config's model name.")
    experiment: str = Field(default="", description="Defaults to driftwatch/<model>.")
    require_approval: bool = False


class PromotionConfig(_Strict):
    """How a challenger that passed the gate becomes champion: at once, or after a shadow period.

    In shadow mode the challenger scores every live batch beside the champion, and is promoted
    only when a paired bootstrap interval of the metric difference on labelled shadow batches
    clears `evaluation.min_improvement` (docs/shadow-mode.md).
    """

    mode: Literal["immediate", "shadow"] = "immediate"
    shadow_batches: int = Field(default=3, ge=1, description="Labelled shadow batches needed before a verdict.")
    shadow_max_days: int = Field(
        default=14, ge=1, description="Batch days after the challenger's as_of; then an undecided shadow is rejected."
    )
    shadow_min_rows: int = Field(default=500, ge=10, description="Labelled rows scored by both models needed.")
    bootstrap_iterations: int = Field(default=1000, ge=100, le=100_000)
    bootstrap_max_rows: int = Field(
        default=20_000, ge=100, description="Rows resampled per iteration (a seeded sample beyond this)."
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Of the paired bootstrap interval.")
    seed: int = 0


class ModelConfig(_Strict):
    """Everything about one monitored model: schema, storage, validation, drift and alerts."""

    name: Annotated[str, Field(pattern=_NAME)]
    description: str = ""
    owner: str = "ml-platform"
    dataset: DatasetSchema = Field(alias="schema")
    storage: StorageConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    alerts: AlertConfig
    monitor: MonitorConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    retraining: RetrainingPolicy = Field(default_factory=RetrainingPolicy)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)

    @model_validator(mode="after")
    def _default_output_prefix(self) -> ModelConfig:
        if not self.storage.output_prefix:
            storage = self.storage.model_copy(update={"output_prefix": f"driftwatch/{self.name}/"})
            object.__setattr__(self, "storage", storage)
        if self.storage.output_prefix.startswith(self.storage.incoming_prefix):
            raise ValueError("storage.output_prefix must not lie under incoming_prefix: raw batches are read-only")
        registry = self.registry.model_copy(
            update={
                "registered_model": self.registry.registered_model or self.name,
                "experiment": self.registry.experiment or f"driftwatch/{self.name}",
            }
        )
        object.__setattr__(self, "registry", registry)
        self._check_training_fits_target()
        return self

    def _check_training_fits_target(self) -> None:
        classification = self.dataset.target.task == "classification"
        regressor = self.training.estimator.endswith("_regressor") or self.training.estimator == "ridge"
        if classification == regressor:
            raise ValueError(
                f"training.estimator {self.training.estimator!r} does not fit a {self.dataset.target.task} target"
            )
        metrics = CLASSIFICATION_METRICS if classification else REGRESSION_METRICS
        if self.evaluation.primary_metric not in metrics:
            raise ValueError(
                f"evaluation.primary_metric {self.evaluation.primary_metric!r} does not fit a "
                f"{self.dataset.target.task} target; use one of {', '.join(metrics)}"
            )
        unknown = sorted(set(self.evaluation.slice_columns) - set(self.dataset.categorical_features))
        if unknown:
            raise ValueError(f"evaluation.slice_columns must be categorical features: {unknown}")

    def drift_rule(self, feature: str) -> tuple[str, float]:
        """Return the (method, threshold) the config sets for one feature."""
        spec = self.dataset.feature(feature)
        if spec.type == "numeric":
            method, threshold = self.drift.numeric_method, self.drift.numeric_threshold
        else:
            method, threshold = self.drift.categorical_method, self.drift.categorical_threshold
        return spec.drift_method or method, spec.drift_threshold or threshold


def _field_path(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """Render a pydantic error location, naming list items by their `name` where they have one."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            node = node[item]
            label = node.get("name") if isinstance(node, dict) else None
            parts[-1] = f"{parts[-1]}[{label if label else item}]" if parts else f"[{item}]"
            continue
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def parse_config(raw: Any, source: str = "<config>") -> ModelConfig:
    """Validate a loaded YAML document; errors name the source file and each bad field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as err:
        lines = [f"{source}: {err.error_count()} invalid field(s)"]
        for error in err.errors():
            lines.append(f"  {_field_path(error['loc'], raw)}: {error['msg']}")
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | os.PathLike[str]) -> ModelConfig:
    """Load and validate one model config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_config(raw, source=str(path))


def config_dir() -> Path:
    """The folder of model configs: $DRIFTWATCH_CONFIG_DIR, else the repo's config/models."""
    return Path(os.environ.get("DRIFTWATCH_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def load_configs(directory: str | os.PathLike[str] | None = None) -> list[ModelConfig]:
    """Load every *.yaml in the folder; all errors are reported together, never just the first."""
    directory = Path(directory) if directory is not None else config_dir()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: config folder does not exist")
    configs: list[ModelConfig] = []
    errors: list[str] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            configs.append(load_config(path))
        except ConfigError as err:
            errors.append(str(err))
    names = [c.name for c in configs]
    errors += [
        f"model name {n!r} is used by more than one config file" for n in sorted(set(names)) if names.count(n) > 1
    ]
    if errors:
        raise ConfigError("\n".join(errors))
    return configs


def select_models(configs: list[ModelConfig], wanted: list[str]) -> list[str]:
    """The names of the configured models that `wanted` selects (all when it is empty)."""
    names = [c.name for c in configs]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; configured: {names}")
    return [n for n in names if not wanted or n in wanted]
