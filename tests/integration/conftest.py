"""Fixtures of the integration tests that drive the monitor DAG: a fresh metadata DB and a seeded bucket."""

from __future__ import annotations

import json
from datetime import date

import pytest

from driftwatch import demo_data, seeding

START = date(2026, 1, 1)


@pytest.fixture(scope="module")
def airflow_db():
    """A fresh Airflow metadata DB (SQLite, in the test AIRFLOW_HOME)."""
    from airflow.utils.db import resetdb

    resetdb(skip_init=False)


@pytest.fixture(scope="module")
def scenario():
    return demo_data.generate_scenario(START, days=14, seed=11, rows_per_day=400)


@pytest.fixture
def seeded(s3, aws_connection, demo_cfg, scenario, monkeypatch, tmp_path):
    """Reference and all scenario batches landed in the bucket; aws_default points at moto."""
    # An empty registry: the monitor runs before any champion exists (score_batch says so).
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps(
            {"conn_type": "http", "host": "unused", "extra": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}}
        ),
    )
    seeding.write_reference(s3, demo_cfg, demo_data.generate_reference(seed=11, rows=1200))
    for batch in scenario:
        seeding.write_batch(s3, demo_cfg, batch)
    return {b.kind: b for b in scenario} | {"by_date": {b.batch_date: b for b in scenario}}
