"""The monitoring page's read model against a real S3 (moto server on loopback) and an unreachable MLflow."""

from __future__ import annotations

import pytest

from driftwatch import history, monitoring
from driftwatch.reports import monitoring as pages
from tests.unit.test_monitoring import estimate, live, record

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


def test_the_page_shows_estimates_realized_values_and_the_policy_from_s3(s3, demo_cfg):
    policy = {"action": "cooldown", "alert": True, "retrain": False, "reason": "promoted 2 days ago", "signals": {}}
    fields = {"estimate": estimate(0.71), "policy": policy}
    history.write_record(s3, demo_cfg, "2026-11-13", {**record("2026-11-13", 0.5, live=live(0.70)), **fields})
    history.write_record(s3, demo_cfg, "2026-11-14", {**record("2026-11-14", 0.0), "estimate": estimate(None)})
    page = monitoring.load_model_page(s3, demo_cfg, None, last=5)
    assert page.performance["estimated"] == [0.71, None] and page.performance["realized"] == [0.70, None]
    assert [r.policy for r in page.rows] == ["", "cooldown"]
    html = pages.render_model_section(page, report_base="/dw/report")
    assert html.count('class="dw-band"') == 1 and html.count('class="dw-realized"') == 1
    assert 'title="promoted 2 days ago">cooldown</span>' in html
