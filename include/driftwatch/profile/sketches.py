"""Mergeable sketches of a column: HyperLogLog registers, and category counts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

# Evidently's input goes through drift.category_text too: both paths see identical labels.
from driftwatch.drift import category_text
from driftwatch.profile.grid import _BLOCK

HLL_BITS = 12  # 4096 HyperLogLog registers: about 1.6% error on distinct counts


def _hll_registers(x: np.ndarray) -> np.ndarray:
    """HyperLogLog registers of the distinct values of x (-0.0 counts as 0.0, like pandas)."""
    rest_bits = 64 - HLL_BITS
    keys = np.empty(len(x), dtype=np.intp)
    for start in range(0, len(x), _BLOCK):  # blocks: the temporaries stay in the CPU cache
        z = (x[start : start + _BLOCK] + 0.0).view(np.uint64)
        # splitmix64 finaliser on the float's bits: cheap and well mixed.
        z += np.uint64(0x9E3779B97F4A7C15)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        bucket = (z >> np.uint64(rest_bits)).astype(np.intp)
        rest = (z & np.uint64((1 << rest_bits) - 1)).astype(np.float64)  # below 2**52: exact in float64
        # rank = leading zeros of the remaining bits + 1; frexp's exponent is the bit length.
        keys[start : start + _BLOCK] = bucket * 64 + (rest_bits + 1 - np.frexp(rest)[1])
    hits = np.bincount(keys, minlength=(1 << HLL_BITS) * 64).reshape(-1, 64) > 0
    registers = np.where(hits.any(axis=1), 63 - np.argmax(hits[:, ::-1], axis=1), 0)
    return registers.astype(np.uint8)


def _hll_estimate(registers: np.ndarray) -> float:
    m = float(len(registers))
    alpha = 0.7213 / (1.0 + 1.079 / m)
    estimate = alpha * m * m / float(np.sum(2.0 ** -registers.astype(np.float64)))
    zeros = int(np.count_nonzero(registers == 0))
    if estimate <= 2.5 * m and zeros:
        estimate = m * math.log(m / zeros)  # linear counting for small cardinalities
    return estimate


@dataclass(eq=False)
class CategoryCounts:
    """Category counts of a reference or batch column, labels normalised by drift.category_text."""

    rows: int
    count: int
    counts: dict[str, int]
    kind: Literal["categorical"] = "categorical"

    def to_dict(self) -> dict[str, Any]:
        labels = sorted(self.counts)
        return {
            "kind": "categorical",
            "rows": self.rows,
            "count": self.count,
            "labels": labels,
            "counts": [self.counts[k] for k in labels],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoryCounts:
        counts = {str(k): int(v) for k, v in zip(data["labels"], data["counts"], strict=True)}
        return cls(rows=int(data["rows"]), count=int(data["count"]), counts=counts)


# The reference and the batch side each had a class once; this one serves both, under both names.
CategoricalReference = CategoricalBatch = CategoryCounts


def _category_counts(series: pd.Series) -> dict[str, int]:
    """Counts per normalised label, NaN excluded; categoricals are counted on their codes."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.asarray(series.cat.codes, dtype=np.intp)
        hits = np.bincount(codes + 1, minlength=len(series.cat.categories) + 1)[1:]
        pairs: Sequence[tuple[Any, int]] = list(zip(series.cat.categories, hits.tolist(), strict=True))
    else:
        counted = series.value_counts(dropna=True, sort=False)
        pairs = list(zip(counted.index, counted.to_numpy().tolist(), strict=True))
    counts: dict[str, int] = {}
    for value, hit in pairs:
        label = category_text(value)
        if hit and isinstance(label, str):
            counts[label] = counts.get(label, 0) + int(hit)
    return counts
