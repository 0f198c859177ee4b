"""The CDF model: a distribution on a geometry's cells, and the distances, KS and histograms it gives."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from driftwatch.profile.grid import _FIXED_SCALE, _Cells, _Geometry

_MODEL_SAMPLES = 32  # points per cell where two modelled CDFs are compared inside it
_EXACT_KS_ROWS = 10_000  # scipy ks_2samp(method="auto") computes exact p-values up to this size


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
