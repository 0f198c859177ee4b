"""The monitor's drift stage: a full-data decision from the reference profile, a bounded report.

The decision that requests retraining is computed on every row of the batch, in one pass over
its Parquet row groups, against the reference profile (`profile.py`). Evidently's report, which
is what people open, is drawn from a fixed-size uniform sample of the batch and of the reference
with an explicit DataDefinition, so its cost does not grow with the batch; its scores and
verdicts are the full-data ones, so the page and the pipeline never disagree. The page says how
it was sampled and names the features a sample alone would have judged otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from driftwatch import drift, profile
from driftwatch.config import ModelConfig
from driftwatch.drift import DriftResult
from driftwatch.profile import BatchProfile, ReferenceProfile

SAMPLING_METHOD = "uniform random rows without replacement"
CHUNK_ROWS = 262_144


@dataclass(frozen=True)
class DriftAssessment:
    """Full-data decision, Evidently's report of it, and what the sample alone would have said."""

    result: DriftResult
    html: str
    report_json: dict[str, Any]
    sampling: dict[str, Any]
    sample_only: DriftResult
    report_engine: str

    @property
    def sample_only_differs(self) -> list[str]:
        """Features on which a report computed on the sample alone would have given another verdict."""
        alone = {f.name: f.drifted for f in self.sample_only.features}
        return [f.name for f in self.result.features if alone.get(f.name) != f.drifted]

    def summary(self) -> dict[str, Any]:
        """Small JSON-able facts for XCom, the decision file and the history record."""
        return {
            "engine": profile.ENGINE,
            "report_engine": self.report_engine,
            "sampling": self.sampling,
            "report_shows": "full-data scores and verdicts; distributions drawn from the sample",
            "sample_only_differs": self.sample_only_differs,
        }


def sample_seed(batch_date: str) -> int:
    """A seed fixed by the batch date: a rerun samples the same rows and writes the same report."""
    return int(hashlib.sha256(batch_date.encode()).hexdigest()[:8], 16)


def _sample_positions(total: int, rows: int, seed: int) -> np.ndarray:
    if total <= rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))


@dataclass(frozen=True)
class Partition:
    """A contiguous run of row groups of a staged batch: what one mapped task profiles."""

    index: int
    first_row_group: int
    stop_row_group: int  # exclusive

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "row_groups": [self.first_row_group, self.stop_row_group]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partition:
        first, stop = data["row_groups"]
        return cls(int(data["index"]), int(first), int(stop))


def plan_partitions(rows: int, row_group_rows: int, partition_rows: int) -> list[Partition]:
    """Split a batch of `rows` rows, stored in row groups of `row_group_rows`, into partitions.

    Each partition holds whole row groups and at most `partition_rows` rows (one row group at
    least); a batch no larger than `partition_rows` is one partition.
    """
    groups = max(1, math.ceil(rows / row_group_rows))
    per = max(1, partition_rows // row_group_rows)
    return [Partition(i, first, min(first + per, groups)) for i, first in enumerate(range(0, groups, per))]


def profile_partition(
    source: Any,
    ref: ReferenceProfile,
    cfg: ModelConfig,
    *,
    seed: int,
    partition: Partition | None = None,
) -> tuple[BatchProfile, pd.DataFrame]:
    """Profile one partition of a Parquet batch (all of it by default) and take its share of the sample.

    The sample's rows are drawn once over the whole batch from `seed`, so the partitions' samples
    together are exactly the sample a single pass takes. Memory stays at about one chunk of rows.
    """
    import pyarrow.parquet as pq

    names = cfg.dataset.feature_names
    metadata = pq.ParquetFile(source).metadata
    if hasattr(source, "seek"):
        source.seek(0)
    counts = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    first, stop = (0, len(counts)) if partition is None else (partition.first_row_group, partition.stop_row_group)
    if counts and not 0 <= first < stop <= len(counts):
        raise ValueError(f"partition row groups [{first}, {stop}) do not fit a file of {len(counts)} row group(s)")
    positions = _sample_positions(sum(counts), cfg.drift.report_sample_rows, seed)
    start = sum(counts[:first])
    total: BatchProfile | None = None
    picked: list[pd.DataFrame] = []
    chunks = profile.iter_columns(
        source, names, categories=cfg.dataset.categorical_features, batch_rows=CHUNK_ROWS, row_groups=range(first, stop)
    )
    for chunk in chunks:
        part = profile.profile_batch(chunk, ref, cfg)
        total = part if total is None else profile.merge(total, part)
        lo, hi = np.searchsorted(positions, [start, start + len(chunk)])
        picked.append(chunk.iloc[positions[lo:hi] - start])
        start += len(chunk)
    if total is None:  # no rows at all: decide() names the empty features
        total = profile.profile_batch({name: np.zeros(0) for name in names}, ref, cfg)
    sample = pd.concat(picked, ignore_index=True) if picked else pd.DataFrame(columns=names)
    for name in cfg.dataset.categorical_features:
        # Plain labels, as the reference sample holds them: the report sees no dictionary codes.
        if isinstance(sample[name].dtype, pd.CategoricalDtype):
            sample[name] = sample[name].astype(object).where(sample[name].notna(), None)
    return total, sample


def assess(
    ref: ReferenceProfile,
    ref_sample: pd.DataFrame,
    parts: Sequence[tuple[BatchProfile, pd.DataFrame]],
    cfg: ModelConfig,
    *,
    seed: int,
    threshold_override: float | None = None,
    prepare_sample: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> DriftAssessment:
    """Merge the partitions' profiles and samples; decide on all rows; report it over the sample.

    `prepare_sample` transforms the batch sample before Evidently sees it (the pipeline makes
    markup in category labels inert there).
    """
    if not parts:
        raise ValueError("no partition profiles to assess: the batch was not profiled")
    batch = parts[0][0]
    for other, _ in parts[1:]:
        batch = profile.merge(batch, other)
    sample = pd.concat([s for _, s in parts], ignore_index=True)
    if prepare_sample is not None:
        sample = prepare_sample(sample)
    result = profile.decide(ref, batch, cfg, threshold_override=threshold_override)
    shown, html, report_json = drift.run_drift_report(
        ref_sample, sample, cfg, threshold_override=threshold_override, decided=result
    )
    _check_report_shows(result, shown)
    sample_ref = profile.build_profile(ref_sample, cfg)
    sample_batch = profile.profile_batch(sample, sample_ref, cfg)
    sample_only = profile.decide(sample_ref, sample_batch, cfg, threshold_override=threshold_override)
    sampling = {
        "method": SAMPLING_METHOD,
        "seed": seed,
        "partitions": len(parts),
        "batch_rows": batch.rows,
        "batch_sample_rows": len(sample),
        "reference_rows": ref.rows,
        "reference_sample_rows": len(ref_sample),
    }
    assessment = DriftAssessment(result, "", report_json, sampling, sample_only, f"evidently {shown.evidently_version}")
    return dataclasses.replace(assessment, html=annotate_report(html, assessment))


def _same_score(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _check_report_shows(result: DriftResult, shown: DriftResult) -> None:
    """Evidently's page must carry the decision it was given; anything else is a bug to surface."""
    wrong = [
        f.name
        for f, s in zip(result.features, shown.features, strict=True)
        if f.name != s.name or f.drifted != s.drifted or not _same_score(f.score, s.score)
    ]
    if wrong or result.drifted_share != shown.drifted_share:
        raise RuntimeError(
            f"Evidently's report does not show the full-data decision for {', '.join(wrong) or 'the dataset'}"
        )


def assess_parquet(
    ref: ReferenceProfile,
    ref_sample: pd.DataFrame,
    source: Any,
    cfg: ModelConfig,
    *,
    batch_date: str,
    threshold_override: float | None = None,
    prepare_sample: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> DriftAssessment:
    """`assess` for a whole staged batch in one process: one pass, one partition."""
    seed = sample_seed(batch_date)
    part = profile_partition(source, ref, cfg, seed=seed)
    return assess(
        ref, ref_sample, [part], cfg, seed=seed, threshold_override=threshold_override, prepare_sample=prepare_sample
    )


# ---------------------------------------------------------------------------- the report page

_BOX = (
    "font-family:Arial,sans-serif;font-size:14px;border:2px solid #0969da;border-radius:6px;"
    "padding:12px 16px;margin:12px"
)
_CELL = "border:1px solid #d0d7de;padding:3px 8px;text-align:left"


def _score(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else str(value)


def _rows(result: DriftResult, sample_only_differs: Sequence[str]) -> str:
    rows = []
    for f in result.features:
        mark = "sample alone: other verdict" if f.name in sample_only_differs else ""
        cells = [f.name, f.method, _score(f.threshold), _score(f.score), "drift" if f.drifted else "-", mark]
        rows.append("<tr>" + "".join(f'<td style="{_CELL}">{escape(str(c))}</td>' for c in cells) + "</tr>")
    return "".join(rows)


def annotate_report(html: str, assessment: DriftAssessment) -> str:
    """Put the full-data decision and how the page was sampled at the top of Evidently's page."""
    s, result, differs = assessment.sampling, assessment.result, assessment.sample_only_differs
    head = ["feature", "method", "threshold", "score (all rows)", "decision", ""]
    heading = "".join(f'<th style="{_CELL};background:#f6f8fa">{escape(h)}</th>' for h in head)
    action = "RETRAINING REQUESTED" if result.dataset_drift else "no action"
    verdict = (
        f"dataset drift: {result.drifted_share:.0%} of features drifted "
        f"(threshold {result.share_threshold:.0%}) &rarr; {action}"
    )
    note = (
        f"On the sample alone, {len(differs)} feature(s) would have been judged otherwise (marked below): "
        "this is why the scores come from every row."
        if differs
        else "On the sample alone, every feature would have been judged the same."
    )
    banner = (
        f'<section id="driftwatch-decision" style="{_BOX}">'
        f"<strong>driftwatch decision on all {s['batch_rows']:,} batch rows</strong> "
        f"against the reference profile ({s['reference_rows']:,} rows): {verdict}.<br>"
        "Every drift score and verdict in this report, in Evidently's tables below too, was computed on all "
        "rows with the configured method and threshold (the test suite checks these scores against "
        "Evidently's own implementation). Evidently drew the distributions from a sample: "
        f"{s['batch_sample_rows']:,} of {s['batch_rows']:,} batch rows and {s['reference_sample_rows']:,} of "
        f"{s['reference_rows']:,} reference rows ({escape(s['method'])}, seed {s['seed']}). {escape(note)}"
        f'<table style="border-collapse:collapse;margin-top:8px"><tr>{heading}</tr>'
        f"{_rows(result, differs)}</table></section>"
    )
    at = html.find("<body")
    if at < 0:
        return banner + html
    close = html.find(">", at) + 1
    return html[:close] + banner + html[close:]
