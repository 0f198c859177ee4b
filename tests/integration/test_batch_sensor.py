"""The batch sensor against a real S3 API (moto's server): it defers, and its trigger fires on arrival."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from driftwatch_airflow.sensors import S3BatchSensor

BUCKET = "driftwatch-demo"
KEY = "incoming/dt=2026-12-01/*"


def _sensor(**kwargs) -> S3BatchSensor:
    return S3BatchSensor(
        task_id="wait_for_batch", bucket_name=BUCKET, bucket_key=KEY, poke_interval=0.2, timeout=30, **kwargs
    )


def test_present_batch_is_found_without_deferring(s3, aws_connection):
    s3.put_object(Bucket=BUCKET, Key="incoming/dt=2026-12-01/part-0.csv", Body=b"a\n1\n")
    assert _sensor().execute(context={}) is None
    assert _sensor().poke(context={}) is True


def test_missing_batch_defers_to_the_s3_trigger_which_fires_when_it_lands(s3, aws_connection):
    s3.put_object(Bucket=BUCKET, Key="incoming/dt=2026-11-30/part-0.csv", Body=b"a\n1\n")  # another day
    sensor = _sensor()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "S3KeyTrigger"
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout.total_seconds() == 30

    async def first_event():
        events = trigger.run()
        waiting = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.6)
        assert not waiting.done(), "the trigger fired before the batch landed"
        s3.put_object(Bucket=BUCKET, Key="incoming/dt=2026-12-01/part-0.parquet", Body=b"PAR1")
        return await asyncio.wait_for(waiting, timeout=20)

    # A thread of its own: the browser tests' Playwright leaves an event loop running in this one.
    with ThreadPoolExecutor(1) as worker:
        event = worker.submit(asyncio.run, first_event()).result()
    assert event.payload["status"] == "success"
    assert sensor.execute_complete(context={}, event=event.payload) is None


def test_a_failed_trigger_is_an_error_that_names_the_key():
    with pytest.raises(AirflowException, match=r"s3://driftwatch-demo/incoming/dt=2026-12-01/\*.*access denied"):
        _sensor().execute_complete(context={}, event={"status": "error", "message": "access denied"})
    with pytest.raises(AirflowException, match="no event"):
        _sensor().execute_complete(context={}, event=None)
