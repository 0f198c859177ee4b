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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
ID_COLUMN = "row_id"
ROW_GROUP = 131_072
CALIBRATION_ROWS = 200_000
KS_CRITICAL = 1.358  # two-sided 5% Kolmogorov-Smirnov coefficient

# Evidently names methods by display name in its snapshot.
DISPLAY_NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "K-S p_value": "ks",
    "PSI": "psi",
    "Jensen-Shannon distance": "jensenshannon",
    "Kullback-Leibler divergence": "kl_div",
    "Hellinger distance": "hellinger",
    "chi-square p_value": "chisquare",
}


@dataclass(frozen=True)
class Column:
    """One bench feature: how it is drawn, tested, and how far it drifts.

    `target` is the wanted Evidently score as a multiple of the threshold for distances, the
    wanted KS statistic as a multiple of its 5% critical value for `ks`, and the mixing weight
    of the drifted distribution for `chisquare`.
    """

    name: str
    kind: str
    draw: str
    method: str
    threshold: float
    target: float


COLUMNS = (
    Column("n01_age", "numeric", "normal_int", "wasserstein", 0.1, 0.0),
    Column("n02_income", "numeric", "lognormal", "wasserstein", 0.1, 0.9),
    Column("n03_amount", "numeric", "uniform", "wasserstein", 0.1, 0.97),
    Column("n04_utilization", "numeric", "beta", "wasserstein", 0.1, 1.03),
    Column("n05_dti", "numeric", "gamma", "wasserstein", 0.1, 1.2),
    Column("n06_tenure", "numeric", "gamma_int", "wasserstein", 0.1, 2.0),
    Column("n07_score", "numeric", "normal", "ks", 0.05, 0.5),
    Column("n08_balance", "numeric", "lognormal_nan", "ks", 0.05, 3.0),
    Column("n09_rate", "numeric", "normal_rate", "psi", 0.1, 0.95),
    Column("n10_late", "numeric", "poisson_small", "psi", 0.2, 1.05),
    Column("n11_limit", "numeric", "gamma_limit", "jensenshannon", 0.1, 0.95),
    Column("n12_visits", "numeric", "poisson_visits", "jensenshannon", 0.1, 1.05),
    Column("n13_ratio", "numeric", "beta_ratio", "kl_div", 0.1, 1.05),
    Column("n14_spend", "numeric", "lognormal_spend", "hellinger", 0.1, 0.97),
    Column("n15_duration", "numeric", "exponential", "hellinger", 0.1, 1.05),
    Column("c1_region", "categorical", "region", "jensenshannon", 0.1, 0.0),
    Column("c2_channel", "categorical", "channel", "jensenshannon", 0.1, 0.95),
    Column("c3_purpose", "categorical", "purpose", "jensenshannon", 0.1, 1.05),
    Column("c4_employment", "categorical", "employment", "chisquare", 0.05, 0.02),
    Column("c5_product", "categorical", "product", "psi", 0.1, 0.9),
)

# Categorical columns: (labels, reference shares, drifted shares); "z_new" never occurs in the reference.
CATEGORIES: dict[str, tuple[list[str], list[float], list[float]]] = {
    "region": (["north", "south", "east", "west", "central"], [0.22, 0.24, 0.2, 0.18, 0.16], [0.1, 0.4, 0.2, 0.1, 0.2]),
    "channel": (["branch", "online", "mobile", "broker"], [0.25, 0.4, 0.22, 0.13], [0.05, 0.35, 0.5, 0.1]),
    "purpose": (
        ["debt", "card", "home", "car", "medical", "education", "business", "other"],
        [0.32, 0.18, 0.12, 0.12, 0.06, 0.06, 0.06, 0.08],
        [0.5, 0.25, 0.04, 0.04, 0.1, 0.03, 0.01, 0.03],
    ),
    "employment": (
        ["salaried", "self", "contract", "unemployed", "retired"],
        [0.6, 0.15, 0.12, 0.05, 0.08],
        [0.4] + [0.15] * 4,
    ),
    "product": (
        ["p1", "p2", "p3", "p4", "p5", "p6", "z_new"],
        [0.3, 0.25, 0.2, 0.1, 0.1, 0.05, 0.0],
        [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1],
    ),
}
NULL_SHARE = {"n08_balance": 0.03, "c2_channel": 0.01}


# ---------------------------------------------------------------------------- config


def bench_raw_config(columns: tuple[Column, ...] = COLUMNS, *, default_methods: bool = False) -> dict[str, Any]:
    """A model config for the bench schema, with demo-like validation rules."""
    features: list[dict[str, Any]] = []
    for col in columns:
        feature: dict[str, Any] = {"name": col.name, "type": col.kind}
        if not default_methods:
            feature |= {"drift_method": col.method, "drift_threshold": col.threshold}
        if col.name == "n01_age":
            feature |= {"min": 18, "max": 100}
        if col.name in ("n03_amount", "n11_limit"):
            feature |= {"min": 0}
        if col.name == "n08_balance":
            feature["max_null_fraction"] = 0.1
        if col.kind == "categorical" and col.draw in ("region", "channel", "employment"):
            feature["allowed_values"] = CATEGORIES[col.draw][0]
        features.append(feature)
    return {
        "name": "bench_drift",
        "schema": {"id_column": ID_COLUMN, "target": {"name": "label"}, "features": features},
        "storage": {"bucket": "driftwatch-bench", "reference_key": "reference/bench.parquet"},
        "validation": {"min_rows": 100, "max_null_fraction": 0.2, "max_unseen_category_fraction": 0.05},
        "drift": {
            "numeric_method": "wasserstein",
            "numeric_threshold": 0.1,
            "categorical_method": "jensenshannon",
            "categorical_threshold": 0.1,
            "dataset_drift_share": 0.3,
        },
        "alerts": {"recipients": ["bench@example.com"]},
        "monitor": {"start_date": "2026-01-01"},
        "evaluation": {"slice_columns": []},
    }


def bench_config(**kwargs: Any) -> Any:
    from driftwatch.config import parse_config

    return parse_config(bench_raw_config(**kwargs), source="bench")


# ---------------------------------------------------------------------------- data


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _base(draw: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Reference-distribution draws; the drift is applied on top by `_draw`."""
    draws = {
        "normal_int": lambda: np.rint(rng.normal(40, 10, n)).clip(18, 100),
        "lognormal": lambda: rng.lognormal(11, 0.5, n),
        "uniform": lambda: rng.uniform(500, 40_500, n),
        "beta": lambda: rng.beta(2, 5, n),
        "gamma": lambda: rng.gamma(2, 0.15, n),
        "gamma_int": lambda: rng.gamma(2, 30, n),
        "normal": lambda: rng.normal(650, 60, n),
        "lognormal_nan": lambda: rng.lognormal(8, 1.2, n),
        "normal_rate": lambda: rng.normal(0.12, 0.03, n),
        "poisson_small": lambda: rng.poisson(0.5, n).astype(np.float64),
        "gamma_limit": lambda: rng.gamma(3, 2000, n),
        "poisson_visits": lambda: rng.poisson(4, n).astype(np.float64),
        "beta_ratio": lambda: rng.beta(5, 2, n),
        "lognormal_spend": lambda: rng.lognormal(5, 0.8, n),
        "exponential": lambda: rng.exponential(30, n),
    }
    return draws[draw]()


def _draw(col: Column, rng: np.random.Generator, n: int, effect: float, scale: float) -> Any:
    """n values of one column; `effect` is its drift (0 = reference), `scale` the reference std."""
    if col.kind == "categorical":
        labels, p_ref, p_alt = CATEGORIES[col.draw]
        mix = np.cumsum((1 - effect) * np.asarray(p_ref) + effect * np.asarray(p_alt))
        codes = np.minimum(np.searchsorted(mix / mix[-1], rng.random(n), side="right"), len(labels) - 1)
        if col.name in NULL_SHARE:
            codes = np.where(rng.random(n) < NULL_SHARE[col.name], -1, codes)
        return pd.Categorical.from_codes(codes, categories=labels)
    values = _base(col.draw, rng, n)
    if col.draw.startswith("poisson"):
        values = values + (rng.random(n) < effect)  # a share `effect` of rows gets one more event
    elif col.draw == "gamma_int":
        values = np.floor(values + effect * scale)
    elif col.draw == "normal_int":
        values = values + np.rint(effect * scale)
    else:
        values = values + effect * scale  # location shift: normed Wasserstein moves by `effect`
    if col.name in NULL_SHARE:
        values = np.where(rng.random(n) < NULL_SHARE[col.name], np.nan, values)
    return values


def _frame(n: int, seed: int, stream: int, effects: dict[str, float], scales: dict[str, float]) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for i, col in enumerate(COLUMNS):
        data[col.name] = _draw(col, _rng(seed, stream, i), n, effects.get(col.name, 0.0), scales.get(col.name, 1.0))
    return pd.DataFrame(data)


def write_parquet(
    path: Path, n: int, seed: int, stream: int, effects: dict[str, float], scales: dict[str, float]
) -> None:
    """Write n rows in row groups of ROW_GROUP, generated group by group (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for chunk, start in enumerate(range(0, n, ROW_GROUP)):
            rows = min(ROW_GROUP, n - start)
            frame = _frame(rows, seed, stream * 100_000 + chunk, effects, scales)
            frame.insert(0, ID_COLUMN, np.arange(start, start + rows, dtype=np.int64))
            # Categories as plain strings, as a producer would write them.
            for col in COLUMNS:
                if col.kind == "categorical":
                    frame[col.name] = frame[col.name].astype(object)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()


def _ks_critical(n_ref: int, n: int) -> float:
    return KS_CRITICAL * math.sqrt(1 / n_ref + 1 / n)


def calibrate(reference: pd.DataFrame, seed: int, n_ref: int, sizes: list[int]) -> dict[str, Any]:
    """Drift effects that put each column's score at its target multiple of the threshold."""
    from driftwatch.config import parse_config
    from driftwatch.profile import build_profile, fast_drift

    scales = {
        c.name: float(np.nanstd(reference[c.name].replace([np.inf, -np.inf], np.nan)))
        for c in COLUMNS
        if c.kind == "numeric"
    }
    effects: dict[str, float] = {}
    ks_shift: dict[str, float] = {}
    for i, col in enumerate(COLUMNS):
        if col.target == 0:
            effects[col.name] = 0.0
        elif col.method == "chisquare":
            effects[col.name] = col.target
        elif col.method == "ks":
            values = reference[col.name].replace([np.inf, -np.inf], np.nan).dropna().to_numpy()
            hist, edges = np.histogram(values, bins=400, range=tuple(np.percentile(values, [0.5, 99.5])))
            density = float(np.max(hist / (len(values) * np.diff(edges))))
            # A location shift d moves the CDF by about d * max density: aim D at target x critical value.
            ks_shift[col.name] = col.target / (density * scales[col.name])
        else:
            raw = bench_raw_config((col,))
            cfg = parse_config(raw, source="calibration")
            profile = build_profile(reference[[col.name]], cfg)

            def score(effect: float, col: Column = col, cfg: Any = cfg, profile: Any = profile, i: int = i) -> float:
                sample = _draw(col, _rng(seed, 9, i), CALIBRATION_ROWS, effect, scales.get(col.name, 1.0))
                return fast_drift(profile, pd.DataFrame({col.name: sample}), cfg).features[0].score

            goal = col.target * col.threshold
            # Mixing weights and event shares are probabilities; shifts can grow.
            limit = 1.0 if col.kind == "categorical" or col.draw.startswith("poisson") else 64.0
            lo, hi = 0.0, min(1.0, limit)
            while score(hi) < goal and hi < limit:
                hi *= 2
            for _ in range(22):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if score(mid) < goal else (lo, mid)
            effects[col.name] = (lo + hi) / 2
    per_size = {
        str(n): {name: shift * _ks_critical(n_ref, n) for name, shift in ks_shift.items()} | effects for n in sizes
    }
    return {"scales": scales, "effects": per_size}


# ---------------------------------------------------------------------------- measuring


def _hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM) in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


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
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.per_step_peaks = _reset_peak()

    def run(self, name: str, fn: Any) -> Any:
        _reset_peak()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        self.rows.append(
            {"step": name, "seconds": seconds, "cpu_seconds": cpu, "peak_mb": _hwm_mb(), "rss_after_mb": _rss_mb()}
        )
        return result


def _decisions(result: Any) -> dict[str, Any]:
    """Per-feature decisions of a DriftResult, or of a list of its features."""
    features = result.features if hasattr(result, "features") else result
    return {
        f.name: {"method": f.method, "threshold": f.threshold, "score": f.score, "drifted": f.drifted} for f in features
    }


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
        "fast": _decisions(assessment.result),
        "sample_report": {
            **assessment.summary(),
            # Read back from Evidently's own snapshot: what a person opening the report sees.
            "decisions": _decisions(drift._feature_results(assessment.report_json, cfg, cfg.dataset.feature_names)),
            "html_bytes": len(assessment.html.encode()),
        },
    }


def child_fast(spec: dict[str, Any]) -> dict[str, Any]:
    """The drift decision stage alone: batch columns in memory to per-feature decisions, profile stored."""
    from driftwatch import profile

    steps = Steps()
    cfg = bench_config()
    names = cfg.dataset.feature_names
    frame = steps.run("read batch", lambda: profile.read_columns(spec["current"], names, categories=names))
    ref_profile = profile.ReferenceProfile.from_json(Path(spec["profile"]).read_text())
    _import_scipy()  # imports are not part of the measurement
    fast = steps.run("fast drift decision", lambda: profile.fast_drift(ref_profile, frame, cfg))
    return {"steps": steps.rows, "fast": _decisions(fast)}


def _import_scipy() -> None:
    import scipy.spatial.distance  # noqa: F401
    import scipy.stats  # noqa: F401


def child_fast_default(spec: dict[str, Any]) -> dict[str, Any]:
    from driftwatch import profile

    steps = Steps()
    cfg = bench_config(default_methods=True)
    names = cfg.dataset.feature_names
    frame = steps.run("read batch", lambda: profile.read_columns(spec["current"], names, categories=names))
    ref_profile = profile.ReferenceProfile.from_json(Path(spec["default_profile"]).read_text())
    _import_scipy()  # imports are not part of the measurement

    fast = steps.run("fast drift decision", lambda: profile.fast_drift(ref_profile, frame, cfg))
    return {"steps": steps.rows, "fast": _decisions(fast)}


def child_streamed(spec: dict[str, Any]) -> dict[str, Any]:
    from driftwatch import profile

    steps = Steps()
    cfg = bench_config()
    ref_profile = profile.ReferenceProfile.from_json(Path(spec["profile"]).read_text())
    _import_scipy()  # imports are not part of the measurement

    batch = steps.run("profile row groups", lambda: profile.profile_parquet(spec["current"], ref_profile, cfg))
    result = steps.run("decide", lambda: profile.decide(ref_profile, batch, cfg))
    return {"steps": steps.rows, "fast": _decisions(result), "batch_profile_bytes": len(batch.to_json().encode())}


def _read_plain(path: str, names: list[str]) -> pd.DataFrame:
    return pd.read_parquet(path, columns=names)


def _evidently_decisions(report_json: dict[str, Any]) -> dict[str, Any]:
    statuses = {t["metric_config"]["metric_id"]: t["status"] for t in report_json["tests"] if t.get("id") == "drift"}
    out = {}
    for metric in report_json["metrics"]:
        config = metric.get("config", {})
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        method = config.get("method")
        out[config["column"]] = {
            "method": DISPLAY_NAMES.get(method, method),
            "threshold": config.get("threshold"),
            "score": float(metric["value"]),
            "drifted": statuses.get(metric["id"]) in ("FAIL", "WARNING"),
        }
    return out


def child_evidently_default(spec: dict[str, Any]) -> dict[str, Any]:
    steps = Steps()
    cfg = bench_config()
    names = cfg.dataset.feature_names
    reference = _read_plain(spec["reference"], names)
    current = _read_plain(spec["current"], names)
    from evidently import DataDefinition, Dataset, Report  # imports are not part of the measurement
    from evidently.presets import DataDriftPreset

    def run() -> dict[str, Any]:
        definition = DataDefinition(
            numerical_columns=cfg.dataset.numeric_features, categorical_columns=cfg.dataset.categorical_features
        )
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        return json.loads(snapshot.json())

    report_json = steps.run("Evidently DataDriftPreset() (full batch)", run)
    return {"steps": steps.rows, "evidently": _evidently_decisions(report_json)}


def child_evidently_configured(spec: dict[str, Any]) -> dict[str, Any]:
    from driftwatch import drift

    steps = Steps()
    cfg = bench_config()
    names = cfg.dataset.feature_names
    reference = _read_plain(spec["reference"], names)
    current = _read_plain(spec["current"], names)
    import evidently.presets  # noqa: F401  (imports are not part of the measurement)

    result, html, report_json = steps.run(
        "drift.run_drift_report (full batch)", lambda: drift.run_drift_report(reference, current, cfg)
    )
    return {"steps": steps.rows, "evidently": _decisions(result), "html_bytes": len(html.encode())}


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


def run_child(name: str, spec: dict[str, Any], timeout: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its own peak RSS is reported with it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)])}
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
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


def child_main(name: str, spec_text: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    spec = json.loads(spec_text)
    result = CHILDREN[name](spec)
    # Steps reset VmHWM as they start, so the process peak is the largest step peak.
    result["process_peak_mb"] = max([_hwm_mb(), *(r["peak_mb"] for r in result["steps"])])
    print(json.dumps(result, default=float))


# ---------------------------------------------------------------------------- reporting


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


def agreement(fast: dict[str, Any], evidently: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, ours in fast.items():
        theirs = evidently.get(name)
        if theirs is None:
            continue
        rows.append(
            {
                "feature": name,
                "method": ours["method"],
                "evidently_method": theirs["method"],
                "threshold": ours["threshold"],
                "evidently_score": theirs["score"],
                "fast_score": ours["score"],
                "abs_diff": abs(theirs["score"] - ours["score"]),
                "evidently_drifted": theirs["drifted"],
                "fast_drifted": ours["drifted"],
                "agree": theirs["drifted"] == ours["drifted"],
            }
        )
    agreeing = sum(r["agree"] for r in rows)
    return {
        "agree": agreeing,
        "columns": len(rows),
        "share": agreeing / len(rows) if rows else None,
        "per_column": rows,
    }


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


def _cpu(result: dict[str, Any]) -> float:
    return sum(r["cpu_seconds"] for r in result["steps"])


def _fmt_rows(n: int) -> str:
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
        print(f"\n== {_fmt_rows(size)} rows x 20 features: monitor stage (two tasks, peak RSS per step)")
        print(f"  {'step':40s} {'seconds':>9s} {'CPU s':>9s} {'peak MB':>9s}")
        for task in ("validate_task", "drift_task"):
            print(f"  [{task}]")
            for row in entry[task]["steps"]:
                print(f"  {row['step']:40s} {row['seconds']:9.2f} {row['cpu_seconds']:9.2f} {row['peak_mb']:9.0f}")
        print(
            f"  {'TOTAL (time added, peak of the two)':40s} {entry['monitor_total_seconds']:9.2f} "
            f"{entry['monitor_total_cpu_seconds']:9.2f} {entry['monitor_peak_mb']:9.0f}"
        )
        v, a = entry["validate_task"]["validation"], entry["sample_report_agreement"]
        alone = a["sample_only_differs"]
        print(
            f"  validation: {v['expectations']} expectations, passed={v['passed']}; the Evidently report "
            f"(distributions from the sample) shows the full-data verdict on {a['agree']}/{a['features']} "
            f"features; the sample alone would have judged {len(alone)} otherwise"
            + (f" ({', '.join(alone)})" if alone else "")
        )
        s = entry["streamed"]
        streamed_cpu = sum(r["cpu_seconds"] for r in s["steps"])
        print(
            f"  streamed (row groups): profile {step_seconds(s, 'profile row groups'):.2f} s + decide "
            f"{step_seconds(s, 'decide'):.3f} s (CPU {streamed_cpu:.2f} s), peak {s['process_peak_mb']:.0f} MB, "
            f"same decisions and scores as in memory: {entry['streamed_identical']}"
        )
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
            print(f"  {_fmt_rows(size):>6s} {fast_s:8.3f}   Evidently skipped: {entry.get('evidently_skipped')}")
            continue
        agree_c, agree_d = entry["agreement_configured"], entry["agreement_default"]
        print(
            f"  {_fmt_rows(size):>6s} {fast_s:8.3f} {ev['seconds']:16.1f} {ev['process_peak_mb']:8.0f} "
            f"{evc['seconds']:15.1f} {evc['process_peak_mb']:8.0f} {entry['speedup_default']:7.0f}x "
            f"{entry['cpu_speedup_default']:11.0f}x "
            f"{agree_c['agree']:>5d}/{agree_c['columns']:<6d} {agree_d['agree']:>8d}/{agree_d['columns']:<7d}"
        )
    largest = max((s for s in results["sizes"] if "agreement_configured" in results["runs"][str(s)]), default=None)
    if largest is not None:
        print(f"\n== Per column at {_fmt_rows(largest)} rows (configured methods)")
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


# ---------------------------------------------------------------------------- main


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
            entry["monitor_total_cpu_seconds"] = sum(_cpu(t) for t in tasks)
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
            "streamed CPU time 5M/1M": _cpu(five["streamed"]) / _cpu(one["streamed"]),
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
