"""Batch validation against the demo credit_default config, with real Great Expectations."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from driftwatch.config import ModelConfig, parse_config
from driftwatch.reports.validation import render_validation_html
from driftwatch.validation import (
    ExpectationConfigError,
    build_expectations,
    validate_frame,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO / "config" / "models" / "credit_default.yaml"
HOSTILE = "</script><script>alert(1)</script>"

EMPLOYMENT = ["salaried", "self_employed", "contractor", "unemployed", "retired"]
HOME = ["rent", "mortgage", "own", "other"]
PURPOSE = ["car", "home", "education", "debt"]
REGION = ["north", "south", "east", "west"]
CHANNEL = ["web", "branch", "partner"]


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    """A batch shaped like the demo config, every value inside the config's bounds."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "application_id": [f"A{seed}-{i:05d}" for i in range(rows)],
            "applied_at": pd.date_range("2026-01-01", periods=rows, freq="min"),
            "age": rng.integers(21, 80, rows),
            "annual_income": rng.normal(50_000, 12_000, rows).clip(1_000),
            "loan_amount": rng.uniform(1_000, 40_000, rows),
            "credit_utilization": rng.uniform(0.05, 0.95, rows),
            "debt_to_income": rng.uniform(0.05, 0.7, rows),
            "months_employed": rng.integers(1, 300, rows),
            "num_late_payments": rng.integers(0, 5, rows),
            "employment_type": [EMPLOYMENT[i % len(EMPLOYMENT)] for i in range(rows)],
            "home_ownership": [HOME[i % len(HOME)] for i in range(rows)],
            "loan_purpose": [PURPOSE[i % len(PURPOSE)] for i in range(rows)],
            "region": [REGION[i % len(REGION)] for i in range(rows)],
            "channel": [CHANNEL[i % len(CHANNEL)] for i in range(rows)],
        }
    )


def config_with(**validation: Any) -> ModelConfig:
    """The demo config with some `validation` fields replaced."""
    raw = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    raw["validation"].update(validation)
    return parse_config(raw, source="test")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_frame(300, seed=1)


@pytest.fixture
def batch() -> pd.DataFrame:
    return make_frame(200, seed=2)


def outcome_for(result, expectation: str, column: str, severity: str | None = None, described: str = ""):
    matches = [
        o
        for o in result.outcomes
        if o.expectation == expectation
        and o.column == column
        and (severity is None or o.severity == severity)
        and described in o.description
    ]
    assert len(matches) == 1, matches
    return matches[0]


def test_clean_batch_passes(cfg, reference, batch):
    result = validate_frame(batch, cfg, reference)

    assert result.passed
    assert result.critical_failures == []
    assert result.warnings == []
    assert result.failure_reason() == ""
    assert result.row_count == 200
    assert len(result.outcomes) == len(build_expectations(cfg, reference))
    summary = result.to_dict()
    json.dumps(summary, allow_nan=False)
    assert summary["counts"]["critical_failures"] == 0
    assert summary["gx_version"].startswith("1.")


def test_suite_covers_config_and_reference(cfg, reference):
    specs = build_expectations(cfg, reference)
    by_kind = {(s.expectation, s.kwargs.get("column"), s.severity) for s in specs}

    for column in [cfg.dataset.id_column, *cfg.dataset.feature_names]:
        assert ("ExpectColumnToExist", column, "critical") in by_kind
    assert ("ExpectColumnValuesToBeUnique", "application_id", "critical") in by_kind
    assert ("ExpectColumnValuesToBeInTypeList", "age", "critical") in by_kind
    assert ("ExpectColumnValuesToBeInSet", "home_ownership", "critical") in by_kind
    assert ("ExpectColumnValuesToBeInSet", "loan_purpose", "warning") in by_kind
    null_rule = next(
        s for s in specs if s.expectation == "ExpectColumnValuesToNotBeNull" and s.kwargs["column"] == "annual_income"
    )
    assert null_rule.severity == "warning"
    assert null_rule.kwargs["mostly"] == pytest.approx(0.85)
    ref_range = next(
        s
        for s in specs
        if s.expectation == "ExpectColumnValuesToBeBetween" and s.kwargs["column"] == "age" and s.severity == "warning"
    )
    lo, hi = reference["age"].min(), reference["age"].max()
    assert ref_range.kwargs["min_value"] == pytest.approx(lo - 0.5 * (hi - lo))
    assert ref_range.kwargs["max_value"] == pytest.approx(hi + 0.5 * (hi - lo))


def test_missing_column_is_critical_and_named(cfg, reference, batch):
    result = validate_frame(batch.drop(columns=["credit_utilization"]), cfg, reference)

    assert not result.passed
    assert "missing column credit_utilization" in result.failure_reason()
    assert [o.failure_text() for o in result.critical_failures] == ["missing column credit_utilization"]
    # Checks on the absent column are skipped, not reported as confusing GX errors.
    skipped = [o for o in result.outcomes if o.column == "credit_utilization" and o.skipped]
    assert skipped and all("missing" in o.skipped for o in skipped)


def test_value_out_of_config_bounds_is_critical(cfg, reference, batch):
    batch.loc[:2, "age"] = 150

    result = validate_frame(batch, cfg, reference)

    assert not result.passed
    assert result.failure_reason() == "age out of range [18, 100] (3 rows)"
    failed = outcome_for(result, "ExpectColumnValuesToBeBetween", "age", "critical", described="(config)")
    assert failed.observed["unexpected_count"] == 3
    assert failed.observed["partial_unexpected"] == ["150", "150", "150"]


def test_text_in_numeric_csv_column_is_critical(cfg, reference, batch):
    batch["annual_income"] = batch["annual_income"].round(2).astype(object)
    batch.loc[4, "annual_income"] = "unknown"
    frame = pd.read_csv(io.StringIO(batch.to_csv(index=False)))
    assert frame["annual_income"].dtype == object

    result = validate_frame(frame, cfg, reference)

    assert not result.passed
    assert "annual_income is not numeric" in result.failure_reason()
    dtype = outcome_for(result, "ExpectColumnValuesToBeInTypeList", "annual_income")
    assert "unknown" in dtype.observed["partial_unexpected"]
    ranges = [
        o for o in result.outcomes if o.expectation == "ExpectColumnValuesToBeBetween" and o.column == "annual_income"
    ]
    assert ranges and all(o.skipped == "column annual_income is not numeric" for o in ranges)
    assert not any("exception" in o.observed for o in result.outcomes)


def test_duplicate_ids_are_critical(cfg, reference, batch):
    batch.loc[10, "application_id"] = batch.loc[11, "application_id"]

    result = validate_frame(batch, cfg, reference)

    assert not result.passed
    assert result.failure_reason() == "duplicate ids in application_id (2 rows)"


def test_too_few_rows_is_critical(cfg, reference, batch):
    result = validate_frame(batch.head(20), cfg, reference)

    assert not result.passed
    assert result.failure_reason() == "row count outside [100, 1000000] (observed 20)"


def test_unseen_categories_beyond_tolerance_warn_only(cfg, reference, batch):
    batch.loc[:39, "loan_purpose"] = "crypto"  # 20% unseen, tolerance is 5%

    result = validate_frame(batch, cfg, reference)

    assert result.passed
    assert [o.column for o in result.warnings] == ["loan_purpose"]
    assert result.warnings[0].observed["unexpected_count"] == 40
    assert "crypto" in result.warnings[0].observed["partial_unexpected"]


def test_unseen_categories_within_tolerance_pass(cfg, reference, batch):
    batch.loc[:4, "loan_purpose"] = "crypto"  # 2.5% unseen

    result = validate_frame(batch, cfg, reference)

    assert result.passed and result.warnings == []


def test_null_fraction_above_feature_limit_warns(cfg, reference, batch):
    batch.loc[:59, "annual_income"] = np.nan  # 30%, feature limit is 15%

    result = validate_frame(batch, cfg, reference)

    assert result.passed
    assert [o.failure_text() for o in result.warnings] == ["annual_income null fraction above 0.15 (60 rows)"]


def test_nullable_and_categorical_dtypes_are_accepted_and_frame_untouched(cfg, reference, batch):
    batch["months_employed"] = batch["months_employed"].astype("Int64")
    batch.loc[3, "months_employed"] = pd.NA
    batch["region"] = batch["region"].astype("category")
    before = batch.copy()

    result = validate_frame(batch, cfg, reference)

    assert result.passed, result.failure_reason()
    pd.testing.assert_frame_equal(batch, before)


def test_extra_rules_run_with_their_severity(cfg, reference, batch):
    cfg = config_with(
        rules=[
            {
                "expectation": "ExpectColumnMeanToBeBetween",
                "kwargs": {"column": "age", "min_value": 90},
                "severity": "warning",
            },
            # Same as a built-in check: GX's add_expectation would silently drop it.
            {"expectation": "ExpectColumnValuesToBeUnique", "kwargs": {"column": "application_id"}},
        ]
    )

    result = validate_frame(batch, cfg, reference)

    assert result.passed
    assert [o.expectation for o in result.warnings] == ["ExpectColumnMeanToBeBetween"]
    assert "validation.rules[0]" in result.warnings[0].description
    assert isinstance(result.warnings[0].observed["observed_value"], float)
    unique = [o for o in result.outcomes if o.expectation == "ExpectColumnValuesToBeUnique"]
    assert len(unique) == 2 and all(o.success for o in unique)


def test_unknown_rule_class_is_a_clear_error(reference, batch):
    cfg = config_with(rules=[{"expectation": "ExpectColumnValuesToBeBetweenn", "kwargs": {"column": "age"}}])

    with pytest.raises(ExpectationConfigError) as err:
        validate_frame(batch, cfg, reference)

    message = str(err.value)
    assert "validation.rules[0]" in message
    assert "unknown Great Expectations expectation 'ExpectColumnValuesToBeBetweenn'" in message
    assert "did you mean ExpectColumnValuesToBeBetween?" in message


def test_bad_rule_arguments_are_a_clear_error(reference, batch):
    cfg = config_with(rules=[{"expectation": "ExpectColumnValuesToBeBetween", "kwargs": {"colum": "age"}}])

    with pytest.raises(ExpectationConfigError, match=r"validation\.rules\[0\].*invalid arguments"):
        validate_frame(batch, cfg, reference)


def test_html_report_escapes_hostile_values(reference, batch):
    cfg = config_with(
        rules=[{"expectation": "ExpectColumnToExist", "kwargs": {"column": HOSTILE}, "severity": "warning"}]
    )
    batch.loc[:59, "home_ownership"] = HOSTILE  # not an allowed value: critical, listed in the report

    result = validate_frame(batch, cfg, reference)
    page = render_validation_html(result, model=HOSTILE, batch_date="2026-01-02", sources=[f"s3://b/{HOSTILE}.csv"])

    assert not result.passed
    assert "<script" not in page.lower()
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "FAILED" in page
    assert page.index("Critical failures") < page.index("Warnings") < page.index("All expectations")
    # Self-contained: no external resources of any kind.
    assert not any(tag in page.lower() for tag in ("<link", "<script", "src=", "@import", "url("))


def test_build_expectations_does_not_import_great_expectations():
    code = (
        "import sys, pandas as pd\n"
        "from driftwatch.config import load_config\n"
        "from driftwatch.validation import build_expectations\n"
        f"cfg = load_config({str(CONFIG_PATH)!r})\n"
        "build_expectations(cfg, pd.DataFrame({'age': [20, 30], 'region': ['a', 'b']}))\n"
        "assert 'great_expectations' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "include")})


def test_infinite_values_are_critical_and_counted(cfg, reference, batch):
    batch["age"] = batch["age"].astype("float64")
    batch.loc[[3, 9], "age"] = [np.inf, -np.inf]
    batch.loc[5, "age"] = np.nan  # missing is not infinite: the null checks own it
    result = validate_frame(batch, cfg, reference)
    finite = outcome_for(result, "ExpectColumnValuesToBeBetween", "age", "critical", described="finite")
    assert finite.failed
    assert finite.observed["unexpected_count"] == 2
    assert "age holds infinite values (2 rows)" in result.failure_reason()


def test_gx_internals_that_validation_tunes_are_still_there():
    """Validation skips GX's data fingerprint and empties its caches: a GX upgrade must not silently undo that."""
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine

    from driftwatch import validation

    assert isinstance(pandas_execution_engine.HASH_THRESHOLD, (int, float))
    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("probe").add_dataframe_asset("frame")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": pd.DataFrame({"x": [1.0, 2.0, None]})}
    )
    assert not batch.validate(gx.expectations.ExpectColumnValuesToNotBeNull(column="x")).success
    engine = batch.data.execution_engine
    assert isinstance(engine._metric_cache, dict) and engine._metric_cache
    assert engine.batch_manager.batch_data_cache
    validation._release_batch(batch)
    assert not engine._metric_cache
    assert not engine.batch_manager.batch_data_cache
    validation._forget_context()
