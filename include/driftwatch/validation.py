"""Batch validation with Great Expectations 1.x, driven by the model config and the reference data.

Critical expectations guard the contract with the model (columns present, dtypes, hard bounds,
closed category sets, ids); a critical failure stops the run. Warning expectations compare the
batch with the reference (null rates, ranges, categories) and are only reported.

Great Expectations is imported inside the functions that need it: importing it takes seconds
and this module is also imported where only the result types are used. The HTML report is
drawn by driftwatch.reports.validation, and the suite is built by driftwatch.expectations.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from driftwatch.expectations import (  # noqa: F401 (re-exported: the suite is part of validation's interface)
    NUMERIC_TYPE_LIST,
    ExpectationConfigError,
    ExpectationSpec,
    SeverityName,
    build_expectations,
    reference_facts,
)

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig
    from driftwatch.profile import ReferenceProfile

# SUMMARY keeps GX from materialising full unexpected lists: reports must never carry bulk rows.
RESULT_FORMAT: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
MAX_PARTIAL_VALUES = 5
MAX_VALUE_CHARS = 80

_NUMERIC_INFERRED = {"integer", "floating", "mixed-integer-float", "empty"}
_INDEX_KEY = "driftwatch_index"  # GX returns results in its own order; this maps them back
_COLUMN_KEYS = ("column", "column_A", "column_B")
_COLUMN_LIST_KEYS = ("column_list", "column_set")


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, reduced to a small JSON-able summary."""

    expectation: str
    column: str | None
    severity: str
    success: bool
    description: str
    observed: dict[str, Any]
    failure: str = ""
    skipped: str | None = None  # why it was not evaluated; skipped outcomes are never failures

    @property
    def failed(self) -> bool:
        return not self.success and self.skipped is None

    def failure_text(self) -> str:
        """One phrase for reports, e.g. "age out of range [18, 100] (3 rows)"."""
        text = self.failure or f"failed: {self.description}"
        observed = self.observed
        if observed.get("unexpected_count"):
            count = observed["unexpected_count"]
            return f"{text} ({count} row{'s' if count != 1 else ''})"
        if observed.get("exception"):
            return f"{text} (error: {observed['exception']})"
        if observed.get("observed_value") is not None:
            return f"{text} (observed {observed['observed_value']})"
        return text


@dataclass(frozen=True)
class ValidationResult:
    """All outcomes of one batch; `passed` is False as soon as one critical expectation failed."""

    passed: bool
    row_count: int
    outcomes: list[ExpectationOutcome]
    gx_version: str = ""
    duration_seconds: float = 0.0

    @property
    def critical_failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.failed and o.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.failed and o.severity == "warning"]

    @property
    def skipped(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.skipped is not None]

    def failure_reason(self) -> str:
        """One line naming the failed critical expectations; empty when the batch passed."""
        return "; ".join(o.failure_text() for o in self.critical_failures)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, e.g. for XCom or the run's report folder."""
        return {
            "passed": self.passed,
            "row_count": self.row_count,
            "gx_version": self.gx_version,
            "duration_seconds": round(self.duration_seconds, 3),
            "failure_reason": self.failure_reason(),
            "counts": {
                "expectations": len(self.outcomes),
                "evaluated": len(self.outcomes) - len(self.skipped),
                "succeeded": sum(o.success for o in self.outcomes),
                "critical_failures": len(self.critical_failures),
                "warnings": len(self.warnings),
                "skipped": len(self.skipped),
            },
            "outcomes": [asdict(o) for o in self.outcomes],
        }


# ---------------------------------------------------------------------------- building the suite


def _as_labels(series: pd.Series) -> pd.Series:
    """Categories as the labels drift.py compares (1, 1.0 and "1" alike), in a categorical.

    GX's null and set checks on a categorical run on its integer codes, several times faster
    than on a million strings; nulls stay null.
    """
    from driftwatch.drift import category_text

    try:
        if isinstance(series.dtype, pd.CategoricalDtype):
            codes, uniques = np.asarray(series.cat.codes, dtype=np.int64), list(series.cat.categories)
        else:
            codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists, dicts): compare their text
        return _as_labels(series.astype(str).where(series.notna()))
    labels = [category_text(value) for value in uniques]
    distinct = list(dict.fromkeys(label for label in labels if isinstance(label, str)))
    position = {label: i for i, label in enumerate(distinct)}
    # Code -1 (null) indexes the appended -1, so nulls stay null.
    remap = np.array([position.get(label, -1) for label in labels] + [-1], dtype=np.int64)
    categorical = pd.Categorical.from_codes(remap[codes], categories=distinct)
    return pd.Series(categorical, index=series.index, name=series.name)


def unreadable_result(reason: str, detail: str = "") -> ValidationResult:
    """A failed result for a batch that could not even be read, so it is reported like any other."""
    outcome = ExpectationOutcome(
        expectation="BatchIsReadable",
        column=None,
        severity="critical",
        success=False,
        description="the batch can be read as CSV or Parquet within the size limit",
        observed={"detail": detail[:300]} if detail else {},
        failure=reason,
    )
    return ValidationResult(passed=False, row_count=0, outcomes=[outcome])


# ---------------------------------------------------------------------------- running it


def _spec_columns(spec: ExpectationSpec) -> list[str]:
    cols = [spec.kwargs[k] for k in _COLUMN_KEYS if isinstance(spec.kwargs.get(k), str)]
    for key in _COLUMN_LIST_KEYS:
        if isinstance(spec.kwargs.get(key), (list, tuple)):
            cols.extend(c for c in spec.kwargs[key] if isinstance(c, str))
    return cols


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _prepare_frame(df: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """A view of the batch in the types the pipeline uses; the caller's frame is never modified.

    Numeric features held as pandas nullable dtypes or as Python numbers in an object column
    become float64; categorical features become categoricals of normalised labels. Text in a
    numeric column is left as is so that the dtype expectation reports it.
    """
    out = df.copy(deep=False)
    for feat in cfg.dataset.features:
        if feat.name not in out.columns:
            continue
        series = out[feat.name]
        if feat.type == "categorical":
            out[feat.name] = _as_labels(series)
        elif pd.api.types.is_extension_array_dtype(series.dtype) and _is_numeric(series):
            out[feat.name] = series.to_numpy(dtype="float64", na_value=math.nan)
        elif series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in _NUMERIC_INFERRED:
            out[feat.name] = pd.to_numeric(series, errors="coerce").astype("float64")
    return out


def _missing_columns(spec: ExpectationSpec, present: set[str]) -> str | None:
    """Why an expectation cannot run at all: a column it reads is absent (GX would only raise)."""
    if spec.expectation in _NAMES_ONLY:
        return None
    missing = [c for c in _spec_columns(spec) if c not in present]
    return f"column {', '.join(missing)} is missing" if missing else None


def _skip_reason(spec: ExpectationSpec, df: pd.DataFrame) -> str | None:
    """Why an expectation should not run on this group's frame; GX would only raise confusing errors."""
    if spec.requires_numeric and not _is_numeric(df[spec.kwargs["column"]]):
        return f"column {spec.kwargs['column']} is not numeric"
    return None


def _expectation_class(gx: Any, spec: ExpectationSpec) -> type:
    from great_expectations.expectations.expectation import Expectation

    cls = getattr(gx.expectations, spec.expectation, None)
    if isinstance(cls, type) and issubclass(cls, Expectation):
        return cls
    known = [n for n in dir(gx.expectations) if n.startswith("Expect")]
    close = difflib.get_close_matches(spec.expectation, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ExpectationConfigError(
        f"{spec.description}: unknown Great Expectations expectation {spec.expectation!r}{hint}"
    )


def _to_gx(gx: Any, spec: ExpectationSpec, index: int) -> Any:
    cls = _expectation_class(gx, spec)
    kwargs = dict(spec.kwargs)
    meta = {**(kwargs.pop("meta", None) or {}), _INDEX_KEY: index}
    kwargs.pop("result_format", None)  # a rule must not ask for full unexpected lists
    try:
        return cls(**kwargs, meta=meta, severity=spec.severity)
    except Exception as err:  # GX raises pydantic (v1) errors; their text names the bad argument
        message = " ".join(str(err).split())
        raise ExpectationConfigError(f"{spec.description}: invalid arguments: {message}") from err


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _jsonable(value: Any) -> Any:
    """Plain JSON scalars; numpy scalars unwrapped, NaN as None, anything else as short text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _short(value)


def _exception_message(info: Any) -> str | None:
    """GX 1.24 nests exceptions per metric when a metric fails, flat otherwise."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception") or entry.get("exception_message"):
            return _short(entry.get("exception_message") or "unknown error")
    return None


def _observed(result: dict[str, Any], exception_info: Any) -> dict[str, Any]:
    observed: dict[str, Any] = {}
    for key in ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "missing_count"):
        if result.get(key) is not None:
            observed[key] = _jsonable(result[key])
    partial = result.get("partial_unexpected_list")
    if partial:
        observed["partial_unexpected"] = [_short(v) for v in partial[:MAX_PARTIAL_VALUES]]
    message = _exception_message(exception_info)
    if message:
        observed["exception"] = message
    return observed


def _outcome(
    spec: ExpectationSpec, success: bool, observed: dict[str, Any], skipped: str | None = None
) -> ExpectationOutcome:
    return ExpectationOutcome(
        expectation=spec.expectation,
        column=spec.kwargs.get("column") if isinstance(spec.kwargs.get("column"), str) else None,
        severity=spec.severity,
        success=success,
        description=spec.description,
        observed=observed,
        failure=spec.failure,
        skipped=skipped,
    )


def _quiet_gx() -> Any:
    """Import GX with analytics off and its logging kept to warnings unless configured otherwise."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


# Table-level expectations that read only the column names, or only the row count: they run on
# a frame that holds just that, so no table-level check ever needs the whole batch in memory.
_NAMES_ONLY = frozenset(
    {
        "ExpectColumnToExist",
        "ExpectTableColumnsToMatchSet",
        "ExpectTableColumnsToMatchOrderedList",
        "ExpectTableColumnCountToEqual",
        "ExpectTableColumnCountToBeBetween",
    }
)
_ROWS_ONLY = frozenset({"ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual"})

GroupKey = tuple[str, tuple[str, ...]]


class ColumnSource(Protocol):
    """A batch that hands out a few of its columns at a time (ingest.ParquetColumns is one)."""

    @property
    def columns(self) -> list[str]: ...

    @property
    def rows(self) -> int: ...

    def read(self, columns: Sequence[str]) -> pd.DataFrame: ...


@dataclass(frozen=True)
class _FrameSource:
    """A DataFrame as a ColumnSource: each read is a frame over the same arrays, never a copy."""

    frame: pd.DataFrame

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def rows(self) -> int:
        return len(self.frame)

    def read(self, columns: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame({c: self.frame[c] for c in columns}, copy=False)


def _group_key(spec: ExpectationSpec) -> GroupKey:
    """Which frame an expectation runs on: its own columns, the names, the row count or everything."""
    if spec.expectation in _NAMES_ONLY:
        return ("names", ())
    if spec.expectation in _ROWS_ONLY:
        return ("rows", ())
    columns = tuple(dict.fromkeys(_spec_columns(spec)))
    return ("columns", columns) if columns else ("table", ())


def _group_frame(source: ColumnSource, key: GroupKey, cfg: ModelConfig) -> pd.DataFrame:
    kind, columns = key
    if kind == "names":
        return pd.DataFrame(columns=source.columns)
    if kind == "rows":
        return pd.DataFrame(index=pd.RangeIndex(source.rows))
    wanted = source.columns if kind == "table" else [c for c in columns if c in set(source.columns)]
    return _prepare_frame(source.read(wanted), cfg)


def _run_gx(
    gx: Any, source: ColumnSource, cfg: ModelConfig, specs: dict[int, ExpectationSpec]
) -> tuple[dict[int, Any], dict[int, str]]:
    """Validate group by group in one ephemeral context; returns GX results and skip reasons by index.

    Each column's expectations run on a frame of that column alone, read from the source just
    before: GX's pandas engine filters the whole domain frame for every map metric, so on the full
    batch each of ~100 metrics would copy every column, and a source that is not in memory never
    has to be loaded whole.
    """
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX hashes every value of a batch under 1 GB into a fingerprint that nothing here reads:
    # a second full pass over the data per group. A zero threshold skips it.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # tqdm would spam task logs
    asset = context.data_sources.add_pandas("driftwatch").add_dataframe_asset("batch")
    definition = asset.add_batch_definition_whole_dataframe("whole")
    groups: dict[GroupKey, list[int]] = {}
    for index, spec in specs.items():
        groups.setdefault(_group_key(spec), []).append(index)
    results: dict[int, Any] = {}
    skips: dict[int, str] = {}
    for key, indices in groups.items():
        frame = _group_frame(source, key, cfg)
        for index in indices:
            reason = _skip_reason(specs[index], frame) if key[0] == "columns" else None
            if reason is not None:
                skips[index] = reason
        expectations = [_to_gx(gx, specs[i], i) for i in indices if i not in skips]
        if not expectations:
            continue
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        # The constructor, unlike add_expectation, neither drops look-alike expectations (a user
        # rule may repeat a built-in one) nor compares every pair, which is quadratic.
        suite = gx.ExpectationSuite(name=f"{cfg.name}_batch", expectations=expectations)
        outcome = batch.validate(suite, result_format=RESULT_FORMAT)
        results.update({r.expectation_config.meta[_INDEX_KEY]: r for r in outcome.results})
        _release_batch(batch)
        del batch, frame
    return results, skips


def _release_batch(batch: Any) -> None:
    """Let a validated group's frame and metrics go: no later group reads them.

    The engine caches every metric it computed (row masks included) and every batch it loaded
    for its lifetime; across ~20 groups they would add up to the batch's size again.
    """
    engine = getattr(batch.data, "execution_engine", None)
    cache = getattr(engine, "_metric_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    manager = getattr(engine, "batch_manager", None)
    if manager is not None:
        manager.batch_data_cache.clear()
        manager.reset_batch_cache()


def _forget_context() -> None:
    """Drop GX's module-level reference to the last context, which keeps its batches alive."""
    from great_expectations.data_context.data_context.context_factory import project_manager

    project_manager.set_project(None)


def validate_frame(
    df: pd.DataFrame | ColumnSource, cfg: ModelConfig, reference: pd.DataFrame | ReferenceProfile
) -> ValidationResult:
    """Validate one batch against the model's config and its reference (data or stored profile).

    The batch is a DataFrame, or a ColumnSource read one column group at a time.
    """
    import time

    started = time.perf_counter()
    gx = _quiet_gx()
    source = _FrameSource(df) if isinstance(df, pd.DataFrame) else df
    specs = build_expectations(cfg, reference)
    # Build every GX object first so a bad extra rule fails before any work is done.
    for i, spec in enumerate(specs):
        _to_gx(gx, spec, i)
    present = set(source.columns)
    skips = {i: _missing_columns(spec, present) for i, spec in enumerate(specs)}
    runnable = {i: spec for i, spec in enumerate(specs) if skips[i] is None}
    try:
        results, later = _run_gx(gx, source, cfg, runnable) if runnable else ({}, {})
    finally:
        _forget_context()
    skips.update(later)

    outcomes = []
    for i, spec in enumerate(specs):
        if skips.get(i) is not None:
            outcomes.append(_outcome(spec, False, {}, skipped=skips[i]))
            continue
        res = results.get(i)
        if res is None:  # GX dropped it; never report that as a pass
            outcomes.append(_outcome(spec, False, {"exception": "Great Expectations returned no result"}))
            continue
        outcomes.append(_outcome(spec, bool(res.success), _observed(dict(res.result or {}), res.exception_info)))
    passed = not any(o.failed and o.severity == "critical" for o in outcomes)
    return ValidationResult(
        passed=passed,
        row_count=source.rows,
        outcomes=outcomes,
        gx_version=gx.__version__,
        duration_seconds=time.perf_counter() - started,
    )
