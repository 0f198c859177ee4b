"""What every driftwatch DAG shares: one retry policy, the start date, the retraining Asset, the batch date.

DAG files build their DAGs from these, so a policy is changed in one place. Nothing heavy is
imported here: DAG files import this module while they are parsed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar

from airflow.sdk import Asset, Param
from airflow.sdk.exceptions import AirflowFailException

from driftwatch import layout
from driftwatch.config import ModelConfig
from driftwatch.errors import PermanentError

F = TypeVar("F", bound=Callable[..., Any])


def default_args(cfg: ModelConfig) -> dict[str, Any]:
    """The one retry policy: retries (for I/O) with exponential backoff, from the model's monitor section."""
    return {
        "owner": cfg.owner,
        "retries": cfg.monitor.retries,
        "retry_delay": timedelta(seconds=cfg.monitor.retry_delay_seconds),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=cfg.monitor.task_timeout_minutes),
    }


def dag_settings(cfg: ModelConfig, kind: str, *, max_active_runs: int) -> dict[str, Any]:
    """The `@dag` arguments every DAG of a model shares: start date, no catch-up, tags, the retry policy.

    Every task also gets the failure callback: a task that failed for good emails the model's
    owners, and a monitor task marks its batch's record.
    """
    from driftwatch_airflow.callbacks import on_task_failure

    batch = _context_batch_date if kind == "monitor" else _no_batch_date
    return {
        "start_date": start_date(cfg),
        "catchup": False,
        "max_active_runs": max_active_runs,
        "dagrun_timeout": dagrun_timeout(cfg, kind),
        "tags": ["driftwatch", kind, cfg.name],
        "default_args": {**default_args(cfg), "on_failure_callback": on_task_failure(cfg, batch)},
    }


# Longest a run may wait on a person: the retrain's approval (await_approval's response_timeout).
APPROVAL_TIMEOUT = timedelta(days=2)
# Tasks a run executes one after the other at the most, for its deadline.
SEQUENTIAL_TASKS = {"monitor": 9, "retrain": 8, "rollback": 2}


def dagrun_timeout(cfg: ModelConfig, kind: str) -> timedelta:
    """A run's deadline: its waits (the sensor, the approval) plus each task's timeout in turn.

    No run can hang past it; the scheduler fails it, so the next one is not blocked behind it.
    """
    waits = {"monitor": timedelta(minutes=cfg.monitor.sensor_timeout_minutes), "retrain": APPROVAL_TIMEOUT}
    tasks = SEQUENTIAL_TASKS.get(kind, 8) * timedelta(minutes=cfg.monitor.task_timeout_minutes)
    return waits.get(kind, timedelta(0)) + tasks


def _context_batch_date(context: dict[str, Any]) -> str:
    return batch_date_of(context.get("params") or {}, context.get("ds"))


def _no_batch_date(context: dict[str, Any]) -> None:
    return None


def start_date(cfg: ModelConfig) -> datetime:
    """Midnight UTC of the model's monitor.start_date."""
    return datetime.combine(cfg.monitor.start_date, time(), tzinfo=UTC)


def retraining_asset(cfg: ModelConfig) -> Asset:
    """The Asset whose events the monitor emits and the retrain DAG is scheduled on."""
    return Asset(
        name=layout.drift_asset_name(cfg),
        uri=layout.drift_asset_uri(cfg),
        extra={"requests": layout.retraining_requests_uri(cfg)},
    )


def batch_date_param(description: str) -> Param:
    """The optional `batch_date` Param: a YYYY-MM-DD date, or empty for the run's own data interval."""
    return optional_text_param("Batch date", description, format="date")


def optional_text_param(title: str, description: str, **schema: Any) -> Param:
    """A trigger-form text field that may stay empty (None), e.g. a date (`format="date"`) or a `pattern`."""
    return Param(None, type=["null", "string"], title=title, description=description, **schema)


def flag_param(default: bool, title: str, description: str) -> Param:
    """A trigger-form checkbox."""
    return Param(default, type="boolean", title=title, description=description)


def reason_param(default: str, description: str, *, min_length: int) -> Param:
    """The `reason` Param: why a person runs the DAG, recorded with what the run changes (at most 500 characters)."""
    return Param(default, type="string", minLength=min_length, maxLength=500, title="Reason", description=description)


def bounded_param(
    default: Any, kind: str | list[str], bounds: tuple[float, float], title: str, description: str
) -> Param:
    """A number Param whose value must lie within `bounds` (inclusive); the trigger form refuses another.

    The bounds sit under allOf: Airflow's trigger form turns a top-level minimum/maximum into a
    number widget that silently clamps what was typed (5 becomes 1). Under allOf the form keeps
    the typed value, and Airflow refuses the run when it is created, on every path (form, REST
    API, CLI), with a message the form shows.
    """
    low, high = bounds
    return Param(default, type=kind, allOf=[{"minimum": low, "maximum": high}], title=title, description=description)


def batch_date_of(params: dict[str, Any], ds: str | None) -> str:
    """The batch this run handles: the batch_date Param, else the run's data interval start."""
    value = params.get("batch_date") or ds
    if not value:
        raise AirflowFailException(
            "this run has no data interval: set the batch_date Param (YYYY-MM-DD) to pick a batch"
        )
    try:
        return layout.batch_date_str(value)
    except ValueError as err:
        raise AirflowFailException(str(err)) from None


def fail_fast(function: F) -> F:
    """Fail the task on its first attempt when the error is one a retry cannot fix (config, schema, data).

    Retries stay for I/O: a schema bug would otherwise cost every retry's delay per batch and
    hide behind "up_for_retry". The message is the domain error's own, which names the fix.
    """

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except PermanentError as err:
            raise AirflowFailException(f"{type(err).__name__}: {err} (not retried: retrying cannot fix this)") from err

    return run  # type: ignore[return-value]


def s3(cfg: ModelConfig) -> Any:
    """The model's S3 client, from its storage.aws_conn_id connection."""
    from driftwatch_airflow.hooks import s3_client

    return s3_client(cfg.storage.aws_conn_id)


def tracking_uri(cfg: ModelConfig) -> str:
    """The model's MLflow tracking URI, from its registry.mlflow_conn_id connection."""
    from driftwatch_airflow.hooks import mlflow_tracking_uri

    return mlflow_tracking_uri(cfg.registry.mlflow_conn_id)


def email(cfg: ModelConfig, message: Any, client: Any = None) -> list[str]:
    """Send an alert through the model's SMTP connection, with the S3 outbox (dedup, undelivered record)."""
    from driftwatch_airflow.hooks import send_email

    return send_email(cfg.alerts.smtp_conn_id, message, outbox=(client or s3(cfg), cfg))
