"""The reference profile: a summary of the reference data, built once per champion."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from driftwatch.profile.grid import TAIL_VALUES, _Cells, _count_cells, _Geometry, _geometry
from driftwatch.profile.inputs import _check_columns, _finite, _numeric_values
from driftwatch.profile.sketches import CategoryCounts, _category_counts, _hll_registers

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig

SCHEMA = "driftwatch.reference-profile"
VERSION = 1
GRID_POINTS = 4096  # reference quantiles kept per numeric feature
EXACT_VALUES = 10_000  # values per column kept as they are (small data is tested exactly)
FEW_VALUES = 20  # Evidently bins by distinct value when the reference has at most this many


@dataclass(eq=False)
class NumericReference:
    """What the reference holds for one numeric feature."""

    rows: int
    count: int  # finite values
    nunique: int
    mean: float
    std: float  # ddof=0, as Evidently norms Wasserstein
    min: float
    max: float
    points: np.ndarray  # every distinct value (lossless) or the reference's quantiles, sorted
    point_counts: np.ndarray  # reference values equal to each point
    open_counts: np.ndarray  # reference values strictly between consecutive points (len - 1)
    open_fixed: np.ndarray  # their fixed-point positions, summed per gap
    hll: np.ndarray
    values: np.ndarray | None = None  # sorted finite values, kept when few and not lossless
    low: np.ndarray | None = None  # the TAIL_VALUES smallest and largest values, when not lossless
    high: np.ndarray | None = None
    kind: Literal["numeric"] = "numeric"
    _geo: _Geometry | None = field(default=None, repr=False)

    @property
    def lossless(self) -> bool:
        """Every distinct reference value is a grid point, so no reference value lies inside a cell."""
        return self.nunique == len(self.points)

    @property
    def geometry(self) -> _Geometry:
        if self._geo is None:
            # Quantile points carry equal shares of the reference; distinct values carry their counts.
            weights = self.point_counts if self.lossless else np.ones(len(self.points))
            self._geo = _geometry(self.points, weights)
        return self._geo

    def exact_values(self) -> np.ndarray | None:
        """All finite reference values, sorted, when the profile holds them."""
        if self.values is not None:
            return self.values
        return np.repeat(self.points, self.point_counts) if self.lossless else None

    def full_cells(self) -> _Cells:
        """The reference's counts on the whole geometry (zero in the tails)."""
        geo = self.geometry
        counts = np.zeros(2 * geo.size + 1, dtype=np.int64)
        fixed = np.zeros(geo.size + 1)
        start, stop = geo.ref_start, geo.ref_stop
        counts[2 * start + 1 : 2 * stop : 2] = self.point_counts
        counts[2 * start + 2 : 2 * stop - 1 : 2] = self.open_counts
        fixed[start + 1 : stop] = self.open_fixed
        return _Cells(counts, fixed, np.zeros(2))

    def to_dict(self) -> dict[str, Any]:
        lossless = self.lossless
        return {
            "kind": "numeric",
            "rows": self.rows,
            "count": self.count,
            "nunique": self.nunique,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "points": self.points.tolist(),
            "point_counts": self.point_counts.tolist(),
            # A lossless reference has nothing between its points: omit the zeros.
            "open_counts": [] if lossless else self.open_counts.tolist(),
            "open_fixed": [] if lossless else self.open_fixed.astype(np.int64).tolist(),
            "hll": self.hll.tolist(),
            "values": None if self.values is None else self.values.tolist(),
            "low": None if self.low is None else self.low.tolist(),
            "high": None if self.high is None else self.high.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericReference:
        points = np.asarray(data["points"], dtype=np.float64)
        gaps = max(len(points) - 1, 0)
        values = data.get("values")
        return cls(
            rows=int(data["rows"]),
            count=int(data["count"]),
            nunique=int(data["nunique"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
            min=float(data["min"]),
            max=float(data["max"]),
            points=points,
            point_counts=np.asarray(data["point_counts"], dtype=np.int64),
            open_counts=np.asarray(data["open_counts"] or np.zeros(gaps), dtype=np.int64),
            open_fixed=np.asarray(data["open_fixed"] or np.zeros(gaps), dtype=np.float64),
            hll=np.asarray(data["hll"], dtype=np.uint8),
            values=_floats(values),
            low=_floats(data.get("low")),
            high=_floats(data.get("high")),
        )


def _floats(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


FeatureReference = NumericReference | CategoryCounts


@dataclass(eq=False)
class ReferenceProfile:
    """Everything `decide` needs from the reference data; built once per champion."""

    model: str
    rows: int
    features: dict[str, FeatureReference]
    grid_points: int = GRID_POINTS
    exact_values: int = EXACT_VALUES
    schema: str = SCHEMA
    version: int = VERSION
    _id: str | None = field(default=None, repr=False)

    @property
    def profile_id(self) -> str:
        """Content hash: batch profiles carry it, so they never meet another reference."""
        if self._id is None:
            body = json.dumps(self._body(), sort_keys=True, separators=(",", ":"))
            self._id = hashlib.sha256(body.encode()).hexdigest()[:16]
        return self._id

    def _body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rows": self.rows,
            "grid_points": self.grid_points,
            "exact_values": self.exact_values,
            "features": {name: ref.to_dict() for name, ref in self.features.items()},
        }

    def to_json(self) -> str:
        """Compact JSON (numbers as lists); floats round-trip exactly."""
        document = {"schema": self.schema, "version": self.version, "profile_id": self.profile_id, **self._body()}
        return json.dumps(document, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ReferenceProfile:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError("not a driftwatch reference profile")
        if data.get("version") != VERSION:
            raise ValueError(f"reference profile version {data.get('version')!r} is not {VERSION}: rebuild it")
        features: dict[str, FeatureReference] = {
            name: NumericReference.from_dict(spec) if spec["kind"] == "numeric" else CategoryCounts.from_dict(spec)
            for name, spec in data["features"].items()
        }
        profile = cls(
            model=str(data["model"]),
            rows=int(data["rows"]),
            features=features,
            grid_points=int(data["grid_points"]),
            exact_values=int(data["exact_values"]),
        )
        if data.get("profile_id") != profile.profile_id:
            raise ValueError("reference profile is corrupt: its content does not match its profile_id")
        return profile


def _numeric_reference(values: np.ndarray, rows: int, grid_points: int, exact_values: int) -> NumericReference:
    finite = _finite(values)
    ordered = np.sort(finite)
    distinct, counts = np.unique(ordered, return_counts=True)
    if len(distinct) <= grid_points:
        points = distinct
    else:
        picks = np.round(np.linspace(0, len(ordered) - 1, grid_points)).astype(np.intp)
        points = np.unique(ordered[picks])
    lossless = len(points) == len(distinct)
    ref = NumericReference(
        rows=rows,
        count=len(finite),
        nunique=len(distinct),
        mean=float(np.mean(finite)),
        # Evidently calls np.std on a pandas Series, i.e. pandas' std(ddof=0) in the data's order.
        std=float(pd.Series(finite).std(ddof=0)),
        min=float(ordered[0]),
        max=float(ordered[-1]),
        points=points,
        point_counts=counts if lossless else np.zeros(len(points), dtype=np.int64),
        open_counts=np.zeros(len(points) - 1, dtype=np.int64),
        open_fixed=np.zeros(len(points) - 1),
        hll=_hll_registers(finite),
        values=ordered if not lossless and len(ordered) <= exact_values else None,
    )
    if not lossless:
        cells, _ = _count_cells(ordered, ref.geometry)
        ref.low, ref.high = ordered[:TAIL_VALUES].copy(), ordered[-TAIL_VALUES:].copy()
        start, stop = ref.geometry.ref_start, ref.geometry.ref_stop
        ref.point_counts = cells.counts[2 * start + 1 : 2 * stop : 2].copy()
        ref.open_counts = cells.counts[2 * start + 2 : 2 * stop - 1 : 2].copy()
        ref.open_fixed = cells.fixed[start + 1 : stop].copy()
    return ref


def build_profile(
    reference: pd.DataFrame, cfg: ModelConfig, *, grid_points: int = GRID_POINTS, exact_values: int = EXACT_VALUES
) -> ReferenceProfile:
    """Summarise the configured features of the reference data (once per champion)."""
    if not isinstance(reference, pd.DataFrame):
        raise TypeError(f"reference data must be a pandas DataFrame, got {type(reference).__name__}")
    if grid_points <= FEW_VALUES:
        raise ValueError(f"grid_points must be more than {FEW_VALUES}")
    _check_columns(list(reference.columns), cfg, "reference")
    features: dict[str, FeatureReference] = {}
    empty: list[str] = []
    for spec in cfg.dataset.features:
        column = reference[spec.name]
        if spec.type == "numeric":
            values = _numeric_values(column, spec.name, "reference")
            if not np.isfinite(values).any():
                empty.append(spec.name)
                continue
            features[spec.name] = _numeric_reference(values, len(reference), grid_points, exact_values)
        else:
            counts = _category_counts(column)
            if not counts:
                empty.append(spec.name)
                continue
            features[spec.name] = CategoryCounts(len(reference), sum(counts.values()), counts)
    if empty:
        raise ValueError(f"reference data has no values for feature(s): {', '.join(empty)}")
    return ReferenceProfile(
        model=cfg.name, rows=len(reference), features=features, grid_points=grid_points, exact_values=exact_values
    )


def _reference_feature(profile: ReferenceProfile, name: str, kind: str) -> FeatureReference:
    ref = profile.features.get(name)
    if ref is None or ref.kind != kind:
        raise ValueError(f"the reference profile has no {kind} feature {name!r}: rebuild it for this config")
    return ref
