"""The monitor's drift stage: one streamed pass gives the full-data decision and the report sample."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from driftwatch import drift, drift_check
from driftwatch import profile as fast
from driftwatch.config import ModelConfig
from tests.unit.test_profile import evidently_verdict, make_cfg, make_frame


def _parquet(frame: pd.DataFrame, row_group: int = 1500) -> io.BytesIO:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, row_group_size=row_group)
    buffer.seek(0)
    return buffer


@pytest.fixture
def cfg():
    cfg = make_cfg("wasserstein", "jensenshannon")
    # The smallest sample the config allows, so the sample is really smaller than the batch.
    return cfg.model_copy(update={"drift": cfg.drift.model_copy(update={"report_sample_rows": 1000})})


@pytest.fixture
def reference():
    return make_frame(6000, 1, holes=False)


@pytest.fixture
def batch():
    return make_frame(5000, 2, 0.3, holes=False)


def test_streamed_profile_equals_the_single_pass_profile(cfg, reference, batch):
    ref = fast.build_profile(reference, cfg)
    streamed, _ = drift_check.profile_partition(_parquet(batch), ref, cfg, seed=3)
    single = fast.profile_batch(batch, ref, cfg)
    assert fast.decide(ref, streamed, cfg).to_dict() == fast.decide(ref, single, cfg).to_dict()
    assert streamed.rows == len(batch)


def test_partition_plan_covers_every_row_group_once():
    plan = drift_check.plan_partitions(rows=10_500, row_group_rows=1000, partition_rows=3000)
    assert [(p.first_row_group, p.stop_row_group) for p in plan] == [(0, 3), (3, 6), (6, 9), (9, 11)]
    assert [p.index for p in plan] == [0, 1, 2, 3]
    assert len(drift_check.plan_partitions(rows=900, row_group_rows=1000, partition_rows=3000)) == 1
    # A partition smaller than a row group still holds one whole row group.
    assert len(drift_check.plan_partitions(rows=5000, row_group_rows=1000, partition_rows=10)) == 5
    assert drift_check.Partition.from_dict(plan[2].to_dict()) == plan[2]


def test_partitions_merge_into_the_single_pass_decision_and_sample(cfg, reference, batch):
    ref = fast.build_profile(reference, cfg)
    source = _parquet(batch, row_group=500)  # 10 row groups
    whole = drift_check.profile_partition(source, ref, cfg, seed=9)
    plan = drift_check.plan_partitions(len(batch), 500, 1500)
    assert len(plan) == 4
    parts = [drift_check.profile_partition(source, ref, cfg, seed=9, partition=p) for p in plan]
    merged = parts[0][0]
    for other, _ in parts[1:]:
        merged = fast.merge(merged, other)
    assert fast.decide(ref, merged, cfg).to_dict() == fast.decide(ref, whole[0], cfg).to_dict()
    pd.testing.assert_frame_equal(pd.concat([s for _, s in parts], ignore_index=True), whole[1])
    with pytest.raises(ValueError, match="do not fit"):
        drift_check.profile_partition(source, ref, cfg, seed=9, partition=drift_check.Partition(0, 8, 12))


def test_sample_is_a_reproducible_subset_of_the_batch(cfg, reference, batch):
    ref = fast.build_profile(reference, cfg)
    _, first = drift_check.profile_partition(_parquet(batch), ref, cfg, seed=3)
    _, again = drift_check.profile_partition(_parquet(batch), ref, cfg, seed=3)
    _, other = drift_check.profile_partition(_parquet(batch), ref, cfg, seed=4)
    assert len(first) == 1000
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    # Every sampled row is a row of the batch, categories as plain labels.
    keys = set(map(tuple, batch[cfg.dataset.feature_names].astype(str).to_numpy()))
    assert all(tuple(row) in keys for row in first.astype(str).to_numpy())
    assert first["colour"].dtype == object


def test_a_batch_smaller_than_the_sample_is_taken_whole(cfg, reference):
    small = make_frame(700, 5, holes=False)
    ref = fast.build_profile(reference, cfg)
    _, sample = drift_check.profile_partition(_parquet(small, 100), ref, cfg, seed=1)
    assert len(sample) == 700


def test_assess_decides_on_all_rows_like_evidently(cfg, reference, batch):
    ref = fast.build_profile(reference, cfg)
    ref_sample = drift_check_reference_sample(reference, cfg)
    assessment = drift_check.assess_parquet(ref, ref_sample, _parquet(batch), cfg, batch_date="2026-11-20")
    for feature in assessment.result.features:
        score, drifted = evidently_verdict(reference, batch, cfg, feature.name)
        assert feature.score == pytest.approx(score, abs=1e-9), feature
        assert feature.drifted == drifted
    summary = assessment.summary()
    assert summary["sampling"]["batch_rows"] == 5000
    assert summary["sampling"]["batch_sample_rows"] == 1000
    assert summary["sampling"]["seed"] == drift_check.sample_seed("2026-11-20")
    # The report shows the full-data verdicts, read back from Evidently's own snapshot.
    shown = drift._feature_results(assessment.report_json, cfg, cfg.dataset.feature_names)
    assert [(f.name, f.score, f.drifted) for f in shown] == [
        (f.name, f.score, f.drifted) for f in assessment.result.features
    ]
    assert set(summary["sample_only_differs"]) <= set(cfg.dataset.feature_names)


def drift_check_reference_sample(reference: pd.DataFrame, cfg) -> pd.DataFrame:
    from driftwatch.references import report_sample

    return report_sample(reference[cfg.dataset.feature_names], cfg.drift.report_sample_rows, seed=0)


def test_report_page_states_sampling_and_names_what_the_sample_alone_would_miss(cfg, reference, batch):
    ref = fast.build_profile(reference, cfg)
    assessment = drift_check.assess_parquet(
        ref, drift_check_reference_sample(reference, cfg), _parquet(batch), cfg, batch_date="2026-11-20"
    )
    html = assessment.html
    banner = html[html.index('<section id="driftwatch-decision"') :]
    assert html.index("<body") < html.index('<section id="driftwatch-decision"')
    assert "1,000 of 5,000 batch rows" in banner
    assert drift_check.SAMPLING_METHOD in banner
    # Pretend the sample alone saw no drift anywhere: the drifted features are the ones named.
    calm = [f.__class__(**{**f.__dict__, "drifted": False}) for f in assessment.sample_only.features]
    alone = assessment.sample_only.__class__(**{**assessment.sample_only.__dict__, "features": calm})
    forced = dataclasses.replace(assessment, sample_only=alone)
    drifted = [f.name for f in assessment.result.features if f.drifted]
    assert drifted and forced.sample_only_differs == drifted
    page = drift_check.annotate_report("<html><body><p>evidently</p></body></html>", forced)
    assert page.count("sample alone: other verdict") == len(drifted)
    assert f"{len(drifted)} feature(s) would have been judged otherwise" in page
    assert page.endswith("<p>evidently</p></body></html>")


def test_evidently_shows_the_decision_it_is_given_not_one_of_its_own(cfg, reference, batch):
    """The report's verdicts come from the full-data decision, even where the frames drawn say otherwise."""
    decided = drift.run_drift_report(reference, batch, cfg)[0]
    flipped = [
        f.__class__(**{**f.__dict__, "drifted": not f.drifted, "score": f.score + 0.5}) for f in decided.features
    ]
    drifted = sum(f.drifted for f in flipped)
    fake = dataclasses.replace(decided, features=flipped, drifted_share=drifted / len(flipped), current_rows=123_456)
    shown, html, report_json = drift.run_drift_report(reference, batch, cfg, decided=fake)
    assert [(f.name, f.score, f.drifted) for f in shown.features] == [(f.name, f.score, f.drifted) for f in flipped]
    assert shown.drifted_share == fake.drifted_share
    assert "on all 123,456 rows" in html
    # And the registry does not leak into a later report of the frames themselves.
    again = drift.run_drift_report(reference, batch, cfg)[0]
    assert again.to_dict() == decided.to_dict()


def test_hostile_feature_names_are_escaped_in_the_banner(reference, batch):
    hostile = "</script><script>alert(1)</script>"
    cfg = make_cfg()
    ref = fast.build_profile(reference, cfg)
    assessment = drift_check.assess_parquet(
        ref, drift_check_reference_sample(reference, cfg), _parquet(batch), cfg, batch_date="2026-11-20"
    )
    renamed = [
        f.__class__(**{**f.__dict__, "name": hostile if i == 0 else f.name})
        for i, f in enumerate(assessment.result.features)
    ]
    result = assessment.result.__class__(**{**assessment.result.__dict__, "features": renamed})
    page = drift_check.annotate_report("<body>", dataclasses.replace(assessment, result=result, sample_only=result))
    assert hostile not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---------------------------------------------------------------------------- one feature gone wild


def _outside_share(reference: pd.Series, current: pd.Series) -> float:
    """What outside_range_share must be: finite batch values beyond the finite reference's min or max."""
    ref = reference[np.isfinite(reference)]
    cur = current[np.isfinite(current)]
    return float(((cur < ref.min()) | (cur > ref.max())).mean())


def _only_categorical(method: str) -> ModelConfig:
    cfg = make_cfg("wasserstein", method)
    features = [f for f in cfg.dataset.features if f.type == "categorical"]
    return cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"features": features})})


def test_a_feature_times_a_million_is_extreme_while_the_share_stays_under_its_threshold(cfg, reference):
    current = make_frame(3000, 2, holes=False)
    current["skew"] = current["skew"] * 1e6  # a unit change in one feature
    ref = fast.build_profile(reference, cfg)
    result = fast.decide(ref, fast.profile_batch(current, ref, cfg), cfg)
    assert result.drifted_share < result.share_threshold and not result.dataset_drift

    extreme = fast.extreme_features(ref, result, cfg.retraining)
    assert [e["feature"] for e in extreme] == ["skew"]
    low, high = reference["skew"].min(), reference["skew"].max()
    assert extreme[0]["why"].startswith(f"100% of values outside the reference range [{low:.4g}, {high:.4g}]")
    assert "x its threshold 0.1" in extreme[0]["why"]
    assert extreme[0]["outside_range_share"] == 1.0 and extreme[0]["score_ratio"] > 1e6
    assert json.loads(json.dumps(extreme, allow_nan=False)) == extreme


def test_ordinary_small_drift_has_no_extreme_feature(cfg, reference):
    ref = fast.build_profile(reference, cfg)
    result = fast.fast_drift(ref, make_frame(3000, 2, 0.2), cfg)
    assert any(f.outside_range_share for f in result.features), "a few tail values do fall outside"
    assert fast.extreme_features(ref, result, cfg.retraining) == []


def test_a_score_far_past_its_threshold_is_extreme_inside_the_range(cfg, reference):
    current = make_frame(3000, 2, holes=False)
    current["cont"] = current["cont"] + 2.0  # about 2 reference stds: normed Wasserstein ~2, 20x 0.1
    ref = fast.build_profile(reference, cfg)
    result = fast.fast_drift(ref, current, cfg)
    assert not result.dataset_drift
    (extreme,) = fast.extreme_features(ref, result, cfg.retraining)
    assert extreme["feature"] == "cont" and extreme["outside_range_share"] < 0.5
    assert "outside" not in extreme["why"] and re.fullmatch(r"score \S+ is \d+x its threshold 0\.1", extreme["why"])
    loose = cfg.retraining.model_copy(update={"extreme_score_factor": 1e3})
    assert fast.extreme_features(ref, result, loose) == []


@pytest.mark.parametrize("exact_values", [fast.EXACT_VALUES, 0], ids=["exact", "sketch"])
def test_outside_range_share_is_exact_on_either_path_and_across_partitions(exact_values):
    cfg = make_cfg()
    reference = make_frame(12_000, 5)  # holes: NaN and +-inf count on neither side
    current = make_frame(8000, 6, 1.0)
    for name in ("cont", "skew"):  # the reference's own min and max lie inside the range
        finite = reference[name][np.isfinite(reference[name])]
        current.loc[:9, name] = [finite.min(), finite.max()] * 5
    ref = fast.build_profile(reference, cfg, exact_values=exact_values)
    parts = [fast.profile_batch(current.iloc[i : i + 2000], ref, cfg) for i in range(0, 8000, 2000)]
    merged = parts[0]
    for part in parts[1:]:
        merged = fast.merge(merged, part)
    for feature in fast.decide(ref, merged, cfg).features:
        if feature.kind == "numeric":
            want = _outside_share(reference[feature.name], current[feature.name])
            assert feature.outside_range_share == want, feature
    assert want > 0


@pytest.mark.parametrize("method", ["chisquare", "jensenshannon"])
def test_categories_unseen_in_the_reference_count_as_outside_it(method, reference):
    cfg = _only_categorical(method)
    current = make_frame(3000, 2)  # holes: None labels count on neither side
    current["colour"] = current["colour"].str.upper()  # a relabelling: every label is new
    ref = fast.build_profile(reference, cfg)
    result = fast.fast_drift(ref, current, cfg)
    by_name = {f.name: f for f in result.features}
    assert by_name["colour"].outside_range_share == 1.0 and by_name["size"].outside_range_share == 0.0
    extreme = fast.extreme_features(ref, result, cfg.retraining)
    assert [e["feature"] for e in extreme] == ["colour"]
    assert extreme[0]["why"].startswith("100% of values in categories unseen in the reference")
    assert (extreme[0]["score_ratio"] is None) is (method == "chisquare")


def test_p_value_methods_give_no_score_ratio_and_still_see_values_out_of_range(reference):
    cfg = make_cfg("ks", "chisquare")
    current = make_frame(3000, 2)
    current["whole"] = current["whole"] * 1e6
    ref = fast.build_profile(reference, cfg)
    result = fast.fast_drift(ref, current, cfg)
    assert all(f.score_ratio is None for f in result.features)
    extreme = fast.extreme_features(ref, result, cfg.retraining)
    assert [(e["feature"], e["score_ratio"]) for e in extreme] == [("whole", None)]
    assert "threshold" not in extreme[0]["why"]
    plain = result.to_dict()
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain
    assert {"outside_range_share", "score_ratio"} <= set(plain["features"][0])
