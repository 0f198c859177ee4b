"""Browser tests: a private embedded stack, seeded and run, driven with Playwright in Debian's Chromium.

The session starts its own stack (temporary state folder, free ports), lands a few batches,
bootstraps a champion and backfills the monitor DAG, then stops the whole stack at the end.
Chromium comes from apt (`chromium`, /usr/bin/chromium); it is installed when missing.

For iterating on the tests against a stack that already runs, set
DRIFTWATCH_BROWSER_STACK=<state dir>:<airflow>,<s3>,<smtp>,<mlflow ports>: it is used, not stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.browser import stackctl

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DAYS, ROWS_PER_DAY = 3, 600  # stable (landed, not run), broken (quarantined), covariate drift


def ensure_chromium() -> None:
    """Install Debian's Chromium when it is missing (CI machines start without it; we are root)."""
    if Path(CHROMIUM).exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900)
    assert Path(CHROMIUM).exists(), f"apt installed chromium but {CHROMIUM} is missing"


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, Any]]:
    """A running, seeded stack: its URL, admin password and the monitor runs by batch date."""
    existing = os.environ.get("DRIFTWATCH_BROWSER_STACK")
    if existing:
        state, _, ports_text = existing.partition(":")
        ports = [int(p) for p in ports_text.split(",")]
    else:
        state, ports = tempfile.mkdtemp(prefix="driftwatch-browser-"), helpers.free_ports()
    env = helpers.private_stack_env(Path(state), ports)
    try:
        began = time.monotonic()
        if not existing:
            helpers.run_stack("start", env)
        started = time.monotonic()
        seeded = stackctl.seed_and_run(env, days=DAYS, rows_per_day=ROWS_PER_DAY, bootstrap=True, timeout=600)
        print(
            f"\nbrowser stack: started in {started - began:.0f} s, seeded and run in {time.monotonic() - started:.0f} s"
        )
        password = json.loads((Path(state) / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        yield {
            "url": f"http://127.0.0.1:{ports[0]}",
            "mlflow": f"http://127.0.0.1:{ports[3]}",
            "user": "admin",
            "password": password["admin"],
            "state": state,
            **seeded,
        }
    finally:
        if not existing:
            helpers.run_stack("stop", env)
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium, driven by Playwright (no browser download of its own)."""
    ensure_chromium()
    from playwright.sync_api import expect, sync_playwright

    # The api-server imports MLflow on the first monitoring request: give pages time.
    expect.set_options(timeout=30_000)

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any, stack: dict[str, Any]) -> Iterator[Any]:
    """One browser tab shared by the steps of a module, so the login of step 1 carries over."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=stack["url"])
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the step screenshots go (git-ignored test artifacts)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
