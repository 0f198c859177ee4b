"""`driftwatch check`: what the monitor and the first retrain would do with a config, run in-process.

Each step runs the pipeline's own functions (validation, profiling, the drift decision, a
trial fit and scoring) on the reference and, when given, a sample batch and its labels. A
failing step is recorded as a problem and the checks go on where they can, so that one run
lists every problem at once, each naming the field or file to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from driftwatch import ingest
from driftwatch.config import ModelConfig
from driftwatch.errors import PermanentError

Loader = Callable[[str, list[str]], pd.DataFrame]


@dataclass
class CheckReport:
    """What was found (lines to print) and what must be fixed (problems)."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _load(report: CheckReport, what: str, load: Loader, location: str, cfg: ModelConfig) -> pd.DataFrame | None:
    try:
        frame = load(location, ingest.text_columns(cfg))
    except (OSError, ValueError) as err:  # missing or unreadable file, S3 down or refusing
        report.problems.append(f"{what} {location}: {err}")
        return None
    report.lines.append(f"{what}: {location}: {len(frame):,} rows, {len(frame.columns)} columns")
    return frame


def _missing_columns(report: CheckReport, what: str, frame: pd.DataFrame, cfg: ModelConfig, needed: list[str]) -> bool:
    missing = [c for c in needed if c not in frame.columns]
    for column in missing:
        where = "schema.id_column" if column == cfg.dataset.id_column else f"schema.features[{column}]"
        if column == cfg.dataset.target.name:
            where = "schema.target.name"
        report.problems.append(f"{what} has no column {column!r} ({where}): rename it in the data or in the config")
    return bool(missing)


def check_reference(report: CheckReport, cfg: ModelConfig, reference: pd.DataFrame) -> tuple[Any, Any]:
    """Profile the reference and fit a trial model on it, as the first retrain run would."""
    from driftwatch import evaluation, profile, training

    schema = cfg.dataset
    if _missing_columns(report, "the reference", reference, cfg, schema.feature_names):
        return None, None
    frame = ingest.normalize_types(ingest.drop_unused_columns(reference, cfg), cfg)
    try:
        stored = profile.build_profile(frame, cfg)
    except ValueError as err:
        report.problems.append(f"the reference cannot be profiled: {err}")
        return None, None
    report.lines.append(f"reference profile: {len(stored.features)} features over {stored.rows:,} rows")
    if _missing_columns(report, "the reference", reference, cfg, [schema.target.name]):
        report.problems.append("the first model is trained on the reference, so it needs the target column")
        return stored, None
    try:
        train, holdout, split = training.split_reference(frame, cfg)
        model, _ = training.train(cfg, train)
        result = evaluation.evaluate(model, holdout, cfg)
    except (PermanentError, ValueError) as err:
        report.problems.append(f"trial fit: {err}")
        return stored, None
    how = (
        f"random {split['holdout_fraction']:.0%} ({split['reason']})" if split["method"] == "random" else "latest days"
    )
    primary = result["primary"]
    value = "n/a" if primary["value"] is None else f"{primary['value']:.3f}"
    report.lines.append(
        f"trial fit: {cfg.training.estimator} on {len(train):,} rows, {primary['name']} {value} "
        f"on a {len(holdout):,}-row holdout ({how})"
    )
    return stored, model


def check_batch(report: CheckReport, cfg: ModelConfig, batch: pd.DataFrame, stored: Any, model: Any) -> Any:
    """Validate, profile and decide drift on a sample batch, then score it with the trial model."""
    from driftwatch import profile, scoring, training, validation

    try:
        ingest.check_columns(list(batch.columns), cfg)
    except ingest.IngestError as err:
        report.problems.append(f"batch: {err} (list them in schema.ignored_columns, or as features)")
    data = ingest.drop_unused_columns(batch[[c for c in batch.columns if c in _known(cfg)]], cfg)
    if _missing_columns(report, "the batch", data, cfg, [cfg.dataset.id_column, *cfg.dataset.feature_names]):
        return None
    result = validation.validate_frame(data, cfg, stored)
    for outcome in result.critical_failures:
        report.problems.append(
            f"batch validation (critical, would quarantine): {outcome.failure or outcome.description}"
        )
    for outcome in result.warnings:
        report.lines.append(f"batch validation warning: {outcome.failure or outcome.description}")
    staged = ingest.normalize_types(data, cfg)
    drift = profile.fast_drift(stored, staged, cfg)
    drifted = ", ".join(f"{f.name} ({f.method} {f.score:.3g} > {f.threshold:g})" for f in drift.drifted_features)
    report.lines.append(
        f"drift: {drift.drifted_share:.0%} of {len(drift.features)} features drifted"
        f"{': ' + drifted if drifted else ''}; the monitor would "
        f"{'alert and request retraining' if drift.dataset_drift else 'raise no alert'}"
    )
    if model is not None:
        scores = training.predict_scores(model, staged, cfg)
        stats = scoring.output_stats(scores, cfg.dataset.target.task)
        report.lines.append(f"scoring: {stats['rows']:,} rows scored, {stats['null_outputs']} without a score")
    return staged


def check_labels(report: CheckReport, cfg: ModelConfig, labels: pd.DataFrame, staged: Any, model: Any) -> None:
    """Check that labels join the batch by id and hold a usable target; measure the trial model on them."""
    from driftwatch import labels as label_module
    from driftwatch import scoring, training

    try:
        clean = label_module.normalize_labels(labels, cfg, source="the labels")
    except PermanentError as err:
        report.problems.append(str(err))
        return
    report.problems += label_module.class_problems(clean[cfg.dataset.target.name], cfg)
    if staged is None:
        return
    joined, info = label_module.join_labels(staged, clean, cfg)
    report.lines.append(
        f"labels: {info.matched:,} of {info.rows:,} batch rows labelled; {info.unknown_label_ids} unknown ids, "
        f"{info.duplicate_label_ids} duplicates, {info.missing_target} without a target"
    )
    if info.matched == 0:
        report.problems.append(
            f"no label id matches a batch id ({cfg.dataset.id_column}): check both files hold the same ids"
        )
    elif model is not None:
        positive = training.positive_class(model, cfg) if training.is_classification(cfg) else None
        scores = training.predict_scores(model, joined, cfg)
        value = scoring.metric_value(cfg, joined[cfg.dataset.target.name].to_numpy(), scores, positive)
        shown = "n/a" if value is None else f"{value:.3f}"
        report.lines.append(f"live {cfg.evaluation.primary_metric} of the trial model on these labels: {shown}")


def _known(cfg: ModelConfig) -> set[str]:
    schema = cfg.dataset
    return {
        schema.id_column,
        schema.timestamp_column,
        schema.target.name,
        *schema.feature_names,
        *schema.unused_columns,
    }


def run_checks(
    cfg: ModelConfig, *, load: Loader, reference: str, batch: str | None = None, labels: str | None = None
) -> CheckReport:
    """Every check that applies to what was given; problems are collected, never raised."""
    report = CheckReport(lines=[f"config: {cfg.name} loads ({len(cfg.dataset.features)} features)"])
    frame = _load(report, "reference", load, reference, cfg)
    stored = model = staged = None
    if frame is not None:
        stored, model = check_reference(report, cfg, frame)
    if batch is not None:
        batch_frame = _load(report, "batch", load, batch, cfg)
        if batch_frame is not None and stored is not None:
            staged = check_batch(report, cfg, batch_frame, stored, model)
    if labels is not None:
        label_frame = _load(report, "labels", load, labels, cfg)
        if label_frame is not None:
            check_labels(report, cfg, label_frame, staged, model)
    return report
