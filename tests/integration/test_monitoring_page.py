"""The monitoring page's read model against a real S3 (moto server on loopback) and an unreachable MLflow."""

from __future__ import annotations

import pytest

from driftwatch import history, monitoring
from tests.unit.test_monitoring import record

pytestmark = pytest.mark.integration


def test_load_model_page_reads_the_history_from_s3(s3, demo_cfg):
    history.write_record(s3, demo_cfg, "2026-11-12", {k: v for k, v in record("2026-11-12", 0.1).items()})
    history.write_record(s3, demo_cfg, "2026-11-13", record("2026-11-13", None, status="quarantined"))
    page = monitoring.load_model_page(s3, demo_cfg, None, last=5)
    assert [r.batch_date for r in page.rows] == ["2026-11-13", "2026-11-12"]
    assert page.champion is None and page.errors == []
    broken = monitoring.load_model_page(s3, demo_cfg, "http://127.0.0.1:9/", last=5)
    assert broken.errors and "MLflow registry unavailable" in broken.errors[0]
    assert len(broken.rows) == 2, "the batches still show when the registry is down"
