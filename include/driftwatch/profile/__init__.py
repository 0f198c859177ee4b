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

Modules: `grid` (cells and counting on them), `sketches` (HyperLogLog, category counts), `inputs`
(column checks), `reference`, `batch`, `cdf` (the in-cell model), `decision`, `parquet`.
"""

from __future__ import annotations

# Private helpers stay reachable as profile._name, as when this was one module (tests use some).
# These are separate bindings: to patch a constant, patch it in its own module.
from driftwatch.profile.batch import (  # noqa: F401
    _BINNED,
    BATCH_SCHEMA,
    EXTRAS_CAP,
    PARALLEL_ROWS,
    BatchProfile,
    FeatureBatch,
    NumericBatch,
    _cap_extras,
    _merge_numeric,
    _needs,
    _numeric_batch,
    merge,
    profile_batch,
)
from driftwatch.profile.cdf import (  # noqa: F401
    _EXACT_KS_ROWS,
    _MODEL_SAMPLES,
    _cell_bounds,
    _counts_below,
    _Dist,
    _dist,
    _histogram,
    _ks_pvalue,
    _ks_statistic,
    _model_diff,
    _shape,
    _sturges_edges,
    _wasserstein,
)
from driftwatch.profile.decision import (  # noqa: F401
    ENGINE,
    _binned_score,
    _categorical_score,
    _count_at,
    _distinct_union,
    _drifted,
    _exact_numeric_score,
    _feel_zeroes,
    _hellinger_histograms,
    _hellinger_shares,
    _numeric_score,
    _outside_range_share,
    _unseen_share,
    _value_count_shares,
    decide,
    extreme_features,
    fast_drift,
)
from driftwatch.profile.grid import (  # noqa: F401
    _BLOCK,
    _FIXED_SCALE,
    _LUT_CELLS,
    _LUT_STEPS,
    _TAIL_GEOMETRIC_POINTS,
    _TAIL_LINEAR_SPANS,
    _TAIL_STEPS_PER_SPAN,
    FIXED_BITS,
    TAIL_VALUES,
    _Cells,
    _count_cells,
    _extremes,
    _Geometry,
    _geometry,
    _lookup,
    _lookup_cost,
    _merge_extremes,
    _tail_offsets,
    _weighted_quantile,
)
from driftwatch.profile.inputs import (  # noqa: F401
    _as_columns,
    _as_series,
    _check_columns,
    _finite,
    _numeric_values,
)
from driftwatch.profile.parquet import (  # noqa: F401
    _parquet_file,
    iter_columns,
    profile_parquet,
    read_columns,
)
from driftwatch.profile.reference import (  # noqa: F401
    EXACT_VALUES,
    FEW_VALUES,
    GRID_POINTS,
    SCHEMA,
    VERSION,
    FeatureReference,
    NumericReference,
    ReferenceProfile,
    _floats,
    _numeric_reference,
    _reference_feature,
    build_profile,
)
from driftwatch.profile.sketches import (  # noqa: F401
    HLL_BITS,
    CategoricalBatch,
    CategoricalReference,
    CategoryCounts,
    _category_counts,
    _hll_estimate,
    _hll_registers,
)

__all__ = [
    "BATCH_SCHEMA",
    "ENGINE",
    "EXACT_VALUES",
    "EXTRAS_CAP",
    "FEW_VALUES",
    "FIXED_BITS",
    "GRID_POINTS",
    "HLL_BITS",
    "PARALLEL_ROWS",
    "SCHEMA",
    "TAIL_VALUES",
    "VERSION",
    "BatchProfile",
    "CategoricalBatch",
    "CategoricalReference",
    "CategoryCounts",
    "FeatureBatch",
    "FeatureReference",
    "NumericBatch",
    "NumericReference",
    "ReferenceProfile",
    "build_profile",
    "decide",
    "extreme_features",
    "fast_drift",
    "iter_columns",
    "merge",
    "profile_batch",
    "profile_parquet",
    "read_columns",
]
