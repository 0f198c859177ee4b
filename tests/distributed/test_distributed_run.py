"""A real distributed run: CeleryExecutor, PostgreSQL, Redis and two workers that share no disk.

`make test-distributed` runs this file. devstack.distributed starts every Airflow component as
its own process (scheduler, dag-processor, triggerer, api-server, worker-a, worker-b) on the
machine's PostgreSQL and Redis, with moto S3, the SMTP sink and an MLflow server on loopback.
The test then lands a clean, a drifted and a broken batch, triggers the monitor DAG for their
dates through the REST API, and checks the outcome where an operator would: the REST API (run
and task states, which worker ran what, task logs), the bucket and the mail folder.

Without PostgreSQL or Redis the test fails with a message saying so: it never skips. It takes
about 1.5-5 minutes on a 2-core machine (idle vs. busy) and prints its timings; the processes and the databases
are gone afterwards, even when it fails (the logs are then kept and their folder is printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from devstack import distributed, procs
from devstack.airflow_api import TERMINAL_RUN_STATES, AirflowApi
from devstack.smtp_sink import read_messages

REPO = Path(__file__).resolve().parents[2]
START = date(2026, 1, 1)
DAYS, ROWS_PER_DAY, SEED = 14, 500, 7
RUNS_TIMEOUT = float(os.environ.get("DRIFTWATCH_DIST_RUNS_TIMEOUT", 360))
RETRAIN_TIMEOUT = float(os.environ.get("DRIFTWATCH_DIST_RETRAIN_TIMEOUT", 240))
LOG_PATH = re.compile(
    r"dag_id=(?P<dag>[^/]+)/run_id=(?P<run>[^/]+)/task_id=(?P<task>[^/]+)/(?:map_index=\d+/)?attempt=(?P<try>\d+)\.log$"
)


class Clock:
    """Wall-clock checkpoints, shown live (even under pytest's output capture) and summed up at the end."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.began = self.last = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def say(self, text: str) -> None:
        with self.capsys.disabled():
            print(text, flush=True)

    def mark(self, what: str, detail: str = "") -> None:
        now = time.monotonic()
        self.marks.append((what, now - self.last))
        self.last = now
        self.say(f"[{now - self.began:6.1f} s] {what} ({self.marks[-1][1]:.1f} s){' ' + detail if detail else ''}")

    def summary(self) -> str:
        parts = ", ".join(f"{what} {seconds:.0f} s" for what, seconds in self.marks)
        return f"distributed run: {time.monotonic() - self.began:.0f} s in total ({parts})"


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --------------------------------------------------------------------------- the scenario


def seed(cluster: distributed.Cluster, cfg: Any) -> dict[str, Any]:
    """Reference, all 14 batches and their labels, as the upstream producer would land them."""
    from driftwatch import demo_data, seeding, storage

    client = cluster.s3_client()
    seeding.write_reference(client, cfg, demo_data.generate_reference(seed=SEED, rows=2000))
    scenario = demo_data.generate_scenario(START, days=DAYS, seed=SEED, rows_per_day=ROWS_PER_DAY)
    for batch in scenario:
        seeding.write_batch(client, cfg, batch)
        seeding.write_labels(client, cfg, batch)
    picked = {
        "clean": next(b for b in scenario if b.kind == "stable"),
        "drifted": max((b for b in scenario if b.kind == "covariate_drift"), key=lambda b: b.drift_strength),
        "broken": next(b for b in scenario if b.kind == "broken"),
    }
    broken_key = seeding.batch_key(cfg, picked["broken"])
    return {
        "batches": picked,
        "dates": {kind: b.batch_date.isoformat() for kind, b in picked.items()},
        "broken_key": broken_key,
        "broken_raw": storage.read_bytes(client, cfg.storage.bucket, broken_key),
    }


def trigger_and_wait(
    api: AirflowApi, dag_id: str, dates: dict[str, str], say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """One manual run per batch date (logical_date = the batch date); wait until all finished."""
    run_ids = {}
    for kind, day in dates.items():
        # One drifted batch alone is not sustained drift: the policy (tests/unit/test_policy.py) would
        # alert only. The run is forced past it, so that the Asset event reaches a Celery worker.
        conf = {"force_retrain": True} if kind == "drifted" else {}
        run = api.trigger(dag_id, conf=conf, logical_date=f"{day}T00:00:00Z")
        run_ids[kind] = run["dag_run_id"]

    last = ""

    def finished() -> dict[str, dict[str, Any]] | None:
        nonlocal last
        runs = {kind: api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}") for kind, run_id in run_ids.items()}
        line = "  " + ", ".join(f"{kind}={run['state']}" for kind, run in runs.items())
        if line != last:
            say(line)
            last = line
        return runs if all(r["state"] in TERMINAL_RUN_STATES for r in runs.values()) else None

    return wait_until(finished, RUNS_TIMEOUT, f"the {dag_id} runs {sorted(run_ids.values())}")


def asset_triggered_retrain(api: AirflowApi, dag_id: str) -> dict[str, Any]:
    """The Asset-triggered retrain run, once it finished."""

    def done() -> dict[str, Any] | None:
        runs = [r for r in api.dag_runs(dag_id) if r.get("run_type") == "asset_triggered"]
        return runs[0] if runs and runs[0]["state"] in TERMINAL_RUN_STATES else None

    return wait_until(done, RETRAIN_TIMEOUT, f"an Asset-triggered {dag_id} run to finish")


def task_states(api: AirflowApi, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in api.task_instances(dag_id, run_id)}


def failed_tasks_detail(api: AirflowApi, dag_id: str, run_id: str) -> str:
    """The end of each failed task's log, for an assertion message."""
    lines = []
    for ti in api.task_instances(dag_id, run_id):
        if ti["state"] in ("failed", "upstream_failed", "up_for_retry"):
            path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{max(ti['try_number'], 1)}"
            try:
                content = api.call("GET", path, params={"full_content": "true"}).get("content", [])
                tail = [str(c.get("event", c) if isinstance(c, dict) else c) for c in content][-15:]
            except Exception as exc:  # the message is a diagnostic only
                tail = [f"(log not readable: {exc})"]
            lines.append(f"{dag_id}/{ti['task_id']} {ti['state']} on {ti.get('hostname')}:\n    " + "\n    ".join(tail))
    return "\n".join(lines) or "(no failed task)"


def local_task_logs(root: Path) -> set[tuple[str, str, str, int]]:
    """(dag_id, run_id, task_id, try) of every task log file under a logs folder."""
    found = set()
    for path in root.rglob("attempt=*.log"):
        if m := LOG_PATH.search(path.as_posix()):
            found.add((m["dag"], m["run"], m["task"], int(m["try"])))
    return found


def proc_cwd(pid: int) -> Path:
    return Path(os.readlink(f"/proc/{pid}/cwd"))


# --------------------------------------------------------------------------- the test


@pytest.mark.timeout(780)
def test_a_real_distributed_run_over_clean_drifted_and_broken_batches(capsys: pytest.CaptureFixture[str]) -> None:
    from driftwatch.config import load_config

    clock = Clock(capsys)
    cfg = load_config(REPO / "config" / "models" / "credit_default.yaml")
    try:
        cluster = distributed.start()
    except distributed.DistributedError as exc:
        cannot_run = str(exc)
    else:
        cannot_run = ""
    if cannot_run:  # outside the except: the message alone, without a chained traceback
        pytest.fail(f"the distributed stack cannot run here: {cannot_run}", pytrace=False)
    clock.mark("stack started", str(cluster.timings))
    try:
        run_scenario(cluster, cfg, clock)
    except BaseException:
        print(f"\n--- service logs (kept in {cluster.state}) ---\n{cluster.log_tails()}", flush=True)
        raise
    finally:
        for line in cluster.stop():
            print(f"  stop: {line}", flush=True)
        clock.mark("stopped", "(processes gone, databases dropped)")
        clock.say(clock.summary())
    assert_nothing_left(cluster)
    shutil.rmtree(cluster.state, ignore_errors=True)


def assert_nothing_left(cluster: distributed.Cluster) -> None:
    leftovers = [p for p in procs.find_leftovers(cluster.state) if p.ours]
    assert leftovers == [], f"processes survived the stop: {leftovers}"
    assert all(procs.port_free(port) for port in cluster.ports.values()), cluster.ports
    conn = distributed._pg_connect(cluster.pg)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'driftwatch_dist%'")
            assert cur.fetchall() == [], "the test databases were not dropped"
    finally:
        conn.close()


def run_scenario(cluster: distributed.Cluster, cfg: Any, clock: Clock) -> None:
    from driftwatch import layout, storage

    monitor_id, retrain_id = f"monitor__{cfg.name}", f"retrain__{cfg.name}"
    landed = seed(cluster, cfg)
    dates = landed["dates"]
    clock.mark(
        "seeded",
        f"(reference + {DAYS} batches; clean {dates['clean']}, drifted {dates['drifted']}, broken {dates['broken']})",
    )

    api = AirflowApi(cluster.api_url, distributed.ADMIN_USER, cluster.admin_password)
    for dag_id in (monitor_id, retrain_id):
        api.wait_for_dag(dag_id, timeout=240)
        api.set_paused(dag_id, False)
    clock.mark("DAGs ready", "(parsed by the dag-processor, unpaused)")

    runs = trigger_and_wait(api, monitor_id, dates, clock.say)
    clock.mark("monitor runs finished")
    tis = {kind: task_states(api, monitor_id, run["dag_run_id"]) for kind, run in runs.items()}
    for kind, run in runs.items():
        assert run["state"] == "success", (
            f"{kind} run {run['dag_run_id']}: {run['state']}\n{failed_tasks_detail(api, monitor_id, run['dag_run_id'])}"
        )

    def state(kind: str, task_id: str) -> str:
        return tis[kind][task_id]["state"]

    # Clean: validated, drift measured, nothing quarantined, no alert, no retraining.
    assert state("clean", "validate_batch") == "success"
    assert state("clean", "compute_drift") == "success"
    assert state("clean", "quarantine_batch") == "skipped"
    assert state("clean", "alert_drift") == "skipped"
    assert state("clean", "request_retraining") == "skipped"
    # Drifted: alert and the Asset event that requests retraining.
    assert state("drifted", "compute_drift") == "success"
    assert state("drifted", "alert_drift") == "success"
    assert state("drifted", "request_retraining") == "success"
    # Broken: quarantined, never drift-checked.
    assert state("broken", "quarantine_batch") == "success"
    assert state("broken", "compute_drift") == "skipped"

    retrain = asset_triggered_retrain(api, retrain_id)
    clock.mark("retrain run finished", f"(Asset-triggered {retrain_id})")
    assert retrain["state"] == "success", (
        f"{retrain_id} run {retrain['dag_run_id']}: {retrain['state']}\n"
        f"{failed_tasks_detail(api, retrain_id, retrain['dag_run_id'])}"
    )
    retrain_tis = task_states(api, retrain_id, retrain["dag_run_id"])

    # ---- S3: history records, the quarantine copy, the untouched raw batch
    client = cluster.s3_client()
    bucket = cfg.storage.bucket

    def history(kind: str) -> dict[str, Any]:
        return json.loads(storage.read_bytes(client, bucket, layout.history_key(cfg, dates[kind])))

    assert (history("clean")["status"], history("clean")["action"]) == ("passed", "none")
    assert history("drifted")["status"] == "passed" and "retrain" in history("drifted")["action"]
    assert history("drifted")["drift"]["share"] >= cfg.drift.dataset_drift_share
    assert history("broken")["status"] == "quarantined" and history("broken")["drift"] is None
    q_prefix = layout.quarantine_prefix(cfg, dates["broken"])
    quarantined = {o.key[len(q_prefix) :] for o in storage.list_objects(client, bucket, q_prefix)}
    broken = landed["batches"]["broken"]
    assert {"validation.json", "manifest.json", f"data/part-000.{broken.fmt}"} <= quarantined, quarantined
    assert storage.read_bytes(client, bucket, landed["broken_key"]) == landed["broken_raw"], "raw batch modified"

    # ---- mail: a drift alert for the drifted date, a quarantine notice for the broken one, nothing for clean
    subjects = [m["Subject"] for m in read_messages(cluster.mail_dir)]
    assert any("drift" in s and dates["drifted"] in s for s in subjects), subjects
    assert any("quarantined" in s and dates["broken"] in s for s in subjects), subjects
    assert not any(dates["clean"] in s for s in subjects), subjects

    # ---- distribution: both workers ran tasks, each kept its own local files
    ran = [
        (dag_id, ti)
        for dag_id, by_task in [*((monitor_id, t) for t in tis.values()), (retrain_id, retrain_tis)]
        for ti in by_task.values()
        if ti["state"] in ("success", "failed")
    ]
    hosts = {ti["hostname"] for _, ti in ran}
    per_host = {h: sum(1 for _, ti in ran if ti["hostname"] == h) for h in sorted(hosts)}
    clock.say(f"task instances per worker: {per_host}")
    assert hosts == set(distributed.WORKERS), f"expected tasks on both workers, got {per_host}"

    local = {name: local_task_logs(cluster.worker_home(name) / "logs") for name in distributed.WORKERS}
    for dag_id, ti in ran:
        key = (dag_id, ti["dag_run_id"], ti["task_id"], ti["try_number"])
        other = next(n for n in distributed.WORKERS if n != ti["hostname"])
        assert key in local[ti["hostname"]], f"{key} ran on {ti['hostname']} but its log is not on that worker"
        assert key not in local[other], f"{key} ran on {ti['hostname']} but {other} has its log file"
    api_home_logs = local_task_logs(cluster.airflow_home / "logs")
    assert api_home_logs == set(), f"task logs on the api-server's disk: {sorted(api_home_logs)[:3]}"

    dirs = {name: cluster.worker_dir(name).resolve() for name in distributed.WORKERS}
    a, b = (dirs[n] for n in distributed.WORKERS)
    assert not (a.is_relative_to(b) or b.is_relative_to(a)), dirs
    for name in distributed.WORKERS:
        assert proc_cwd(cluster.service_pid(name)) == dirs[name], f"{name} does not run in its own folder"
        env = cluster.worker_env(name)
        for var in ("AIRFLOW_HOME", "HOME", "TMPDIR"):
            assert Path(env[var]).resolve().is_relative_to(dirs[name]), (name, var, env[var])

    # ---- task logs through the REST API: uploaded to S3 by each worker, read back by the api-server
    for name in distributed.WORKERS:
        dag_id, ti = next((d, t) for d, t in ran if t["hostname"] == name and t["state"] == "success")
        path = f"/dags/{dag_id}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}"
        content = api.call("GET", path, params={"full_content": "true"})["content"]
        text = json.dumps(content)
        assert f"s3://{distributed.LOG_BUCKET}/" in text, (
            f"log of {ti['task_id']} on {name} not read from S3: {text[:600]}"
        )
        events = [c.get("event", "") for c in content if isinstance(c, dict)]
        print(f"log of {ti['task_id']} ({name}): {events}", flush=True)
        assert any(isinstance(c, dict) and c.get("ti_id") == ti["id"] for c in content), text[:600]
    # A worker uploads a task's log after the task reported its state: allow it a moment.
    expected = {
        f"airflow/dag_id={d}/run_id={t['dag_run_id']}/task_id={t['task_id']}/"
        # Mapped task instances (the drift partitions) log one folder deeper.
        + (f"map_index={t['map_index']}/" if t.get("map_index", -1) >= 0 else "")
        + f"attempt={t['try_number']}.log"
        for d, t in ran
    }

    def missing_remote_logs() -> set[str]:
        return expected - {o.key for o in storage.list_objects(client, distributed.LOG_BUCKET, "airflow/")}

    with contextlib.suppress(AssertionError):
        wait_until(lambda: not missing_remote_logs(), 60, "the last task logs to reach S3", every=2)
    assert not missing_remote_logs(), f"task logs never uploaded to S3: {sorted(missing_remote_logs())}"
    clock.mark("checks", "(REST, S3, mail, both workers)")
