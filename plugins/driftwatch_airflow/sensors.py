"""A deferrable wait for a batch in S3 that keeps the amazon provider out of DAG parsing.

The amazon provider's `S3KeySensor` module imports its S3 hook, and with it boto3, when the DAG
file is parsed: about 0.3 s per parse, for a task that only needs boto3 when it runs. This sensor
makes the same checks with the same provider pieces (`S3Hook` to look once, `S3KeyTrigger` to
wait in the triggerer), imported inside the methods that run on a worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException


class S3BatchSensor(BaseSensorOperator):
    """Succeed once an object matches `bucket_key` (a wildcard key such as `incoming/dt=2026-12-01/*`).

    It looks once on the worker and, when nothing is there yet, defers to the amazon provider's
    `S3KeyTrigger` until an object lands or `timeout` seconds pass. With `soft_fail=True`, the
    timeout skips the task instead of failing it, as for any Airflow sensor. With
    `deferrable=False` it pokes in its worker slot instead, like any poke-mode sensor.
    """

    template_fields: Sequence[str] = ("bucket_key", "bucket_name")
    ui_color = "#f0eee4"

    def __init__(
        self,
        *,
        bucket_name: str,
        bucket_key: str,
        aws_conn_id: str = "aws_default",
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.bucket_key = bucket_key
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable

    def poke(self, context: Any) -> bool:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        return bool(hook.check_for_wildcard_key(self.bucket_key, bucket_name=self.bucket_name))

    def execute(self, context: Any) -> None:
        if not self.deferrable:
            super().execute(context)
        elif not self.poke(context):
            self._defer()

    def _defer(self) -> None:
        from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger

        self.defer(
            timeout=timedelta(seconds=self.timeout),
            trigger=S3KeyTrigger(
                bucket_name=self.bucket_name,
                bucket_key=self.bucket_key,
                wildcard_match=True,
                aws_conn_id=self.aws_conn_id,
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        """The trigger found an object (status success) or failed; anything else is an error to show."""
        if not event or event.get("status") == "error":
            message = (event or {}).get("message", "the trigger returned no event")
            raise AirflowException(f"waiting for s3://{self.bucket_name}/{self.bucket_key} failed: {message}")
