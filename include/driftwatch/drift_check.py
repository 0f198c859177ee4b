"""The monitor's drift stage: a full-data decision from the reference profile, a bounded report.

The decision that requests retraining is computed on every row of the batch, in one pass over
its Parquet row groups, against the reference profile (`profile.py`). Evidently's report, which
is what people open, runs on a fixed-size uniform sample of the batch and of the reference with
an explicit DataDefinition, so its cost does not grow with the batch. The report page says how
it was sampled, shows the full-data decision it is a view of, and marks every feature on which
the sample's verdict differs from it.
"""

from __future__ import annotations

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
    """Full-data decision, the sampled Evidently report, and how the two compare."""

    result: DriftResult
    report_result: DriftResult
    html: str
    report_json: dict[str, Any]
    sampling: dict[str, Any]

    @property
    def disagreements(self) -> list[str]:
        """Features on which the sampled report's verdict differs from the full-data decision."""
        report = {f.name: f.drifted for f in self.report_result.features}
        return [f.name for f in self.result.features if report.get(f.name) != f.drifted]

    def summary(self) -> dict[str, Any]:
        """Small JSON-able facts for XCom, the decision file and the history record."""
        return {
            "engine": profile.ENGINE,
            "report_engine": f"evidently {self.report_result.evidently_version}",
            "sampling": self.sampling,
            "report_agreement": {
                "features": len(self.result.features),
                "agree": len(self.result.features) - len(self.disagreements),
                "disagree": self.disagreements,
            },
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
    """Merge the partitions' profiles and samples; decide on all rows; report on the sample.

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
    report_result, html, report_json = drift.run_drift_report(
        ref_sample, sample, cfg, threshold_override=threshold_override
    )
    sampling = {
        "method": SAMPLING_METHOD,
        "seed": seed,
        "partitions": len(parts),
        "batch_rows": batch.rows,
        "batch_sample_rows": len(sample),
        "reference_rows": ref.rows,
        "reference_sample_rows": len(ref_sample),
    }
    assessment = DriftAssessment(result, report_result, "", report_json, sampling)
    return DriftAssessment(result, report_result, annotate_report(html, assessment), report_json, sampling)


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


def _rows(result: DriftResult, report: DriftResult, disagree: Sequence[str]) -> str:
    sampled = {f.name: f for f in report.features}
    rows = []
    for f in result.features:
        s = sampled.get(f.name)
        mark = "DIFFERS" if f.name in disagree else ""
        cells = [
            f.name,
            f.method,
            _score(f.threshold),
            _score(f.score),
            "drift" if f.drifted else "-",
            _score(s.score) if s else "",
            ("drift" if s.drifted else "-") if s else "",
            mark,
        ]
        style = ' style="background:#fff8c5"' if mark else ""
        rows.append(f"<tr{style}>" + "".join(f'<td style="{_CELL}">{escape(str(c))}</td>' for c in cells) + "</tr>")
    return "".join(rows)


def annotate_report(html: str, assessment: DriftAssessment) -> str:
    """Put the sampling note and the full-data decision at the top of Evidently's page."""
    s, result, disagree = assessment.sampling, assessment.result, assessment.disagreements
    head = ["feature", "method", "threshold", "score (all rows)", "decision", "score (sample)", "sample", ""]
    heading = "".join(f'<th style="{_CELL};background:#f6f8fa">{escape(h)}</th>' for h in head)
    action = "RETRAINING REQUESTED" if result.dataset_drift else "no action"
    verdict = (
        f"dataset drift: {result.drifted_share:.0%} of features drifted "
        f"(threshold {result.share_threshold:.0%}) &rarr; {action}"
    )
    note = (
        "The sampled report agrees with the full-data decision on every feature."
        if not disagree
        else f"The sample's verdict differs on {len(disagree)} feature(s), marked DIFFERS: the decision above, "
        "computed on every row, is the one the pipeline acted on."
    )
    banner = (
        f'<section id="driftwatch-decision" style="{_BOX}">'
        f"<strong>driftwatch decision on all {s['batch_rows']:,} batch rows</strong> "
        f"against the reference profile ({s['reference_rows']:,} rows): {verdict}.<br>"
        f"Evidently's report below was computed on a sample: {s['batch_sample_rows']:,} of {s['batch_rows']:,} batch "
        f"rows and {s['reference_sample_rows']:,} of {s['reference_rows']:,} reference rows "
        f"({escape(s['method'])}, seed {s['seed']}), with the same methods and thresholds. {escape(note)}"
        f'<table style="border-collapse:collapse;margin-top:8px"><tr>{heading}</tr>'
        f"{_rows(result, assessment.report_result, disagree)}</table></section>"
    )
    at = html.find("<body")
    if at < 0:
        return banner + html
    close = html.find(">", at) + 1
    return html[:close] + banner + html[close:]
