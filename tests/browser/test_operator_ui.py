"""The operator's path through the Airflow UI, in a real browser (Debian Chromium via Playwright).

Steps, each with a screenshot in tests/browser/artifacts/: 1 log in; 2 the Model monitoring page
shows the model, its batches and trend plots; 3 a run's Reports tab renders the drift report;
4 the trigger form starts a monitor run with a threshold override (and refuses a wrong value);
5 a report is refused without authentication.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from playwright.sync_api import expect

from driftwatch import alerts

MODEL = "credit_default"
MONITOR = f"monitor__{MODEL}"
PREFIX = f"driftwatch/{MODEL}/"
pytestmark = pytest.mark.stack


def _drift_date(stack: dict[str, Any]) -> str:
    """The covariate-drift batch of the scenario."""
    return stack["drifted"]


def test_step1_login(page, stack, shots):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/auth/login"))
    page.locator("input[name=username]").fill(stack["user"])
    page.locator("input[name=password]").fill(stack["password"])
    page.screenshot(path=shots / "step1-login-form.png")
    page.locator("button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/auth/login"))
    expect(page.get_by_role("link", name="Model monitoring").first).to_be_visible()
    page.screenshot(path=shots / "step1-login.png")


def test_step2_monitoring_page_shows_models_batches_and_trends(page, stack, shots):
    page.goto("/")
    page.get_by_role("link", name="Model monitoring").first.click()
    expect(page).to_have_url(re.compile(r"/plugin/model-monitoring"))
    frame = page.frame_locator("iframe").first
    section = frame.locator(f"section#model-{MODEL}")
    expect(section.locator("h2")).to_have_text(MODEL)
    expect(section.locator(".dw-champion")).to_contain_text("Champion: v1")
    batches = section.locator("tr.dw-batch")
    expect(batches).to_have_count(len(stack["dates"]))
    expect(batches.filter(has_text=stack["quarantined"])).to_contain_text("quarantined")
    expect(batches.filter(has_text=_drift_date(stack))).to_contain_text("alert")
    expect(section.locator("svg.dw-chart").first).to_be_visible()
    expect(section.locator("svg.dw-drift-grid polyline").first).to_be_attached()
    expect(section.locator("table.dw-events")).to_contain_text("promote")
    page.screenshot(path=shots / "step2-monitoring.png", full_page=True)
    # Airflow frames the page in a sandbox without allow-popups or allow-top-navigation: the
    # registry links must still open MLflow in a new tab, and the DAG links the DAG's page.
    with page.context.expect_page() as mlflow_tab:
        section.get_by_role("link", name="model version").first.click()
    expect(mlflow_tab.value).to_have_url(re.compile(rf"^{re.escape(stack['mlflow'])}/#/models/"))
    mlflow_tab.value.close()
    section.get_by_role("link", name="monitor", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/dags/{MONITOR}$"))


def test_step3_drift_report_from_the_runs_reports_tab(page, stack, shots):
    run_id = stack["runs"][_drift_date(stack)]
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"/dags/{MONITOR}/runs/{quote(run_id, safe='')}")
    page.get_by_role("tab", name="Reports").or_(page.get_by_role("link", name="Reports")).first.click()
    expect(page).to_have_url(re.compile(r"/plugin/driftwatch-run-reports"))
    tab = page.frame_locator("iframe").first
    expect(tab.locator("a.dw-report").first).to_contain_text("drift.html")
    report = tab.frame_locator("iframe.dw-report-frame")
    expect(report.get_by_text("credit_utilization").first).to_be_visible()
    # Evidently's part is an empty div that its inlined JS bundle fills: proof the scripts ran
    # under the report's Content-Security-Policy, with nothing fetched from a CDN.
    expect(report.locator("div[id^=root_] div").first).to_be_visible(timeout=60_000)
    page.screenshot(path=shots / "step3-drift-report.png")
    elsewhere = [u for u in requested if not u.startswith((stack["url"], "data:", "blob:", "about:"))]
    assert not elsewhere, f"the UI or a report fetched from outside the stack: {elsewhere[:5]}"
    # The tab's way back to the monitoring page leaves the sandboxed iframe too.
    tab.get_by_role("link", name="Model monitoring").click()
    expect(page).to_have_url(re.compile(r"/driftwatch/monitoring$"))


def _token(stack: dict[str, Any]) -> str:
    """A JWT from Airflow's own token endpoint, as an API client gets one."""
    return requests.post(
        f"{stack['url']}/auth/token", json={"username": stack["user"], "password": stack["password"]}, timeout=30
    ).json()["access_token"]


def _manual_runs(stack: dict[str, Any]) -> list[dict[str, Any]]:
    """The monitor DAG's manual runs, newest first."""
    response = requests.get(
        f"{stack['url']}/api/v2/dags/{MONITOR}/dagRuns",
        params={"run_type": "manual", "order_by": "-run_after"},
        headers={"Authorization": f"Bearer {_token(stack)}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["dag_runs"]


def test_step4_trigger_form_refuses_a_wrong_value_then_starts_a_run_with_the_override(page, stack, shots):
    before = {r["dag_run_id"] for r in _manual_runs(stack)}
    page.goto(f"/dags/{MONITOR}")
    page.get_by_role("button", name=re.compile("^Trigger")).first.click()
    dialog = page.get_by_role("dialog")
    field = dialog.get_by_label(re.compile("Drift share threshold override"))
    trigger = dialog.get_by_role("button", name=re.compile("^Trigger")).last
    # Out of range (the Param allows 0.01 to 1): the form keeps what was typed rather than
    # clamping it, and Airflow refuses the run with a message naming the Param and the bound.
    field.fill("5")
    field.blur()
    expect(field).to_have_value("5")
    trigger.click()
    refusal = dialog.get_by_text(
        "Invalid input for param drift_share_threshold: 5 is greater than the maximum of 1.0"
    ).first
    expect(refusal).to_be_visible()
    expect(dialog.get_by_text("400 Bad Request").first).to_be_visible()
    page.screenshot(path=shots / "step4-trigger-refused.png")
    after = {r["dag_run_id"] for r in _manual_runs(stack)}
    assert after == before, f"the refused trigger created a run: {sorted(after - before)}"
    # The error toast covers the Trigger button and stays while the pointer rests on it.
    page.mouse.move(5, 5)
    expect(page.get_by_role("status").filter(has_text="Failed to Trigger Dag")).to_have_count(0, timeout=60_000)
    # A wrong type cannot even be typed: the number field takes no letters.
    field.fill("")
    field.press_sequentially("high")
    expect(field).to_have_value("")

    field.fill("0.5")
    field.blur()
    expect(field).to_have_value("0.5")
    page.screenshot(path=shots / "step4-trigger-form.png")
    trigger.click()
    expect(dialog).to_be_hidden()
    new = [r for r in _manual_runs(stack) if r["dag_run_id"] not in before]
    assert len(new) == 1, f"expected one new manual run, got {[r['dag_run_id'] for r in new]}"
    run = new[0]
    assert run["conf"].get("drift_share_threshold") == 0.5, run["conf"]
    assert run["state"] in {"queued", "running", "success", "failed"}
    page.goto(f"/dags/{MONITOR}/runs/{quote(run['dag_run_id'], safe='')}/details")
    expect(page.get_by_text(run["dag_run_id"]).first).to_be_visible()
    conf = page.get_by_text(re.compile(r'"?drift_share_threshold"?\s*:\s*0\.5')).first
    expect(conf).to_be_visible()
    # The details panel scrolls inside the page: a taller window shows the run's conf too.
    page.set_viewport_size({"width": 1400, "height": 1700})
    expect(conf).to_be_in_viewport()
    page.screenshot(path=shots / "step4-run-started.png")
    page.set_viewport_size({"width": 1400, "height": 900})


def test_step4_rest_api_refuses_wrong_params_with_the_same_message(stack):
    """The form is one client of POST /dagRuns; a script gets the same refusal, and no run."""
    before = {r["dag_run_id"] for r in _manual_runs(stack)}
    auth = {"Authorization": f"Bearer {_token(stack)}"}
    for conf, message in (
        ({"drift_share_threshold": "high"}, "Invalid input for param drift_share_threshold: 'high' is not of type"),
        ({"drift_share_threshold": 0}, "Invalid input for param drift_share_threshold: 0 is less than the minimum"),
        ({"batch_date": "2026-02-30"}, "Invalid input for param batch_date: '2026-02-30' is not a 'date'"),
    ):
        response = requests.post(
            f"{stack['url']}/api/v2/dags/{MONITOR}/dagRuns",
            json={"logical_date": None, "conf": conf},
            headers=auth,
            timeout=30,
        )
        assert response.status_code == 400, (conf, response.status_code, response.text[:300])
        assert message in response.json()["detail"], (conf, response.json()["detail"])
    after = {r["dag_run_id"] for r in _manual_runs(stack)}
    assert after == before, f"a refused trigger created a run: {sorted(after - before)}"


def test_step5_reports_are_refused_without_authentication(browser, stack, shots):
    key = f"{PREFIX}reports/dt={_drift_date(stack)}/drift.html"
    url = f"{stack['url']}/driftwatch/report/{key}"
    plain = requests.get(url, timeout=30, allow_redirects=False)
    assert plain.status_code == 401, plain.status_code
    forged = requests.get(url, cookies={"_token": "forged"}, timeout=30, allow_redirects=False)
    assert forged.status_code in {401, 403}, forged.status_code
    # With a valid token the report is served, with its content type; keys outside the report
    # prefixes are not, however they are spelled.
    auth = {"Authorization": f"Bearer {_token(stack)}"}
    served = requests.get(url, headers=auth, timeout=60)
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in served.headers["content-security-policy"]
    base = f"{stack['url']}/driftwatch/report/"
    for bad in (
        f"{PREFIX}reports/dt={_drift_date(stack)}/..%2F..%2F..%2F..%2Fincoming%2Fdt%3D{_drift_date(stack)}",
        f"{PREFIX}quarantine/dt={stack['quarantined']}/data/batch.csv",
        f"{PREFIX}staged/dt={_drift_date(stack)}/batch.parquet",
        "incoming/x.csv",
    ):
        assert requests.get(base + bad, headers=auth, timeout=30).status_code == 404, bad
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        anonymous = context.new_page()
        response = anonymous.goto(url)
        expect(anonymous).to_have_url(re.compile(r"/auth/login"))
        assert response is not None and "Dataset" not in anonymous.content()
        # The same request as a script of the page makes it (no HTML wanted): a plain 401.
        status = anonymous.evaluate("url => fetch(url, {credentials: 'include'}).then(r => r.status)", url)
        assert status == 401, status
        anonymous.screenshot(path=shots / "step5-unauthenticated.png")
    finally:
        context.close()


def test_drift_email_links_to_the_report_pages_and_has_the_trend_chart(stack):
    from devstack.smtp_sink import read_messages

    drift = [m for m in read_messages(Path(stack["state"]) / "mail") if m["X-Driftwatch-Kind"] == "drift"]
    assert drift, "the drifted batch sent no drift email"
    message = next(m for m in drift if m["X-Driftwatch-Batch-Date"] == _drift_date(stack))
    assert MODEL in message["Subject"] and _drift_date(stack) in message["Subject"]
    html = message.get_body(("html",)).get_content()
    report = f"{stack['url']}/driftwatch/report/{PREFIX}reports/dt={_drift_date(stack)}/drift.html"
    assert f'href="{report}"' in html, "the email links to the report page on this stack's api-server"
    assert f"cid:{alerts.TREND_CID}" in html
    assert any(p.get_content_type() == "image/png" for p in message.walk())
    token = _token(stack)
    assert requests.get(report, headers={"Authorization": f"Bearer {token}"}, timeout=60).status_code == 200
