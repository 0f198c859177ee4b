"""Hooks that turn Airflow connections into the clients driftwatch's domain code takes.

The domain package (include/driftwatch) never reads connections itself; tasks build clients
here and pass them in, so the same code runs against AWS, MinIO or moto.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig

log = logging.getLogger(__name__)


class MlflowRegistryHook(BaseHook):
    """The MLflow tracking/registry URI from an Airflow connection.

    An `http` connection gives `<schema or http>://host:port`; an extra `tracking_uri`
    (e.g. `databricks`) overrides it.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "http"
    hook_name = "MLflow registry"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id

    def tracking_uri(self) -> str:
        conn = self.get_connection(self.mlflow_conn_id)
        override = (conn.extra_dejson or {}).get("tracking_uri")
        if override:
            return override
        if not conn.host:
            raise ValueError(f"connection {self.mlflow_conn_id!r} has no host: set it to the MLflow server")
        scheme = conn.schema or "http"
        return f"{scheme}://{conn.host}:{conn.port}" if conn.port else f"{scheme}://{conn.host}"


def s3_client(aws_conn_id: str) -> Any:
    """A boto3 S3 client from an Airflow AWS connection (endpoint_url in its extra for MinIO/moto)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


class AlertNotDelivered(RuntimeError):
    """The SMTP server did not take an alert after every attempt; the alert was recorded instead."""


def _send_once(smtp_conn_id: str, message: EmailMessage) -> list[str]:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from driftwatch.alerts import send

    # The hook's own send_email_smtp cannot build a multipart/alternative message, so its
    # authenticated client (the one the hook itself uses to send and to test) sends ours.
    with SmtpHook(smtp_conn_id=smtp_conn_id) as hook:
        return send(hook._smtp_client, message)


def send_email(
    smtp_conn_id: str,
    message: EmailMessage,
    *,
    outbox: tuple[Any, ModelConfig] | None = None,
    attempts: int = 3,
    backoff_seconds: float = 2.0,
) -> list[str]:
    """Send a ready-made message through an Airflow SMTP connection; returns the recipients.

    Transient SMTP failures are retried with exponential backoff. With an `outbox` (an S3 client
    and the model config) an alert already delivered with the same dedup key and content is not
    sent again, and one that still fails is stored under the model's `alerts/` prefix before
    AlertNotDelivered is raised, so the task fails visibly and the alert is not lost.
    """
    import smtplib
    import time

    from driftwatch import history

    if outbox is not None and history.was_delivered(*outbox, message):
        log.info("alert %s was already delivered; not sending it again", message["X-Driftwatch-Dedup-Key"])
        return [a.strip() for a in str(message["To"]).split(",")]
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            recipients = _send_once(smtp_conn_id, message)
        except (smtplib.SMTPException, OSError) as err:  # refused, reset, timed out, 4xx/5xx
            error = f"{type(err).__name__}: {err}"
            log.warning("SMTP attempt %d/%d for %s failed: %s", attempt, attempts, smtp_conn_id, error)
            if attempt < attempts:
                time.sleep(backoff_seconds * 2 ** (attempt - 1))
            continue
        if outbox is not None:
            history.record_delivered(*outbox, message, attempt)
        return recipients
    where = history.record_undelivered(*outbox, message, error, attempts) if outbox is not None else "nowhere"
    raise AlertNotDelivered(
        f"alert {message['X-Driftwatch-Dedup-Key'] or message['Subject']!r} not delivered through "
        f"connection {smtp_conn_id!r} after {attempts} attempts ({error}); the message was recorded at {where}"
    )


def mlflow_tracking_uri(mlflow_conn_id: str) -> str:
    return MlflowRegistryHook(mlflow_conn_id).tracking_uri()
