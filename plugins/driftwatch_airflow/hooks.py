"""Hooks that turn Airflow connections into the clients driftwatch's domain code takes.

The domain package (include/driftwatch) never reads connections itself; tasks build clients
here and pass them in, so the same code runs against AWS, MinIO or moto.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from airflow.sdk.bases.hook import BaseHook


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


def send_email(smtp_conn_id: str, message: EmailMessage) -> list[str]:
    """Send a ready-made message through an Airflow SMTP connection; returns the recipients."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from driftwatch.alerts import send

    # The hook's own send_email_smtp cannot build a multipart/alternative message, so its
    # authenticated client (the one the hook itself uses to send and to test) sends ours.
    with SmtpHook(smtp_conn_id=smtp_conn_id) as hook:
        return send(hook._smtp_client, message)


def mlflow_tracking_uri(mlflow_conn_id: str) -> str:
    return MlflowRegistryHook(mlflow_conn_id).tracking_uri()
