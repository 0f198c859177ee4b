"""Fixtures the unit tests share: the demo model's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftwatch.config import ModelConfig, load_config

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "models" / "credit_default.yaml"


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    """The demo model's config (config/models/credit_default.yaml); a test module may override it."""
    return load_config(DEMO_CONFIG)
