"""Drafting a model config from a reference file: every inferred choice written down with its reason.

`draft_config` looks at the reference the way a careful engineer would on day one: which
column is the target and what kind, which columns are features and of what type, which look
like PII, which carry nothing a model can use, and what the data says about bounds and
category sets. It returns YAML text with a comment on each choice, which loads with no edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import yaml

from driftwatch.config import parse_config
from driftwatch.dtypes import class_labels, text_values

# Integer columns with at most this many distinct values are codes (a region id, a rating), not amounts.
MAX_CODE_VALUES = 20
# Closed category sets are proposed only for this few values: more than that and a new one is likely legitimate.
MAX_CLOSED_VALUES = 10
# A text column where most rows hold a value of their own is free text or an identifier, not a category.
MAX_UNIQUE_SHARE = 0.5
PII_NAME = re.compile(r"(^|_)(e?mail|name|first_?name|last_?name|surname|phone|mobile|ssn|address|street|iban)($|_)")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
PHONE = re.compile(r"^\+?[\d\s().-]{8,}$")
TIMESTAMP_NAME = re.compile(r"(date|time|timestamp|_at|_on|^dt)$", re.IGNORECASE)


@dataclass
class Column:
    """What was decided about one reference column, and why."""

    name: str
    role: str  # feature, pii, ignored, timestamp
    why: str
    spec: dict[str, Any] = field(default_factory=dict)


def _looks_like(series: pd.Series, pattern: re.Pattern[str]) -> bool:
    sample = series.dropna().astype(str).head(200)
    return len(sample) > 0 and sample.map(lambda v: bool(pattern.match(v.strip()))).mean() > 0.8


def _is_timestamp(name: str, series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if not TIMESTAMP_NAME.search(name) or pd.api.types.is_numeric_dtype(series):
        return False
    parsed = pd.to_datetime(series.dropna().head(200), errors="coerce", utc=True, format="mixed")
    return len(parsed) > 0 and parsed.notna().mean() > 0.9


def _pii_reason(name: str, series: pd.Series) -> str | None:
    if PII_NAME.search(name.lower()):
        return f"its name looks like personal data ({name})"
    if series.dtype == object and _looks_like(series, EMAIL):
        return "its values look like email addresses"
    if series.dtype == object and not pd.api.types.is_numeric_dtype(series) and _looks_like(series, PHONE):
        return "its values look like phone numbers"
    return None


def _numeric_spec(name: str, series: pd.Series) -> tuple[dict[str, Any], str]:
    values = pd.to_numeric(series, errors="coerce")
    spec: dict[str, Any] = {"name": name, "type": "numeric"}
    why = f"numeric ({series.dtype}, {values.nunique()} distinct values)"
    low, high = values.min(), values.max()
    if low >= 0 and high <= 1 and values.nunique() > 2:
        spec.update(min=0, max=1)
        why += "; every value lies in [0, 1], so it looks like a share: bounds [0, 1] are critical"
    elif low >= 0:
        spec["min"] = 0
        why += "; never negative in the reference: a negative value is critical"
    nulls = float(values.isna().mean())
    if nulls > 0.2:
        spec["max_null_fraction"] = round(min(1.0, nulls * 1.5 + 0.05), 2)
        why += f"; {nulls:.0%} missing in the reference, so the null limit is raised to {spec['max_null_fraction']}"
    return spec, why


def _categorical_spec(name: str, series: pd.Series, why: str) -> tuple[dict[str, Any], str]:
    labels = text_values(series).dropna()
    spec: dict[str, Any] = {"name": name, "type": "categorical"}
    distinct = sorted(labels.unique())
    counts = labels.value_counts()
    if len(distinct) <= MAX_CLOSED_VALUES and counts.min() >= 5:
        spec["allowed_values"] = distinct
        why += f"; {len(distinct)} values, each seen at least 5 times: a closed set (delete it to allow new values)"
    else:
        why += f"; {len(distinct)} values: an unseen one is a warning, not critical"
    if len(distinct) > 50:
        spec["drift_method"] = "psi"
        why += "; many categories, so PSI (robust to a long tail) decides its drift"
    return spec, why


def infer_column(name: str, series: pd.Series) -> Column:
    """Decide one non-target, non-id column: a feature (and its type), PII, a timestamp, or ignored."""
    pii = _pii_reason(name, series)
    if pii:
        return Column(name, "pii", f"{pii}: dropped at ingest, never reported")
    if _is_timestamp(name, series):
        return Column(name, "timestamp", "holds dates: batches are ordered by it")
    present = series.dropna()
    if present.empty:
        return Column(name, "ignored", "empty in the reference: nothing to learn or monitor")
    if pd.api.types.is_bool_dtype(series) or set(text_values(present).unique()) <= {"True", "False"}:
        return Column(name, "feature", "boolean, monitored as a category", {"name": name, "type": "categorical"})
    if pd.api.types.is_numeric_dtype(series):
        integral = bool((present == present.round()).all())
        if integral and present.nunique() <= MAX_CODE_VALUES:
            reason = f"integer codes with {present.nunique()} values, so a category, not an amount"
            spec, why = _categorical_spec(name, series, reason)
            return Column(name, "feature", why, spec)
        spec, why = _numeric_spec(name, series)
        return Column(name, "feature", why, spec)
    unique_share = present.nunique() / len(present)
    if unique_share > MAX_UNIQUE_SHARE and present.nunique() > 50:
        return Column(name, "ignored", f"text with {unique_share:.0%} distinct values: free text or an identifier")
    spec, why = _categorical_spec(name, series, "text, so a category")
    return Column(name, "feature", why, spec)


def infer_target(series: pd.Series, name: str) -> tuple[dict[str, Any], str, str]:
    """The target's task and positive class; returns (target spec, estimator, why)."""
    present = series.dropna()
    labels = class_labels(present)
    classes = sorted(labels.unique(), key=str)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) and len(classes) > 2:
        return (
            {"name": name, "task": "regression"},
            "hist_gradient_boosting_regressor",
            (f"numeric with {len(classes)} distinct values: a regression"),
        )
    if len(classes) != 2:
        raise ValueError(
            f"target {name!r} has {len(classes)} distinct value(s) in the reference: a binary classification needs 2, "
            "a regression needs a numeric target"
        )
    by_text = {str(c).lower(): c for c in classes}
    for positive_text in ("1", "true", "yes", "y", "positive"):
        if positive_text in by_text:
            positive = by_text[positive_text]
            why = f"two classes {classes}: {positive!r} is the positive one by its name"
            break
    else:
        positive = labels.value_counts().idxmin()
        why = f"two classes {classes}: the rarer one, {positive!r}, is taken as positive (change it if wrong)"
    positive = positive.item() if hasattr(positive, "item") else positive
    if positive in ("True", "False"):
        positive = positive == "True"
    return {"name": name, "task": "classification", "positive_label": positive}, "hist_gradient_boosting", why


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def draft_config(
    reference: pd.DataFrame,
    *,
    name: str,
    target: str,
    id_column: str,
    bucket: str,
    reference_key: str,
    recipients: list[str],
    start: date,
) -> str:
    """YAML text of a config for this reference, each choice commented; it is checked to load before return."""
    for column, what in ((target, "--target"), (id_column, "--id")):
        if column not in reference.columns:
            raise ValueError(
                f"{what} {column!r} is not a column of the reference: {', '.join(map(str, reference.columns))}"
            )
    target_spec, estimator, target_why = infer_target(reference[target], target)
    columns = [infer_column(str(c), reference[c]) for c in reference.columns if c not in (target, id_column)]
    timestamps = [c for c in columns if c.role == "timestamp"]
    for extra in timestamps[1:]:
        extra.role, extra.why = "ignored", "a second date column: only the first orders the batches"
    features = [c for c in columns if c.role == "feature"]
    if not features:
        raise ValueError("no column of the reference can be a feature: every one is the id, the target, PII or empty")
    classification = target_spec["task"] == "classification"
    rows = len(reference)
    tolerance_line = "  live_tolerance: 0.05  # live roc_auc this far below the evaluated one is concept drift"
    if not classification:
        spread = float(pd.to_numeric(reference[target], errors="coerce").std())
        tolerance = float(f"{0.1 * spread:.3g}") if spread > 0 else 0.05
        tolerance_line = (
            f"  live_tolerance: {tolerance}  # a tenth of the target's spread ({spread:.3g}): rmse is in its units"
        )
    lines = [
        f"# Drafted by `driftwatch init` from a reference of {rows:,} rows and {len(reference.columns)} columns.",
        "# Every inferred choice says why; edit any of them. `driftwatch check` tells what the monitor would do.",
        f"name: {name}",
        f"description: {_yaml_value(f'{name} (onboarded with driftwatch init)')}",
        "owner: ml-platform",
        "",
        "schema:",
        f"  id_column: {_yaml_value(id_column)}",
    ]
    if timestamps:
        lines.append(f"  timestamp_column: {_yaml_value(timestamps[0].name)}  # {timestamps[0].why}")
    else:
        lines.append("  # No timestamp column: the first model holds out a random, stratified share of the reference.")
    lines.append(f"  target: {_yaml_value(target_spec)}  # {target_why}")
    for role, key in (("pii", "pii_columns"), ("ignored", "ignored_columns")):
        chosen = [c for c in columns if c.role == role]
        if chosen:
            lines.append(f"  {key}:")
            lines += [f"    - {_yaml_value(c.name)}  # {c.why}" for c in chosen]
    lines.append("  features:")
    lines += [f"    - {_yaml_value(c.spec)}  # {c.why}" for c in features]
    min_rows = max(10, min(200, rows // 10))
    lines += [
        "",
        "storage:",
        "  aws_conn_id: aws_default",
        f"  bucket: {_yaml_value(bucket)}",
        "  incoming_prefix: incoming/",
        "  labels_prefix: labels/",
        f"  reference_key: {_yaml_value(reference_key)}",
        "",
        "validation:",
        "  min_rows: 1",
        "",
        "drift:  # the defaults: Wasserstein for numbers, Jensen-Shannon for categories",
        "  dataset_drift_share: 0.3",
        "",
        "alerts:",
        f"  recipients: {_yaml_value(recipients)}",
        "",
        "monitor:",
        "  schedule: '@daily'",
        f"  start_date: {start.isoformat()}",
        "",
        "training:",
        f"  estimator: {estimator}  # handles missing values and mixed scales without tuning",
        "  window_days: 7",
        "  holdout_days: 2",
        "  holdout_fraction: 0.2",
        f"  min_training_rows: {min_rows}  # a tenth of the reference, at most 200",
        "",
        "evaluation:",
        f"  primary_metric: {'roc_auc' if classification else 'rmse'}",
        "  min_improvement: 0.005",
        "  min_slice_rows: 30",
        tolerance_line,
    ]
    text = "\n".join(lines) + "\n"
    parse_config(yaml.safe_load(text), source=f"the draft for {name}")  # a draft that does not load is a bug here
    return text
