"""Start, seed and stop a private embedded stack for the browser tests.

The stack gets its own state folder and free ports, so it never meets the developer's
`make demo` stack (8080, 9555, 8025, 5500) or another engineer's tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PORT_VARS = ("DRIFTWATCH_AIRFLOW_PORT", "DRIFTWATCH_S3_PORT", "DRIFTWATCH_SMTP_PORT", "DRIFTWATCH_MLFLOW_PORT")


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stack_env(state_dir: Path, ports: list[int]) -> dict[str, str]:
    """The environment `python -m devstack.stack` needs for this private stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DRIFTWATCH_", "AWS_", "MLFLOW"))}
    env.update({"DRIFTWATCH_STATE_DIR": str(state_dir), **dict(zip(PORT_VARS, map(str, ports), strict=True))})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "include"), str(REPO / "plugins"), str(REPO)])
    return env


def run_stack(command: str, env: dict[str, str], timeout: float = 420) -> str:
    """Run `python -m devstack.stack <command>`; raise with its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "devstack.stack", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"devstack.stack {command} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def seed_and_run(env: dict[str, str], days: int, rows_per_day: int, bootstrap: bool, timeout: float) -> dict[str, Any]:
    """Run `seed_main` in a child process with the stack's environment (devstack.stack reads
    its state folder and ports from the environment); return its result."""
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
    demo.seed(demo.s3_client(env), cfg, start, days, rows_per_day)
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
        if not wait_until(lambda: registry.champion(tracking, model), timeout, interval=3):
            raise RuntimeError("no champion after the bootstrap retrain run")
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


def wait_until(check: Any, timeout: float, interval: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


if __name__ == "__main__":
    days_arg, rows_arg, bootstrap_arg, timeout_arg = sys.argv[1:5]
    outcome = seed_main(int(days_arg), int(rows_arg), bootstrap_arg == "1", float(timeout_arg))
    print("RESULT " + json.dumps(outcome), flush=True)
