"""Unit tests for the synthetic credit-default demo data generator."""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from driftwatch import demo_data
from driftwatch.config import DEFAULT_CONFIG_DIR, ModelConfig, load_config
from driftwatch.demo_data import DemoBatch, generate_reference, generate_scenario, scenario_plan, to_bytes

START = date(2026, 1, 1)
DAYS = demo_data.DEFAULT_DAYS
ROWS = 300
REF_ROWS = 1000
PHASES = ["stable", "harmless_drift", "broken", "stable", "covariate_drift", "concept_drift"]


@pytest.fixture(scope="module")
def config() -> ModelConfig:
    return load_config(DEFAULT_CONFIG_DIR / "credit_default.yaml")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate_reference(seed=7, rows=REF_ROWS)


@pytest.fixture(scope="module")
def scenario() -> list[DemoBatch]:
    return generate_scenario(START, days=DAYS, seed=7, rows_per_day=ROWS)


@pytest.fixture(scope="module")
def large_scenario() -> list[DemoBatch]:
    """Enough rows per day that an AUC difference of 0.01 is not sampling noise."""
    return generate_scenario(START, days=DAYS, seed=7, rows_per_day=8000)


def _phases(plan: list[str]) -> list[str]:
    return [kind for i, kind in enumerate(plan) if i == 0 or plan[i - 1] != kind]


def _input_columns(config: ModelConfig) -> list[str]:
    schema = config.dataset
    return [schema.id_column, schema.timestamp_column, *schema.pii_columns, *schema.feature_names]


def _check_bounds(frame: pd.DataFrame, config: ModelConfig) -> None:
    for feature in config.dataset.features:
        values = frame[feature.name]
        null_limit = feature.max_null_fraction or config.validation.max_null_fraction
        assert values.isna().mean() <= null_limit, feature.name
        present = values.dropna()
        if feature.min is not None:
            assert (present >= feature.min).all(), feature.name
        if feature.max is not None:
            assert (present <= feature.max).all(), feature.name
        if feature.allowed_values is not None:
            assert set(present) <= set(feature.allowed_values), feature.name
        if feature.type == "numeric":
            assert pd.api.types.is_numeric_dtype(values), feature.name
        else:
            assert present.map(type).eq(str).all(), feature.name


# --- plan ------------------------------------------------------------------------------------


def test_default_plan_is_exactly_the_demo_plan() -> None:
    expected = (
        ["stable"] * 2
        + ["harmless_drift"] * 2
        + ["broken"]
        + ["stable"] * 2
        + ["covariate_drift"] * 4
        + ["concept_drift"] * 5
    )
    assert DAYS == 16
    assert scenario_plan(DAYS) == expected
    assert scenario_plan() == expected


def test_plan_has_every_phase_in_order() -> None:
    assert _phases(scenario_plan()) == PHASES
    # Two drift-checked stable days part the harmless drift from the harmful one (the broken
    # batch is not drift-checked), so the policy's 3-batch window sees two separate onsets.
    plan = scenario_plan()
    between = plan[plan.index("broken") + 1 : plan.index("covariate_drift")]
    assert between == ["stable", "stable"]


@pytest.mark.parametrize("days", range(1, 41))
def test_plan_generalises_with_phases_in_order(days: int) -> None:
    plan = scenario_plan(days)
    assert len(plan) == days
    assert plan[0] == "stable"
    if days < len(PHASES):
        # The browser tests' 3-day plan needs its broken and its drifted day.
        assert plan == ["stable", "broken", "covariate_drift", "concept_drift", "harmless_drift"][:days]
        return
    assert _phases(plan) == PHASES
    assert plan.count("broken") == 1
    # Proportional phases: the concept drift stays the longest, the harmless drift no longer than the harmful one.
    assert plan.count("concept_drift") >= plan.count("covariate_drift") >= plan.count("harmless_drift")


def test_plan_rejects_zero_days() -> None:
    with pytest.raises(ValueError):
        scenario_plan(0)


# --- determinism -----------------------------------------------------------------------------


def test_reference_is_deterministic_per_seed() -> None:
    first = generate_reference(seed=3, rows=REF_ROWS)
    pd.testing.assert_frame_equal(first, generate_reference(seed=3, rows=REF_ROWS))
    other = generate_reference(seed=4, rows=REF_ROWS)
    assert not first.drop(columns=["application_id"]).equals(other.drop(columns=["application_id"]))


def test_scenario_is_deterministic_per_seed(scenario: list[DemoBatch]) -> None:
    again = generate_scenario(START, days=DAYS, seed=7, rows_per_day=ROWS)
    for a, b in zip(scenario, again, strict=True):
        assert (a.batch_date, a.kind, a.fmt, a.drift_strength) == (b.batch_date, b.kind, b.fmt, b.drift_strength)
        pd.testing.assert_frame_equal(a.features, b.features)
        pd.testing.assert_frame_equal(a.labels, b.labels)
    other = generate_scenario(START, days=DAYS, seed=8, rows_per_day=ROWS)
    for a, b in zip(scenario, other, strict=True):
        assert not a.features["annual_income"].equals(b.features["annual_income"])
        assert not a.labels.equals(b.labels)


def test_days_are_not_copies_of_each_other_or_of_the_reference(
    scenario: list[DemoBatch], reference: pd.DataFrame
) -> None:
    heads = [tuple(b.features["loan_amount"].head(20)) for b in scenario]
    assert len(set(heads)) == len(heads)
    assert tuple(reference["loan_amount"].head(20)) not in heads


# --- schema ----------------------------------------------------------------------------------


def test_reference_matches_config(reference: pd.DataFrame, config: ModelConfig) -> None:
    schema = config.dataset
    assert list(reference.columns) == [*_input_columns(config), schema.target.name]
    assert len(reference) == REF_ROWS
    _check_bounds(reference, config)
    assert set(reference[schema.target.name]) <= {0, 1}
    assert 0.07 <= reference[schema.target.name].mean() <= 0.2
    assert reference[schema.id_column].is_unique
    assert pd.api.types.is_datetime64_any_dtype(reference[schema.timestamp_column])


def test_good_days_match_config(scenario: list[DemoBatch], config: ModelConfig) -> None:
    schema = config.dataset
    good = [b for b in scenario if b.kind != "broken"]
    assert len(good) == DAYS - 1
    for batch in good:
        assert list(batch.features.columns) == _input_columns(config), batch.batch_date
        assert schema.target.name not in batch.features.columns
        assert len(batch.features) == ROWS
        _check_bounds(batch.features, config)


def test_broken_day_misses_credit_utilization_and_has_impossible_ages(
    scenario: list[DemoBatch], config: ModelConfig
) -> None:
    (broken,) = [b for b in scenario if b.kind == "broken"]
    assert broken.batch_date == START + timedelta(days=4)
    assert "credit_utilization" not in broken.features.columns
    expected = [c for c in _input_columns(config) if c != "credit_utilization"]
    assert list(broken.features.columns) == expected
    age = config.dataset.feature("age")
    out_of_range = broken.features[(broken.features["age"] < age.min) | (broken.features["age"] > age.max)]
    assert 0 < len(out_of_range) < len(broken.features) * 0.1
    assert set(out_of_range["age"]) <= {-3, 140}
    # Still readable in its own format.
    reader = pd.read_csv if broken.fmt == "csv" else pd.read_parquet
    back = reader(io.BytesIO(to_bytes(broken.features, broken.fmt)))
    assert list(back.columns) == expected


def test_pii_is_made_up(scenario: list[DemoBatch]) -> None:
    features = scenario[0].features
    assert features["applicant_name"].str.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+").all()
    assert features["email"].str.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.(com|net|org)").all()


# --- ids, labels, timestamps ------------------------------------------------------------------


def test_labels_join_one_to_one(scenario: list[DemoBatch]) -> None:
    for batch in scenario:
        assert list(batch.labels.columns) == ["application_id", "defaulted"]
        assert batch.labels["application_id"].is_unique
        assert batch.features["application_id"].is_unique
        merged = batch.features.merge(batch.labels, on="application_id", how="outer", validate="1:1", indicator=True)
        assert (merged["_merge"] == "both").all()
        assert len(merged) == len(batch.features) == len(batch.labels)
        assert set(batch.labels["defaulted"]) <= {0, 1}


def test_ids_unique_across_scenario_and_reference(scenario: list[DemoBatch], reference: pd.DataFrame) -> None:
    ids = pd.concat([reference["application_id"], *(b.features["application_id"] for b in scenario)])
    assert ids.is_unique
    assert scenario[0].features["application_id"].iloc[0] == "20260101-000001"


def test_timestamps_lie_within_the_batch_day(scenario: list[DemoBatch]) -> None:
    for batch in scenario:
        stamps = batch.features["applied_at"]
        assert pd.api.types.is_datetime64_any_dtype(stamps)
        assert (stamps.dt.date == batch.batch_date).all()
        assert stamps.is_monotonic_increasing


def test_dates_kinds_and_formats(scenario: list[DemoBatch]) -> None:
    assert [b.batch_date for b in scenario] == [START + timedelta(days=i) for i in range(DAYS)]
    assert [b.kind for b in scenario] == scenario_plan(DAYS)
    assert {b.fmt for b in scenario} == {"csv", "parquet"}
    assert [b.fmt for b in scenario] == ["csv", "parquet"] * (DAYS // 2)


def test_drift_strength_follows_the_plan(scenario: list[DemoBatch]) -> None:
    for batch in scenario:
        if batch.kind in ("stable", "broken"):
            assert batch.drift_strength == 0.0
        elif batch.kind == "harmless_drift":
            assert batch.drift_strength == 1.0
        else:
            assert 0.0 < batch.drift_strength <= 1.0
    # Harmful from its first day (0.85), so the estimate can tell from that day on.
    covariate = [b.drift_strength for b in scenario if b.kind == "covariate_drift"]
    assert covariate == sorted(covariate) and covariate[0] == 0.85 and covariate[-1] == 1.0
    concept = [b.drift_strength for b in scenario if b.kind == "concept_drift"]
    assert concept == sorted(concept) and concept[0] == 0.7 and concept[-1] == 1.0


def test_covariate_drift_moves_the_features(scenario: list[DemoBatch], reference: pd.DataFrame) -> None:
    strongest = [b for b in scenario if b.kind == "covariate_drift"][-1].features
    assert strongest["annual_income"].median() < 0.85 * reference["annual_income"].median()
    assert strongest["credit_utilization"].mean() > reference["credit_utilization"].mean() + 0.3
    # Squeezed: the spread that ranked applicants is gone.
    assert strongest["credit_utilization"].std() < 0.5 * reference["credit_utilization"].std()
    assert strongest["debt_to_income"].std() < 0.6 * reference["debt_to_income"].std()
    assert (strongest["channel"] == "branch").mean() < (reference["channel"] == "branch").mean() - 0.05


def test_harmless_drift_moves_only_weak_features(scenario: list[DemoBatch], reference: pd.DataFrame) -> None:
    campaign = pd.concat([b.features for b in scenario if b.kind == "harmless_drift"])
    assert campaign["loan_amount"].median() > 1.25 * reference["loan_amount"].median()
    assert campaign["months_employed"].mean() > reference["months_employed"].mean() + 10
    assert (campaign["region"] == "east").mean() > (reference["region"] == "east").mean() + 0.15
    assert (campaign["channel"] == "mobile").mean() > (reference["channel"] == "mobile").mean() + 0.25
    for strong in ("credit_utilization", "debt_to_income", "num_late_payments"):
        assert abs(campaign[strong].mean() - reference[strong].mean()) < 0.1 * reference[strong].std(), strong


def test_only_the_harmless_and_the_harmful_drift_pass_the_drift_threshold(config: ModelConfig) -> None:
    from driftwatch.profile.batch import profile_batch
    from driftwatch.profile.decision import decide
    from driftwatch.profile.reference import build_profile

    profile = build_profile(generate_reference(seed=7), config)
    batches = generate_scenario(START, days=DAYS, seed=7, rows_per_day=2000)  # the demo's size
    for batch in batches:
        if batch.kind == "broken":
            continue
        drifted = decide(profile, profile_batch(batch.features, profile, config), config).dataset_drift
        assert drifted == (batch.kind in ("harmless_drift", "covariate_drift")), (batch.batch_date, batch.kind)


def test_harmless_drift_keeps_the_ranking_and_harmful_drift_breaks_it(
    large_scenario: list[DemoBatch], config: ModelConfig
) -> None:
    """ROC AUC of a model fit on the reference: the champion the demo bootstraps."""
    from sklearn.metrics import roc_auc_score

    from driftwatch import training

    model, _ = training.train(config, generate_reference(seed=7))

    def auc(kind: str) -> float:
        frame = pd.concat([b.features.merge(b.labels, on="application_id") for b in large_scenario if b.kind == kind])
        return float(roc_auc_score(frame["defaulted"], training.predict_scores(model, frame, config)))

    stable = auc("stable")
    assert abs(auc("harmless_drift") - stable) <= 0.01
    assert auc("covariate_drift") < stable - 0.03
    assert auc("concept_drift") < stable - 0.1


# --- serialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_to_bytes_round_trips(fmt: str, reference: pd.DataFrame) -> None:
    payload = to_bytes(reference, fmt)  # type: ignore[arg-type]
    assert isinstance(payload, bytes)
    if fmt == "csv":
        assert payload.startswith(b"application_id,applied_at,")
        back = pd.read_csv(io.BytesIO(payload), parse_dates=["applied_at"])
    else:
        assert payload[:4] == b"PAR1"
        back = pd.read_parquet(io.BytesIO(payload))
    pd.testing.assert_frame_equal(back, reference)


def test_every_batch_is_readable_in_its_format(scenario: list[DemoBatch]) -> None:
    for batch in scenario:
        payload = to_bytes(batch.features, batch.fmt)
        reader = pd.read_csv if batch.fmt == "csv" else pd.read_parquet
        back = reader(io.BytesIO(payload))
        assert list(back.columns) == list(batch.features.columns)
        assert len(back) == len(batch.features)


def test_to_bytes_rejects_unknown_format(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError):
        to_bytes(reference, "json")  # type: ignore[arg-type]


def test_input_validation() -> None:
    with pytest.raises(ValueError):
        generate_reference(rows=0)
    with pytest.raises(ValueError):
        generate_scenario(START, rows_per_day=0)


def test_module_constants_match_config(config: ModelConfig) -> None:
    schema = config.dataset
    assert list(demo_data.FEATURES) == schema.feature_names
    assert list(demo_data.NUMERIC_FEATURES) == schema.numeric_features
    assert list(demo_data.CATEGORICAL_FEATURES) == schema.categorical_features
    assert list(demo_data.PII_COLUMNS) == schema.pii_columns
    expected = (schema.id_column, schema.timestamp_column, schema.target.name)
    assert expected == (demo_data.ID_COLUMN, demo_data.TIMESTAMP_COLUMN, demo_data.TARGET_COLUMN)
    assert np.isin(demo_data.EMPLOYMENT_TYPES, schema.feature("employment_type").allowed_values).all()
