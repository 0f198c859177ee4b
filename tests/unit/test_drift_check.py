"""The monitor's drift stage: one streamed pass gives the full-data decision and the report sample."""

from __future__ import annotations

import dataclasses
import io

import pandas as pd
import pytest

from driftwatch import drift, drift_check
from driftwatch import profile as fast
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
