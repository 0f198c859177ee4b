"""Benchmark the monitor stage for many models on the real distributed stack (CeleryExecutor).

    PYTHONPATH=include:plugins:. .venv/bin/python -m bench.bench_fleet \\
        [--models 20] [--rows 20000] [--workers 1,2] [--concurrency 2] [--out bench-fleet-results.json]

For each worker count W in --workers: write --models copies of config/models/credit_default.yaml
(fleet_01, fleet_02, ...; same bucket, incoming_prefix ``fleet/XX/incoming/``, reference
``reference/fleet_XX/reference.parquet``, default output_prefix) into a temporary config folder,
start devstack.distributed with W Celery workers of --concurrency slots each, whose DAGs folder holds
only dags/monitor_fleet.py and whose DRIFTWATCH_CONFIG_DIR is that config folder; seed a reference
and one clean batch of --rows rows per model; trigger ``monitor_fleet`` once for that date (one
mapped ``monitor_model`` task per model) and wait for the run to end. Measured: wall time from the
trigger to the run's end, per-task durations (REST task instances start/end), tasks per worker
(task instance hostname) and the highest 1-minute load average seen while the run went on.
The stack is then stopped (processes gone, databases dropped) before the next worker count.

Prints a table and the speed-up from the first to the last worker count; writes everything,
with the date and the machine (nproc, memory, CPU model), to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "config" / "models" / "credit_default.yaml"
DAG_FILE = REPO / "dags" / "monitor_fleet.py"
DAG_ID = "monitor_fleet"
BATCH_DATE = date(2026, 1, 5)
REFERENCE_ROWS = 5000
RUN_TIMEOUT = float(os.environ.get("DRIFTWATCH_BENCH_RUN_TIMEOUT", 900))


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def write_configs(folder: Path, count: int) -> list[str]:
    """count copies of the demo config, each with its own name, prefixes and reference."""
    template = yaml.safe_load(TEMPLATE.read_text())
    names = []
    for i in range(1, count + 1):
        cfg = json.loads(json.dumps(template, default=str))  # deep copy; dates become strings
        name = f"fleet_{i:02d}"
        cfg["name"] = name
        cfg["description"] = f"Benchmark copy {i} of credit_default"
        cfg["storage"]["incoming_prefix"] = f"fleet/{i:02d}/incoming/"
        cfg["storage"]["labels_prefix"] = f"fleet/{i:02d}/labels/"
        cfg["storage"]["reference_key"] = f"reference/{name}/reference.parquet"
        cfg["storage"].pop("output_prefix", None)  # default: driftwatch/<name>/
        cfg["registry"].update(registered_model=name, experiment=f"driftwatch/{name}")
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        names.append(name)
    return names


def seed(cluster: Any, config_dir: Path, rows: int) -> float:
    """A reference and one clean batch per model, as an upstream producer would land them."""
    from driftwatch import demo_data, seeding
    from driftwatch.config import load_configs

    began = time.monotonic()
    client = cluster.s3_client()
    reference = demo_data.generate_reference(seed=7, rows=REFERENCE_ROWS)
    for i, cfg in enumerate(load_configs(config_dir)):
        seeding.write_reference(client, cfg, reference)
        batch = demo_data.generate_scenario(BATCH_DATE, days=1, seed=100 + i, rows_per_day=rows)[0]
        seeding.write_batch(client, cfg, batch)
    return time.monotonic() - began


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def run_once(workers: int, concurrency: int, models: int, rows: int) -> dict[str, Any]:
    from devstack import distributed
    from devstack.airflow_api import TERMINAL_RUN_STATES, AirflowApi

    scratch = Path(tempfile.mkdtemp(prefix="driftwatch-bench-fleet-"))
    config_dir, dags_dir = scratch / "models", scratch / "dags"
    config_dir.mkdir()
    dags_dir.mkdir()
    write_configs(config_dir, models)
    shutil.copy(DAG_FILE, dags_dir / DAG_FILE.name)
    extra_env = {
        "DRIFTWATCH_CONFIG_DIR": str(config_dir),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
    }
    say(f"--- {workers} worker(s) x {concurrency} slots: starting the distributed stack")
    began = time.monotonic()
    cluster = distributed.start(workers=workers, extra_env=extra_env)
    result: dict[str, Any] = {"workers": workers, "concurrency_per_worker": concurrency, "models": models}
    try:
        result["stack_start_s"] = round(time.monotonic() - began, 1)
        result["seed_s"] = round(seed(cluster, config_dir, rows), 1)
        say(f"stack up in {result['stack_start_s']} s, seeded in {result['seed_s']} s")
        api = AirflowApi(cluster.api_url, distributed.ADMIN_USER, cluster.admin_password)
        api.wait_for_dag(DAG_ID, timeout=240)
        api.set_paused(DAG_ID, False)
        triggered = datetime.now(UTC)
        run_id = api.trigger(DAG_ID, conf={"batch_date": BATCH_DATE.isoformat()})["dag_run_id"]
        max_load, deadline = 0.0, time.monotonic() + RUN_TIMEOUT
        while True:
            max_load = max(max_load, os.getloadavg()[0])
            run = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
            if run["state"] in TERMINAL_RUN_STATES:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{DAG_ID} run {run_id} not finished after {RUN_TIMEOUT:.0f} s")
            time.sleep(1)
        tis = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        tis = tis["task_instances"]
        mapped = [t for t in tis if t["task_id"] == "monitor_model"]
        durations = [
            (parse_ts(t["end_date"]) - parse_ts(t["start_date"])).total_seconds()
            for t in mapped
            if t["start_date"] and t["end_date"]
        ]
        first_start = min(parse_ts(t["start_date"]) for t in mapped if t["start_date"])
        wall = (parse_ts(run["end_date"]) - triggered).total_seconds()
        result.update(
            run_id=run_id,
            state=run["state"],
            wall_s=round(wall, 1),
            run_s=round((parse_ts(run["end_date"]) - parse_ts(run["start_date"])).total_seconds(), 1),
            mapped_phase_s=round((parse_ts(run["end_date"]) - first_start).total_seconds(), 1),
            batches_per_min=round(models / wall * 60, 2),
            mapped_states=dict(Counter(t["state"] for t in mapped)),
            task_s={
                "mean": round(statistics.mean(durations), 2),
                "median": round(statistics.median(durations), 2),
                "min": round(min(durations), 2),
                "max": round(max(durations), 2),
            },
            tasks_per_worker=dict(sorted(Counter(t["hostname"] for t in mapped).items())),
            max_load_1min=round(max_load, 2),
        )
        if run["state"] != "success":
            from tests.distributed.test_distributed_run import failed_tasks_detail

            result["failures"] = failed_tasks_detail(api, DAG_ID, run_id)
            say(result["failures"])
        say(f"run {run['state']} in {result['wall_s']} s: {result['tasks_per_worker']}")
    except BaseException:
        say(f"failed; service logs kept in {cluster.state}\n{cluster.log_tails(15)}")
        raise
    finally:
        for line in cluster.stop():
            say(f"stop: {line}")
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(cluster.state, ignore_errors=True)
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = f"{'workers':>7} {'slots':>5} {'models':>6} {'wall s':>7} {'batches/min':>11} {'mean task s':>11}"
    head += "  tasks per worker"
    lines = [head, "-" * len(head)]
    for r in results:
        per = ", ".join(f"{k}: {v}" for k, v in r["tasks_per_worker"].items())
        lines.append(
            f"{r['workers']:>7} {r['workers'] * r['concurrency_per_worker']:>5} {r['models']:>6} {r['wall_s']:>7.1f} "
            f"{r['batches_per_min']:>11.2f} {r['task_s']['mean']:>11.2f}  {per}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20000, help="rows per batch")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts, one stack each")
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per Celery worker")
    parser.add_argument("--out", default="bench-fleet-results.json")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    results = [run_once(w, args.concurrency, args.models, args.rows) for w in counts]
    print("\n" + table(results))
    speedup = None
    if len(results) > 1:
        speedup = round(results[0]["wall_s"] / results[-1]["wall_s"], 2)
        print(f"\nspeed-up {counts[0]} -> {counts[-1]} worker(s): {speedup}x (wall time)")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.bench_fleet " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "batch_date": BATCH_DATE.isoformat(),
        "rows_per_batch": args.rows,
        "reference_rows": REFERENCE_ROWS,
        "results": results,
        "speedup_wall": speedup,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0 if all(r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
