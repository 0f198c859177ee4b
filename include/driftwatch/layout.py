"""Object keys the pipeline reads and writes, derived from the model and the batch date.

Every output key is a function of (model, batch date), so a rerun overwrites its own
artifacts instead of adding new ones.
"""

from __future__ import annotations

from datetime import date, datetime

from driftwatch.config import ModelConfig

BATCH_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
STAGED_ROW_GROUP_ROWS = 131_072


def batch_date_str(value: date | str) -> str:
    """Normalise a batch date to YYYY-MM-DD, refusing anything else."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return datetime.fromisoformat(str(value).strip()).date().isoformat()
    except ValueError:
        raise ValueError(f"batch date must be YYYY-MM-DD, got {value!r}") from None


def incoming_prefix(cfg: ModelConfig, batch_date: str) -> str:
    return f"{cfg.storage.incoming_prefix}dt={batch_date}/"


def labels_prefix(cfg: ModelConfig, batch_date: str) -> str:
    return f"{cfg.storage.labels_prefix}dt={batch_date}/"


def report_prefix(cfg: ModelConfig, batch_date: str) -> str:
    return f"{cfg.storage.output_prefix}reports/dt={batch_date}/"


def quarantine_prefix(cfg: ModelConfig, batch_date: str) -> str:
    return f"{cfg.storage.output_prefix}quarantine/dt={batch_date}/"


def staged_key(cfg: ModelConfig, batch_date: str) -> str:
    """Typed, PII-free copy of a batch that passed ingest, read by the later steps."""
    return f"{cfg.storage.output_prefix}staged/dt={batch_date}/batch.parquet"


def staged_row_group_rows(cfg: ModelConfig) -> int:
    """Rows per row group of a staged batch: drift partitions are whole row groups."""
    return min(STAGED_ROW_GROUP_ROWS, cfg.drift.partition_rows)


def predictions_key(cfg: ModelConfig, batch_date: str) -> str:
    """The champion's scores of one staged batch, with the id and the model version."""
    return f"{cfg.storage.output_prefix}predictions/dt={batch_date}/predictions.parquet"


def partition_prefix(cfg: ModelConfig, batch_date: str) -> str:
    """Per-partition batch profiles and report samples, merged by the drift step."""
    return f"{report_prefix(cfg, batch_date)}partitions/"


def history_prefix(cfg: ModelConfig) -> str:
    return f"{cfg.storage.output_prefix}history/"


def history_key(cfg: ModelConfig, batch_date: str) -> str:
    return f"{history_prefix(cfg)}dt={batch_date}.json"


def reference_pointer_key(cfg: ModelConfig) -> str:
    """Pointer to the current champion's reference data; absent until a model is promoted."""
    return f"{cfg.storage.output_prefix}reference/current.json"


def batch_format(key: str) -> str | None:
    """'csv' or 'parquet' from an object key's suffix, None for anything else."""
    lowered = key.lower()
    for suffix, fmt in BATCH_SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    return None


def drift_asset_name(cfg: ModelConfig) -> str:
    """Name of the Airflow Asset whose events request retraining of this model."""
    return f"driftwatch.{cfg.name}.retraining_requested"


def drift_asset_uri(cfg: ModelConfig) -> str:
    """URI of that Asset: an event stream, not an object, hence Airflow's `x-` scheme for custom URIs.

    An s3:// URI would also make every parse of the monitor and retrain DAGs import the amazon
    provider's S3 hook (boto3 included), only to normalise a URI that names no object.
    """
    return f"x-driftwatch://{cfg.name}/retraining-requested"


def retraining_requests_uri(cfg: ModelConfig) -> str:
    """Where the monitor records each retraining request it made (one object per batch date)."""
    return f"s3://{cfg.storage.bucket}/{cfg.storage.output_prefix}retraining-requests/"
