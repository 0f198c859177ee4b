"""The expectation suite of one model, built from its config and its reference, without importing GX.

Critical expectations guard the contract with the model (columns present, dtypes, hard bounds,
closed category sets, ids). Warnings compare the batch with the reference (null rates, ranges,
categories) and with what a hostile batch looks like. `validation` runs the suite with GX.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig
    from driftwatch.profile import ReferenceProfile

SeverityName = Literal["critical", "warning"]


# Numpy dtypes only: _prepare_frame converts pandas nullable numerics to float64 first, because
# GX 1.24 reports an Int64 column as "int64" yet fails it even when "Int64" is in the list.
# "int"/"float" let Python numbers inside an object column pass GX's per-value check.
NUMERIC_TYPE_LIST = [
    *(f"int{bits}" for bits in (8, 16, 32, 64)),
    *(f"uint{bits}" for bits in (8, 16, 32, 64)),
    *(f"float{bits}" for bits in (16, 32, 64)),
    "int",
    "float",
]


class ExpectationConfigError(ValueError):
    """An expectation cannot be built, e.g. an extra rule names an unknown GX class."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation to run, independent of GX so it can be built and inspected cheaply."""

    expectation: str  # GX class name, e.g. "ExpectColumnValuesToBeBetween"
    kwargs: dict[str, Any]
    severity: SeverityName
    description: str  # what is expected, e.g. "age between 18 and 100 (config)"
    failure: str = ""  # what went wrong if it fails, e.g. "age out of range [18, 100]"
    requires_numeric: bool = False  # skipped when its column is not numeric in the batch


def _critical(
    expectation: str, expected: str, failure: str, /, *, requires_numeric: bool = False, **kwargs: Any
) -> ExpectationSpec:
    """A contract check (a batch that fails it is quarantined); `kwargs` are the GX expectation's own."""
    return ExpectationSpec(expectation, kwargs, "critical", expected, failure, requires_numeric)


def _warning(
    expectation: str, expected: str, failure: str, /, *, requires_numeric: bool = False, **kwargs: Any
) -> ExpectationSpec:
    """A comparison with the reference (a batch that fails it is reported, not stopped)."""
    return ExpectationSpec(expectation, kwargs, "warning", expected, failure, requires_numeric)


def _fmt(value: float | None) -> str:
    """Numbers as people write them: 18 rather than 18.0."""
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _bounds_text(lo: float | None, hi: float | None) -> str:
    return f"[{_fmt(lo) if lo is not None else '-inf'}, {_fmt(hi) if hi is not None else 'inf'}]"


def _schema_specs(cfg: ModelConfig) -> list[ExpectationSpec]:
    schema, rules = cfg.dataset, cfg.validation
    specs = [
        _critical("ExpectColumnToExist", f"column {col} exists", f"missing column {col}", column=col)
        for col in [schema.id_column, *schema.feature_names]
    ]
    specs.append(
        _critical(
            "ExpectTableRowCountToBeBetween",
            f"row count in {_bounds_text(rules.min_rows, rules.max_rows)} (config)",
            f"row count outside {_bounds_text(rules.min_rows, rules.max_rows)}",
            min_value=rules.min_rows,
            max_value=rules.max_rows,
        )
    )
    specs.append(
        _critical(
            "ExpectColumnValuesToNotBeNull",
            f"id column {schema.id_column} has no nulls",
            f"null ids in {schema.id_column}",
            column=schema.id_column,
        )
    )
    if rules.unique_ids:
        specs.append(
            _critical(
                "ExpectColumnValuesToBeUnique",
                f"id column {schema.id_column} is unique",
                f"duplicate ids in {schema.id_column}",
                column=schema.id_column,
            )
        )
    return specs


def _feature_specs(cfg: ModelConfig) -> list[ExpectationSpec]:
    """Critical checks from the config: dtype, hard bounds, closed category sets."""
    specs: list[ExpectationSpec] = []
    for feat in cfg.dataset.features:
        col = feat.name
        if feat.type == "numeric":
            specs.append(
                _critical(
                    "ExpectColumnValuesToBeInTypeList",
                    f"{col} is numeric",
                    f"{col} is not numeric",
                    column=col,
                    type_list=NUMERIC_TYPE_LIST,
                )
            )
            if feat.min is not None or feat.max is not None:
                bounds = _bounds_text(feat.min, feat.max)
                specs.append(
                    _critical(
                        "ExpectColumnValuesToBeBetween",
                        f"{col} within {bounds} (config)",
                        f"{col} out of range {bounds}",
                        column=col,
                        min_value=feat.min,
                        max_value=feat.max,
                        requires_numeric=True,
                    )
                )
        elif feat.allowed_values is not None:
            specs.append(
                _critical(
                    "ExpectColumnValuesToBeInSet",
                    f"{col} in allowed values ({len(feat.allowed_values)}, config)",
                    f"{col} has values outside the allowed set",
                    column=col,
                    value_set=list(feat.allowed_values),
                )
            )
    return specs


def _null_specs(cfg: ModelConfig) -> list[ExpectationSpec]:
    specs: list[ExpectationSpec] = []
    for feat in cfg.dataset.features:
        limit = feat.max_null_fraction if feat.max_null_fraction is not None else cfg.validation.max_null_fraction
        if limit >= 1.0:  # any null rate is allowed: nothing to check
            continue
        specs.append(
            _warning(
                "ExpectColumnValuesToNotBeNull",
                f"{feat.name} null fraction <= {limit:g}",
                f"{feat.name} null fraction above {limit:g}",
                column=feat.name,
                mostly=round(1.0 - limit, 10),
            )
        )
    return specs


# What validation needs to know of the reference, per feature: the numeric (min, max) or the
# sorted category labels. A feature the reference holds no values for is absent.
ReferenceFacts = dict[str, "tuple[float, float] | list[str]"]


def reference_facts(cfg: ModelConfig, reference: pd.DataFrame | ReferenceProfile) -> ReferenceFacts:
    """Numeric ranges and category labels of the reference, from its data or its stored profile.

    The profile holds the same facts as the data it was built from, so the monitor validates a
    batch without reading the whole reference again. Labels are normalised as drift.py does.
    """
    from driftwatch.drift import category_text
    from driftwatch.profile import CategoricalReference, NumericReference, ReferenceProfile

    facts: ReferenceFacts = {}
    if isinstance(reference, ReferenceProfile):
        for name, feat in reference.features.items():
            if isinstance(feat, NumericReference):
                facts[name] = (feat.min, feat.max)
            elif isinstance(feat, CategoricalReference):
                facts[name] = sorted(feat.counts)
        return facts
    for feat in cfg.dataset.features:
        if feat.name not in reference.columns:
            continue  # the reference cannot tell us anything about this column
        column = reference[feat.name]
        if feat.type == "numeric":
            values = pd.to_numeric(column, errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
            if not values.empty:
                facts[feat.name] = (float(values.min()), float(values.max()))
        else:
            labels = {category_text(v) for v in column.dropna().unique()}
            if labels:
                facts[feat.name] = sorted(label for label in labels if isinstance(label, str))
    return facts


def _reference_specs(cfg: ModelConfig, facts: ReferenceFacts) -> list[ExpectationSpec]:
    """Warnings from the reference: widened numeric ranges and the categories seen there."""
    margin = cfg.validation.reference_range_margin
    unseen = cfg.validation.max_unseen_category_fraction
    specs: list[ExpectationSpec] = []
    for feat in cfg.dataset.features:
        col = feat.name
        known = facts.get(col)
        if known is None:
            continue
        if isinstance(known, tuple):
            ref_lo, ref_hi = known
            # A constant reference column has no span; widen by its magnitude instead.
            span = (ref_hi - ref_lo) or abs(ref_hi) or 1.0
            lo, hi = ref_lo - margin * span, ref_hi + margin * span
            specs.append(
                _warning(
                    "ExpectColumnValuesToBeBetween",
                    f"{col} within reference range {_bounds_text(ref_lo, ref_hi)} widened by {margin:g}x span",
                    f"{col} outside widened reference range {_bounds_text(lo, hi)}",
                    column=col,
                    min_value=lo,
                    max_value=hi,
                    requires_numeric=True,
                )
            )
        else:
            seen = list(known)
            specs.append(
                _warning(
                    "ExpectColumnValuesToBeInSet",
                    f"{col} categories seen in reference ({len(seen)}), unseen share <= {unseen:g}",
                    f"{col} has too many categories unseen in the reference",
                    column=col,
                    value_set=seen,
                    mostly=round(1.0 - unseen, 10),
                )
            )
    return specs


def _rule_specs(cfg: ModelConfig) -> list[ExpectationSpec]:
    specs: list[ExpectationSpec] = []
    for number, rule in enumerate(cfg.validation.rules):
        args = json.dumps(rule.kwargs, sort_keys=True, default=str)
        args = args if len(args) <= 120 else args[:117] + "..."
        label = f"validation.rules[{number}] {rule.expectation}"
        specs.append(
            ExpectationSpec(rule.expectation, dict(rule.kwargs), rule.severity, f"{label} {args}", f"{label} failed")
        )
    return specs


# Some unseen categories are normal; this many distinct values means the column exploded
# (ids or free text in a category), which also blows up one-hot encoding and drift tables.
_CATEGORY_EXPLOSION_FACTOR = 4
_FLOAT_MAX = float(np.finfo(np.float64).max)
_CATEGORY_EXPLOSION_SLACK = 50


def _hostile_specs(cfg: ModelConfig, facts: ReferenceFacts) -> list[ExpectationSpec]:
    """Critical checks against values no model should see: all-null columns, +-inf, exploded categories."""
    specs: list[ExpectationSpec] = []
    for feat in cfg.dataset.features:
        col = feat.name
        specs.append(
            _critical(
                "ExpectColumnValuesToNotBeNull",
                f"{col} is not entirely null",
                f"{col} is entirely null",
                column=col,
                # Any share of non-null values passes; only a column with none at all fails.
                mostly=1e-9,
            )
        )
        if feat.type == "numeric":
            specs.append(
                _critical(
                    "ExpectColumnValuesToBeBetween",
                    f"{col} values are finite",
                    f"{col} holds infinite values",
                    column=col,
                    # Finite bounds reject exactly +-inf; two comparisons per value cost a fraction
                    # of a set-membership test (a hash per value) on millions of floats.
                    min_value=-_FLOAT_MAX,
                    max_value=_FLOAT_MAX,
                    requires_numeric=True,
                )
            )
        elif isinstance(facts.get(col), list):
            seen = len(facts[col])
            cap = max(_CATEGORY_EXPLOSION_FACTOR * seen, seen + _CATEGORY_EXPLOSION_SLACK)
            specs.append(
                _critical(
                    "ExpectColumnUniqueValueCountToBeBetween",
                    f"{col} has at most {cap} distinct values (reference: {seen})",
                    f"{col} category explosion: more than {cap} distinct values (reference: {seen})",
                    column=col,
                    min_value=None,
                    max_value=cap,
                )
            )
    return specs


def build_expectations(cfg: ModelConfig, reference: pd.DataFrame | ReferenceProfile) -> list[ExpectationSpec]:
    """The suite for one model: config-driven critical checks, reference-driven warnings, extra rules."""
    facts = reference_facts(cfg, reference)
    return [
        *_schema_specs(cfg),
        *_feature_specs(cfg),
        *_null_specs(cfg),
        *_reference_specs(cfg, facts),
        *_hostile_specs(cfg, facts),
        *_rule_specs(cfg),
    ]
