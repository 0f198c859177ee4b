"""Reporting: the machine, the figures derived from the measurements, and the printed tables."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    try:
        models = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        info["cpu_model"] = models[0] if models else platform.processor()
    except OSError:
        info["cpu_model"] = platform.processor()
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total = next(int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal:"))
        info["memory_gib"] = round(total / 1024**2, 2)
    except (OSError, StopIteration):
        info["memory_gib"] = None
    versions = {}
    for module in ("numpy", "pandas", "pyarrow", "scipy", "evidently", "great_expectations"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # a version string is nice to have, never worth failing the bench
            versions[module] = None
    info["versions"] = versions
    return info


def report_agreement(drift_task: dict[str, Any]) -> dict[str, Any]:
    """Verdicts read back from the Evidently snapshot against the full-data decision."""
    fast, shown = drift_task["fast"], drift_task["sample_report"]["decisions"]
    agree = sum(1 for name, f in fast.items() if shown.get(name, {}).get("drifted") == f["drifted"])
    return {
        "features": len(fast),
        "agree": agree,
        "sample_only_differs": drift_task["sample_report"]["sample_only_differs"],
    }


def step_seconds(result: dict[str, Any], name: str) -> float:
    return next(r["seconds"] for r in result["steps"] if r["step"] == name)


def cpu_seconds(result: dict[str, Any]) -> float:
    return sum(r["cpu_seconds"] for r in result["steps"])


def stage_totals(validate: dict[str, Any], drift: dict[str, Any]) -> dict[str, float]:
    """Two Airflow tasks, two processes: the stage's time adds up, its peak is the larger one."""
    rows = [r for task in (validate, drift) for r in task["steps"]]
    return {
        "seconds": sum(r["seconds"] for r in rows),
        "cpu_seconds": sum(r["cpu_seconds"] for r in rows),
        "seconds_without_imports": sum(r["seconds"] for r in rows if not r["step"].startswith("import")),
        "peak_mb": max(validate["process_peak_mb"], drift["process_peak_mb"]),
    }


def fmt_rows(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def print_report(results: dict[str, Any]) -> None:
    print()
    print(
        f"Machine: {results['machine']['cpu_model']}, {results['machine']['nproc']} CPUs, "
        f"{results['machine']['memory_gib']} GiB, OPENBLAS_CORETYPE={results['machine']['OPENBLAS_CORETYPE']}"
    )
    print(
        f"Reference: {results['reference_rows']} rows; profile build {results['profile']['build_seconds']:.2f} s, "
        f"{results['profile']['bytes'] / 1e6:.2f} MB JSON"
    )
    for size in results["sizes"]:
        entry = results["runs"][str(size)]
        print(f"\n== {fmt_rows(size)} rows x 20 features: monitor stage (two tasks, peak RSS per step)")
        print(f"  {'step':40s} {'seconds':>9s} {'CPU s':>9s} {'peak MB':>9s}")
        for task in ("validate_task", "drift_task"):
            print(f"  [{task}]")
            for row in entry[task]["steps"]:
                print(f"  {row['step']:40s} {row['seconds']:9.2f} {row['cpu_seconds']:9.2f} {row['peak_mb']:9.0f}")
        print(
            f"  {'TOTAL (time added, peak of the two)':40s} {entry['monitor_total_seconds']:9.2f} "
            f"{entry['monitor_total_cpu_seconds']:9.2f} {entry['monitor_peak_mb']:9.0f}"
        )
        if "monitor_s3" in entry:
            _print_stage_s3(entry)
        elif "s3_skipped" in entry:
            print(f"  the stage from S3: skipped, {entry['s3_skipped']}")
        v, a = entry["validate_task"]["validation"], entry["sample_report_agreement"]
        alone = a["sample_only_differs"]
        print(
            f"  validation: {v['expectations']} expectations, passed={v['passed']}; the Evidently report "
            f"(distributions from the sample) shows the full-data verdict on {a['agree']}/{a['features']} "
            f"features; the sample alone would have judged {len(alone)} otherwise"
            + (f" ({', '.join(alone)})" if alone else "")
        )
        s = entry["streamed"]
        streamed_cpu = cpu_seconds(s)
        print(
            f"  streamed (row groups): profile {step_seconds(s, 'profile row groups'):.2f} s + decide "
            f"{step_seconds(s, 'decide'):.3f} s (CPU {streamed_cpu:.2f} s), peak {s['process_peak_mb']:.0f} MB, "
            f"same decisions and scores as in memory: {entry['streamed_identical']}"
        )
    _print_s3_summary(results)
    print("\n== Fast decision vs Evidently on the full batch")
    header = (
        f"  {'rows':>6s} {'fast s':>8s} {'Evid. default s':>16s} {'peak MB':>8s} {'Evid. config s':>15s} "
        f"{'peak MB':>8s} {'speedup':>8s} {'CPU speedup':>12s} {'agree (cfg)':>12s} {'agree (default)':>16s}"
    )
    print(header)
    for size in results["sizes"]:
        entry = results["runs"][str(size)]
        fast_s = entry["fast_decision_seconds"]
        ev = entry.get("evidently_default")
        evc = entry.get("evidently_configured")
        if ev is None:
            print(f"  {fmt_rows(size):>6s} {fast_s:8.3f}   Evidently skipped: {entry.get('evidently_skipped')}")
            continue
        agree_c, agree_d = entry["agreement_configured"], entry["agreement_default"]
        print(
            f"  {fmt_rows(size):>6s} {fast_s:8.3f} {ev['seconds']:16.1f} {ev['process_peak_mb']:8.0f} "
            f"{evc['seconds']:15.1f} {evc['process_peak_mb']:8.0f} {entry['speedup_default']:7.0f}x "
            f"{entry['cpu_speedup_default']:11.0f}x "
            f"{agree_c['agree']:>5d}/{agree_c['columns']:<6d} {agree_d['agree']:>8d}/{agree_d['columns']:<7d}"
        )
    largest = max((s for s in results["sizes"] if "agreement_configured" in results["runs"][str(s)]), default=None)
    if largest is not None:
        print(f"\n== Per column at {fmt_rows(largest)} rows (configured methods)")
        print(
            f"  {'feature':16s} {'method':14s} {'thr':>5s} {'Evidently':>12s} {'fast':>12s} {'|diff|':>9s} "
            f"{'E':>2s} {'F':>2s}"
        )
        for r in results["runs"][str(largest)]["agreement_configured"]["per_column"]:
            print(
                f"  {r['feature']:16s} {r['method']:14s} {r['threshold']:5.2f} {r['evidently_score']:12.6g} "
                f"{r['fast_score']:12.6g} {r['abs_diff']:9.2e} {'D' if r['evidently_drifted'] else '-':>2s} "
                f"{'D' if r['fast_drifted'] else '-':>2s}{'' if r['agree'] else '  DISAGREE'}"
            )
    scaling = results.get("scaling")
    if scaling:
        print("\n== Scaling")
        for key, value in scaling.items():
            print(f"  {key}: {value:.2f}")
    print("\n== DAG parse time (fresh interpreter, after import airflow.sdk)")
    for name, row in results["dag_parse"].items():
        if "error" in row:
            print(f"  {name}: ERROR {row['error'][-300:]}")
        else:
            print(
                f"  {name:12s} {row['parse_seconds_median']:.3f} s (min {row['parse_seconds_min']:.3f} s; "
                f"import airflow.sdk {row['import_airflow_sdk_seconds_median']:.2f} s)"
            )


def _print_stage_s3(entry: dict[str, Any]) -> None:
    m, t = entry["monitor_s3"], entry["monitor_s3"]["s3"]
    print("  -- the same stage reading the batch, the reference profile and the staged batch from S3 (moto, loopback)")
    print(f"  {'step':40s} {'seconds':>9s} {'CPU s':>9s} {'peak MB':>9s} {'S3 s':>7s} {'S3 MB':>8s} {'S3 req':>7s}")
    for task in ("validate_task", "drift_task"):
        print(f"  [{task}]")
        for row in entry[f"{task}_s3"]["steps"]:
            print(
                f"  {row['step']:40s} {row['seconds']:9.2f} {row['cpu_seconds']:9.2f} {row['peak_mb']:9.0f} "
                f"{row['s3_seconds']:7.2f} {row['s3_bytes'] / 1e6:8.1f} {row['s3_requests']:7d}"
            )
    print(
        f"  {'TOTAL with S3 (time added, peak of two)':40s} {m['seconds']:9.2f} {m['cpu_seconds']:9.2f} "
        f"{m['peak_mb']:9.0f} {m['s3_seconds']:7.2f} {m['s3_bytes'] / 1e6:8.1f} {m['s3_requests']:7d}"
    )
    print(
        f"  S3 download: {t['download_seconds']:.2f} s, {t['download_bytes'] / 1e6:.1f} MB in "
        f"{t['download_requests']:.0f} requests, within the {m['seconds']:.2f} s TOTAL with S3; upload of the "
        f"staged batch {t['upload_seconds']:.2f} s ({t['upload_bytes'] / 1e6:.1f} MB); HEAD {t['head_seconds']:.2f} s; "
        f"the server's CPU {m['s3_server_cpu_seconds']:.2f} s (not in CPU s)"
    )
    ranged = [r for r in entry["drift_task_s3"]["steps"] if r["step"].startswith("profile partition")]
    print(
        f"  of which ranged reads of the staged batch (profile partitions): {sum(r['s3_requests'] for r in ranged)} "
        f"requests, {sum(r['s3_seconds'] for r in ranged):.2f} s, {sum(r['s3_bytes'] for r in ranged) / 1e6:.1f} MB"
    )
    r, repeats = m["over_local"], entry.get("monitor_repeats", {})
    if repeats:
        totals = "; ".join(f"{v} " + " / ".join(f"{t['seconds']:.2f}" for t in runs) for v, runs in repeats.items())
        print(f"  stage totals of every run, s (the median one is shown): {totals}")
    print(
        f"  with S3 / without S3 (local files, same run): {r['seconds']:.2f}x wall ({m['seconds']:.2f} s / "
        f"{entry['monitor_total_seconds']:.2f} s), {r['cpu_seconds']:.2f}x CPU, {r['seconds_without_imports']:.2f}x "
        f"wall without imports; validation passed={m['validation_passed']}, same decisions and scores as from "
        f"local files: {m['same_decisions_as_local']}"
    )


def _print_s3_summary(results: dict[str, Any]) -> None:
    sizes = [s for s in results["sizes"] if "monitor_s3" in results["runs"][str(s)]]
    if not sizes:
        return
    print("\n== Monitor stage with S3 vs from local files (one run; ratio = with / without)")
    print(
        f"  {'rows':>6s} {'local s':>8s} {'S3 s':>8s} {'ratio':>6s} {'CPU ratio':>10s} {'download s':>11s} "
        f"{'MB':>7s} {'upload s':>9s} {'peak MB local / S3':>19s}"
    )
    for size in sizes:
        entry = results["runs"][str(size)]
        m, t = entry["monitor_s3"], entry["monitor_s3"]["s3"]
        print(
            f"  {fmt_rows(size):>6s} {entry['monitor_total_seconds']:8.2f} {m['seconds']:8.2f} "
            f"{m['over_local']['seconds']:5.2f}x {m['over_local']['cpu_seconds']:9.2f}x "
            f"{t['download_seconds']:11.2f} {t['download_bytes'] / 1e6:7.1f} {t['upload_seconds']:9.2f} "
            f"{entry['monitor_peak_mb']:10.0f} / {m['peak_mb']:<6.0f}"
        )
