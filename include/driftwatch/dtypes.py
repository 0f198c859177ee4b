"""The one normalisation of the values that are compared across sources: ids, categories and class labels.

A batch, its labels, the reference and the predictions are written by different producers (CSV
or Parquet, pandas or Spark), so the same id or class reaches us as 7, 7.0, "7" or "007". Every
join and every comparison in the pipeline goes through these functions, so that the same value
always becomes the same text: integers as digits, integral floats without ".0" (a CSV column
with nulls turns integers into floats), booleans as "True"/"False", text exactly as written
(leading zeros kept, which is why CSV id columns are read as text in the first place).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from driftwatch.errors import SchemaMismatch


def text_value(value: Any) -> str | None:
    """One id, category or class label as its canonical text; None for a missing value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def text_values(series: pd.Series) -> pd.Series:
    """A column as canonical text (object dtype, None for missing), computed once per distinct value."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = [text_value(v) for v in series.cat.categories]
        codes = np.asarray(series.cat.codes)
        lookup = np.array([*categories, None], dtype=object)
        return pd.Series(lookup[codes], index=series.index, name=series.name, dtype=object)
    if pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_extension_array_dtype(series.dtype):
        return pd.Series(series.astype(str).to_numpy(dtype=object), index=series.index, name=series.name)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    lookup = np.array([*(text_value(v) for v in uniques), None], dtype=object)
    return pd.Series(lookup[codes], index=series.index, name=series.name, dtype=object)


def positive_text(positive_label: Any) -> str | None:
    """The configured positive class as canonical text (None when the config leaves it to the data)."""
    return None if positive_label is None else text_value(positive_label)


def class_labels(series: pd.Series) -> pd.Series:
    """A classification target with one spelling per class, whatever source it was read from.

    Integer classes (1, 1.0, "1") become int64, or float64 when some are missing: sklearn's
    class weights refuse digit strings. Every other class (True, "yes", "churned") becomes its
    canonical text.
    """
    text = text_values(series)
    present = text.dropna()
    if present.empty or not present.str.fullmatch(r"-?\d{1,18}").all():
        return text
    numbers = pd.to_numeric(text, errors="coerce")
    return numbers.astype("int64") if len(present) == len(text) else numbers


def numeric_target(series: pd.Series, name: str) -> pd.Series:
    """A regression target as float64; text that is not a number is an error naming the column."""
    try:
        return pd.to_numeric(series).astype("float64")
    except (TypeError, ValueError) as err:
        raise SchemaMismatch(
            f"regression target {name!r} holds non-numeric values ({err}): fix the labels, or set "
            "schema.target.task: classification"
        ) from None
