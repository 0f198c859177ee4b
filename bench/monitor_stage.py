"""Our side of the bench: the reference profile, the monitor stage as its tasks run it, the fast decision alone.

Each `child_*` function is one measurement, run in its own interpreter by `measure.run_child`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from bench.drift_data import bench_config
from bench.measure import Steps, decisions


def child_profile(spec: dict[str, Any]) -> dict[str, Any]:
    from driftwatch.profile import build_profile, read_columns
    from driftwatch.references import report_sample

    steps = Steps()
    cfg, default_cfg = bench_config(), bench_config(default_methods=True)
    names = cfg.dataset.feature_names
    reference = steps.run("read reference", lambda: read_columns(spec["reference"], names, categories=names))
    profile = steps.run("build profile", lambda: build_profile(reference, cfg))
    text = steps.run("to_json", profile.to_json)
    Path(spec["profile"]).write_text(text)
    default_profile = build_profile(reference, default_cfg)
    Path(spec["default_profile"]).write_text(default_profile.to_json())
    sample = report_sample(reference, cfg.drift.report_sample_rows, seed=0)
    sample.to_parquet(spec["reference_sample"], index=False)
    return {"steps": steps.rows, "profile_bytes": len(text.encode())}


def child_validate_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The monitor's validate_batch task as the pipeline runs it, from the object's bytes to the staged Parquet."""
    from driftwatch import ingest, profile, validation

    steps = Steps()
    cfg = bench_config()
    categories = cfg.dataset.categorical_features

    def parse() -> ingest.ParquetColumns:
        # The task copies the object to a local spool file first; here, the local file in place.
        batch = ingest.ParquetColumns((Path(spec["current"]),), tuple(categories))
        batch = ingest.drop_unused_columns(batch, cfg)
        ingest.check_columns(batch.columns, cfg)
        return batch

    frame = steps.run("open batch (Parquet footer)", parse)
    ref_profile = steps.run(
        "load reference profile", lambda: profile.ReferenceProfile.from_json(Path(spec["profile"]).read_text())
    )
    steps.run("import great_expectations", lambda: __import__("great_expectations"))

    def validate_and_stage() -> tuple[Any, float]:
        # As validate_step does: the staged file is written on a second thread while GX validates.
        def stage() -> float:
            started = time.perf_counter()
            ingest.write_staged_file(Path(spec["staged"]), frame, cfg)
            return time.perf_counter() - started

        with ThreadPoolExecutor(1) as background:
            staging = background.submit(stage)
            checked = validation.validate_frame(frame, cfg, ref_profile)
            return checked, staging.result()

    checked, stage_seconds = steps.run("validate (GX) | stage (2nd thread)", validate_and_stage)
    staged = Path(spec["staged"]).stat().st_size
    return {
        "steps": steps.rows,
        "per_step_peaks": steps.per_step_peaks,
        "rows": frame.rows,
        "validation": {
            "passed": checked.passed,
            "expectations": len(checked.outcomes),
            "warnings": len(checked.warnings),
            "critical_failures": len(checked.critical_failures),
            "reason": checked.failure_reason(),
        },
        "staged_bytes": staged,
        "stage_thread_seconds": stage_seconds,
    }


def child_drift_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The monitor's compute_drift task: full-data decision from the profile, Evidently report on a sample."""

    import pyarrow.parquet as pq

    from driftwatch import drift, drift_check, layout, profile

    steps = Steps()
    cfg = bench_config()
    steps.run("import evidently", lambda: __import__("evidently.presets"))
    ref_profile = steps.run(
        "load reference profile", lambda: profile.ReferenceProfile.from_json(Path(spec["profile"]).read_text())
    )
    ref_sample = steps.run("read reference sample", lambda: pd.read_parquet(spec["reference_sample"]))
    # The task reads each partition's byte ranges from S3 (storage.RangeReader); here, the local file.
    staged = steps.run("open staged batch", lambda: open(spec["staged"], "rb"))  # noqa: SIM115
    seed = drift_check.sample_seed("2026-11-01")
    rows = pq.ParquetFile(staged).metadata.num_rows
    plan = drift_check.plan_partitions(rows, layout.staged_row_group_rows(cfg), cfg.drift.partition_rows)
    # In the DAG each partition is a mapped task; here they run in turn and their times add up.
    parts = [
        steps.run(
            f"profile partition {p.index + 1}/{len(plan)}",
            lambda p=p: drift_check.profile_partition(staged, ref_profile, cfg, seed=seed, partition=p),
        )
        for p in plan
    ]
    assessment = steps.run(
        "merge, decide (all rows), report (sample)",
        lambda: drift_check.assess(ref_profile, ref_sample, parts, cfg, seed=seed),
    )
    return {
        "steps": steps.rows,
        "per_step_peaks": steps.per_step_peaks,
        "fast": decisions(assessment.result),
        "sample_report": {
            **assessment.summary(),
            # Read back from Evidently's own snapshot: what a person opening the report sees.
            "decisions": decisions(drift._feature_results(assessment.report_json, cfg, cfg.dataset.feature_names)),
            "html_bytes": len(assessment.html.encode()),
        },
    }


def _fast(spec: dict[str, Any], *, default_methods: bool) -> dict[str, Any]:
    from driftwatch import profile

    steps = Steps()
    cfg = bench_config(default_methods=default_methods)
    names = cfg.dataset.feature_names
    frame = steps.run("read batch", lambda: profile.read_columns(spec["current"], names, categories=names))
    stored = spec["default_profile" if default_methods else "profile"]
    ref_profile = profile.ReferenceProfile.from_json(Path(stored).read_text())
    _import_scipy()  # imports are not part of the measurement
    fast = steps.run("fast drift decision", lambda: profile.fast_drift(ref_profile, frame, cfg))
    return {"steps": steps.rows, "fast": decisions(fast)}


def child_fast(spec: dict[str, Any]) -> dict[str, Any]:
    """The drift decision stage alone: batch columns in memory to per-feature decisions, profile stored."""
    return _fast(spec, default_methods=False)


def child_fast_default(spec: dict[str, Any]) -> dict[str, Any]:
    """The same with Evidently's default method per column type."""
    return _fast(spec, default_methods=True)


def _import_scipy() -> None:
    import scipy.spatial.distance  # noqa: F401
    import scipy.stats  # noqa: F401


def child_streamed(spec: dict[str, Any]) -> dict[str, Any]:
    from driftwatch import profile

    steps = Steps()
    cfg = bench_config()
    ref_profile = profile.ReferenceProfile.from_json(Path(spec["profile"]).read_text())
    _import_scipy()  # imports are not part of the measurement

    batch = steps.run("profile row groups", lambda: profile.profile_parquet(spec["current"], ref_profile, cfg))
    result = steps.run("decide", lambda: profile.decide(ref_profile, batch, cfg))
    return {"steps": steps.rows, "fast": decisions(result), "batch_profile_bytes": len(batch.to_json().encode())}
