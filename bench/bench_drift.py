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
             Parquet, Evidently report on a sample of `drift.report_sample_rows` rows); timed
             twice, back to back: from the local files in place, and as the DAG runs it, from
             S3 (a moto server on a loopback port, started and stopped here) through the
             tasks' own functions: the stored reference profile and sample
             (references.load_profile, read_sample), the batch downloaded to a spool file
             (ingest.read_batch), the staged copy uploaded (ingest.upload_staged) and read back
             by ranged requests (storage.RangeReader); every S3 request's time and bytes are
             added up per step, and the ratio of the two stage totals is printed;
* fast       the drift decision stage alone: batch columns in memory to per-feature decisions;
* streamed   the fast decision straight from Parquet, row group by row group (bounded memory);
* evidently  Evidently's default DataDriftPreset on the FULL batch, and the same preset
             configured with the bench's per-column methods (drift.run_drift_report, HTML included);
* dag parse  every dags/*.py executed in a fresh interpreter after `import airflow.sdk`.

It reports Evidently time / fast decision time and the share of columns on which the decisions
agree (fast vs configured Evidently, and fast with Evidently's default methods vs default
Evidently), prints tables and writes everything to --out.

This module runs the whole; the parts are drift_data (schema, config, batches, calibration),
measure (steps, fresh interpreters, DAG parse), monitor_stage (our side), s3 (the server, a
client that times its requests), evidently_side and report (derived figures, printed tables).
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

from bench import s3
from bench.drift_data import COLUMNS, bench_config, calibrate, write_parquet
from bench.evidently_side import child_evidently_configured, child_evidently_default, run_evidently
from bench.measure import hwm_mb, measure_dag_parse, run_child
from bench.monitor_stage import (
    child_drift_task,
    child_fast,
    child_fast_default,
    child_profile,
    child_profile_s3,
    child_streamed,
    child_validate_task,
)
from bench.report import cpu_seconds, machine, print_report, report_agreement, stage_totals, step_seconds

CHILDREN = {
    "profile": child_profile,
    "profile_s3": child_profile_s3,
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


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated batch sizes (rows)")
    parser.add_argument("--out", default="bench-results.json")
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--evidently-max-rows", type=int, default=2_000_000, help="skip full Evidently runs above this")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", help="scratch folder for the Parquet files (default: a temporary one)")
    parser.add_argument("--skip-dag-parse", action="store_true")
    parser.add_argument(
        "--s3-max-rows",
        type=int,
        default=2_000_000,
        help="time the stage from S3 up to this size only (moto copies the whole object for every ranged read)",
    )
    parser.add_argument(
        "--stage-repeats", type=int, default=3, help="monitor stage runs per variant (local, S3); the median is kept"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _task(server: s3.Server, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """run_child, with the CPU time the S3 server spent meanwhile."""
    before = server.cpu_seconds()
    result = run_child(name, spec, timeout=7200)
    result["s3_server_cpu_seconds"] = server.cpu_seconds() - before
    return result


def _median_run(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (validate, drift) pair whose stage total is the median (the lower one of an even count)."""
    ranked = sorted(runs, key=lambda pair: stage_totals(*pair)["seconds"])
    return ranked[(len(ranked) - 1) // 2]


def monitor_stage(
    entry: dict[str, Any], run_spec: dict[str, Any], server: s3.Server, client: Any, repeats: int, with_s3: bool
) -> None:
    """The stage from local files and (`with_s3`) from S3, each task's variants back to back (the same load).

    Repeated `repeats` times, the variants' order swapped every other time; each variant's
    figures are those of its median repeat.
    """
    cfg = bench_config()
    specs = {"local": run_spec, "s3": {**run_spec, "endpoint": server.endpoint}}
    variants = ("local", "s3") if with_s3 else ("local",)
    if with_s3:
        s3.land_batch(client, cfg, Path(run_spec["current"]))
    runs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {v: [] for v in variants}
    for repeat in range(repeats):
        order = variants if repeat % 2 == 0 else variants[::-1]
        print(f"  validate_batch, compute_drift ({' then '.join(order)}; {repeat + 1}/{repeats})...", flush=True)
        validated = {v: _task(server, "validate_task", specs[v]) for v in order}
        drifted = {v: _task(server, "drift_task", specs[v]) for v in order}
        for variant in order:
            runs[variant].append((validated[variant], drifted[variant]))
    entry["monitor_repeats"] = {v: [stage_totals(*pair) for pair in pairs] for v, pairs in runs.items()}
    entry["validate_task"], entry["drift_task"] = _median_run(runs["local"])
    local = stage_totals(entry["validate_task"], entry["drift_task"])
    # The stage from local files (the figure before S3 was timed), under its earlier keys.
    entry["monitor_total_seconds"] = local["seconds"]
    entry["monitor_total_cpu_seconds"] = local["cpu_seconds"]
    entry["monitor_total_seconds_without_imports"] = local["seconds_without_imports"]
    entry["monitor_peak_mb"] = local["peak_mb"]
    entry["sample_report_agreement"] = report_agreement(entry["drift_task"])
    if not with_s3:
        return
    s3.clear_batch(client, cfg)
    entry["validate_task_s3"], entry["drift_task_s3"] = tasks = _median_run(runs["s3"])
    with_s3_totals = stage_totals(*tasks)
    entry["monitor_s3"] = {
        **with_s3_totals,
        **{f"s3_{k}": sum(r[f"s3_{k}"] for t in tasks for r in t["steps"]) for k in ("seconds", "bytes", "requests")},
        "s3": s3.summary(s3.merged_ops(*tasks)),
        "s3_server_cpu_seconds": sum(t["s3_server_cpu_seconds"] for t in tasks),
        "over_local": {k: with_s3_totals[k] / local[k] for k in ("seconds", "cpu_seconds", "seconds_without_imports")},
        "same_decisions_as_local": entry["drift_task_s3"]["fast"] == entry["drift_task"]["fast"],
        "validation_passed": entry["validate_task_s3"]["validation"]["passed"],
    }


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.child:
        child_main(args.child, args.spec)
        return 0

    sizes = sorted(int(s) for s in args.sizes.split(","))
    cfg = bench_config()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "reference_rows": args.reference_rows,
        "sample_rows": cfg.drift.report_sample_rows,
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
        print("Starting the S3 server (moto, loopback) and storing the reference profile there...", flush=True)
        with s3.moto_server(work / "moto.log") as server:
            client = s3.client(server.endpoint)
            s3.seed_reference(client, cfg, ref_path)
            results["profile_s3"] = run_child("profile_s3", {"endpoint": server.endpoint}, timeout=3600)
            results["s3_endpoint"] = server.endpoint
            for size in sizes:
                results["runs"][str(size)] = run_size(args, size, work, spec, calibration, server, client, results)
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


def run_size(
    args: argparse.Namespace,
    size: int,
    work: Path,
    spec: dict[str, Any],
    calibration: dict[str, Any],
    server: s3.Server,
    client: Any,
    results: dict[str, Any],
) -> dict[str, Any]:
    """Every measurement at one batch size."""
    print(f"Writing the {size}-row batch...", flush=True)
    cur_path = work / f"current-{size}.parquet"
    write_parquet(cur_path, size, args.seed, 1, calibration["effects"][str(size)], calibration["scales"])
    run_spec = {**spec, "current": str(cur_path), "staged": str(work / f"staged-{size}.parquet")}
    entry: dict[str, Any] = {"parquet_bytes": cur_path.stat().st_size}
    print(f"  monitor stage at {size} rows:", flush=True)
    with_s3 = size <= args.s3_max_rows
    if not with_s3:
        entry["s3_skipped"] = f"{size} rows > --s3-max-rows {args.s3_max_rows}"
    monitor_stage(entry, run_spec, server, client, args.stage_repeats, with_s3)
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
    measured = {int(n): r for n, r in results["runs"].items() if "evidently_default" in r}
    if size > args.evidently_max_rows:
        reason = f"{size} rows > --evidently-max-rows {args.evidently_max_rows}"
        if measured:
            base_n = max(measured)
            factor = size / base_n
            base = measured[base_n]["evidently_default"]
            reason += (
                f"; extrapolating linearly from {base_n} rows it would take ~"
                f"{base['seconds'] * factor:.0f} s and ~"
                f"{base['process_peak_mb'] * factor / 1024:.1f} GiB per run"
            )
        entry["evidently_skipped"] = reason
        print(f"  Evidently skipped: {reason}", flush=True)
    else:
        run_evidently(entry, run_spec)
    cur_path.unlink()
    return entry


if __name__ == "__main__":
    sys.exit(main())
