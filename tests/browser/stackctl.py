"""Seed and run the browser tests' private stack (started and stopped with tests.helpers).

`seed_and_run` runs this module in a child process with the stack's environment, because
devstack.stack reads its state folder and ports from the environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import REPO, wait_until


def seed_and_run(env: dict[str, str], days: int, rows_per_day: int, bootstrap: bool, timeout: float) -> dict[str, Any]:
    """Run `seed_main` in a child process with the stack's environment; return its result."""
    argv = [sys.executable, "-m", "tests.browser.stackctl", str(days), str(rows_per_day), str(int(bootstrap))]
    proc = subprocess.run(
        argv + [str(timeout)], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout + 300
    )
    out = proc.stdout + proc.stderr
    result = next((line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"seeding the browser-test stack failed ({proc.returncode}):\n{out[-4000:]}")
    return {**json.loads(result), "log": out}


def seed_main(days: int, rows_per_day: int, bootstrap: bool, timeout: float) -> dict[str, Any]:
    """Land the scenario's first `days` batches ending yesterday, bootstrap a champion, and backfill
    the monitor DAG over all but the first (stable) one: a broken and a drifted batch are what the
    tests look at, and every run costs half a minute on 2 cores."""
    from devstack import demo, stack
    from devstack.airflow_api import AirflowApi
    from driftwatch import demo_data, registry
    from driftwatch.config import load_config

    cfg = load_config(demo.DEMO_CONFIG)
    env, endpoints = stack.airflow_env(), stack.endpoints()
    tracking, model = env["MLFLOW_TRACKING_URI"], cfg.registry.registered_model
    start = datetime.now(UTC).date() - timedelta(days=days)
    dates = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    demo.seed(stack.s3_client(), cfg, start, days, rows_per_day)
    api = AirflowApi(endpoints["airflow_url"], endpoints["login_user"], stack.admin_password() or "")
    monitor_id, retrain_id = f"monitor__{cfg.name}", f"retrain__{cfg.name}"
    for dag_id in (monitor_id, retrain_id):
        api.wait_for_dag(dag_id)
    if bootstrap and registry.champion(tracking, model) is None:
        # Champion v1 trains while the monitor runs: on 2 cores that beats one after the other.
        api.set_paused(retrain_id, False)
        api.trigger(retrain_id, conf={"reason": "bootstrap: first champion from the reference data"})
    api.set_paused(monitor_id, False)
    # No reprocessing: a fresh stack has no runs, and reprocessing finished runs has crashed the
    # scheduler (ObjectDeletedError) on a re-seeded stack.
    run_dates = dates[1:] if days > 2 else dates
    api.create_backfill(monitor_id, run_dates[0], run_dates[-1], max_active_runs=2, reprocess=False)
    runs = demo.wait_for_runs(api, monitor_id, run_dates, timeout)
    if bootstrap:
        wait_until(lambda: registry.champion(tracking, model), timeout, "a champion from the bootstrap run", 3)
        # Drift requests Asset-triggered retrains the tests do not need: keep them from starting.
        api.set_paused(retrain_id, True)
    plan = dict(zip(dates, demo_data.scenario_plan(days), strict=True))
    return {
        "dates": run_dates,
        "quarantined": next(d for d in run_dates if plan[d] == "broken"),
        "drifted": next(d for d in run_dates if plan[d] == "covariate_drift"),
        "runs": {d: r["dag_run_id"] for d, r in runs.items()},
        "states": {d: r["state"] for d, r in runs.items()},
    }


if __name__ == "__main__":
    days_arg, rows_arg, bootstrap_arg, timeout_arg = sys.argv[1:5]
    outcome = seed_main(int(days_arg), int(rows_arg), bootstrap_arg == "1", float(timeout_arg))
    print("RESULT " + json.dumps(outcome), flush=True)
