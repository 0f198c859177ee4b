"""alerts: the emails people read (subjects, HTML with inline CSS, text alternative, trend chart, links)."""

from __future__ import annotations

import pytest

from driftwatch import alerts

HOSTILE = '<img src=x onerror="alert(1)">'
SCRIPT = "</script><script>alert(1)</script>"
BASE = "http://airflow.example/driftwatch/report"
DRIFT_KEY = "driftwatch/credit_default/reports/dt=2026-01-08/drift.html"


def decision(name: str = "age") -> dict:
    return {
        "batch_date": "2026-01-08",
        "drifted_share": 0.5,
        "share_threshold": 0.3,
        "dataset_drift": True,
        "n_features": 12,
        "reason": f"data drift: 50% of features drifted ({name})",
        "drifted_features": [{"name": name, "method": "wasserstein", "score": 0.31, "threshold": 0.1}],
    }


def trend(*shares: float | None) -> list[dict]:
    return [
        {"batch_date": f"2026-01-0{i + 1}", "drift": None if s is None else {"share": s}} for i, s in enumerate(shares)
    ]


@pytest.fixture
def with_base(monkeypatch):
    monkeypatch.setenv(alerts.BASE_URL_ENV, BASE)


def test_drift_email_has_an_inline_trend_chart_referenced_by_cid(demo_cfg, with_base):
    msg = alerts.drift_email(
        demo_cfg, "2026-01-08", decision(), {"drift report": f"s3://driftwatch-demo/{DRIFT_KEY}"}, trend(0.0, None, 0.5)
    )
    assert msg["Subject"] == (
        "[driftwatch] credit_default 2026-01-08: drift in 1/12 features (50%, threshold 30%); retraining requested"
    )
    assert msg.get_content_type() == "multipart/alternative"
    html_part = msg.get_body(("related", "html"))
    assert html_part.get_content_type() == "multipart/related"
    images = [p for p in html_part.iter_parts() if p.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0]["Content-ID"] == f"<{alerts.TREND_CID}>"
    assert images[0].get_content().startswith(b"\x89PNG\r\n\x1a\n")
    html = msg.get_body(("html",)).get_content()
    assert f'src="cid:{alerts.TREND_CID}"' in html and "style=" in html
    text = msg.get_body(("plain",)).get_content()
    assert "01-02 quarantined" in text and "01-03 50%" in text, "the text part says what the chart shows"
    assert f'<a href="{BASE}/{DRIFT_KEY}">' in html, "the report is one click away"
    assert "http://airflow.example/driftwatch/monitoring" in text


def test_drift_email_without_history_has_no_image(demo_cfg):
    msg = alerts.drift_email(demo_cfg, "2026-01-08", decision(), {}, trend(0.5))
    assert not any(p.get_content_type() == "image/png" for p in msg.walk())
    assert "cid:" not in msg.get_body(("html",)).get_content()


def test_only_servable_report_objects_get_web_links(demo_cfg, with_base):
    bucket = "s3://driftwatch-demo/"
    links = alerts.report_links(
        demo_cfg,
        {
            "validation report": bucket + "driftwatch/credit_default/quarantine/dt=2026-01-05/validation.html",
            "quarantined copy": bucket + "driftwatch/credit_default/quarantine/dt=2026-01-05/",
            "original batch": bucket + "incoming/dt=2026-01-05/",
        },
    )
    quarantined = "driftwatch/credit_default/quarantine/dt=2026-01-05/validation.html"
    assert links["validation report (web)"] == f"{BASE}/{quarantined}"
    assert "quarantined copy (web)" not in links and "original batch (web)" not in links
    assert links["model monitoring (web)"] == "http://airflow.example/driftwatch/monitoring"


def test_data_values_are_escaped_and_subjects_stay_one_line(demo_cfg, with_base):
    reason = f"missing column {HOSTILE}\nBcc: victim@example.com"
    msg = alerts.quarantine_email(
        demo_cfg, "2026-01-05", reason, [{"check": HOSTILE, "column": HOSTILE, "detail": HOSTILE}], {}
    )
    assert "\n" not in msg["Subject"] and "Bcc" not in msg
    assert "credit_default" in msg["Subject"] and "2026-01-05" in msg["Subject"] and "quarantined" in msg["Subject"]
    html = msg.get_body(("html",)).get_content()
    assert "<img" not in html and "&lt;img src=x" in html
    drift = alerts.drift_email(demo_cfg, "2026-01-08", decision(HOSTILE), {}, trend(0.1, 0.5))
    assert "<img src=x" not in drift.get_body(("html",)).get_content()


def test_evaluation_and_rollback_subjects_name_the_date(demo_cfg):
    plan = {"reason": "data drift", "run_key": "manual__1", "as_of": "2026-01-12"}
    evaluation = {"champion_version": "1", "checks": [], "report_uri": "s3://b/evaluations/manual__1/evaluation.html"}
    message = alerts.evaluation_email(demo_cfg, plan, {"version": "2"}, evaluation, {"action": "rejected"})
    assert message["Subject"] == "[driftwatch] credit_default 2026-01-12: challenger v2 rejected (champion v1)"
    outcome = {"from_version": "2", "to_version": "1", "actor": "ana", "reason": "bad", "at": "2026-01-13T10:00:00"}
    rollback = alerts.rollback_email(demo_cfg, outcome)
    assert rollback["Subject"] == "[driftwatch] credit_default 2026-01-13: champion rolled back from v2 to v1"
    assert rollback.get_body(("plain",)) is not None and rollback.get_body(("html",)) is not None


def small_decision(feature_name: str = "age") -> dict:
    return {
        "drifted_share": 0.5,
        "share_threshold": 0.3,
        "n_features": 4,
        "reason": "data drift",
        "drifted_features": [{"name": feature_name, "method": "wasserstein", "score": 0.31, "threshold": 0.1}],
    }


def test_drift_email_has_text_and_html_parts_and_a_dedup_key(demo_cfg):
    msg = alerts.drift_email(demo_cfg, "2026-01-08", small_decision(), {"drift report": "s3://b/k/drift.html"})
    assert msg.get_content_type() == "multipart/alternative"
    assert "credit_default" in msg["Subject"] and "2026-01-08" in msg["Subject"] and "drift" in msg["Subject"]
    assert msg["X-Driftwatch-Dedup-Key"] == "credit_default/2026-01-08/drift"
    again = alerts.drift_email(demo_cfg, "2026-01-08", small_decision(), {})
    assert again["Message-ID"] == msg["Message-ID"], "a rerun must produce the same Message-ID"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<table" in html and "style=" in html
    assert "age | wasserstein | 0.31 | 0.1" in text
    assert "s3://b/k/drift.html" in text


def test_values_from_data_are_escaped_in_emails(demo_cfg):
    msg = alerts.drift_email(demo_cfg, "2026-01-08", small_decision(SCRIPT), {"report": SCRIPT})
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    quarantine = alerts.quarantine_email(
        demo_cfg, "2026-01-05", SCRIPT, [{"check": SCRIPT, "column": SCRIPT, "detail": SCRIPT}], {}
    )
    assert "<script>" not in quarantine.get_body(("html",)).get_content()


def test_report_links_add_web_urls_only_when_configured(demo_cfg):
    uris = {"drift report": "s3://driftwatch-demo/driftwatch/credit_default/reports/dt=2026-01-08/drift.html"}
    assert alerts.report_links(demo_cfg, uris) == uris
    with_base = demo_cfg.model_copy(
        update={"alerts": demo_cfg.alerts.model_copy(update={"report_base_url": "http://x/reports/"})}
    )
    links = alerts.report_links(with_base, uris)
    assert links["drift report (web)"] == "http://x/reports/driftwatch/credit_default/reports/dt=2026-01-08/drift.html"


def test_failure_email_names_the_task_the_error_and_the_log(demo_cfg):
    def failure(**changes):
        fields = {
            "dag_id": "monitor__credit_default",
            "run_id": "scheduled__2026-01-08T00:00:00+00:00",
            "task_id": "score_batch",
            "error": "SchemaMismatch: missing feature column(s): age\nTraceback ...",
            "try_number": 1,
            "log_url": "http://airflow/dags/monitor__credit_default/runs/r/tasks/score_batch?try_number=1",
            "batch_date": "2026-01-08",
        }
        return alerts.failure_email(demo_cfg, **{**fields, **changes})

    msg = failure()
    assert msg["Subject"] == "[driftwatch] credit_default 2026-01-08: score_batch failed in monitor__credit_default"
    text = msg.get_body(("plain",)).get_content()
    assert "Error: SchemaMismatch: missing feature column(s): age\n" in text and "Traceback" not in text
    assert "try 1" in text and "score_batch?try_number=1" in text
    # The same failure of the same run is the same alert (the outbox sends it once); another task is another.
    assert failure()["X-Driftwatch-Dedup-Key"] == msg["X-Driftwatch-Dedup-Key"]
    assert failure(task_id="compute_drift")["Message-ID"] != msg["Message-ID"]
    hostile = failure(error=SCRIPT, batch_date=None)
    assert "<script>" not in hostile.get_body(("html",)).get_content()
    assert hostile["Subject"] == "[driftwatch] credit_default: score_batch failed in monitor__credit_default"


def test_an_alert_is_its_decision_not_what_changes_on_a_rerun(demo_cfg):
    from driftwatch.history import alert_content_sha256

    first = alerts.drift_email(demo_cfg, "2026-01-08", decision(), {}, trend(0.1, 0.2))
    live = {"metric": "roc_auc", "rows": 300, "value": 0.7, "evaluated": 0.8, "degraded": True, "model_version": "2"}
    rerun = alerts.drift_email(demo_cfg, "2026-01-08", {**decision(), "live": live}, {}, trend(0.1, 0.2, 0.5))
    assert rerun["Message-ID"] == first["Message-ID"]
    assert alert_content_sha256(rerun) == alert_content_sha256(first)
    other = alerts.drift_email(demo_cfg, "2026-01-08", decision("income"), {}, trend(0.1))
    assert other["X-Driftwatch-Dedup-Key"] == first["X-Driftwatch-Dedup-Key"]
    assert other["Message-ID"] != first["Message-ID"], "another decision is another alert"
    assert alert_content_sha256(other) != alert_content_sha256(first)
