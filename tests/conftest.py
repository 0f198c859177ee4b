"""Shared fixtures: a real S3 API (moto server mode) and a real SMTP sink, both on loopback.

Airflow reads its settings when it is first imported, so its home and options are set here,
at the top of the root conftest, before any test module imports Airflow.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins"), str(REPO / "dags"), str(REPO)]

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="driftwatch-test-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "DRIFTWATCH_CONFIG_DIR": str(REPO / "config" / "models"),
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": f"sqlite:///{_AIRFLOW_HOME}/mlflow.db",
        # boto3 must never fall back to a real AWS account from a developer's machine.
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
)
for _name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_")]:
    del os.environ[_name]

DEMO_CONFIG = REPO / "config" / "models" / "credit_default.yaml"


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server in server mode on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def fresh_bucket(s3_endpoint: str):
    """Reset the moto server and return a boto3 client on it holding an empty demo bucket."""
    import boto3
    import requests

    requests.post(f"{s3_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="driftwatch-demo")
    return client


@pytest.fixture
def s3(s3_endpoint):
    """A boto3 client on a freshly reset moto server holding an empty demo bucket."""
    return fresh_bucket(s3_endpoint)


@pytest.fixture
def aws_connection(s3_endpoint, monkeypatch):
    """The aws_default Airflow connection, pointing at the moto server like it would at MinIO."""
    extra = {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}
    conn = {"conn_type": "aws", "login": "test-key", "password": "test-secret", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))


@pytest.fixture
def mail_dir(tmp_path):
    """A running SMTP sink on loopback; yields the folder its .eml files land in."""
    from devstack.smtp_sink import SmtpSink

    folder = tmp_path / "mail"
    with SmtpSink(folder, port=0) as sink:
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": sink.port,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "driftwatch@localhost"},
            }
        )
        yield folder
    os.environ.pop("AIRFLOW_CONN_SMTP_DEFAULT", None)


@pytest.fixture
def demo_cfg():
    """The demo's config, promoting at once: the shadow tests (tests/integration/test_shadow_mode.py) opt in."""
    from driftwatch.config import load_config

    cfg = load_config(DEMO_CONFIG)
    return cfg.model_copy(update={"promotion": cfg.promotion.model_copy(update={"mode": "immediate"})})
