"""Batch profiles: a batch counted on the reference's cells, per partition, added up by `merge`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from driftwatch.profile.grid import _Cells, _count_cells, _extremes, _merge_extremes
from driftwatch.profile.inputs import _as_columns, _finite, _numeric_values
from driftwatch.profile.reference import (
    EXACT_VALUES,
    FEW_VALUES,
    VERSION,
    NumericReference,
    ReferenceProfile,
    _floats,
    _reference_feature,
)
from driftwatch.profile.sketches import CategoryCounts, _category_counts, _hll_registers

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig

BATCH_SCHEMA = "driftwatch.batch-profile"
EXTRAS_CAP = 2048  # off-grid distinct values tracked exactly before giving up
PARALLEL_ROWS = 200_000  # below this many rows, threads cost more than they save
_BINNED = ("psi", "kl_div", "jensenshannon")


@dataclass(eq=False)
class NumericBatch:
    """A batch's numeric feature counted on the reference's cells; merges by addition."""

    rows: int
    count: int  # finite values
    min: float
    max: float
    total: float  # for reporting: float sums, unlike everything else, do not merge bit-exactly
    total_sq: float
    cells: _Cells
    low: np.ndarray  # the TAIL_VALUES smallest and largest values, sorted
    high: np.ndarray
    values: np.ndarray | None = None  # sorted finite values while there are at most exact_values
    hll: np.ndarray | None = None  # for hellinger, whose bins depend on the number of distinct values
    extras_tracked: bool = False  # off-grid distinct values, for Evidently's value-count paths
    extras: tuple[np.ndarray, np.ndarray] | None = None  # (values, counts); None after EXTRAS_CAP
    extras_rows: int = 0
    kind: Literal["numeric"] = "numeric"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "rows": self.rows,
            "count": self.count,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "total": self.total if math.isfinite(self.total) else None,
            "total_sq": self.total_sq if math.isfinite(self.total_sq) else None,
            "counts": self.cells.counts.tolist(),
            "fixed": self.cells.fixed.astype(np.int64).tolist(),
            "outer": self.cells.outer.tolist(),
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "values": None if self.values is None else self.values.tolist(),
            "hll": None if self.hll is None else self.hll.tolist(),
            "extras_tracked": self.extras_tracked,
            "extras": None if self.extras is None else [self.extras[0].tolist(), self.extras[1].tolist()],
            "extras_rows": self.extras_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericBatch:
        extras, values, hll = data.get("extras"), data.get("values"), data.get("hll")
        return cls(
            rows=int(data["rows"]),
            count=int(data["count"]),
            min=math.inf if data["min"] is None else float(data["min"]),
            max=-math.inf if data["max"] is None else float(data["max"]),
            total=math.inf if data["total"] is None else float(data["total"]),
            total_sq=math.inf if data["total_sq"] is None else float(data["total_sq"]),
            cells=_Cells(
                np.asarray(data["counts"], dtype=np.int64),
                np.asarray(data["fixed"], dtype=np.float64),
                np.asarray(data["outer"], dtype=np.float64),
            ),
            low=np.asarray(data["low"], dtype=np.float64),
            high=np.asarray(data["high"], dtype=np.float64),
            values=_floats(values),
            hll=None if hll is None else np.asarray(hll, dtype=np.uint8),
            extras_tracked=bool(data["extras_tracked"]),
            extras=None if extras is None else (np.asarray(extras[0], float), np.asarray(extras[1], np.int64)),
            extras_rows=int(data["extras_rows"]),
        )


FeatureBatch = NumericBatch | CategoryCounts


@dataclass(eq=False)
class BatchProfile:
    """Mergeable summary of (part of) a batch, tied to one reference profile."""

    reference_id: str
    rows: int
    features: dict[str, FeatureBatch]
    exact_values: int = EXACT_VALUES

    def to_json(self) -> str:
        document = {
            "schema": BATCH_SCHEMA,
            "version": VERSION,
            "reference_id": self.reference_id,
            "rows": self.rows,
            "exact_values": self.exact_values,
            "features": {name: feat.to_dict() for name, feat in self.features.items()},
        }
        return json.dumps(document, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> BatchProfile:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != BATCH_SCHEMA or data.get("version") != VERSION:
            raise ValueError(f"not a driftwatch batch profile of version {VERSION}")
        features: dict[str, FeatureBatch] = {
            name: NumericBatch.from_dict(spec) if spec["kind"] == "numeric" else CategoryCounts.from_dict(spec)
            for name, spec in data["features"].items()
        }
        return cls(
            reference_id=str(data["reference_id"]),
            rows=int(data["rows"]),
            features=features,
            exact_values=int(data["exact_values"]),
        )


def _needs(ref: NumericReference, method: str) -> tuple[bool, bool]:
    """(distinct-value sketch, exact off-grid values): what `decide` needs beyond the cells."""
    hll = method == "hellinger"
    extras = (method in _BINNED and ref.nunique <= FEW_VALUES) or (method == "hellinger" and ref.lossless)
    return hll, extras


def _numeric_batch(values: np.ndarray, ref: NumericReference, method: str, exact_values: int) -> NumericBatch:
    finite = _finite(values)
    geo = ref.geometry
    cells, code = _count_cells(finite, geo)
    low, high = _extremes(finite, code, cells.counts)
    want_hll, want_extras = _needs(ref, method)
    batch = NumericBatch(
        rows=len(values),
        count=len(finite),
        min=float(finite.min()) if len(finite) else math.inf,
        max=float(finite.max()) if len(finite) else -math.inf,
        total=float(finite.sum()),
        # einsum, not np.dot: BLAS would wake its thread pool, whose spinning costs more than the sum.
        total_sq=float(np.einsum("i,i->", finite, finite)),
        cells=cells,
        low=low,
        high=high,
        values=np.sort(finite) if len(finite) <= exact_values else None,
        hll=_hll_registers(finite) if want_hll else None,
        extras_tracked=want_extras,
    )
    if want_extras:
        # Odd cells are grid points; those of the reference's own points lie in this range.
        on_ref_point = (code & 1).astype(bool) & (code > 2 * geo.ref_start) & (code < 2 * geo.ref_stop)
        off = finite[~on_ref_point] + 0.0  # -0.0 is 0.0, as for pandas
        batch.extras_rows = len(off)
        batch.extras = _cap_extras(*np.unique(off, return_counts=True))
    return batch


def _cap_extras(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    return None if len(values) > EXTRAS_CAP else (values, counts.astype(np.int64))


def profile_batch(
    frame_or_columns: pd.DataFrame | Mapping[str, Any],
    ref_profile: ReferenceProfile,
    cfg: ModelConfig,
    *,
    workers: int | None = None,
) -> BatchProfile:
    """Summarise the configured features of (a partition of) a batch on the reference's cells.

    Accepts a DataFrame or a mapping of column name to array-like (numpy, pandas, pyarrow).
    Features are profiled on `workers` threads (default: up to 4 CPUs) for large inputs; numpy
    releases the GIL for most of the work.
    """
    columns = _as_columns(frame_or_columns, cfg)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError("current data columns have different lengths")
    n_rows = lengths.pop()
    cap = ref_profile.exact_values

    def one(name: str) -> FeatureBatch:
        spec = cfg.dataset.feature(name)
        ref = _reference_feature(ref_profile, name, spec.type)
        if isinstance(ref, NumericReference):
            method, _ = cfg.drift_rule(name)
            return _numeric_batch(_numeric_values(columns[name], name, "current"), ref, method, cap)
        counts = _category_counts(columns[name])
        return CategoryCounts(n_rows, sum(counts.values()), counts)

    names = cfg.dataset.feature_names
    threads = workers if workers is not None else min(4, os.cpu_count() or 1)
    if threads > 1 and n_rows >= PARALLEL_ROWS and len(names) > 1:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="driftwatch-profile") as pool:
            results = list(pool.map(one, names))
    else:
        results = [one(name) for name in names]
    return BatchProfile(
        reference_id=ref_profile.profile_id,
        rows=n_rows,
        features=dict(zip(names, results, strict=True)),
        exact_values=cap,
    )


def merge(a: BatchProfile, b: BatchProfile) -> BatchProfile:
    """Add up two partition profiles of one batch: exact, associative and commutative."""
    if a.reference_id != b.reference_id or a.exact_values != b.exact_values:
        raise ValueError("cannot merge batch profiles computed against different reference profiles")
    if a.features.keys() != b.features.keys():
        raise ValueError("cannot merge batch profiles of different feature sets")
    features: dict[str, FeatureBatch] = {}
    for name, fa in a.features.items():
        fb = b.features[name]
        if isinstance(fa, NumericBatch) and isinstance(fb, NumericBatch):
            features[name] = _merge_numeric(fa, fb, name, a.exact_values)
        elif isinstance(fa, CategoryCounts) and isinstance(fb, CategoryCounts):
            counts = dict(fa.counts)
            for label, hit in fb.counts.items():
                counts[label] = counts.get(label, 0) + hit
            features[name] = CategoryCounts(fa.rows + fb.rows, fa.count + fb.count, counts)
        else:
            raise ValueError(f"feature {name!r} has different kinds in the two batch profiles")
    return BatchProfile(a.reference_id, a.rows + b.rows, features, a.exact_values)


def _merge_numeric(a: NumericBatch, b: NumericBatch, name: str, cap: int) -> NumericBatch:
    if (a.hll is None) != (b.hll is None) or a.extras_tracked != b.extras_tracked:
        raise ValueError(f"feature {name!r}: the batch profiles were built for different drift methods")
    values = None
    if a.values is not None and b.values is not None and a.count + b.count <= cap:
        values = np.sort(np.concatenate([a.values, b.values]))
    extras = None
    if a.extras is not None and b.extras is not None:
        keys, inverse = np.unique(np.concatenate([a.extras[0], b.extras[0]]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([a.extras[1], b.extras[1]]), minlength=len(keys))
        extras = _cap_extras(keys, counts)
    return NumericBatch(
        rows=a.rows + b.rows,
        count=a.count + b.count,
        min=min(a.min, b.min),
        max=max(a.max, b.max),
        total=a.total + b.total,
        total_sq=a.total_sq + b.total_sq,
        cells=_Cells(a.cells.counts + b.cells.counts, a.cells.fixed + b.cells.fixed, a.cells.outer + b.cells.outer),
        low=_merge_extremes(a.low, b.low, smallest=True),
        high=_merge_extremes(a.high, b.high, smallest=False),
        values=values,
        hll=None if a.hll is None or b.hll is None else np.maximum(a.hll, b.hll),
        extras_tracked=a.extras_tracked,
        extras=extras,
        extras_rows=a.extras_rows + b.extras_rows,
    )
