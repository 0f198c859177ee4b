"""Grid geometry: a numeric feature's cells, fixed by the reference, and counting values on them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FIXED_BITS = 20  # resolution of positions inside a cell: 1/2**20 of its width
TAIL_VALUES = 512  # smallest and largest values kept exactly: the sparse tail bins are exact

_FIXED_SCALE = float(1 << FIXED_BITS)
_TAIL_STEPS_PER_SPAN = 128  # tail points: 1/128 of the reference span apart up to 4 spans out,
_TAIL_LINEAR_SPANS = 4
_TAIL_GEOMETRIC_POINTS = 64  # then doubling every 8 points, out to 1024 spans
_LUT_CELLS = 1 << 18
_BLOCK = 1 << 16  # values per block when counting cells
_LUT_STEPS = 3  # values with more grid points than this near them fall back to searchsorted


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
