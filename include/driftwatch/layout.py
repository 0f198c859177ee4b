"""Object keys the pipeline reads and writes, derived from the model and the batch date.

Every output key is a function of (model, batch date), so a rerun overwrites its own
artifacts instead of adding new ones.
"""

from __future__ import annotations

import hashlib
import re
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


def incoming_key(cfg: ModelConfig, batch_date: str, name: str) -> str:
    """One object of a batch as it lands (the demo's seeding and `driftwatch land` write these)."""
    return f"{incoming_prefix(cfg, batch_date)}{name}"


def incoming_pattern(cfg: ModelConfig, batch_date: str) -> str:
    """Wildcard key the batch sensor waits on; `batch_date` may be a Jinja template."""
    return f"{incoming_prefix(cfg, batch_date)}*"


def labels_prefix(cfg: ModelConfig, batch_date: str) -> str:
    return f"{cfg.storage.labels_prefix}dt={batch_date}/"


def labels_key(cfg: ModelConfig, batch_date: str, name: str) -> str:
    return f"{labels_prefix(cfg, batch_date)}{name}"


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


def shadow_predictions_key(cfg: ModelConfig, batch_date: str) -> str:
    """The challenger in shadow's scores of one staged batch, beside the champion's."""
    return f"{cfg.storage.output_prefix}predictions/dt={batch_date}/shadow.parquet"


def shadow_state_key(cfg: ModelConfig) -> str:
    """The challenger in shadow (or the last one's verdict); absent until a first shadow."""
    return f"{cfg.storage.output_prefix}shadow/state.json"


def partition_prefix(cfg: ModelConfig, batch_date: str) -> str:
    """Per-partition batch profiles and report samples, merged by the drift step."""
    return f"{report_prefix(cfg, batch_date)}partitions/"


def partition_key(cfg: ModelConfig, batch_date: str, index: int, suffix: str) -> str:
    """One partition's output, e.g. suffix ".profile.json" or ".sample.parquet"."""
    return f"{partition_prefix(cfg, batch_date)}part-{index:05d}{suffix}"


def history_prefix(cfg: ModelConfig) -> str:
    return f"{cfg.storage.output_prefix}history/"


def history_key(cfg: ModelConfig, batch_date: str) -> str:
    return f"{history_prefix(cfg)}dt={batch_date}.json"


def history_key_date(key: str) -> str:
    """The batch date of a history record's key (the inverse of history_key)."""
    return key.rsplit("dt=", 1)[-1].removesuffix(".json")


def reference_pointer_key(cfg: ModelConfig) -> str:
    """Pointer to the current champion's reference data; absent until a model is promoted."""
    return f"{cfg.storage.output_prefix}reference/current.json"


def reference_profile_prefix(cfg: ModelConfig, digest: str) -> str:
    """A reference's stored profile and report sample, named by the digest of what they were built from."""
    return f"{cfg.storage.output_prefix}reference/profiles/{digest}/"


def safe_run_key(run_key: str) -> str:
    """A run id or plan key as one key segment (Airflow run ids hold ':' and '+')."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in run_key)


def training_prefix(cfg: ModelConfig, run_key: str) -> str:
    """The training data a retrain run assembled, under its plan key."""
    return f"{cfg.storage.output_prefix}training/{safe_run_key(run_key)}/"


def training_reference_key(cfg: ModelConfig, run_key: str) -> str:
    """A retrain run's training plus holdout rows: the drift reference once its challenger is champion."""
    return f"{training_prefix(cfg, run_key)}reference.parquet"


def evaluation_prefix(cfg: ModelConfig, run_key: str) -> str:
    """A retrain run's evaluation report of challenger against champion."""
    return f"{cfg.storage.output_prefix}evaluations/{safe_run_key(run_key)}/"


def _alert_slug(dedup_key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", dedup_key)[:80]
    return f"{readable}-{hashlib.sha256(dedup_key.encode()).hexdigest()[:8]}"


def alert_record_key(cfg: ModelConfig, dedup_key: str, state: str) -> str:
    """One delivery record of an alert: state is "delivered" or "undelivered"."""
    return f"{cfg.storage.output_prefix}alerts/{_alert_slug(dedup_key)}.{state}.json"


def retraining_request_key(cfg: ModelConfig, batch_date: str) -> str:
    """The retraining request a monitor run made for one batch date."""
    return f"{cfg.storage.output_prefix}retraining-requests/dt={batch_date}.json"


# Report objects the UI may serve, relative to the output prefix. One path segment per level and a
# fixed suffix: nothing else under the pipeline's prefixes (the quarantined raw data included) matches.
SERVABLE_REPORT = re.compile(
    r"^(?:(?:reports|quarantine)/dt=\d{4}-\d{2}-\d{2}|evaluations/[A-Za-z0-9_=-][A-Za-z0-9_.=-]*)"
    r"/[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(html|json)$"
)


def policy_state_key(cfg: ModelConfig) -> str:
    """The retraining policy's state: the pending request, if any, and the last request sent."""
    return f"{cfg.storage.output_prefix}policy/state.json"


def retrain_status_key(cfg: ModelConfig) -> str:
    """Written by every retrain run when it starts and when it ends, whatever its outcome."""
    return f"{cfg.storage.output_prefix}policy/retrain-status.json"


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
