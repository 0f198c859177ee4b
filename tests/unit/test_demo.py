"""What `make demo` prints while it waits and at the end: progress lines and the UI's URLs."""

from __future__ import annotations

from devstack import demo


def test_progress_line_shows_the_bar_the_count_and_each_runs_task():
    line = demo.progress_line("monitor__m", 4, 1, 0, ["2026-11-15 compute_drift", "2 not started"], 42.4)
    assert line == (
        "  [#####---------------] monitor__m: 1/4 batches done, 42 s; now: 2026-11-15 compute_drift, 2 not started"
    )
    assert "(1 failed)" in demo.progress_line("monitor__m", 4, 4, 1, [], 60)


def test_ui_links_point_at_the_monitoring_page_and_each_batchs_reports(demo_cfg):
    rows = [
        {"batch_date": "2026-11-13", "validation": "quarantined"},
        {"batch_date": "2026-11-14", "validation": "passed"},
        {"batch_date": "2026-11-15", "validation": "no record"},
    ]
    links = demo.ui_links("http://127.0.0.1:8080", demo_cfg, rows)
    assert links["monitoring"] == "http://127.0.0.1:8080/plugin/model-monitoring"
    assert links["reports"]["2026-11-13"] == {
        "validation report": "http://127.0.0.1:8080/driftwatch/report/driftwatch/credit_default/quarantine/dt=2026-11-13/validation.html"
    }
    assert set(links["reports"]["2026-11-14"]) == {"drift report", "validation report"}
    assert "2026-11-15" not in links["reports"]
