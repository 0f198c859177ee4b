"""Labels and the one normalisation of ids, categories and class labels (driftwatch.labels, driftwatch.dtypes)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from driftwatch import demo_data
from driftwatch.dtypes import class_labels, text_value, text_values
from driftwatch.errors import PermanentError, SchemaMismatch
from driftwatch.ingest import normalize_types, parse_object
from driftwatch.labels import join_labels, normalize_labels


@pytest.fixture(scope="module")
def batches():
    return demo_data.generate_scenario(date(2026, 1, 1), rows_per_day=300)


def test_join_labels_reports_unmatched_and_duplicates(cfg, batches):
    batch = batches[0]
    features = batch.features.iloc[:100]
    labels = batch.labels.iloc[10:120].copy()
    # A corrected label for the same id arrives later: the last one wins.
    fix = labels.iloc[[0]].assign(defaulted=1 - labels.iloc[0]["defaulted"])
    labels = pd.concat([labels, fix, labels.iloc[[1]].assign(defaulted=None)], ignore_index=True)
    joined, info = join_labels(features, labels, cfg)
    assert info.rows == 100 and info.label_rows == 112
    assert info.duplicate_label_ids == 2
    assert info.missing_target == 1
    assert info.matched == len(joined) == 89  # ids 11..100 minus the one whose last label is missing
    assert info.unmatched_rows == 11 and info.unknown_label_ids == 20
    corrected = joined.set_index("application_id").loc[fix.iloc[0]["application_id"], "defaulted"]
    assert corrected == fix.iloc[0]["defaulted"]


@pytest.mark.parametrize(
    ("row_ids", "label_ids", "matched"),
    [
        ([1, 2, 3], ["1", "3", "9"], [1, 3]),  # int batch, text labels
        (["1", "2", "3"], np.array([1, 3, 9], dtype="int64"), ["1", "3"]),  # text batch, int labels
        ([1.0, 2.0, np.nan], [1, 2], [1.0, 2.0]),  # float ids: a CSV int column with a null
        (["007", "008"], ["007", "7"], ["007"]),  # zero-padded ids keep their zeros
    ],
)
def test_join_labels_matches_ids_of_any_dtype(cfg, row_ids, label_ids, matched):
    rows = pd.DataFrame({"application_id": row_ids, "age": range(len(row_ids))})
    labels = pd.DataFrame({"application_id": label_ids, "defaulted": [0, 1, 1][: len(label_ids)]})
    joined, _ = join_labels(rows, labels, cfg)
    assert joined["application_id"].tolist() == matched


def test_zero_padded_csv_ids_survive_parsing():
    frame = parse_object(b"id,x\n007,1\n010,\n", "csv", "labels.csv", text_columns=["id"])
    assert frame["id"].tolist() == ["007", "010"]
    plain = parse_object(b"id,x\n007,1\n", "csv", "labels.csv")
    assert plain["id"].tolist() == [7], "without text_columns pandas reads an int: the reason they exist"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.Series([1, 0, 1]), ["1", "0", "1"]),
        (pd.Series([1.0, np.nan, 0.0]), ["1", None, "0"]),
        (pd.Series([True, False]), ["True", "False"]),
        (pd.Series([True, None], dtype=object), ["True", None]),
        (pd.Series(["yes", "no", None]), ["yes", "no", None]),
        (pd.Series(pd.array([3, None], dtype="Int64")), ["3", None]),
        (pd.Series(["b", "a"], dtype="category"), ["b", "a"]),
        (pd.Series([2.5, 1.0]), ["2.5", "1"]),
    ],
)
def test_text_values_is_one_canonical_text(values, expected):
    assert text_values(values).tolist() == expected
    assert [text_value(v) for v in values.astype(object)] == expected


def test_class_labels_agree_across_sources():
    csv_bool = parse_object(b"y\nTrue\nFalse\n", "csv", "l.csv")["y"]
    parquet_bool = pd.Series([True, False])
    assert class_labels(csv_bool).tolist() == class_labels(parquet_bool).tolist() == ["True", "False"]
    integers = [pd.Series([1.0, 0.0]), pd.Series(["1", "0"]), pd.Series([1, 0]), pd.Series([1, 0], dtype=object)]
    assert all(class_labels(s).tolist() == [1, 0] and class_labels(s).dtype == "int64" for s in integers)
    assert class_labels(pd.Series(["yes", "no"])).tolist() == ["yes", "no"]
    assert class_labels(pd.Series([1.0, None])).isna().tolist() == [False, True]


def test_normalize_types_stages_integer_coded_categories_like_the_reference(cfg):
    batch = pd.DataFrame({"application_id": [5, 6], "region": [1.0, np.nan], "age": pd.array([30, None], "Int64")})
    out = normalize_types(batch, cfg)
    assert out["region"].tolist() == ["1", None] and out["application_id"].tolist() == ["5", "6"]
    assert out["age"].dtype == "float64" and np.isnan(out["age"].iloc[1])


def test_labels_without_their_columns_are_a_permanent_error_naming_the_field(cfg):
    with pytest.raises(SchemaMismatch, match="schema.target.name='defaulted'") as caught:
        normalize_labels(pd.DataFrame({"application_id": [1], "label": [0]}), cfg, source="s3://b/labels.csv")
    assert isinstance(caught.value, PermanentError) and "s3://b/labels.csv" in str(caught.value)
