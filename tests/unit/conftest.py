"""Fixtures the unit tests share: the demo model's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftwatch.config import ModelConfig, load_config

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "models" / "credit_default.yaml"


NETWORK_FIXTURES = {"s3", "s3_endpoint", "aws_connection", "smtp_server", "flaky_s3"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests never touch the network: one that asks for a loopback server belongs in tests/integration."""
    for item in items:
        used = NETWORK_FIXTURES & set(getattr(item, "fixturenames", ()))
        if used and "/tests/unit/" in str(item.path):
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(used))}: move it to tests/integration")


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    """The demo model's config (config/models/credit_default.yaml); a test module may override it."""
    return load_config(DEMO_CONFIG)
