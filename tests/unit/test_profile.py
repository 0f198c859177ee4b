"""The fast drift engine (driftwatch.profile) against Evidently 0.7's own column tests.

Evidently's verdicts come from its registered stattests, called on exactly the data
drift.run_drift_report hands Evidently (drift._prepare, then NaN/inf dropped per column), plus
one end-to-end comparison with run_drift_report itself.

Tolerances on scores:
* exact path (both sides hold at most `exact_values` values) and categorical features: 1e-9;
* sketch path (exact_values=0, 20k/15k rows): normed Wasserstein 1e-3, PSI / KL / Jensen-Shannon /
  Hellinger 2e-3, KS p-value 0.01 + 10% of Evidently's.
Decisions must be identical whenever the score is not within that tolerance of the threshold;
the borderline tests put thresholds 1e-6 (exact) and 3% (sketch; 10% for KS p-values, which move
several times faster than the statistic they come from) either side of Evidently's score.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from driftwatch import profile as fast
from driftwatch.config import ModelConfig, parse_config
from driftwatch.drift import DriftResult, _prepare, run_drift_report

NUMERIC_METHODS = ("wasserstein", "ks", "psi", "jensenshannon", "kl_div", "hellinger")
CATEGORICAL_METHODS = ("jensenshannon", "chisquare", "psi", "kl_div", "hellinger")
P_VALUE = {"ks", "chisquare"}
NUMERIC = ("cont", "skew", "whole", "few")
CATEGORICAL = ("colour", "size")
COLOURS = ["red", "green", "blue", "black", "white"]
SIZES = ["s", "m", "l"]
SKETCH_TOLERANCE = {"wasserstein": 1e-3, "psi": 2e-3, "jensenshannon": 2e-3, "kl_div": 2e-3, "hellinger": 2e-3}


def make_cfg(
    numeric_method: str = "wasserstein",
    categorical_method: str = "jensenshannon",
    thresholds: dict[str, float] | None = None,
) -> ModelConfig:
    """A small model config: four numeric and two categorical features, one method per kind."""
    thresholds = thresholds or {}
    features = [{"name": n, "type": "numeric"} for n in NUMERIC] + [
        {"name": n, "type": "categorical"} for n in CATEGORICAL
    ]
    for feature in features:
        if feature["name"] in thresholds:
            feature["drift_threshold"] = thresholds[feature["name"]]
    raw = {
        "name": "profile_test",
        "schema": {"id_column": "id", "target": {"name": "y"}, "features": features},
        "storage": {"bucket": "driftwatch-test", "reference_key": "ref.parquet"},
        "drift": {
            "numeric_method": numeric_method,
            "numeric_threshold": 0.05 if numeric_method == "ks" else 0.1,
            "categorical_method": categorical_method,
            "categorical_threshold": 0.05 if categorical_method == "chisquare" else 0.1,
        },
        "alerts": {"recipients": ["test@example.com"]},
        "monitor": {"start_date": "2026-01-01"},
        "evaluation": {"slice_columns": []},
    }
    return parse_config(raw)


def make_frame(n: int, seed: int, drift: float = 0.0, *, holes: bool = True) -> pd.DataFrame:
    """Features whose distributions move with `drift` (0 = reference); NaN and +-inf sprinkled in."""
    rng = np.random.default_rng(seed)
    colour_p = np.array([0.3, 0.25, 0.2, 0.15, 0.1]) * (1 - drift) + np.array([0.1, 0.1, 0.2, 0.3, 0.3]) * drift
    frame = pd.DataFrame(
        {
            "id": [f"row-{seed}-{i}" for i in range(n)],
            "cont": rng.normal(drift, 1 + 0.3 * drift, n),
            "skew": rng.lognormal(3 + 0.5 * drift, 0.6, n),
            "whole": np.floor(rng.gamma(2 + 2 * drift, 15, n)),  # integers, many distinct values
            "few": rng.poisson(1 + drift, n).astype(np.int64),  # at most ~10 distinct values
            "colour": rng.choice(COLOURS, n, p=colour_p / colour_p.sum()),
            "size": rng.choice(SIZES, n, p=[0.5, 0.3, 0.2]),
        }
    )
    if holes:
        rows = rng.choice(n, size=max(3, n // 100), replace=False)
        frame.loc[rows[0::3], "cont"] = np.nan
        frame.loc[rows[1::3], "cont"] = np.inf
        frame.loc[rows[2::3], "skew"] = -np.inf
        frame.loc[rows[0::2], "colour"] = None
    return frame


_PREPARED: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}


@pytest.fixture(autouse=True)
def _forget_prepared():
    yield
    _PREPARED.clear()


def _prepared(frame: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """drift._prepare(frame), cached: every config here has the same feature columns."""
    cached = _PREPARED.get(id(frame))
    if cached is None or cached[0] is not frame:
        cached = (frame, _prepare(frame, cfg, "data"))
        _PREPARED[id(frame)] = cached
    return cached[1]


def evidently_verdict(
    reference: pd.DataFrame, current: pd.DataFrame, cfg: ModelConfig, name: str
) -> tuple[float, bool]:
    """Evidently's own stattest on the data run_drift_report gives it."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Numerical if cfg.dataset.feature(name).type == "numeric" else ColumnType.Categorical
    ref = _prepared(reference, cfg)[name].replace([np.inf, -np.inf], np.nan).dropna()
    cur = _prepared(current, cfg)[name].replace([np.inf, -np.inf], np.nan).dropna()
    method, threshold = cfg.drift_rule(name)
    with np.errstate(divide="ignore", invalid="ignore"):  # chisquare divides by 0 for unseen categories
        result = get_stattest(ref, cur, kind, method)(ref, cur, kind, threshold)
    return float(result.drift_score), bool(result.drifted)


def fast_result(reference: pd.DataFrame, current: pd.DataFrame, cfg: ModelConfig, **build: int) -> DriftResult:
    return fast.fast_drift(fast.build_profile(reference, cfg, **build), current, cfg)


def assert_matches(result: DriftResult, reference, current, cfg: ModelConfig, *, sketch: bool) -> None:
    for feature in result.features:
        score, drifted = evidently_verdict(reference, current, cfg, feature.name)
        exact = not sketch or feature.kind == "categorical"
        if exact:
            assert feature.score == pytest.approx(score, abs=1e-9), feature
        elif feature.method == "ks":
            assert abs(feature.score - score) <= 0.01 + 0.1 * score, (feature, score)
        else:
            assert abs(feature.score - score) <= SKETCH_TOLERANCE[feature.method], (feature, score)
        assert feature.drifted == drifted, (feature, score, drifted)


# ---------------------------------------------------------------------------- agreement with Evidently


@pytest.mark.parametrize("drift", [0.0, 0.15, 1.0], ids=["none", "mild", "clear"])
@pytest.mark.parametrize("numeric_method", NUMERIC_METHODS)
def test_exact_path_matches_evidently(numeric_method, drift):
    cfg = make_cfg(numeric_method, CATEGORICAL_METHODS[NUMERIC_METHODS.index(numeric_method) % 5])
    reference, current = make_frame(3000, 1), make_frame(2000, 2, drift)
    result = fast_result(reference, current, cfg)
    assert_matches(result, reference, current, cfg, sketch=False)
    if drift == 1.0:
        assert all(f.drifted for f in result.features if f.kind == "numeric")


@pytest.mark.parametrize("drift", [0.0, 0.15, 1.0], ids=["none", "mild", "clear"])
@pytest.mark.parametrize("categorical_method", CATEGORICAL_METHODS)
def test_categorical_methods_match_evidently(categorical_method, drift):
    cfg = make_cfg("wasserstein", categorical_method)
    reference, current = make_frame(3000, 3), make_frame(2500, 4, drift)
    result = fast_result(reference, current, cfg)
    assert_matches(result, reference, current, cfg, sketch=False)


@pytest.mark.parametrize("drift", [0.0, 0.15, 1.0], ids=["none", "mild", "clear"])
@pytest.mark.parametrize("numeric_method", NUMERIC_METHODS)
def test_sketch_path_is_close_to_evidently(numeric_method, drift):
    """Nothing kept exactly: every numeric score comes from the cells and tails of the profiles."""
    cfg = make_cfg(numeric_method)
    reference, current = make_frame(12_000, 5), make_frame(10_000, 6, drift)
    result = fast_result(reference, current, cfg, exact_values=0)
    assert_matches(result, reference, current, cfg, sketch=True)


@pytest.mark.parametrize(("margin", "exact_values"), [(1e-6, fast.EXACT_VALUES), (0.03, 0)], ids=["exact", "sketch"])
@pytest.mark.parametrize("method", NUMERIC_METHODS + ("chisquare",))
def test_borderline_thresholds(method, margin, exact_values):
    """Thresholds just either side of Evidently's own score give Evidently's decisions."""
    numeric_method = method if method != "chisquare" else "wasserstein"
    categorical_method = method if method in fast._BINNED + ("hellinger", "chisquare") else "jensenshannon"
    reference, current = make_frame(12_000, 7), make_frame(11_000, 8, 0.08)
    if exact_values:
        reference, current = reference.iloc[:6000], current.iloc[:5000]
    base = make_cfg(numeric_method, categorical_method)
    names = list(NUMERIC) if method != "chisquare" else ["colour", "size"]
    scores = {name: evidently_verdict(reference, current, base, name)[0] for name in names}
    if method == "ks" and not exact_values:
        margin = 0.1
    for factor in (1 - margin, 1 + margin):
        thresholds = {name: score * factor for name, score in scores.items() if score > 0}
        cfg = make_cfg(numeric_method, categorical_method, thresholds)
        result = fast_result(reference, current, cfg, exact_values=exact_values)
        for feature in result.features:
            if feature.name in thresholds:
                assert feature.drifted == evidently_verdict(reference, current, cfg, feature.name)[1], feature


@pytest.mark.parametrize("method", ["wasserstein", "ks", "psi", "chisquare"])
def test_threshold_equal_to_score_follows_evidently_comparisons(method):
    """Distances drift at score >= threshold, ks at p <= threshold, chisquare only at p < threshold."""
    numeric_method = "wasserstein" if method == "chisquare" else method
    reference, current = make_frame(3000, 9), make_frame(2000, 10, 0.1)
    name = "colour" if method == "chisquare" else "cont"
    score = evidently_verdict(reference, current, make_cfg(numeric_method, "chisquare"), name)[0]
    fast_score = next(
        f for f in fast_result(reference, current, make_cfg(numeric_method, "chisquare")).features if f.name == name
    ).score
    # The engines sum categories in orders that follow string hashing (PYTHONHASHSEED), so a
    # chi-square p-value may differ in its last bit: each is held to a threshold equal to its own score.
    assert fast_score == pytest.approx(score, rel=1e-12, abs=0)
    cfg = make_cfg(numeric_method, "chisquare", {name: fast_score})
    feature = next(f for f in fast_result(reference, current, cfg).features if f.name == name)
    assert feature.score == fast_score
    assert feature.drifted is (method != "chisquare")
    own = make_cfg(numeric_method, "chisquare", {name: score})
    assert evidently_verdict(reference, current, own, name)[1] is feature.drifted


def test_run_drift_report_end_to_end(demo_cfg):
    from datetime import date

    from driftwatch import demo_data

    reference = demo_data.generate_reference(rows=3000)
    batches = demo_data.generate_scenario(date(2026, 1, 1), days=8, rows_per_day=1500)
    batch = [b for b in batches if b.kind == "covariate_drift"][-1]
    expected, _, _ = run_drift_report(reference, batch.features, demo_cfg, threshold_override=0.25)
    ref_profile = fast.build_profile(reference, demo_cfg)
    got = fast.fast_drift(ref_profile, batch.features, demo_cfg, threshold_override=0.25)
    assert [(f.name, f.kind, f.method, f.threshold, f.drifted) for f in got.features] == [
        (f.name, f.kind, f.method, f.threshold, f.drifted) for f in expected.features
    ]
    for ours, theirs in zip(got.features, expected.features, strict=True):
        assert ours.score == pytest.approx(theirs.score, abs=1e-9)
    assert (got.drifted_share, got.dataset_drift, got.share_threshold) == (
        expected.drifted_share,
        expected.dataset_drift,
        expected.share_threshold,
    )
    assert (got.reference_rows, got.current_rows) == (expected.reference_rows, expected.current_rows)
    assert got.evidently_version == fast.ENGINE


# ---------------------------------------------------------------------------- merging


def _partitions(frame: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    edges = [0, *cuts, len(frame)]
    return [frame.iloc[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]


@pytest.mark.parametrize("exact_values", [0, fast.EXACT_VALUES], ids=["sketch", "exact-until-too-large"])
@pytest.mark.parametrize("numeric_method", ["wasserstein", "ks", "psi", "hellinger"])
def test_merged_partitions_equal_single_pass(numeric_method, exact_values):
    cfg = make_cfg(numeric_method, "psi")
    reference, current = make_frame(15_000, 11), make_frame(12_000, 12, 0.2)
    ref_profile = fast.build_profile(reference, cfg, exact_values=exact_values)
    single = fast.profile_batch(current, ref_profile, cfg)
    parts = [fast.profile_batch(p, ref_profile, cfg) for p in _partitions(current, [1, 4000, 4001, 9000])]
    left = parts[0]
    for part in parts[1:]:
        left = fast.merge(left, part)
    right = parts[-1]
    for part in reversed(parts[:-1]):
        right = fast.merge(part, right)
    expected = fast.decide(ref_profile, single, cfg)
    for merged in (left, right):
        got = fast.decide(ref_profile, merged, cfg)
        assert [(f.name, f.score, f.drifted) for f in got.features] == [
            (f.name, f.score, f.drifted) for f in expected.features
        ]
        assert got.current_rows == expected.current_rows == len(current)


def test_merged_small_partitions_stay_exact():
    cfg = make_cfg("ks", "chisquare")
    reference, current = make_frame(3000, 13), make_frame(2000, 14, 0.1)
    ref_profile = fast.build_profile(reference, cfg)
    parts = [fast.profile_batch(p, ref_profile, cfg) for p in _partitions(current, [700, 1500])]
    merged = fast.merge(fast.merge(parts[0], parts[1]), parts[2])
    assert merged.features["cont"].values is not None
    assert_matches(fast.decide(ref_profile, merged, cfg), reference, current, cfg, sketch=False)


def test_merge_refuses_other_references():
    cfg = make_cfg()
    one = fast.build_profile(make_frame(500, 15), cfg)
    other = fast.build_profile(make_frame(500, 16), cfg)
    current = make_frame(300, 17)
    with pytest.raises(ValueError, match="different reference"):
        fast.merge(fast.profile_batch(current, one, cfg), fast.profile_batch(current, other, cfg))
    with pytest.raises(ValueError, match="another reference"):
        fast.decide(one, fast.profile_batch(current, other, cfg), cfg)


def test_batch_built_for_another_method_is_refused():
    reference, current = make_frame(20_000, 18), make_frame(15_000, 19)
    ref_profile = fast.build_profile(reference, make_cfg("wasserstein"), exact_values=0)
    batch = fast.profile_batch(current, ref_profile, make_cfg("wasserstein"))
    with pytest.raises(ValueError, match="another drift method"):
        fast.decide(ref_profile, batch, make_cfg("hellinger"))


# ---------------------------------------------------------------------------- serialisation


def test_reference_profile_json_round_trip():
    cfg = make_cfg("hellinger", "chisquare")
    reference, current = make_frame(20_000, 20), make_frame(3000, 21, 0.3)
    for exact_values in (0, fast.EXACT_VALUES):
        original = fast.build_profile(reference, cfg, exact_values=exact_values)
        text = original.to_json()
        loaded = fast.ReferenceProfile.from_json(text)
        assert loaded.profile_id == original.profile_id
        assert loaded.to_json() == text
        assert fast.fast_drift(loaded, current, cfg).to_dict() == fast.fast_drift(original, current, cfg).to_dict()
    assert '"schema":"driftwatch.reference-profile"' in text and '"version":1' in text


def test_reference_profile_json_is_checked():
    text = fast.build_profile(make_frame(500, 22), make_cfg()).to_json()
    with pytest.raises(ValueError, match="does not match its profile_id"):
        fast.ReferenceProfile.from_json(text.replace('"count":500', '"count":499', 1))
    with pytest.raises(ValueError, match="not a driftwatch reference profile"):
        fast.ReferenceProfile.from_json('{"schema": "something else"}')
    with pytest.raises(ValueError, match="rebuild it"):
        fast.ReferenceProfile.from_json(text.replace('"version":1', '"version":99'))


def test_batch_profile_json_round_trip():
    cfg = make_cfg("hellinger", "psi")
    ref_profile = fast.build_profile(make_frame(20_000, 23), cfg, exact_values=0)
    batch = fast.profile_batch(make_frame(5000, 24, 0.5), ref_profile, cfg)
    loaded = fast.BatchProfile.from_json(batch.to_json())
    assert loaded.to_json() == batch.to_json()
    assert fast.decide(ref_profile, loaded, cfg).to_dict() == fast.decide(ref_profile, batch, cfg).to_dict()


# ---------------------------------------------------------------------------- data quirks


def test_nan_and_inf_are_dropped_like_evidently():
    cfg = make_cfg("ks", "psi")
    reference, current = make_frame(4000, 25), make_frame(3000, 26, 0.05)
    current.loc[:99, "whole"] = np.nan
    current.loc[100:149, "whole"] = -np.inf
    current.loc[:499, "size"] = np.nan
    result = fast_result(reference, current, cfg)
    assert result.current_rows == 3000 and result.reference_rows == 4000
    assert_matches(result, reference, current, cfg, sketch=False)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_column_without_values_is_an_error(value):
    cfg = make_cfg()
    ref_profile = fast.build_profile(make_frame(500, 27), cfg)
    current = make_frame(300, 28)
    current["cont"] = value
    with pytest.raises(ValueError, match="no values for feature"):
        fast.fast_drift(ref_profile, current, cfg)
    reference = make_frame(500, 27)
    reference["size"] = None
    with pytest.raises(ValueError, match="reference data has no values"):
        fast.build_profile(reference, cfg)


def test_missing_and_non_numeric_columns_are_errors():
    cfg = make_cfg()
    ref_profile = fast.build_profile(make_frame(500, 29), cfg)
    with pytest.raises(ValueError, match="missing feature column"):
        fast.fast_drift(ref_profile, make_frame(300, 30).drop(columns=["skew"]), cfg)
    bad = make_frame(300, 30)
    bad["cont"] = "text"
    with pytest.raises(ValueError, match="non-numeric"):
        fast.fast_drift(ref_profile, bad, cfg)


@pytest.mark.parametrize("method", CATEGORICAL_METHODS)
def test_unseen_and_vanished_categories(method):
    cfg = make_cfg("wasserstein", method)
    reference, current = make_frame(3000, 31), make_frame(2000, 32)
    current.loc[:59, "colour"] = "purple"  # never seen in the reference
    current["size"] = current["size"].replace("l", "m")  # a reference category disappears
    result = fast_result(reference, current, cfg)
    assert_matches(result, reference, current, cfg, sketch=False)
    if method == "chisquare":
        colour = next(f for f in result.features if f.name == "colour")
        assert colour.score == 0.0 and colour.drifted  # 60 rows where 0 were expected


def test_category_labels_are_normalised_like_drift_prepare():
    cfg = make_cfg("wasserstein", "jensenshannon")
    reference, current = make_frame(2000, 33), make_frame(1500, 34)
    reference["size"] = np.resize([1.0, 2.0, 3.0], 2000)
    current["size"] = pd.Categorical(np.resize(["1", "2", "3", "2"], 1500))
    result = fast_result(reference, current, cfg)
    assert_matches(result, reference, current, cfg, sketch=False)


@pytest.mark.parametrize("method", ["psi", "jensenshannon", "kl_div", "hellinger"])
def test_few_distinct_values_with_new_values(method):
    """Evidently bins a reference with <= 20 distinct values by value; new batch values are new bins."""
    cfg = make_cfg(method)
    reference, current = make_frame(12_000, 35), make_frame(10_000, 36, 0.2)
    current["few"] = current["few"].astype(np.float64)
    current.loc[:29, "few"] = 17  # beyond the reference's values
    current.loc[30:39, "few"] = 2.5  # between them
    result = fast_result(reference, current, cfg, exact_values=0)
    assert_matches(result, reference, current, cfg, sketch=True)
    few = next(f for f in result.features if f.name == "few")
    assert few.score == pytest.approx(evidently_verdict(reference, current, cfg, "few")[0], abs=1e-9)


def test_hellinger_distinct_count_estimate():
    ref_profile = fast.build_profile(make_frame(50_000, 37), make_cfg("hellinger"), exact_values=0)
    batch = fast.profile_batch(make_frame(30_000, 38), ref_profile, make_cfg("hellinger"))
    skew = pd.concat([make_frame(50_000, 37)["skew"], make_frame(30_000, 38)["skew"]])
    truth = skew.replace([np.inf, -np.inf], np.nan).dropna().nunique()
    estimate = fast._distinct_union(ref_profile.features["skew"], batch.features["skew"])
    assert abs(estimate - truth) / truth < 0.05


def test_constant_and_extreme_columns():
    cfg = make_cfg("wasserstein")
    reference, current = make_frame(3000, 39), make_frame(2000, 40)
    reference["cont"], current["cont"] = 5.0, 5.0
    current.loc[:9, "skew"] = 1e12  # far outside the reference range
    for exact_values in (fast.EXACT_VALUES, 0):
        result = fast_result(reference, current, cfg, exact_values=exact_values)
        cont = next(f for f in result.features if f.name == "cont")
        assert cont.score == 0.0 and not cont.drifted
        skew = next(f for f in result.features if f.name == "skew")
        assert skew.score == pytest.approx(evidently_verdict(reference, current, cfg, "skew")[0], rel=1e-6)


# ---------------------------------------------------------------------------- Parquet


def test_read_columns_and_streamed_profile(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = make_cfg("psi", "chisquare")
    reference, current = make_frame(20_000, 41), make_frame(12_000, 42, 0.2)
    path = tmp_path / "batch.parquet"
    pq.write_table(pa.Table.from_pandas(current, preserve_index=False), path, row_group_size=2500)

    frame = fast.read_columns(path, ["id", *cfg.dataset.feature_names], categories=cfg.dataset.categorical_features)
    assert list(frame.columns) == ["id", *cfg.dataset.feature_names]
    assert isinstance(frame["colour"].dtype, pd.CategoricalDtype)
    assert not isinstance(frame["id"].dtype, pd.CategoricalDtype)

    ref_profile = fast.build_profile(reference, cfg, exact_values=0)
    in_memory = fast.decide(ref_profile, fast.profile_batch(frame, ref_profile, cfg), cfg)
    streamed = fast.decide(ref_profile, fast.profile_parquet(path, ref_profile, cfg, batch_rows=1000), cfg)
    assert streamed.to_dict() == in_memory.to_dict()
    assert_matches(streamed, reference, current, cfg, sketch=True)
    with pytest.raises(ValueError, match="missing column"):
        fast.read_columns(path, ["nope"])


def test_profile_batch_accepts_column_mappings():
    import pyarrow as pa

    cfg = make_cfg()
    reference, current = make_frame(3000, 43), make_frame(2000, 44, 0.3)
    ref_profile = fast.build_profile(reference, cfg)
    columns = {name: current[name].to_numpy() for name in cfg.dataset.numeric_features}
    columns |= {name: pa.array(current[name]).dictionary_encode() for name in cfg.dataset.categorical_features}
    from_mapping = fast.decide(ref_profile, fast.profile_batch(columns, ref_profile, cfg), cfg)
    assert from_mapping.to_dict() == fast.fast_drift(ref_profile, current, cfg).to_dict()


def test_threads_do_not_change_the_result(monkeypatch):
    monkeypatch.setattr(fast.batch, "PARALLEL_ROWS", 1)
    cfg = make_cfg("hellinger", "psi")
    reference, current = make_frame(20_000, 45), make_frame(15_000, 46, 0.1)
    ref_profile = fast.build_profile(reference, cfg, exact_values=0)
    one = fast.profile_batch(current, ref_profile, cfg, workers=1)
    many = fast.profile_batch(current, ref_profile, cfg, workers=3)
    assert many.to_json() == one.to_json()


def test_threshold_override():
    cfg = make_cfg()
    reference, current = make_frame(3000, 47), make_frame(2000, 48, 1.0)
    ref_profile = fast.build_profile(reference, cfg)
    result = fast.fast_drift(ref_profile, current, cfg, threshold_override=1.0)
    assert result.share_threshold == 1.0 and result.dataset_drift is (result.drifted_share == 1.0)
    with pytest.raises(ValueError, match="threshold_override"):
        fast.fast_drift(ref_profile, current, cfg, threshold_override=0.0)
    assert math.isclose(result.drifted_share, sum(f.drifted for f in result.features) / 6)
