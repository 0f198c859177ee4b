"""Benchmark the fast drift decision (driftwatch.profile) against Evidently 0.7.23, and the monitor stage.

    PYTHONPATH=include python -m bench.bench_drift [--sizes 100000,1000000,5000000] [--out bench-results.json]

For every size N a synthetic batch of N rows x 20 features (15 numeric, 5 categorical, an int64
id) and a reference (--reference-rows) are written as Parquet to a scratch folder. Feature drift
is graded per column so that Evidently's scores sit well below, just below, just above and well
above their thresholds. On that same data, each measurement runs in a fresh interpreter, so
peak RSS (VmHWM) belongs to that measurement alone:

* profile    build the reference profile and its report sample once (the pipeline does this
             once per champion and stores both next to the reference);
* monitor    the monitor stage as its two tasks run it, each in its own process (peak RSS per
             step): validate_batch (read the batch object, parse it, validate with Great
             Expectations against the stored profile, stage it as typed Parquet) and
             compute_drift (full-data decision from the profile in one pass over the staged
             Parquet, Evidently report on a sample of `drift.report_sample_rows` rows);
* fast       the drift decision stage alone: batch columns in memory to per-feature decisions;
* streamed   the fast decision straight from Parquet, row group by row group (bounded memory);
* evidently  Evidently's default DataDriftPreset on the FULL batch, and the same preset
             configured with the bench's per-column methods (drift.run_drift_report, HTML included);
* dag parse  every dags/*.py executed in a fresh interpreter after `import airflow.sdk`.

It reports Evidently time / fast decision time and the share of columns on which the decisions
agree (fast vs configured Evidently, and fast with Evidently's default methods vs default
Evidently), prints tables and writes everything to --out.

This module runs the whole; the parts are drift_data (schema, config, batches, calibration),
measure (steps, fresh interpreters, DAG parse), monitor_stage (our side), evidently_side and
report (derived figures, printed tables).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.drift_data import COLUMNS, bench_config, calibrate, write_parquet
from bench.evidently_side import agreement, child_evidently_configured, child_evidently_default
from bench.measure import hwm_mb, measure_dag_parse, run_child
from bench.monitor_stage import (
    child_drift_task,
    child_fast,
    child_fast_default,
    child_profile,
    child_streamed,
    child_validate_task,
)
from bench.report import cpu_seconds, machine, print_report, report_agreement, step_seconds

CHILDREN = {
    "profile": child_profile,
    "validate_task": child_validate_task,
    "drift_task": child_drift_task,
    "fast": child_fast,
    "fast_default": child_fast_default,
    "streamed": child_streamed,
    "evidently_default": child_evidently_default,
    "evidently_configured": child_evidently_configured,
}


def child_main(name: str, spec_text: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    spec = json.loads(spec_text)
    result = CHILDREN[name](spec)
    # Steps reset VmHWM as they start, so the process peak is the largest step peak.
    result["process_peak_mb"] = max([hwm_mb(), *(r["peak_mb"] for r in result["steps"])])
    print(json.dumps(result, default=float))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated batch sizes (rows)")
    parser.add_argument("--out", default="bench-results.json")
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--evidently-max-rows", type=int, default=2_000_000, help="skip full Evidently runs above this")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", help="scratch folder for the Parquet files (default: a temporary one)")
    parser.add_argument("--skip-dag-parse", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, args.spec)
        return 0

    sizes = sorted(int(s) for s in args.sizes.split(","))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "reference_rows": args.reference_rows,
        "sample_rows": bench_config().drift.report_sample_rows,
        "sizes": sizes,
        "columns": [asdict(c) for c in COLUMNS],
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="driftwatch-bench-") as scratch:
        work = Path(args.workdir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        ref_path = work / "reference.parquet"
        print(f"Writing the reference ({args.reference_rows} rows) and calibrating drift effects...", flush=True)
        write_parquet(ref_path, args.reference_rows, args.seed, 0, {}, {})
        reference = pd.read_parquet(ref_path)
        calibration = calibrate(reference, args.seed, args.reference_rows, sizes)
        del reference
        results["calibration"] = calibration
        spec = {
            "reference": str(ref_path),
            "profile": str(work / "profile.json"),
            "default_profile": str(work / "profile-default.json"),
            "reference_sample": str(work / "reference-sample.parquet"),
        }
        prof = run_child("profile", spec, timeout=3600)
        results["profile"] = {
            "build_seconds": step_seconds(prof, "build profile"),
            "bytes": prof["profile_bytes"],
            "peak_mb": prof["process_peak_mb"],
            "steps": prof["steps"],
        }
        evidently_at: dict[int, dict[str, float]] = {}
        for size in sizes:
            print(f"Writing the {size}-row batch...", flush=True)
            cur_path = work / f"current-{size}.parquet"
            write_parquet(cur_path, size, args.seed, 1, calibration["effects"][str(size)], calibration["scales"])
            run_spec = {**spec, "current": str(cur_path), "staged": str(work / f"staged-{size}.parquet")}
            entry: dict[str, Any] = {"parquet_bytes": cur_path.stat().st_size}
            print(f"  monitor stage at {size} rows: validate_batch task...", flush=True)
            entry["validate_task"] = run_child("validate_task", run_spec, timeout=7200)
            print("  compute_drift task...", flush=True)
            entry["drift_task"] = run_child("drift_task", run_spec, timeout=7200)
            tasks = (entry["validate_task"], entry["drift_task"])
            # Two Airflow tasks, two processes: the stage's time adds up, its peak is the larger one.
            entry["monitor_total_seconds"] = sum(r["seconds"] for t in tasks for r in t["steps"])
            entry["monitor_total_cpu_seconds"] = sum(cpu_seconds(t) for t in tasks)
            entry["monitor_total_seconds_without_imports"] = sum(
                r["seconds"] for t in tasks for r in t["steps"] if not r["step"].startswith("import")
            )
            entry["monitor_peak_mb"] = max(t["process_peak_mb"] for t in tasks)
            entry["sample_report_agreement"] = report_agreement(entry["drift_task"])
            print("  fast drift decision in memory...", flush=True)
            entry["fast"] = run_child("fast", run_spec, timeout=7200)
            entry["fast_decision_seconds"] = step_seconds(entry["fast"], "fast drift decision")
            entry["fast_decision_cpu_seconds"] = next(
                r["cpu_seconds"] for r in entry["fast"]["steps"] if r["step"] == "fast drift decision"
            )
            entry["pipeline_equals_in_memory"] = entry["drift_task"]["fast"] == entry["fast"]["fast"]
            print("  streamed fast decision...", flush=True)
            entry["streamed"] = run_child("streamed", run_spec, timeout=7200)
            entry["streamed_identical"] = entry["streamed"]["fast"] == entry["fast"]["fast"]
            entry["fast_default"] = run_child("fast_default", run_spec, timeout=7200)
            if size > args.evidently_max_rows:
                reason = f"{size} rows > --evidently-max-rows {args.evidently_max_rows}"
                if evidently_at:
                    base_n = max(evidently_at)
                    factor = size / base_n
                    reason += (
                        f"; extrapolating linearly from {base_n} rows it would take ~"
                        f"{evidently_at[base_n]['seconds'] * factor:.0f} s and ~"
                        f"{evidently_at[base_n]['peak_mb'] * factor / 1024:.1f} GiB per run"
                    )
                entry["evidently_skipped"] = reason
                print(f"  Evidently skipped: {reason}", flush=True)
            else:
                print("  Evidently DataDriftPreset() on the full batch...", flush=True)
                ev = run_child("evidently_default", run_spec, timeout=7200)
                entry["evidently_default"] = {
                    "seconds": ev["steps"][0]["seconds"],
                    "cpu_seconds": ev["steps"][0]["cpu_seconds"],
                    "process_peak_mb": ev["process_peak_mb"],
                    "decisions": ev["evidently"],
                }
                print("  Evidently configured (drift.run_drift_report) on the full batch...", flush=True)
                evc = run_child("evidently_configured", run_spec, timeout=7200)
                entry["evidently_configured"] = {
                    "seconds": evc["steps"][0]["seconds"],
                    "cpu_seconds": evc["steps"][0]["cpu_seconds"],
                    "process_peak_mb": evc["process_peak_mb"],
                    "html_bytes": evc["html_bytes"],
                    "decisions": evc["evidently"],
                }
                entry["speedup_default"] = entry["evidently_default"]["seconds"] / entry["fast_decision_seconds"]
                entry["speedup_configured"] = entry["evidently_configured"]["seconds"] / entry["fast_decision_seconds"]
                # The fast path's CPU time counts all its threads: a conservative ratio.
                entry["cpu_speedup_default"] = (
                    entry["evidently_default"]["cpu_seconds"] / entry["fast_decision_cpu_seconds"]
                )
                entry["agreement_configured"] = agreement(entry["fast"]["fast"], evc["evidently"])
                entry["agreement_default"] = agreement(entry["fast_default"]["fast"], ev["evidently"])
                evidently_at[size] = {"seconds": ev["steps"][0]["seconds"], "peak_mb": ev["process_peak_mb"]}
            results["runs"][str(size)] = entry
            cur_path.unlink()
    if 1_000_000 in sizes and 5_000_000 in sizes:
        one, five = results["runs"]["1000000"], results["runs"]["5000000"]
        results["scaling"] = {
            "monitor time 5M/1M": five["monitor_total_seconds"] / one["monitor_total_seconds"],
            "monitor peak RSS 5M/1M": five["monitor_peak_mb"] / one["monitor_peak_mb"],
            "fast decision time 5M/1M": five["fast_decision_seconds"] / one["fast_decision_seconds"],
            "fast decision CPU time 5M/1M": five["fast_decision_cpu_seconds"] / one["fast_decision_cpu_seconds"],
            "monitor CPU time 5M/1M": five["monitor_total_cpu_seconds"] / one["monitor_total_cpu_seconds"],
            "streamed time 5M/1M": five["streamed"]["steps"][0]["seconds"] / one["streamed"]["steps"][0]["seconds"],
            "streamed CPU time 5M/1M": cpu_seconds(five["streamed"]) / cpu_seconds(one["streamed"]),
            "streamed peak RSS 5M/1M": five["streamed"]["process_peak_mb"] / one["streamed"]["process_peak_mb"],
        }
    if not args.skip_dag_parse:
        print("Measuring DAG parse times...", flush=True)
        results["dag_parse"] = measure_dag_parse()
    else:
        results["dag_parse"] = {}
    Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    print_report(results)
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
