"""Drift decisions from a reference and a batch profile, with Evidently 0.7.23's formulas."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftwatch.drift import DriftResult, FeatureDrift
from driftwatch.profile.batch import _BINNED, BatchProfile, NumericBatch, profile_batch
from driftwatch.profile.cdf import _dist, _histogram, _ks_pvalue, _ks_statistic, _sturges_edges, _wasserstein
from driftwatch.profile.reference import FEW_VALUES, NumericReference, ReferenceProfile, _reference_feature
from driftwatch.profile.sketches import CategoryCounts, _hll_estimate

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig, RetrainingPolicy

ENGINE = "driftwatch-fast (evidently 0.7.23 semantics)"


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


def _categorical_score(method: str, ref: CategoryCounts, cur: CategoryCounts) -> float:
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


def _outside_range_share(ref: NumericReference, cur: NumericBatch) -> float:
    """Share of the batch's finite values below the reference min or above its max, exact from the cells.

    The reference's first and last points are its min and max, so every cell before the first
    and after the last holds only values outside the range.
    """
    geo, counts = ref.geometry, cur.cells.counts
    outside = int(counts[: 2 * geo.ref_start + 1].sum()) + int(counts[2 * geo.ref_stop :].sum())
    return outside / cur.count


def _unseen_share(ref: CategoryCounts, cur: CategoryCounts) -> float:
    """Share of the batch's labelled values in categories the reference never held."""
    unseen = sum(hit for label, hit in cur.counts.items() if label not in ref.counts)
    return unseen / cur.count


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
            outside = _outside_range_share(feature_ref, cur)
        elif isinstance(feature_ref, CategoryCounts) and isinstance(cur, CategoryCounts):
            score = _categorical_score(method, feature_ref, cur)
            outside = _unseen_share(feature_ref, cur)
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
                outside_range_share=outside,
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


def extreme_features(ref: ReferenceProfile, result: DriftResult, policy: RetrainingPolicy) -> list[dict[str, Any]]:
    """The features gone wild on their own, each with why: most values outside the reference, or a huge score.

    A unit change in one feature (values x1e6) leaves the dataset's drift share under its
    threshold; the retraining policy alerts on every feature listed here instead.
    """
    extreme: list[dict[str, Any]] = []
    for feature in result.features:
        reasons = []
        share, ratio = feature.outside_range_share, feature.score_ratio
        if share is not None and share > policy.outlier_share:
            reasons.append(_outside_why(ref.features[feature.name], share))
        # NaN compares False: a score that could not be computed is not extreme.
        if ratio is not None and ratio >= policy.extreme_score_factor:
            reasons.append(_ratio_why(feature.score, ratio, feature.threshold))
        if reasons:
            plain = feature.to_dict()
            extreme.append(
                {
                    "feature": feature.name,
                    "why": "; ".join(reasons),
                    "outside_range_share": plain["outside_range_share"],
                    "score_ratio": plain["score_ratio"],
                }
            )
    return extreme


def _outside_why(ref: NumericReference | CategoryCounts, share: float) -> str:
    if isinstance(ref, NumericReference):
        return f"{share:.0%} of values outside the reference range [{ref.min:.4g}, {ref.max:.4g}]"
    return f"{share:.0%} of values in categories unseen in the reference"


def _ratio_why(score: float, ratio: float, threshold: float) -> str:
    if not math.isfinite(ratio):
        return f"score {score:.2g} is past any multiple of its threshold {threshold:g}"
    return f"score {score:.2g} is {ratio:,.0f}x its threshold {threshold:g}"


def fast_drift(
    reference_profile: ReferenceProfile,
    current: pd.DataFrame | Mapping[str, Any],
    cfg: ModelConfig,
    threshold_override: float | None = None,
) -> DriftResult:
    """profile_batch + decide, for a batch held in memory."""
    batch = profile_batch(current, reference_profile, cfg)
    return decide(reference_profile, batch, cfg, threshold_override=threshold_override)
