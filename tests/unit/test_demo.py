"""What `make demo` prints while it waits and at the end: progress lines and the UI's URLs."""

from __future__ import annotations

from devstack import demo
from driftwatch import history


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


def test_estimate_text_shows_the_value_and_its_band_or_a_dash():
    assert history.estimate_text({"metric": "roc_auc", "value": 0.7123, "lower": 0.664, "upper": 0.758}) == (
        "0.71 [0.66,0.76]"
    )
    assert history.estimate_text({"metric": "roc_auc", "value": 0.7, "lower": None, "upper": None}) == "0.70"
    assert history.estimate_text({"metric": "roc_auc", "value": None, "reason": "no estimator"}) == "-"
    assert history.estimate_text(None) == "-"


def test_the_table_has_estimate_and_policy_columns_beside_the_action():
    row = {
        "batch_date": "2026-11-14",
        "run_state": "success",
        "rows": 2000,
        "validation": "passed",
        "drift_share": 0.33,
        "estimate": "0.79 [0.75,0.83]",
        "policy": "alert-only",
        "action": "alert",
    }
    quarantined = {**row, "drift_share": None, "estimate": "-", "policy": "-", "action": "quarantined"}
    head, line, other = history.table_lines([row, quarantined])
    assert head.split() == ["batch", "run", "rows", "validation", "drift", "share", "estimate", "policy", "action"]
    assert line.split() == [
        "2026-11-14",
        "success",
        "2000",
        "passed",
        "33%",
        "0.79",
        "[0.75,0.83]",
        "alert-only",
        "alert",
    ]
    assert other.split() == ["2026-11-14", "success", "2000", "passed", "-", "-", "quarantined"]
    # Columns line up: each cell starts where its header does.
    for name, cell in (("estimate", "0.79"), ("policy", "alert-only"), ("action", "alert")):
        assert head.index(name) == line.rindex(cell)


def test_batch_table_reads_policy_and_estimate_from_the_history_record(monkeypatch, demo_cfg):
    records = {
        "2026-11-14": {
            "rows": 2000,
            "status": "passed",
            "drift": {"share": 0.58},
            "action": "alert",
            "policy": {"action": "pending-labels", "reason": "waiting for labels", "signals": {}},
            "estimate": {"metric": "roc_auc", "value": 0.741, "lower": 0.70, "upper": 0.78},
        },
        "2026-11-15": {"rows": 2000, "status": "passed", "drift": {"share": 0.0}, "action": "none"},
    }
    monkeypatch.setattr(history, "read_record", lambda client, cfg, day: records.get(day))
    runs = {"2026-11-14": {"state": "success"}, "2026-11-15": {"state": "success"}}
    rows = demo.batch_table(None, demo_cfg, ["2026-11-14", "2026-11-15", "2026-11-16"], runs)
    assert [(r["policy"], r["estimate"]) for r in rows] == [
        ("pending-labels", "0.74 [0.70,0.78]"),
        ("-", "-"),
        ("-", "-"),
    ]
    assert rows[2]["validation"] == "no record" and rows[2]["run_state"] == "missing"


DAYS = [f"2026-11-{day:02d}" for day in range(10, 16)]


def test_labels_land_delay_days_after_their_batch_once_the_runs_before_decided():
    from driftwatch.seeding import labels_due

    assert labels_due(DAYS, set(), 2) == []
    # Day 10's labels wait for the run of day 11 to decide: it must not see them, the run of day 12 must.
    assert labels_due(DAYS, {"2026-11-10"}, 2) == []
    assert labels_due(DAYS, {"2026-11-10", "2026-11-11"}, 2) == ["2026-11-10"]
    # Runs that decide out of order release nothing until every earlier run has decided.
    assert labels_due(DAYS, {"2026-11-10", "2026-11-12", "2026-11-13"}, 2) == []
    # The last delay - 1 days' labels are not due within the scenario: "today" has not seen them yet.
    assert labels_due(DAYS, set(DAYS), 2) == DAYS[:-1]
    assert labels_due(DAYS, set(DAYS), 3) == DAYS[:-2]
    assert labels_due(DAYS, {"2026-11-10"}, 1) == ["2026-11-10"]
    assert labels_due(DAYS, set(), 0) == DAYS


def test_late_labels_land_each_day_once_and_never_overwrite(monkeypatch, demo_cfg):
    from datetime import date

    from driftwatch import seeding

    written: list[str] = []
    already_there = {"2026-11-11"}

    def land_labels(client, cfg, batch):
        day = batch.batch_date.isoformat()
        if day in already_there:
            return False
        written.append(day)
        return True

    monkeypatch.setattr(seeding, "land_labels", land_labels)
    batches = [type("Batch", (), {"batch_date": date.fromisoformat(day)})() for day in DAYS]
    lander = seeding.LateLabels(None, demo_cfg, batches, delay=2)
    assert lander.land({"2026-11-10"}) == []
    assert lander.land(set(DAYS[:2])) == ["2026-11-10"]
    assert lander.land(set(DAYS[:3])) == []  # 2026-11-11's labels were in the bucket already
    assert lander.land(set(DAYS[:3])) == []
    assert lander.land(set(DAYS)) == ["2026-11-12", "2026-11-13", "2026-11-14"]
    assert written == ["2026-11-10", "2026-11-12", "2026-11-13", "2026-11-14"]


def test_wait_for_runs_lands_labels_once_a_run_has_decided(capsys):
    """A run past its decide task counts as decided: the retrain it requests then sees those labels."""
    runs = [
        {"logical_date": "2026-11-10T00:00:00Z", "dag_run_id": "r10", "state": "success"},
        {"logical_date": "2026-11-11T00:00:00Z", "dag_run_id": "r11", "state": "running"},
        {"logical_date": "2026-11-12T00:00:00Z", "dag_run_id": "r12", "state": "queued"},
    ]
    tasks = [{"task_id": "decide", "state": "success"}, {"task_id": "request_retraining", "state": "running"}]

    class Api:
        def dag_runs(self, dag_id):
            return runs

        def task_instances(self, dag_id, run_id):
            return tasks

        def call(self, method, path):
            return {"scheduler": {}}

    class Lander:
        delay, seen = 2, []

        def land(self, decided):
            self.seen.append(set(decided))
            runs[1]["state"] = runs[2]["state"] = "success"  # the next poll finds every run done
            return ["2026-11-10"] if len(self.seen) == 1 else []

    lander = Lander()
    found = demo.wait_for_runs(Api(), "monitor__m", ["2026-11-10", "2026-11-11", "2026-11-12"], 30, lander)
    assert lander.seen[0] == {"2026-11-10", "2026-11-11"}
    assert set(found) == {"2026-11-10", "2026-11-11", "2026-11-12"}
    out = capsys.readouterr().out
    assert "labels of 2026-11-10 landed, 2 day(s) after the batch" in out
    assert "2026-11-11 request_retraining" in out
