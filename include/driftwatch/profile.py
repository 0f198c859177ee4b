"""Fast, mergeable drift decisions that mirror Evidently 0.7.23's column drift tests.

Evidently's DataDriftPreset tests every column three times over the raw reference and batch
(and renders plots); on a batch of a million rows that takes a minute or more. Here the reference
is summarised ONCE per champion
(`build_profile`, stored as JSON next to the model), a batch is reduced to counts on cells fixed
by that summary (`profile_batch`, per row group if need be, added up with `merge`), and `decide`
evaluates each configured test on the two summaries with Evidently's formulas.

A numeric feature's summary is a sorted grid of reference values: every distinct value when
there are at most `grid_points` of them (the reference is then stored losslessly), else
`grid_points` reference quantiles; tail points extend it beyond the reference range. A batch is
counted on the grid's cells, "equal to point j" and "strictly between points j-1 and j", with a
fixed-point sum of positions inside each open cell, so every cell's mean is known. Counts and
fixed-point sums are integers: any partitioning of a batch gives the same profile, decision and
scores as a single pass. Up to `exact_values` values per column (reference or batch) are also
kept as they are, so small data is tested exactly.

How exact the result is (tests/unit/test_profile.py and bench/bench_drift.py measure it):

* categorical features, and any numeric feature whose reference and batch both hold at most
  `exact_values` values: the same arithmetic as Evidently (scores equal to ~1e-12);
* numeric, lossless reference (at most `grid_points` distinct values): `ks` exact; `wasserstein`
  exact unless the two CDFs cross inside a cell; the value-count path below exact;
* otherwise a CDF inside a cell is modelled by a one-parameter density with the cell's exact
  mean, and histogram counts at Evidently's bin edges are rounded estimates; `hellinger`'s bin
  count depends on how many distinct values reference and batch hold together, which a
  HyperLogLog sketch estimates (about 1.6%) unless it is known exactly.

Evidently semantics mirrored (evidently/legacy/calculations/stattests and data_drift.py):

* NaN and +-inf are dropped per column before testing; a column left empty is an error;
* distances drift when score >= threshold, `chisquare` when p < threshold, `ks` when p <= threshold;
* `wasserstein` is scipy's W1 divided by max(reference std with ddof=0, 0.001);
* `ks` is scipy's two-sided ks_2samp(method="auto"): exact p-value up to 10,000 rows, else asymptotic;
* `psi`, `kl_div`, `jensenshannon` on numbers use np.histogram_bin_edges(reference + batch,
  "sturges") when the reference has more than 20 distinct values, else one bin per distinct value
  of reference + batch; `psi` and `kl_div` give empty bins a tiny share, `jensenshannon` does not;
* `hellinger` on numbers always uses "sturges" edges over the DISTINCT values of reference + batch
  and density histograms; on categories, category shares;
* categorical tests run over the union of reference and batch categories (unseen ones count);
  `chisquare` compares batch counts with reference counts scaled to the batch size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

# drift._category is the label normalisation Evidently's input goes through; reusing it keeps
# both paths on identical category labels.
from driftwatch.drift import DriftResult, FeatureDrift, _category

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig

SCHEMA = "driftwatch.reference-profile"
BATCH_SCHEMA = "driftwatch.batch-profile"
VERSION = 1
ENGINE = "driftwatch-fast (evidently 0.7.23 semantics)"

GRID_POINTS = 4096  # reference quantiles kept per numeric feature
EXACT_VALUES = 10_000  # values per column kept as they are (small data is tested exactly)
FEW_VALUES = 20  # Evidently bins by distinct value when the reference has at most this many
FIXED_BITS = 20  # resolution of positions inside a cell: 1/2**20 of its width
HLL_BITS = 12  # 4096 HyperLogLog registers: about 1.6% error on distinct counts
EXTRAS_CAP = 2048  # off-grid distinct values tracked exactly before giving up
TAIL_VALUES = 512  # smallest and largest values kept exactly: the sparse tail bins are exact
PARALLEL_ROWS = 200_000  # below this many rows, threads cost more than they save

_FIXED_SCALE = float(1 << FIXED_BITS)
_TAIL_STEPS_PER_SPAN = 128  # tail points: 1/128 of the reference span apart up to 4 spans out,
_TAIL_LINEAR_SPANS = 4
_TAIL_GEOMETRIC_POINTS = 64  # then doubling every 8 points, out to 1024 spans
_LUT_CELLS = 1 << 18
_BLOCK = 1 << 16  # values per block when counting cells
_LUT_STEPS = 3  # values with more grid points than this near them fall back to searchsorted
_MODEL_SAMPLES = 32  # points per cell where two modelled CDFs are compared inside it
_EXACT_KS_ROWS = 10_000  # scipy ks_2samp(method="auto") computes exact p-values up to this size
_BINNED = ("psi", "kl_div", "jensenshannon")


# ---------------------------------------------------------------------------- grid geometry


@dataclass(eq=False)
class _Geometry:
    """The cells of one numeric feature, derived from the reference points; never serialised."""

    grid: np.ndarray  # sorted thresholds: low tail points, reference points, high tail points
    ref_start: int  # grid[ref_start:ref_stop] are the reference's own points
    ref_stop: int
    grid_ext: np.ndarray  # grid + [inf], so an index past the end compares cleanly
    left: np.ndarray  # left end of each open cell j (between grid[j-1] and grid[j]); 0 for outer cells
    inv_width: np.ndarray  # 1 / its width; 0 for the two unbounded outer cells
    center: float | None  # lookup transform asinh((x - center) / scale), or identity when None
    scale: float
    lut_lo: float
    lut_scale: float
    base: np.ndarray  # per lookup cell: grid points certainly below any value in it
    window: np.ndarray  # how many more grid points may be below such a value (255: unknown)

    @property
    def size(self) -> int:
        return len(self.grid)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return x if self.center is None else np.arcsinh((x - self.center) / self.scale)

    def locate(self, x: np.ndarray) -> np.ndarray:
        """Exactly np.searchsorted(grid, x, "left"), mostly by table lookup (several times faster)."""
        t = np.clip((self._transform(x) - self.lut_lo) * self.lut_scale, -1.0, float(_LUT_CELLS))
        u = t.astype(np.intp)
        np.clip(u, 0, _LUT_CELLS, out=u)
        idx = self.base[u].astype(np.intp)
        need = self.window[u]
        # The first step over whole arrays: cheaper than indexing when most values need one
        # (a value sitting exactly on a grid point always does).
        step = self.grid_ext[idx] < x
        step &= need > 0
        idx += step
        active = np.flatnonzero(step & (need > 1) & (need <= _LUT_STEPS))
        step_no = 1
        while active.size:
            at = idx[active]
            step = self.grid_ext[at] < x[active]
            idx[active] = at + step
            step_no += 1
            active = active[step & (need[active] > step_no)]
        far = np.flatnonzero(need > _LUT_STEPS)
        if far.size:
            idx[far] = np.searchsorted(self.grid, x[far], side="left")
        return idx


def _tail_offsets() -> np.ndarray:
    linear = np.arange(1, _TAIL_STEPS_PER_SPAN * _TAIL_LINEAR_SPANS + 1) / _TAIL_STEPS_PER_SPAN
    geometric = _TAIL_LINEAR_SPANS * 2.0 ** (np.arange(1, _TAIL_GEOMETRIC_POINTS + 1) / 8.0)
    return np.concatenate([linear, geometric])


def _weighted_quantile(points: np.ndarray, weights: np.ndarray, q: float) -> float:
    cum = np.cumsum(weights)
    return float(points[min(int(np.searchsorted(cum, q * cum[-1])), len(points) - 1)])


def _lookup(tgrid: np.ndarray, lo: float, hi: float) -> tuple[float, np.ndarray, np.ndarray]:
    scale = _LUT_CELLS / (hi - lo) if hi > lo else 0.0
    if not math.isfinite(scale) or scale <= 0:
        return 0.0, np.zeros(_LUT_CELLS + 1, dtype=np.int32), np.full(_LUT_CELLS + 1, 255, dtype=np.uint8)
    # Table edge e is lo + (e - 1) / scale, e = 0 .. L+3. Counting, per edge, the grid points
    # below it by placing each point once is much cheaper than searching for every edge.
    edges = lo + np.arange(-1, _LUT_CELLS + 3, dtype=np.float64) / scale
    placed = np.searchsorted(edges, tgrid, side="right")  # edges at or below each point
    below = np.cumsum(np.bincount(placed, minlength=len(edges) + 1))[: len(edges)]
    # A value computed to fall in cell u truly lies in cells u-1..u+1 despite rounding:
    # between edges u (= c_{u-1}) and u+3 (= c_{u+2}).
    base = below[: _LUT_CELLS + 1]
    window = np.minimum(below[3 : _LUT_CELLS + 4] - base, 255).astype(np.uint8)
    window[0] = window[-1] = 255  # clipped values: no bound holds
    return scale, base.astype(np.int32), window


def _lookup_cost(window: np.ndarray, tprobe: np.ndarray, weights: np.ndarray, lo: float, scale: float) -> float:
    """Expected work per value for data distributed like the probes."""
    u = np.clip(((tprobe - lo) * scale), 0, _LUT_CELLS).astype(np.intp)
    need = window[u].astype(np.float64)
    cost = np.where(need > _LUT_STEPS, 16.0, need)  # a binary search costs about 16 steps
    return float(np.sum(cost * weights) / max(np.sum(weights), 1.0))


def _geometry(points: np.ndarray, weights: np.ndarray) -> _Geometry:
    """Widen the reference points by tail points and build the lookup table.

    `weights` (how much reference data sits at each point) only steer the choice of lookup
    transform, i.e. speed: locate() is exact whichever is chosen.
    """
    lo, hi = float(points[0]), float(points[-1])
    span = (hi - lo) or abs(hi) or 1.0
    offsets = _tail_offsets() * span
    with np.errstate(over="ignore", invalid="ignore"):
        below, above = lo - offsets[::-1], hi + offsets
    below = below[np.isfinite(below) & (below < lo)]
    above = above[np.isfinite(above) & (above > hi)]
    grid = np.unique(np.concatenate([below, points, above]))
    ref_start = int(np.searchsorted(grid, lo))
    size = len(grid)
    left = np.zeros(size + 1)
    left[1:size] = grid[:-1]
    inv_width = np.zeros(size + 1)
    with np.errstate(divide="ignore", over="ignore"):
        inv_width[1:size] = 1.0 / np.diff(grid)
    inv_width[~np.isfinite(inv_width)] = 0.0

    weights = np.asarray(weights, dtype=np.float64)
    median = _weighted_quantile(points, weights, 0.5)
    iqr = _weighted_quantile(points, weights, 0.75) - _weighted_quantile(points, weights, 0.25)
    best: tuple[float, float | None, float, float, float, np.ndarray, np.ndarray] | None = None
    # Heavy tails squeeze a uniform table's resolution; asinh spreads them out again.
    for center, scale in ((None, 1.0), (median, iqr or span)):
        tgrid = grid if center is None else np.arcsinh((grid - center) / scale)
        tlo = float(tgrid[ref_start])
        thi = float(tgrid[ref_start + len(points) - 1])
        lut_scale, base, window = _lookup(tgrid, tlo, thi)
        tprobe = points if center is None else np.arcsinh((points - center) / scale)
        cost = _lookup_cost(window, tprobe, weights, tlo, lut_scale) if lut_scale else 99.0
        if best is None or cost < best[0] - 0.25:  # identity unless asinh is clearly better
            best = (cost, center, scale, tlo, lut_scale, base, window)
        if best[0] <= 1.0:  # about one correction step per value: good enough
            break
    assert best is not None
    _, center, scale, tlo, lut_scale, base, window = best
    return _Geometry(
        grid=grid,
        ref_start=ref_start,
        ref_stop=ref_start + len(points),
        grid_ext=np.append(grid, np.inf),
        left=left,
        inv_width=inv_width,
        center=center,
        scale=scale,
        lut_lo=tlo,
        lut_scale=lut_scale,
        base=base,
        window=window,
    )


@dataclass
class _Cells:
    """A numeric column counted on a geometry (M grid points, M+1 open cells)."""

    counts: np.ndarray  # int64, 2M+1: cell 2j = open cell j, cell 2j+1 = grid point j
    fixed: np.ndarray  # per open cell, sum of floor(position * 2**FIXED_BITS): integer-valued floats
    outer: np.ndarray  # float sums of the values in the two unbounded outer cells


def _count_cells(x: np.ndarray, geo: _Geometry) -> tuple[_Cells, np.ndarray]:
    """Count finite values on the cells; also returns each value's cell (2 * grid index + at point).

    Works in blocks of _BLOCK values: the dozen temporaries per value then stay in the CPU cache,
    which makes this about twice as fast as whole-array numpy on a million values.
    """
    size = geo.size
    cells = 2 * size + 1
    code = np.empty(len(x), dtype=np.int32)
    counts = np.zeros(cells, dtype=np.int64)
    sums = np.zeros(cells)
    for start in range(0, len(x), _BLOCK):
        block = x[start : start + _BLOCK]
        idx = geo.locate(block)
        where = 2 * idx + (geo.grid_ext[idx] == block)
        pos = block - geo.left[idx]
        pos *= geo.inv_width[idx]
        pos *= _FIXED_SCALE
        np.floor(pos, out=pos)
        np.minimum(pos, _FIXED_SCALE - 1.0, out=pos)  # rounding can land a value on its cell's right end
        counts += np.bincount(where, minlength=cells)
        sums += np.bincount(where, weights=pos, minlength=cells)
        code[start : start + _BLOCK] = where
    # Points fall in odd cells, whose sums are dropped; outer cells have inv_width 0.
    fixed = sums[0::2]
    fixed[0] = fixed[-1] = 0.0
    outer = np.zeros(2)
    if counts[0]:
        outer[0] = float(x[code == 0].sum())
    if counts[-1]:
        outer[1] = float(x[code == cells - 1].sum())
    return _Cells(counts, fixed, outer), code


def _extremes(x: np.ndarray, code: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The TAIL_VALUES smallest and largest values, sorted; the cells say where to look."""
    k = TAIL_VALUES
    if len(x) <= k:
        ordered = np.sort(x)
        return ordered, ordered.copy()
    cum = np.cumsum(counts)
    low_cell = int(np.searchsorted(cum, k, side="left"))
    high_cell = int(np.searchsorted(cum - counts, len(x) - k, side="right")) - 1
    return np.sort(x[code <= low_cell])[:k], np.sort(x[code >= high_cell])[-k:]


def _merge_extremes(a: np.ndarray, b: np.ndarray, smallest: bool) -> np.ndarray:
    both = np.sort(np.concatenate([a, b]))
    return both[:TAIL_VALUES] if smallest else both[-TAIL_VALUES:]


# ---------------------------------------------------------------------------- HyperLogLog


def _hll_registers(x: np.ndarray) -> np.ndarray:
    """HyperLogLog registers of the distinct values of x (-0.0 counts as 0.0, like pandas)."""
    rest_bits = 64 - HLL_BITS
    keys = np.empty(len(x), dtype=np.intp)
    for start in range(0, len(x), _BLOCK):  # blocks: the temporaries stay in the CPU cache
        z = (x[start : start + _BLOCK] + 0.0).view(np.uint64)
        # splitmix64 finaliser on the float's bits: cheap and well mixed.
        z += np.uint64(0x9E3779B97F4A7C15)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        bucket = (z >> np.uint64(rest_bits)).astype(np.intp)
        rest = (z & np.uint64((1 << rest_bits) - 1)).astype(np.float64)  # below 2**52: exact in float64
        # rank = leading zeros of the remaining bits + 1; frexp's exponent is the bit length.
        keys[start : start + _BLOCK] = bucket * 64 + (rest_bits + 1 - np.frexp(rest)[1])
    hits = np.bincount(keys, minlength=(1 << HLL_BITS) * 64).reshape(-1, 64) > 0
    registers = np.where(hits.any(axis=1), 63 - np.argmax(hits[:, ::-1], axis=1), 0)
    return registers.astype(np.uint8)


def _hll_estimate(registers: np.ndarray) -> float:
    m = float(len(registers))
    alpha = 0.7213 / (1.0 + 1.079 / m)
    estimate = alpha * m * m / float(np.sum(2.0 ** -registers.astype(np.float64)))
    zeros = int(np.count_nonzero(registers == 0))
    if estimate <= 2.5 * m and zeros:
        estimate = m * math.log(m / zeros)  # linear counting for small cardinalities
    return estimate


# ---------------------------------------------------------------------------- reference profile


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


@dataclass(eq=False)
class CategoricalReference:
    """Category counts of the reference, labels normalised as drift.py does."""

    rows: int
    count: int
    counts: dict[str, int]
    kind: Literal["categorical"] = "categorical"

    def to_dict(self) -> dict[str, Any]:
        return _categorical_dict(self.rows, self.count, self.counts)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalReference:
        return cls(rows=int(data["rows"]), count=int(data["count"]), counts=_categorical_counts(data))


def _categorical_dict(rows: int, count: int, counts: Mapping[str, int]) -> dict[str, Any]:
    labels = sorted(counts)
    return {
        "kind": "categorical",
        "rows": rows,
        "count": count,
        "labels": labels,
        "counts": [counts[k] for k in labels],
    }


def _categorical_counts(data: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in zip(data["labels"], data["counts"], strict=True)}


FeatureReference = NumericReference | CategoricalReference


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
            name: NumericReference.from_dict(spec)
            if spec["kind"] == "numeric"
            else CategoricalReference.from_dict(spec)
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


def _numeric_values(series: pd.Series, name: str, which: str) -> np.ndarray:
    """float64 values, converted as drift._prepare converts them (non-finite ones dropped later)."""
    if series.dtype == np.float64:
        return series.to_numpy()
    if pd.api.types.is_extension_array_dtype(series.dtype) and pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        values = pd.to_numeric(series, errors="raise")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{which} data: numeric feature {name!r} holds non-numeric values ({err})") from None
    return np.asarray(values.astype("float64"), dtype=np.float64)


def _finite(values: np.ndarray) -> np.ndarray:
    mask = np.isfinite(values)
    return values if mask.all() else values[mask]


def _category_counts(series: pd.Series) -> dict[str, int]:
    """Counts per normalised label, NaN excluded; categoricals are counted on their codes."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.asarray(series.cat.codes, dtype=np.intp)
        hits = np.bincount(codes + 1, minlength=len(series.cat.categories) + 1)[1:]
        pairs: Sequence[tuple[Any, int]] = list(zip(series.cat.categories, hits.tolist(), strict=True))
    else:
        counted = series.value_counts(dropna=True, sort=False)
        pairs = list(zip(counted.index, counted.to_numpy().tolist(), strict=True))
    counts: dict[str, int] = {}
    for value, hit in pairs:
        label = _category(value)
        if hit and isinstance(label, str):
            counts[label] = counts.get(label, 0) + int(hit)
    return counts


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
            features[spec.name] = CategoricalReference(len(reference), sum(counts.values()), counts)
    if empty:
        raise ValueError(f"reference data has no values for feature(s): {', '.join(empty)}")
    return ReferenceProfile(
        model=cfg.name, rows=len(reference), features=features, grid_points=grid_points, exact_values=exact_values
    )


def _check_columns(names: list[Any], cfg: ModelConfig, which: str) -> None:
    missing = [name for name in cfg.dataset.feature_names if name not in names]
    if missing:
        raise ValueError(f"{which} data is missing feature column(s): {', '.join(missing)}")
    duplicated = sorted({n for n in cfg.dataset.feature_names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{which} data has duplicate feature column(s): {', '.join(duplicated)}")


# ---------------------------------------------------------------------------- batch profile


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


@dataclass(eq=False)
class CategoricalBatch:
    rows: int
    count: int
    counts: dict[str, int]
    kind: Literal["categorical"] = "categorical"

    def to_dict(self) -> dict[str, Any]:
        return _categorical_dict(self.rows, self.count, self.counts)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalBatch:
        return cls(rows=int(data["rows"]), count=int(data["count"]), counts=_categorical_counts(data))


FeatureBatch = NumericBatch | CategoricalBatch


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
            name: NumericBatch.from_dict(spec) if spec["kind"] == "numeric" else CategoricalBatch.from_dict(spec)
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
        return CategoricalBatch(n_rows, sum(counts.values()), counts)

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


def _as_columns(data: pd.DataFrame | Mapping[str, Any], cfg: ModelConfig) -> dict[str, pd.Series]:
    """The configured feature columns as Series, checked as drift.py checks them."""
    if isinstance(data, pd.DataFrame):
        _check_columns(list(data.columns), cfg, "current")
        return {name: data[name] for name in cfg.dataset.feature_names}
    if isinstance(data, Mapping):
        _check_columns(list(data.keys()), cfg, "current")
        return {name: _as_series(data[name]) for name in cfg.dataset.feature_names}
    raise TypeError(f"current data must be a DataFrame or a mapping of columns, got {type(data).__name__}")


def _as_series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if hasattr(values, "to_pandas"):  # pyarrow Array / ChunkedArray: dictionaries become categoricals
        return values.to_pandas()
    return pd.Series(values)


def _reference_feature(profile: ReferenceProfile, name: str, kind: str) -> FeatureReference:
    ref = profile.features.get(name)
    if ref is None or ref.kind != kind:
        raise ValueError(f"the reference profile has no {kind} feature {name!r}: rebuild it for this config")
    return ref


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
        elif isinstance(fa, CategoricalBatch) and isinstance(fb, CategoricalBatch):
            counts = dict(fa.counts)
            for label, hit in fb.counts.items():
                counts[label] = counts.get(label, 0) + hit
            features[name] = CategoricalBatch(fa.rows + fb.rows, fa.count + fb.count, counts)
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


# ---------------------------------------------------------------------------- CDF model


@dataclass
class _Dist:
    """A distribution on a geometry's cells, with each open cell's exact mean position."""

    n: int
    opens: np.ndarray  # counts inside open cells (M+1)
    mean_pos: np.ndarray  # mean position in (0, 1) inside each open cell (0.5 when empty)
    start: np.ndarray  # count(x <= grid[j-1]): the CDF (times n) where open cell j starts (M+1)
    below: np.ndarray  # count(x < grid[j]) per grid point (M)
    values: np.ndarray | None  # sorted values when known: exact counts below any edge
    low: np.ndarray | None  # smallest and largest values: exact counts in the tails
    high: np.ndarray | None


def _dist(cells: _Cells, n: int, lo: float, hi: float, geo: _Geometry, exact: tuple[np.ndarray | None, ...]) -> _Dist:
    """`exact` is (all values, smallest values, largest values), each None when unknown."""
    counts = cells.counts.astype(np.float64)
    opens = counts[0::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pos = np.where(opens > 0, (cells.fixed / np.maximum(opens, 1.0) + 0.5) / _FIXED_SCALE, 0.5)
        # The unbounded outer cells reach the data's min and max; their float sums give the mean.
        if opens[0] > 0 and geo.grid[0] > lo:
            mean_pos[0] = (cells.outer[0] / opens[0] - lo) / (geo.grid[0] - lo)
        if opens[-1] > 0 and hi > geo.grid[-1]:
            mean_pos[-1] = (cells.outer[1] / opens[-1] - geo.grid[-1]) / (hi - geo.grid[-1])
    mean_pos = np.clip(np.nan_to_num(mean_pos, nan=0.5), 1e-9, 1 - 1e-9)
    cum = np.cumsum(counts)  # cum[2j] = count(x < grid[j]), cum[2j+1] = count(x <= grid[j])
    start = np.concatenate([[0.0], cum[1::2]])
    values, low, high = exact
    return _Dist(n, opens, mean_pos, start, cum[0:-1:2], values, low, high)


def _shape(mean_pos: np.ndarray, t: np.ndarray) -> np.ndarray:
    """CDF at t in [0, 1] of a density on [0, 1] with the given mean: t**a, or mirrored below 1/2.

    Its integral over [0, 1] is 1 - mean, so modelled areas agree with the exact cell sums.
    """
    upper = mean_pos >= 0.5
    power = np.where(upper, mean_pos / (1 - mean_pos), (1 - mean_pos) / mean_pos)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.where(upper, t**power, 1.0 - (1.0 - t) ** power)


def _cell_bounds(geo: _Geometry, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    left = np.concatenate([[min(lo, geo.grid[0])], geo.grid])
    right = np.concatenate([geo.grid, [max(hi, geo.grid[-1])]])
    return left, right


def _model_diff(r: _Dist, c: _Dist, cells: np.ndarray, t: np.ndarray) -> np.ndarray:
    """F_ref - F_cur at positions t inside the given open cells (one row per cell)."""
    fr = (r.start[cells, None] + r.opens[cells, None] * _shape(r.mean_pos[cells, None], t[None, :])) / r.n
    fc = (c.start[cells, None] + c.opens[cells, None] * _shape(c.mean_pos[cells, None], t[None, :])) / c.n
    return fr - fc


def _wasserstein(r: _Dist, c: _Dist, geo: _Geometry, lo: float, hi: float) -> float:
    """Integral of |F_ref - F_cur| (scipy's W1), cell by cell."""
    left, right = _cell_bounds(geo, lo, hi)
    width = np.maximum(right - left, 0.0)
    at_start = r.start / r.n - c.start / c.n
    at_end = (r.start + r.opens) / r.n - (c.start + c.opens) / c.n
    # Exact: the area under an empirical CDF over a cell follows from the cell's count and mean.
    mean_ref = (r.start + r.opens * (1 - r.mean_pos)) / r.n
    mean_cur = (c.start + c.opens * (1 - c.mean_pos)) / c.n
    area = np.abs(mean_ref - mean_cur) * width
    crossing = np.flatnonzero((at_start * at_end < 0) & (width > 0))
    if len(crossing):  # |.| of a crossing difference: integrate the model instead
        t = np.linspace(0.0, 1.0, _MODEL_SAMPLES + 1)
        area[crossing] = np.trapezoid(np.abs(_model_diff(r, c, crossing, t)), t, axis=1) * width[crossing]
    return float(np.sum(area))


def _ks_statistic(r: _Dist, c: _Dist) -> float:
    """sup |F_ref - F_cur|: exact at each grid point and its left limit, modelled inside shared cells."""
    at = r.start[1:] / r.n - c.start[1:] / c.n
    before = r.below / r.n - c.below / c.n
    stat = max(float(np.max(np.abs(at))), float(np.max(np.abs(before))), 0.0)
    shared = np.flatnonzero((r.opens > 0) & (c.opens > 0))
    if len(shared):
        t = np.linspace(0.0, 1.0, _MODEL_SAMPLES + 1)[1:-1]
        stat = max(stat, float(np.max(np.abs(_model_diff(r, c, shared, t)))))
    return stat


def _ks_pvalue(stat: float, n1: int, n2: int) -> float:
    """The p-value scipy.stats.ks_2samp(method="auto") gives for this statistic and these sizes."""
    from scipy.stats import kstwo

    if max(n1, n2) <= _EXACT_KS_ROWS:
        try:
            from scipy.stats._stats_py import _attempt_exact_2kssamp
        except ImportError:  # the private helper moved: use the asymptotic value below
            pass
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                success, _, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), stat, "two-sided")
            if success:
                return float(np.clip(prob, 0.0, 1.0))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(kstwo.sf(stat, np.round(en)), 0.0, 1.0))


def _counts_below(d: _Dist, geo: _Geometry, edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """count(x < e) per edge: exact from values or at grid points, else a rounded model estimate."""
    if d.values is not None:
        return np.searchsorted(d.values, edges, side="left").astype(np.float64)
    j = np.searchsorted(geo.grid, edges, side="left")
    on_point = geo.grid_ext[j] == edges
    left, right = _cell_bounds(geo, lo, hi)
    width = right[j] - left[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(width > 0, (edges - left[j]) / width, 0.0), 0.0, 1.0)
    estimate = np.rint(d.start[j] + d.opens[j] * _shape(d.mean_pos[j], t))
    counts = np.where(on_point, d.below[np.minimum(j, geo.size - 1)], estimate)
    if d.low is not None and d.high is not None and len(d.low):
        # Below the k-th smallest value every smaller value is known; above the k-th largest, every larger one.
        in_low = edges <= d.low[-1]
        counts[in_low] = np.searchsorted(d.low, edges[in_low], side="left")
        in_high = edges > d.high[0]
        counts[in_high] = d.n - (len(d.high) - np.searchsorted(d.high, edges[in_high], side="left"))
    return counts


def _histogram(d: _Dist, geo: _Geometry, edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """np.histogram(values, edges)[0]: bins [e_i, e_i+1), the last one closed."""
    inner = _counts_below(d, geo, edges[1:-1], lo, hi)
    cum = np.concatenate([[0.0], inner, [float(d.n)]])
    cum = np.maximum.accumulate(np.clip(cum, 0.0, float(d.n)))
    return np.diff(cum)


def _sturges_edges(lo: float, hi: float, size: int) -> np.ndarray:
    """np.histogram_bin_edges(a, bins="sturges") for data with this min, max and size."""
    first, last = np.float64(lo), np.float64(hi)
    width = (last - first) / (np.log2(size) + 1.0)
    if first == last:
        first, last = first - 0.5, last + 0.5
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


# ---------------------------------------------------------------------------- Evidently's formulas


def _feel_zeroes(percents: np.ndarray) -> np.ndarray:
    """get_binned_data(feel_zeroes=True): empty bins get a tiny share."""
    out = percents.copy()
    smallest = float(np.min(out[out != 0]))
    np.place(out, out == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return out


def _binned_score(method: str, ref_pct: np.ndarray, cur_pct: np.ndarray) -> float:
    from scipy import stats
    from scipy.spatial import distance

    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "jensenshannon":
            return float(distance.jensenshannon(ref_pct, cur_pct, None))
        ref_pct, cur_pct = _feel_zeroes(ref_pct), _feel_zeroes(cur_pct)
        if method == "psi":
            return float(np.sum((ref_pct - cur_pct) * np.log(ref_pct / cur_pct)))
        return float(stats.entropy(ref_pct, cur_pct))  # kl_div


def _hellinger_shares(ref_pct: np.ndarray, cur_pct: np.ndarray) -> float:
    total = float(np.clip(np.sum(np.sqrt(ref_pct * cur_pct)), 0, 1))
    return math.sqrt(1 - total)


def _hellinger_histograms(h_ref: np.ndarray, h_cur: np.ndarray, edges: np.ndarray) -> float:
    widths = np.diff(edges)
    dens_ref, dens_cur = h_ref / widths / h_ref.sum(), h_cur / widths / h_cur.sum()  # density=True
    bin_width = (edges.max() - edges.min()) / (len(edges) - 1)
    total = 0.0
    for p1, p2 in zip(dens_ref.tolist(), dens_cur.tolist(), strict=True):  # Evidently's summation order
        total += math.sqrt(p1 * p2) * bin_width
    return math.sqrt(1 - float(np.clip(total, 0, 1)))


def _categorical_score(method: str, ref: CategoricalReference, cur: CategoricalBatch) -> float:
    keys = sorted(set(ref.counts) | set(cur.counts))
    ref_counts = np.array([ref.counts.get(k, 0) for k in keys], dtype=np.float64)
    cur_counts = np.array([cur.counts.get(k, 0) for k in keys], dtype=np.float64)
    if method == "chisquare":
        from scipy.stats import chisquare

        # A category unseen in the reference expects 0 rows: the statistic is inf and p is 0.
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(chisquare(cur_counts, ref_counts * (cur.count / ref.count))[1])
    ref_pct, cur_pct = ref_counts / ref.count, cur_counts / cur.count
    if method == "hellinger":
        return _hellinger_shares(ref_pct, cur_pct)
    if method in _BINNED:
        return _binned_score(method, ref_pct, cur_pct)
    raise ValueError(f"drift method {method!r} does not apply to categorical features")


def _exact_numeric_score(method: str, ref: NumericReference, rv: np.ndarray, cv: np.ndarray) -> float:
    """Evidently's own arithmetic, on all values of both sides."""
    from scipy import stats

    if method == "wasserstein":
        return float(stats.wasserstein_distance(rv, cv)) / max(ref.std, 0.001)
    if method == "ks":
        return float(stats.ks_2samp(rv, cv)[1])
    both = np.concatenate([rv, cv])
    if method == "hellinger":
        edges = np.histogram_bin_edges(np.unique(both), bins="sturges")
        return _hellinger_histograms(np.histogram(rv, edges)[0], np.histogram(cv, edges)[0], edges)
    if method in _BINNED:
        if ref.nunique > FEW_VALUES:
            edges = np.histogram_bin_edges(both, bins="sturges")
            ref_pct, cur_pct = np.histogram(rv, edges)[0] / len(rv), np.histogram(cv, edges)[0] / len(cv)
        else:
            keys = np.unique(both + 0.0)
            ref_pct = _count_at(rv, keys) / len(rv)
            cur_pct = _count_at(cv, keys) / len(cv)
        return _binned_score(method, ref_pct, cur_pct)
    raise ValueError(f"drift method {method!r} does not apply to numeric features")


def _count_at(sorted_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return (
        np.searchsorted(sorted_values, keys, side="right") - np.searchsorted(sorted_values, keys, side="left")
    ).astype(np.float64)


def _value_count_shares(ref: NumericReference, cur: NumericBatch) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's distinct-value path (reference with at most 20 distinct values)."""
    if not cur.extras_tracked:
        raise ValueError("the batch profile was built for another drift method: rebuild it")
    geo = ref.geometry
    cur_at_ref = cur.cells.counts[2 * geo.ref_start + 1 : 2 * geo.ref_stop : 2].astype(np.float64)
    # Past EXTRAS_CAP new distinct values, each off-grid row is counted as a value of its own.
    new_counts = cur.extras[1].astype(np.float64) if cur.extras is not None else np.ones(cur.extras_rows)
    ref_counts = np.concatenate([ref.point_counts.astype(np.float64), np.zeros(len(new_counts))])
    cur_counts = np.concatenate([cur_at_ref, new_counts])
    return ref_counts / ref.count, cur_counts / cur.count


def _distinct_union(ref: NumericReference, cur: NumericBatch) -> int:
    """How many distinct values reference and batch hold together."""
    if ref.lossless and cur.extras is not None:
        return ref.nunique + len(cur.extras[0])
    if cur.hll is None:
        raise ValueError("the batch profile was built for another drift method than hellinger: rebuild it")
    return max(round(_hll_estimate(np.maximum(ref.hll, cur.hll))), ref.nunique, 1)


def _numeric_score(method: str, ref: NumericReference, cur: NumericBatch) -> float:
    rv = ref.exact_values()
    if rv is not None and cur.values is not None:
        return _exact_numeric_score(method, ref, rv, cur.values)
    geo = ref.geometry
    lo, hi = min(ref.min, cur.min), max(ref.max, cur.max)
    r = _dist(ref.full_cells(), ref.count, lo, hi, geo, (rv, ref.low, ref.high))
    c = _dist(cur.cells, cur.count, lo, hi, geo, (cur.values, cur.low, cur.high))
    if method == "wasserstein":
        return _wasserstein(r, c, geo, lo, hi) / max(ref.std, 0.001)
    if method == "ks":
        return _ks_pvalue(_ks_statistic(r, c), ref.count, cur.count)
    if method == "hellinger":
        edges = _sturges_edges(lo, hi, _distinct_union(ref, cur))
        return _hellinger_histograms(_histogram(r, geo, edges, lo, hi), _histogram(c, geo, edges, lo, hi), edges)
    if method in _BINNED:
        if ref.nunique > FEW_VALUES:
            edges = _sturges_edges(lo, hi, ref.count + cur.count)
            ref_pct = _histogram(r, geo, edges, lo, hi) / ref.count
            cur_pct = _histogram(c, geo, edges, lo, hi) / cur.count
        else:
            ref_pct, cur_pct = _value_count_shares(ref, cur)
        return _binned_score(method, ref_pct, cur_pct)
    raise ValueError(f"drift method {method!r} does not apply to numeric features")


def _drifted(method: str, score: float, threshold: float) -> bool:
    if method == "ks":
        return score <= threshold
    if method == "chisquare":
        return score < threshold
    return score >= threshold


def decide(
    ref: ReferenceProfile, batch: BatchProfile, cfg: ModelConfig, *, threshold_override: float | None = None
) -> DriftResult:
    """Per-feature and dataset drift decisions, as drift.run_drift_report takes them."""
    share_threshold = cfg.drift.dataset_drift_share if threshold_override is None else float(threshold_override)
    if not 0.0 < share_threshold <= 1.0:
        raise ValueError(f"threshold_override must be in (0, 1], got {threshold_override!r}")
    if batch.reference_id != ref.profile_id:
        raise ValueError("the batch profile was computed against another reference profile")
    missing = [n for n in cfg.dataset.feature_names if n not in batch.features]
    if missing:
        raise ValueError(f"the batch profile lacks feature(s): {', '.join(missing)}")
    empty = [n for n in cfg.dataset.feature_names if batch.features[n].count == 0]
    if empty:
        raise ValueError(
            f"current data has no values for feature(s): {', '.join(empty)} "
            f"(column entirely missing in {batch.rows} rows)"
        )
    results: list[FeatureDrift] = []
    for spec in cfg.dataset.features:
        method, threshold = cfg.drift_rule(spec.name)
        feature_ref = _reference_feature(ref, spec.name, spec.type)
        cur = batch.features[spec.name]
        if isinstance(feature_ref, NumericReference) and isinstance(cur, NumericBatch):
            score = _numeric_score(method, feature_ref, cur)
        elif isinstance(feature_ref, CategoricalReference) and isinstance(cur, CategoricalBatch):
            score = _categorical_score(method, feature_ref, cur)
        else:
            raise ValueError(f"feature {spec.name!r} is {spec.type} in the config but not in the batch profile")
        results.append(
            FeatureDrift(
                name=spec.name,
                kind=spec.type,
                method=method,
                threshold=float(threshold),
                score=score,
                drifted=_drifted(method, score, float(threshold)),
            )
        )
    drifted_share = sum(f.drifted for f in results) / len(results)
    return DriftResult(
        features=results,
        drifted_share=drifted_share,
        share_threshold=share_threshold,
        dataset_drift=drifted_share >= share_threshold,
        reference_rows=ref.rows,
        current_rows=batch.rows,
        evidently_version=ENGINE,
    )


def fast_drift(
    reference_profile: ReferenceProfile,
    current: pd.DataFrame | Mapping[str, Any],
    cfg: ModelConfig,
    threshold_override: float | None = None,
) -> DriftResult:
    """profile_batch + decide, for a batch held in memory."""
    batch = profile_batch(current, reference_profile, cfg)
    return decide(reference_profile, batch, cfg, threshold_override=threshold_override)


# ---------------------------------------------------------------------------- Parquet input


def _parquet_file(source: Any, columns: Sequence[str], categories: Sequence[str]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # No pre-buffering: it caches the column chunks already read, so memory would grow with the file.
    parquet = pq.ParquetFile(source, pre_buffer=False)
    schema = parquet.schema_arrow
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ValueError(f"Parquet data is missing column(s): {', '.join(missing)}")
    strings = [
        c
        for c in categories
        if c in columns and (pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type))
    ]
    if not strings:
        return parquet
    if hasattr(source, "seek"):
        source.seek(0)
    return pq.ParquetFile(source, read_dictionary=strings, pre_buffer=False)


def read_columns(path_or_buffer: Any, columns: Sequence[str], *, categories: Sequence[str] = ()) -> pd.DataFrame:
    """Read only `columns` of a Parquet file (path or file-like) into one consolidated DataFrame.

    String columns named in `categories` come back as pandas categoricals: counting their codes
    is much cheaper than hashing a million strings, and they take a fraction of the memory. Leave
    them as plain strings when Great Expectations validates the same frame: validation.py turns
    categoricals back into strings, and the extra blocks slow every GX metric down (about 2.5x
    at 100k rows).
    """
    columns = list(dict.fromkeys(columns))
    table = _parquet_file(path_or_buffer, columns, categories).read(columns=columns, use_threads=True)
    # Consolidated blocks: GX's pandas engine re-consolidates a many-block frame for every metric.
    return table.to_pandas(self_destruct=True)


def iter_columns(
    path_or_buffer: Any,
    columns: Sequence[str],
    *,
    categories: Sequence[str] = (),
    batch_rows: int = 262_144,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield `columns` of a Parquet file (or of the given row groups) in chunks of at most `batch_rows` rows.

    Memory stays at about one row group whatever the file size; `categories` as for read_columns.
    """
    columns = list(dict.fromkeys(columns))
    reader = _parquet_file(path_or_buffer, columns, categories)
    groups = list(range(reader.num_row_groups)) if row_groups is None else list(row_groups)
    for record_batch in reader.iter_batches(
        batch_size=batch_rows, row_groups=groups, columns=columns, use_threads=True
    ):
        yield record_batch.to_pandas(split_blocks=True)


def profile_parquet(
    path_or_buffer: Any, ref_profile: ReferenceProfile, cfg: ModelConfig, *, batch_rows: int = 262_144
) -> BatchProfile:
    """Profile a Parquet batch chunk by chunk, never holding more than one chunk of it."""
    total: BatchProfile | None = None
    names, categories = cfg.dataset.feature_names, cfg.dataset.categorical_features
    for chunk in iter_columns(path_or_buffer, names, categories=categories, batch_rows=batch_rows):
        part = profile_batch(chunk, ref_profile, cfg)
        total = part if total is None else merge(total, part)
    if total is None:  # no rows at all: decide() reports the empty features
        empty = {name: np.zeros(0) for name in cfg.dataset.feature_names}
        total = profile_batch(empty, ref_profile, cfg)
    return total
