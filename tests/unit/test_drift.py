"""Drift detection with the real Evidently 0.7 on small synthetic credit_default batches."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from driftwatch.drift import DriftResult, FeatureDrift, run_drift_report

REPO = Path(__file__).resolve().parents[2]

EMPLOYMENT = ["salaried", "self_employed", "contractor", "unemployed", "retired"]
HOME = ["rent", "mortgage", "own", "other"]
PURPOSE = ["car", "home", "education", "debt_consolidation", "other"]
REGION = ["north", "south", "east", "west"]
CHANNEL = ["web", "branch", "partner"]

# Distinctive values for the columns that must never reach a report.
PII_NAME = "Zebulon Quixfeather"
PII_EMAIL = "zq.secret-mailbox@example.org"
ID_PREFIX = "APPX-7731-"
SSN = "078-05-1120"


def _stratified_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """One uniform draw per 1/n stratum, shuffled: random rows whose empirical CDF is within 1/n of
    the true one, so "same distribution" batches never drift by sampling noise. (With plain i.i.d.
    draws of a few hundred rows, normed Wasserstein alone exceeds 0.1 for 10-30% of features.)"""
    return (rng.permutation(n) + rng.random(n)) / n


def _stratified_choice(rng: np.random.Generator, values: list[str], n: int, p: list[float]) -> np.ndarray:
    """Categories in exactly the proportions p (largest remainder), shuffled."""
    exact = np.asarray(p) * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(values, counts))


def make_batch(n: int, seed: int, *, shift_numeric: bool = False, shift_categories: bool = False) -> pd.DataFrame:
    """A credit_default batch with every schema column: id, timestamp, target, PII and features."""
    rng = np.random.default_rng(seed)

    def u() -> np.ndarray:
        return _stratified_uniform(rng, n)

    employment_p = [0.2, 0.2, 0.2, 0.2, 0.2] if shift_categories else [0.6, 0.15, 0.1, 0.05, 0.1]
    channel_p = [0.2, 0.6, 0.2] if shift_categories else [0.5, 0.3, 0.2]
    uniform5 = [0.2] * 5
    return pd.DataFrame(
        {
            "application_id": [f"{ID_PREFIX}{seed}-{i}" for i in range(n)],
            "applied_at": pd.date_range("2026-01-01", periods=n, freq="min"),
            "defaulted": rng.integers(0, 2, n),
            "applicant_name": [PII_NAME] * n,
            "email": [PII_EMAIL] * n,
            "ssn": [SSN] * n,  # not even in the config: still must not leak
            "age": stats.norm.ppf(u(), 52 if shift_numeric else 40, 10).clip(18, 100),
            "annual_income": stats.lognorm.ppf(u(), 0.4, scale=np.exp(11.6 if shift_numeric else 11.0)),
            "loan_amount": stats.uniform.ppf(u(), 20_000 if shift_numeric else 500, 40_000),
            "credit_utilization": stats.beta.ppf(u(), 5 if shift_numeric else 2, 5),
            "debt_to_income": stats.gamma.ppf(u(), 2.0, scale=0.15),
            "months_employed": np.floor(stats.uniform.ppf(u(), 0, 240)),
            "num_late_payments": stats.poisson.ppf(u(), 0.5).astype(int),
            "employment_type": _stratified_choice(rng, EMPLOYMENT, n, employment_p),
            "home_ownership": _stratified_choice(rng, HOME, n, [0.4, 0.35, 0.2, 0.05]),
            "loan_purpose": _stratified_choice(rng, PURPOSE, n, uniform5),
            "region": _stratified_choice(rng, REGION, n, [0.25] * 4),
            "channel": _stratified_choice(rng, CHANNEL, n, channel_p),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_batch(800, seed=1)


@pytest.fixture(scope="module")
def stable_run(cfg, reference) -> tuple[DriftResult, str, dict]:
    return run_drift_report(reference, make_batch(500, seed=2), cfg)


@pytest.fixture(scope="module")
def shifted_run(cfg, reference) -> tuple[DriftResult, str, dict]:
    current = make_batch(500, seed=3, shift_numeric=True, shift_categories=True)
    return run_drift_report(reference, current, cfg)


def by_name(result: DriftResult) -> dict[str, FeatureDrift]:
    return {f.name: f for f in result.features}


def test_same_distribution_has_no_drift(cfg, stable_run):
    result, _, _ = stable_run
    assert [f.name for f in result.features] == cfg.dataset.feature_names
    assert result.drifted_features == []
    assert result.drifted_share == 0.0
    assert result.dataset_drift is False
    assert result.share_threshold == cfg.drift.dataset_drift_share
    assert (result.reference_rows, result.current_rows) == (800, 500)
    assert result.evidently_version.startswith("0.7")


def test_identical_batch_scores_zero_distance(cfg, reference):
    result, _, _ = run_drift_report(reference, reference.copy(), cfg)
    assert not result.dataset_drift and result.drifted_features == []
    for feature in result.features:
        if feature.score_kind == "distance":
            assert feature.score == pytest.approx(0.0, abs=1e-9), feature
        else:
            assert feature.score == pytest.approx(1.0), feature


def test_shifted_numerics_and_category_mix_drift(shifted_run):
    result, _, _ = shifted_run
    features = by_name(result)
    shifted = {"age", "annual_income", "loan_amount", "credit_utilization", "employment_type", "channel"}
    unchanged = {"debt_to_income", "months_employed", "num_late_payments", "home_ownership", "loan_purpose", "region"}
    assert {f.name for f in result.drifted_features} == shifted
    assert not any(features[name].drifted for name in unchanged)
    assert result.drifted_share == pytest.approx(6 / 12)
    assert result.dataset_drift is True


def test_drifted_features_sorted_by_exceedance(shifted_run):
    result, _, _ = shifted_run
    exceedances = [f.exceedance for f in result.drifted_features]
    assert exceedances == sorted(exceedances, reverse=True)
    assert all(e >= 1.0 for e in exceedances)


def test_per_feature_methods_from_config_are_used(cfg, shifted_run):
    result, _, report_json = shifted_run
    features = by_name(result)
    assert (features["num_late_payments"].method, features["num_late_payments"].threshold) == ("psi", 0.2)
    assert (features["channel"].method, features["channel"].threshold) == ("chisquare", 0.05)
    assert (features["age"].method, features["age"].threshold) == ("wasserstein", 0.1)
    assert (features["region"].method, features["region"].threshold) == ("jensenshannon", 0.1)
    for feature in result.features:
        assert (feature.method, feature.threshold) == cfg.drift_rule(feature.name)
        assert feature.kind == cfg.dataset.feature(feature.name).type

    # Evidently itself ran those methods: its ValueDrift configs name them.
    evidently_methods = {
        m["config"]["column"]: (m["config"]["method"], m["config"]["threshold"])
        for m in report_json["metrics"]
        if m["config"]["type"].endswith("ValueDrift")
    }
    assert evidently_methods["num_late_payments"] == ("psi", 0.2)
    assert evidently_methods["channel"] == ("chisquare", 0.05)
    assert evidently_methods["age"] == ("wasserstein", 0.1)


def test_p_value_and_distance_semantics(stable_run, shifted_run):
    for result, _, _ in (stable_run, shifted_run):
        for feature in result.features:
            if feature.score_kind == "p_value":
                assert feature.drifted == (feature.score < feature.threshold), feature
            else:
                assert feature.drifted == (feature.score >= feature.threshold), feature
    channel = by_name(shifted_run[0])["channel"]
    assert channel.score_kind == "p_value" and channel.score < 0.05 and channel.drifted


def test_threshold_override_changes_dataset_decision(cfg, reference):
    # Only the numeric features move: 4 of 12 drift, a share of 1/3.
    current = make_batch(500, seed=4, shift_numeric=True)
    default, _, _ = run_drift_report(reference, current, cfg)
    assert default.drifted_share == pytest.approx(4 / 12)
    assert default.dataset_drift is True  # 0.333 >= 0.3

    strict, _, strict_json = run_drift_report(reference, current, cfg, threshold_override=0.5)
    assert strict.share_threshold == 0.5
    assert strict.drifted_share == default.drifted_share
    assert [f.drifted for f in strict.features] == [f.drifted for f in default.features]
    assert strict.dataset_drift is False
    share_test = next(t for t in strict_json["tests"] if t["metric_config"]["params"]["type"].endswith("Count"))
    assert share_test["test_config"]["threshold"] == 0.5 and share_test["status"] == "SUCCESS"

    # Only the category mix moves: 2 of 12 drift, below the configured 0.3 but above an override of 0.15.
    mild = make_batch(500, seed=5, shift_categories=True)
    mild_default, _, _ = run_drift_report(reference, mild, cfg)
    mild_loose, _, _ = run_drift_report(reference, mild, cfg, threshold_override=0.15)
    assert mild_default.drifted_share == mild_loose.drifted_share == pytest.approx(2 / 12)
    assert (mild_default.dataset_drift, mild_loose.dataset_drift) == (False, True)

    clean, _, _ = run_drift_report(reference, make_batch(500, seed=2), cfg, threshold_override=0.01)
    assert clean.drifted_share == 0.0 and clean.dataset_drift is False

    with pytest.raises(ValueError, match="threshold_override"):
        run_drift_report(reference, current, cfg, threshold_override=0.0)


def test_pii_id_timestamp_target_never_reach_the_report(stable_run, shifted_run):
    for _, html, report_json in (stable_run, shifted_run):
        dumped = json.dumps(report_json)
        for secret in (PII_NAME, PII_EMAIL, ID_PREFIX, SSN):
            assert secret not in html
            assert secret not in dumped
        # Column names too. ("email" and "defaulted" also occur in Evidently's inlined JS bundle,
        # so for the HTML only the unambiguous names are checked.)
        for column in ("applicant_name", "email", "ssn", "application_id", "applied_at", "defaulted"):
            assert f'"{column}"' not in dumped
        for column in ("applicant_name", "application_id", "applied_at"):
            assert column not in html


def test_html_is_self_contained(stable_run):
    _, html, _ = stable_run
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE) is None
    assert re.search(r"<link\b", html, re.IGNORECASE) is None
    assert "url(data:font/ttf;base64," in html  # icon font embedded
    assert "window.drawDashboard" in html  # Evidently's JS bundle inlined, not fetched


def test_to_dict_is_plain_json(shifted_run):
    result, _, report_json = shifted_run
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert data["dataset_drift"] is True and data["drifted_count"] == len(result.drifted_features)
    assert data["drifted_features"] == [f.name for f in result.drifted_features]
    for item in data["features"]:
        assert type(item["score"]) is float and type(item["threshold"]) is float and type(item["drifted"]) is bool
    json.dumps(report_json)  # the Evidently snapshot dict is JSON-ready too


def test_batch_with_missing_values(cfg, reference):
    current = make_batch(500, seed=5)
    rng = np.random.default_rng(6)
    current.loc[rng.random(500) < 0.2, "annual_income"] = np.nan
    current.loc[rng.random(500) < 0.1, "months_employed"] = np.nan
    current["employment_type"] = current["employment_type"].astype(object)
    current.loc[rng.random(500) < 0.1, "employment_type"] = None
    current.loc[rng.random(500) < 0.05, "num_late_payments"] = np.nan
    result, html, _ = run_drift_report(reference, current, cfg)
    assert result.current_rows == 500
    assert len(result.features) == 12
    assert all(math.isfinite(f.score) for f in result.features)
    assert not result.dataset_drift
    assert html


def test_feature_column_absent_raises_naming_it(cfg, reference):
    current = make_batch(300, seed=7).drop(columns=["region", "loan_amount"])
    with pytest.raises(ValueError, match=r"current data is missing feature column\(s\): loan_amount, region"):
        run_drift_report(reference, current, cfg)
    with pytest.raises(ValueError, match="reference data is missing.*channel"):
        run_drift_report(reference.drop(columns=["channel"]), make_batch(300, seed=7), cfg)


def test_feature_entirely_null_raises_naming_it(cfg, reference):
    current = make_batch(300, seed=8)
    current["loan_amount"] = np.nan
    current["region"] = None
    with pytest.raises(ValueError, match=r"current data has no values for feature\(s\): loan_amount, region"):
        run_drift_report(reference, current, cfg)


def test_non_numeric_values_in_numeric_feature_raise(cfg, reference):
    current = make_batch(300, seed=9)
    current["age"] = current["age"].astype(object)
    current.loc[3, "age"] = "forty"
    with pytest.raises(ValueError, match="numeric feature 'age'"):
        run_drift_report(reference, current, cfg)


def test_categories_compare_as_labels(cfg, reference):
    # Integer-coded categories from Parquet vs the same codes as floats/strings from CSV do not drift.
    ref = reference.copy()
    cur = reference.copy()
    codes = {name: i for i, name in enumerate(REGION)}
    ref["region"] = ref["region"].map(codes)
    cur["region"] = cur["region"].map(codes).astype(float)
    cur.loc[0, "region"] = np.nan
    cur["home_ownership"] = cur["home_ownership"].astype("category")
    result, _, _ = run_drift_report(ref, cur, cfg)
    assert by_name(result)["region"].score < 1e-3
    assert not by_name(result)["region"].drifted
    assert not by_name(result)["home_ownership"].drifted


def test_module_import_does_not_load_evidently():
    code = "import sys, driftwatch.drift; print('evidently' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(REPO / "include"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
