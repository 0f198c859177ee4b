"""Our side of the bench: the reference profile, the monitor stage as its tasks run it, the fast decision alone.

Each `child_*` function is one measurement, run in its own interpreter by `measure.run_child`.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from bench.drift_data import BATCH_DATE, bench_config
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


class _Local:
    """Where the tasks read and write: the bench's local files, in place (the figure without S3)."""

    suffix = ""
    meter = None

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def open_batch(self, cfg: Any, spool: Path) -> Any:
        from driftwatch import ingest

        # The task copies the object to a local spool file first; here, the local file in place.
        return ingest.ParquetColumns((Path(self.spec["current"]),), tuple(cfg.dataset.categorical_features))

    def load_profile(self, cfg: Any) -> Any:
        from driftwatch.profile import ReferenceProfile

        return ReferenceProfile.from_json(Path(self.spec["profile"]).read_text())

    def read_sample(self, cfg: Any) -> pd.DataFrame:
        return pd.read_parquet(self.spec["reference_sample"])

    def staged_path(self, spool: Path) -> Path:
        return Path(self.spec["staged"])

    def open_staged(self, cfg: Any) -> Any:
        return open(self.spec["staged"], "rb")  # read until the child exits


class _S3(_Local):
    """Where the tasks read and write in the DAG: S3 (the bench's moto server), through the tasks' own functions."""

    suffix = " (S3)"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        from bench import s3

        self.meter = self.client = s3.TimedClient(s3.client(spec["endpoint"]))
        self._stored: Any = None

    def open_batch(self, cfg: Any, spool: Path) -> Any:
        from driftwatch import ingest

        # validate_step: list, size-check, download each object to the spool folder, open the footers.
        return ingest.read_batch(self.client, cfg, BATCH_DATE, spool=spool).data

    def _reference(self, cfg: Any) -> Any:
        from driftwatch import references

        if self._stored is None:
            self._stored = references.load_profile(self.client, cfg)
        return self._stored

    def load_profile(self, cfg: Any) -> Any:
        return self._reference(cfg).profile

    def read_sample(self, cfg: Any) -> pd.DataFrame:
        from driftwatch import references

        return references.read_sample(self.client, self._reference(cfg))

    def staged_path(self, spool: Path) -> Path:
        return spool / "staged.parquet"

    def upload_staged(self, cfg: Any, path: Path) -> str:
        from driftwatch import ingest, layout

        return ingest.upload_staged(self.client, cfg, layout.staged_key(cfg, BATCH_DATE), path)

    def open_staged(self, cfg: Any) -> Any:
        from driftwatch import layout, storage

        # profile_partition_step: ranged reads of the partition's row groups, never the whole object.
        return storage.RangeReader(self.client, cfg.storage.bucket, layout.staged_key(cfg, BATCH_DATE))


def _io(spec: dict[str, Any]) -> _Local:
    return _S3(spec) if spec.get("endpoint") else _Local(spec)


def _s3_ops(where: _Local) -> dict[str, Any]:
    return {} if where.meter is None else {"s3_ops": where.meter.ops}


def child_validate_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The monitor's validate_batch task as the pipeline runs it, from the batch object to the staged Parquet.

    From local files, or (spec["endpoint"]) from S3 as validate_step reads it: the stored
    reference profile, the batch downloaded to a spool file, the staged copy uploaded.
    """
    from driftwatch import ingest, validation

    where = _io(spec)
    steps = Steps(where.meter)
    cfg = bench_config()

    with tempfile.TemporaryDirectory(prefix="driftwatch-bench-spool-") as spool_dir:
        spool = Path(spool_dir)

        def parse() -> ingest.ParquetColumns:
            batch = ingest.drop_unused_columns(where.open_batch(cfg, spool), cfg)
            ingest.check_columns(batch.columns, cfg)
            return batch

        opening = "S3 download to spool, open (read_batch)" if where.meter else "open batch (Parquet footer)"
        frame = steps.run(opening, parse)
        ref_profile = steps.run("load reference profile" + where.suffix, lambda: where.load_profile(cfg))
        steps.run("import great_expectations", lambda: __import__("great_expectations"))
        staged_path = where.staged_path(spool)

        def validate_and_stage() -> tuple[Any, float]:
            # As validate_step does: the staged file is written on a second thread while GX validates.
            def stage() -> float:
                started = time.perf_counter()
                ingest.write_staged_file(staged_path, frame, cfg)
                return time.perf_counter() - started

            with ThreadPoolExecutor(1) as background:
                staging = background.submit(stage)
                checked = validation.validate_frame(frame, cfg, ref_profile)
                return checked, staging.result()

        checked, stage_seconds = steps.run("validate (GX) | stage (2nd thread)", validate_and_stage)
        staged = staged_path.stat().st_size
        if isinstance(where, _S3):
            steps.run("S3 upload of the staged batch", lambda: where.upload_staged(cfg, staged_path))
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
        **_s3_ops(where),
    }


def child_drift_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The monitor's compute_drift task: full-data decision from the profile, Evidently report on a sample.

    From local files, or (spec["endpoint"]) from S3: the stored profile and sample as
    references reads them, the staged batch by ranged reads as profile_partition_step does.
    """

    import pyarrow.parquet as pq

    from driftwatch import drift, drift_check, layout

    where = _io(spec)
    steps = Steps(where.meter)
    cfg = bench_config()
    steps.run("import evidently", lambda: __import__("evidently.presets"))
    ref_profile = steps.run("load reference profile" + where.suffix, lambda: where.load_profile(cfg))
    ref_sample = steps.run("read reference sample" + where.suffix, lambda: where.read_sample(cfg))

    def open_staged() -> tuple[Any, int]:
        source = where.open_staged(cfg)
        return source, pq.ParquetFile(source).metadata.num_rows

    staged, rows = steps.run("open staged batch footer" + where.suffix, open_staged)
    seed = drift_check.sample_seed(BATCH_DATE)
    plan = drift_check.plan_partitions(rows, layout.staged_row_group_rows(cfg), cfg.drift.partition_rows)
    # In the DAG each partition is a mapped task; here they run in turn and their times add up.
    parts = [
        steps.run(
            f"profile partition {p.index + 1}/{len(plan)}" + (" (S3 ranges)" if where.meter else ""),
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
        **_s3_ops(where),
    }


def child_profile_s3(spec: dict[str, Any]) -> dict[str, Any]:
    """The stored reference profile and sample, built from the reference in S3 by references.load_profile.

    The pipeline does this once per champion, on its first batch; not part of the stage's time.
    """
    from driftwatch import references

    where = _S3(spec)
    steps = Steps(where.meter)
    cfg = bench_config()
    stored = steps.run("references.load_profile (build, S3)", lambda: references.load_profile(where.client, cfg))
    return {"steps": steps.rows, "built": stored.built, "prefix_uri": stored.prefix_uri, **_s3_ops(where)}


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
