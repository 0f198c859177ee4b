"""Task failure callbacks: a task that failed for good emails the model's owners and marks its batch.

Airflow runs `on_failure_callback` once a task has failed for good (retries spent, or
AirflowFailException), not on a retry. Nothing heavy is imported until a task fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from driftwatch.config import ModelConfig

log = logging.getLogger(__name__)

Context = dict[str, Any]


def _first_line(error: BaseException | str | None) -> str:
    if error is None:
        return "unknown error (see the log)"
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return (text.strip().splitlines() or ["unknown error (see the log)"])[0][:300]


def _log_url(ti: Any) -> str | None:
    try:
        return str(ti.log_url)
    except Exception:  # a link is a courtesy; the email goes out without it
        return None


def report_failure(cfg: ModelConfig, context: Context, batch_date: str | None) -> dict[str, Any]:
    """Email the failure and, for a batch, record it under the record's steps; return what was done.

    Each part is tried on its own: a failure to record must not stop the email, and neither may
    raise, since Airflow would only log it over the task's own error.
    """
    from driftwatch import history
    from driftwatch.alerts import failure_email
    from driftwatch_airflow.hooks import s3_client, send_email

    ti = context["ti"]
    error = _first_line(context.get("exception"))
    done: dict[str, Any] = {"emailed": False, "recorded": False}
    client = None
    try:
        client = s3_client(cfg.storage.aws_conn_id)
        if batch_date:
            outcome = {"failed": True, "error": error, "try": ti.try_number, "run_id": ti.run_id}
            history.record_step(client, cfg, batch_date, ti.task_id, outcome)
            done["recorded"] = True
    except Exception:  # see the docstring
        log.exception("could not record the failure of %s in the history of %s", ti.task_id, batch_date)
    message = failure_email(
        cfg,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        error=error,
        try_number=ti.try_number,
        log_url=_log_url(ti),
        batch_date=batch_date,
    )
    try:
        outbox = (client or s3_client(cfg.storage.aws_conn_id), cfg)
        done["emailed"] = bool(send_email(cfg.alerts.smtp_conn_id, message, outbox=outbox))
    except Exception:  # see the docstring; an undelivered alert is kept in the outbox
        log.exception("could not email the failure of %s", ti.task_id)
    return done


def on_task_failure(cfg: ModelConfig, batch_date: Callable[[Context], str | None]) -> Callable[[Context], None]:
    """An `on_failure_callback` for the tasks of one model's DAG; `batch_date` finds the run's batch, if any."""

    def callback(context: Context) -> None:
        try:
            day = batch_date(context)
        except Exception:  # a bad batch_date Param is itself the failure being reported
            day = None
        report_failure(cfg, context, day)

    return callback
