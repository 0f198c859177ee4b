"""Measuring: time, CPU and peak RSS per step, each measurement in a fresh interpreter, DAG parse times."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _status_mb(field: str) -> float | None:
    """One memory figure of this process from /proc/self/status (VmHWM, VmRSS) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM) in MiB."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    rss = _status_mb("VmRSS")
    return float("nan") if rss is None else rss


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak is one step's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Steps:
    """Times steps and records each one's peak RSS.

    CPU time is recorded too: on a shared machine wall time swings with the load, CPU time much less.
    With a `meter` (an s3.TimedClient), each step also records its S3 requests, their seconds and bytes.
    """

    def __init__(self, meter: Any = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.meter = meter
        self.per_step_peaks = _reset_peak()

    def run(self, name: str, fn: Any) -> Any:
        _reset_peak()
        s3_before = self.meter.totals() if self.meter is not None else (0.0, 0, 0)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        row = {"step": name, "seconds": seconds, "cpu_seconds": cpu, "peak_mb": hwm_mb(), "rss_after_mb": _rss_mb()}
        if self.meter is not None:
            s3_after = self.meter.totals()
            row |= {
                f"s3_{k}": a - b for k, a, b in zip(("seconds", "bytes", "requests"), s3_after, s3_before, strict=True)
            }
        self.rows.append(row)
        return result


def decisions(result: Any) -> dict[str, Any]:
    """Per-feature decisions of a DriftResult, or of a list of its features."""
    features = result.features if hasattr(result, "features") else result
    return {
        f.name: {"method": f.method, "threshold": f.threshold, "score": f.score, "drifted": f.drifted} for f in features
    }


_DAG_PROBE = r"""
import json, sys, time, importlib.util
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t2 = time.perf_counter()
print(json.dumps({"import_airflow_sdk": t1 - t0, "parse": t2 - t1}))
"""


def measure_dag_parse(repeats: int = 3) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="driftwatch-bench-airflow-") as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("include", "plugins", "dags")),
            "DRIFTWATCH_CONFIG_DIR": str(REPO / "config" / "models"),
        }
        for path in sorted((REPO / "dags").glob("*.py")):
            runs = []
            for _ in range(repeats):
                proc = subprocess.run(
                    [sys.executable, "-c", _DAG_PROBE, str(path)], env=env, capture_output=True, text=True, timeout=300
                )
                if proc.returncode != 0:
                    results[path.name] = {"error": proc.stderr[-2000:]}
                    break
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                results[path.name] = {
                    "parse_seconds_median": statistics.median(r["parse"] for r in runs),
                    "parse_seconds_min": min(r["parse"] for r in runs),
                    "import_airflow_sdk_seconds_median": statistics.median(r["import_airflow_sdk"] for r in runs),
                    "repeats": repeats,
                }
    return results


def run_child(name: str, spec: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its own peak RSS is reported with it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)])}
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    # The S3 children talk to the bench's own moto server only: no AWS profile or credential file is read.
    env |= {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_drift", "--child", name, "--spec", json.dumps(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {name} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_seconds"] = wall
    # The machine may be shared: a load average above the CPU count means timings are inflated.
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    return result
