"""Feature drift between the reference data and a new batch, computed with Evidently 0.7.

The monitor decides drift with the profile engine (profile.py, drift_check.py) on every row and
uses this module for the report people read, on a sample; the tests and the benchmark use it
on full data as the reference implementation the fast decisions must agree with.

Only the features named in the model config are compared. Every other column (id, timestamp,
target, PII, anything unexpected) is dropped before Evidently sees the data, so it can never
reach the HTML or JSON report. Evidently is imported inside `run_drift_report` because the import
takes seconds and this module is also imported where only the result types are needed.

Each feature is tested with the method and threshold from `ModelConfig.drift_rule`. Evidently
decides per feature (distance methods drift when score >= threshold, the p-value tests `ks` and
`chisquare` drift when p < threshold); that decision is read back from the report's per-column
test results, never recomputed here. The dataset decision is ours:
drifted_share = drifted features / all features, and dataset_drift = drifted_share >= threshold.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from driftwatch.config import ModelConfig
from driftwatch.dtypes import text_value

log = logging.getLogger(__name__)

# Config method name -> Evidently stattest name (the `name` of the StatTest objects registered in
# evidently.legacy.calculations.stattests). They coincide today; the mapping keeps them decoupled.
EVIDENTLY_METHODS: dict[str, str] = {
    "wasserstein": "wasserstein",  # Wasserstein distance normed by the reference std
    "ks": "ks",  # Kolmogorov-Smirnov, p-value
    "psi": "psi",  # population stability index
    "jensenshannon": "jensenshannon",  # Jensen-Shannon distance
    "chisquare": "chisquare",  # chi-square, p-value
    "kl_div": "kl_div",  # Kullback-Leibler divergence
    "hellinger": "hellinger",  # Hellinger distance
}
# Methods whose score is a p-value: drift when score < threshold. All others are distances.
P_VALUE_METHODS = frozenset({"ks", "chisquare"})

_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"
_DRIFTED_STATUSES = {"FAIL", "WARNING"}
_CLEAN_STATUSES = {"SUCCESS"}


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature: Evidently's score and decision under the configured method/threshold."""

    name: str
    kind: Literal["numeric", "categorical"]
    method: str
    threshold: float
    score: float
    drifted: bool
    # Share of the batch's non-null values outside the reference's [min, max] (numeric) or in
    # categories the reference never held; None where not measured (the Evidently report path).
    outside_range_share: float | None = None

    @property
    def score_kind(self) -> Literal["p_value", "distance"]:
        """`p_value` (drift when score < threshold) or `distance` (drift when score >= threshold)."""
        return "p_value" if self.method in P_VALUE_METHODS else "distance"

    @property
    def exceedance(self) -> float:
        """How many times past the threshold the score is (>= 1 when drifted; inf for p = 0)."""
        if self.score_kind == "distance":
            return self.score / self.threshold
        return self.threshold / self.score if self.score > 0 else math.inf

    @property
    def score_ratio(self) -> float | None:
        """score / threshold for distances (how far past drift); None for p-values.

        A p-value shrinks with the batch size as much as with the change, so threshold / p would
        call any large batch extreme: no ratio is given for them.
        """
        return self.score / self.threshold if self.score_kind == "distance" else None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form; a non-finite number becomes None, numpy numbers plain ones."""
        plain = {
            "threshold": float(self.threshold),
            "score": _json_float(self.score),
            "drifted": bool(self.drifted),
            "outside_range_share": _json_float(self.outside_range_share),
            "score_ratio": _json_float(self.score_ratio),
        }
        return {**asdict(self), "score_kind": self.score_kind, **plain}


@dataclass(frozen=True)
class DriftResult:
    """Drift decision for one batch against the reference data."""

    features: list[FeatureDrift]
    drifted_share: float
    share_threshold: float
    dataset_drift: bool
    reference_rows: int
    current_rows: int
    evidently_version: str

    @property
    def drifted_features(self) -> list[FeatureDrift]:
        """Drifted features, furthest past their threshold first."""
        drifted = [f for f in self.features if f.drifted]
        return sorted(drifted, key=lambda f: (-f.exceedance, f.name))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (builtin types only, no NaN/inf)."""
        return {
            "dataset_drift": bool(self.dataset_drift),
            "drifted_share": float(self.drifted_share),
            "share_threshold": float(self.share_threshold),
            "drifted_count": len(self.drifted_features),
            "feature_count": len(self.features),
            "drifted_features": [f.name for f in self.drifted_features],
            "reference_rows": int(self.reference_rows),
            "current_rows": int(self.current_rows),
            "evidently_version": str(self.evidently_version),
            "features": [f.to_dict() for f in self.features],
        }


def run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: ModelConfig,
    *,
    threshold_override: float | None = None,
    decided: DriftResult | None = None,
) -> tuple[DriftResult, str, dict[str, Any]]:
    """Compare the configured features of `current` with `reference` using Evidently.

    Returns (decision, report_html, report_json): the HTML is a self-contained page (Evidently's
    JS bundle and icon font are inlined) and the JSON is the snapshot's metrics and tests.
    With `decided` (a decision already computed on more rows than these frames hold), each
    feature's score and verdict in the report are that decision's, and Evidently draws the
    distributions of the frames given: the page then shows the decision the pipeline acted on.
    Raises ValueError when a feature is absent or has no values in either frame, or when a
    numeric feature holds non-numeric values.
    """
    share_threshold = cfg.drift.dataset_drift_share if threshold_override is None else float(threshold_override)
    if not 0.0 < share_threshold <= 1.0:
        raise ValueError(f"threshold_override must be in (0, 1], got {threshold_override!r}")

    features = cfg.dataset.feature_names  # config order, which is also the order of the results
    ref = _prepare(reference, cfg, "reference")
    cur = _prepare(current, cfg, "current")
    rules = {name: cfg.drift_rule(name) for name in features}
    for name, (method, _) in rules.items():
        if method not in EVIDENTLY_METHODS:
            raise ValueError(f"feature {name!r}: drift method {method!r} is not supported")

    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    # Every column list is given, so Evidently infers nothing; id/timestamp/target/PII were dropped.
    definition = DataDefinition(
        numerical_columns=cfg.dataset.numeric_features,
        categorical_columns=cfg.dataset.categorical_features,
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    preset = DataDriftPreset(
        columns=features,
        drift_share=share_threshold,
        per_column_method=(
            {name: EVIDENTLY_METHODS[method] for name, (method, _) in rules.items()}
            if decided is None
            else _decided_stattests(decided)
        ),
        per_column_threshold={name: float(threshold) for name, (_, threshold) in rules.items()},
    )
    # include_tests=True makes every ValueDrift carry a test whose status is Evidently's decision.
    report = Report([preset], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    report_json: dict[str, Any] = json.loads(snapshot.json())
    report_html = snapshot.get_html_str(as_iframe=False)

    results = _feature_results(report_json, cfg, features)
    drifted = sum(1 for f in results if f.drifted)
    drifted_share = drifted / len(results)
    _check_against_evidently_count(report_json, drifted)
    decision = DriftResult(
        features=results,
        drifted_share=drifted_share,
        share_threshold=share_threshold,
        dataset_drift=drifted_share >= share_threshold,
        reference_rows=len(ref),
        current_rows=len(cur),
        evidently_version=str(evidently.__version__),
    )
    return decision, report_html, report_json


def _decided_stattests(decided: DriftResult) -> dict[str, str]:
    """Register, per feature, an Evidently stat test that returns `decided`'s score and verdict.

    Evidently then renders its drift table and per-feature widgets as usual, but the numbers in
    them are the full-data ones; the display name says so. Names are numbered by feature position,
    so each report replaces the previous report's tests in Evidently's registry.
    """
    from evidently.legacy.calculations.stattests import registry
    from evidently.legacy.core import ColumnType

    names: dict[str, str] = {}
    for number, feature in enumerate(decided.features):
        kind = ColumnType.Numerical if feature.kind == "numeric" else ColumnType.Categorical
        method = registry.get_registered_stattest(EVIDENTLY_METHODS[feature.method], kind)
        test = registry.StatTest(
            name=f"driftwatch_decided_{number}",
            display_name=f"{method.display_name}, on all {decided.current_rows:,} rows",
            allowed_feature_types=[kind],
            default_threshold=feature.threshold,
        )
        registry.register_stattest(test, default_impl=_fixed_verdict(feature.score, feature.drifted))
        names[feature.name] = test.name
    return names


def _fixed_verdict(score: float, drifted: bool) -> Any:
    def verdict(reference: Any, current: Any, feature_type: Any, threshold: float) -> tuple[float, bool]:
        return score, drifted

    return verdict


def _prepare(frame: pd.DataFrame, cfg: ModelConfig, which: str) -> pd.DataFrame:
    """Keep only the configured features, with clean dtypes: float64 numerics, string categories."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{which} data must be a pandas DataFrame, got {type(frame).__name__}")
    features = cfg.dataset.feature_names
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ValueError(f"{which} data is missing feature column(s): {', '.join(missing)}")
    duplicated = sorted({name for name in frame.columns[frame.columns.duplicated()] if name in features})
    if duplicated:
        raise ValueError(f"{which} data has duplicate feature column(s): {', '.join(map(str, duplicated))}")

    columns: dict[str, pd.Series] = {}
    for name in cfg.dataset.numeric_features:
        try:
            values = pd.to_numeric(frame[name], errors="raise")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{which} data: numeric feature {name!r} holds non-numeric values ({err})") from None
        values = values.astype("float64").replace([np.inf, -np.inf], np.nan)
        columns[name] = pd.Series(values.to_numpy(), dtype="float64")
    for name in cfg.dataset.categorical_features:
        columns[name] = pd.Series([category_text(v) for v in frame[name]], dtype="object")
    prepared = pd.DataFrame(columns, columns=features, index=pd.RangeIndex(len(frame)))

    empty = [name for name in features if not prepared[name].notna().any()]
    if empty:
        raise ValueError(
            f"{which} data has no values for feature(s): {', '.join(empty)} "
            f"(column entirely missing in {len(frame)} rows)"
        )
    return prepared


def category_text(value: Any) -> Any:
    """A category label as dtypes.text_value gives it (1, 1.0 and '1' compare equal); NaN stays NaN."""
    text = text_value(value)
    return np.nan if text is None else text


def _feature_results(report_json: dict[str, Any], cfg: ModelConfig, features: list[str]) -> list[FeatureDrift]:
    """Read per-feature score (ValueDrift metric value) and decision (its test status) from the snapshot."""
    metrics = {
        m["config"]["column"]: m
        for m in report_json.get("metrics", [])
        if m.get("config", {}).get("type") == _VALUE_DRIFT_TYPE
    }
    statuses = {
        t["metric_config"]["metric_id"]: t["status"] for t in report_json.get("tests", []) if t.get("id") == "drift"
    }
    results: list[FeatureDrift] = []
    for name in features:
        metric = metrics.get(name)
        if metric is None:
            raise RuntimeError(f"Evidently report has no ValueDrift result for feature {name!r}")
        status = statuses.get(metric["id"])
        if status in _DRIFTED_STATUSES:
            drifted = True
        elif status in _CLEAN_STATUSES:
            drifted = False
        else:
            raise RuntimeError(f"Evidently drift test for feature {name!r} has status {status!r}")
        method, threshold = cfg.drift_rule(name)
        results.append(
            FeatureDrift(
                name=name,
                kind=cfg.dataset.feature(name).type,
                method=method,
                threshold=float(threshold),
                score=float(metric["value"]),
                drifted=drifted,
            )
        )
    return results


def _check_against_evidently_count(report_json: dict[str, Any], drifted: int) -> None:
    """Log if Evidently's DriftedColumnsCount disagrees with the per-column tests (it never should)."""
    for metric in report_json.get("metrics", []):
        if metric.get("config", {}).get("type") == "evidently:metric_v2:DriftedColumnsCount":
            count = metric.get("value", {}).get("count")
            if count is not None and int(count) != drifted:
                log.warning("Evidently counts %s drifted columns, per-column tests say %s", count, drifted)


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
