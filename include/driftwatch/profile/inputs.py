"""Input columns, checked and converted as drift.py checks and converts them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from driftwatch.config import ModelConfig


def _numeric_values(series: pd.Series, name: str, which: str) -> np.ndarray:
    """float64 values, converted as drift._prepare converts them (non-finite ones dropped later)."""
    if series.dtype == np.float64:
        return series.to_numpy()
    if pd.api.types.is_extension_array_dtype(series.dtype) and pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        values = pd.to_numeric(series, errors="raise")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{which} data: numeric feature {name!r} holds non-numeric values ({err})") from None
    return np.asarray(values.astype("float64"), dtype=np.float64)


def _finite(values: np.ndarray) -> np.ndarray:
    mask = np.isfinite(values)
    return values if mask.all() else values[mask]


def _check_columns(names: list[Any], cfg: ModelConfig, which: str) -> None:
    missing = [name for name in cfg.dataset.feature_names if name not in names]
    if missing:
        raise ValueError(f"{which} data is missing feature column(s): {', '.join(missing)}")
    duplicated = sorted({n for n in cfg.dataset.feature_names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{which} data has duplicate feature column(s): {', '.join(duplicated)}")


def _as_columns(data: pd.DataFrame | Mapping[str, Any], cfg: ModelConfig) -> dict[str, pd.Series]:
    """The configured feature columns as Series, checked as drift.py checks them."""
    if isinstance(data, pd.DataFrame):
        _check_columns(list(data.columns), cfg, "current")
        return {name: data[name] for name in cfg.dataset.feature_names}
    if isinstance(data, Mapping):
        _check_columns(list(data.keys()), cfg, "current")
        return {name: _as_series(data[name]) for name in cfg.dataset.feature_names}
    raise TypeError(f"current data must be a DataFrame or a mapping of columns, got {type(data).__name__}")


def _as_series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if hasattr(values, "to_pandas"):  # pyarrow Array / ChunkedArray: dictionaries become categoricals
        return values.to_pandas()
    return pd.Series(values)
