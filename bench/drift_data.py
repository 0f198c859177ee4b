"""The bench's synthetic data: its schema and model config, batches written as Parquet, drift calibration.

Feature drift is graded per column so that Evidently's scores sit well below, just below, just
above and well above their thresholds (`calibrate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ID_COLUMN = "row_id"
ROW_GROUP = 131_072
CALIBRATION_ROWS = 200_000
KS_CRITICAL = 1.358  # two-sided 5% Kolmogorov-Smirnov coefficient
BATCH_DATE = "2026-11-01"  # the date every bench batch lands under (and its sample seed)


@dataclass(frozen=True)
class Column:
    """One bench feature: how it is drawn, tested, and how far it drifts.

    `target` is the wanted Evidently score as a multiple of the threshold for distances, the
    wanted KS statistic as a multiple of its 5% critical value for `ks`, and the mixing weight
    of the drifted distribution for `chisquare`.
    """

    name: str
    kind: str
    draw: str
    method: str
    threshold: float
    target: float


COLUMNS = (
    Column("n01_age", "numeric", "normal_int", "wasserstein", 0.1, 0.0),
    Column("n02_income", "numeric", "lognormal", "wasserstein", 0.1, 0.9),
    Column("n03_amount", "numeric", "uniform", "wasserstein", 0.1, 0.97),
    Column("n04_utilization", "numeric", "beta", "wasserstein", 0.1, 1.03),
    Column("n05_dti", "numeric", "gamma", "wasserstein", 0.1, 1.2),
    Column("n06_tenure", "numeric", "gamma_int", "wasserstein", 0.1, 2.0),
    Column("n07_score", "numeric", "normal", "ks", 0.05, 0.5),
    Column("n08_balance", "numeric", "lognormal_nan", "ks", 0.05, 3.0),
    Column("n09_rate", "numeric", "normal_rate", "psi", 0.1, 0.95),
    Column("n10_late", "numeric", "poisson_small", "psi", 0.2, 1.05),
    Column("n11_limit", "numeric", "gamma_limit", "jensenshannon", 0.1, 0.95),
    Column("n12_visits", "numeric", "poisson_visits", "jensenshannon", 0.1, 1.05),
    Column("n13_ratio", "numeric", "beta_ratio", "kl_div", 0.1, 1.05),
    Column("n14_spend", "numeric", "lognormal_spend", "hellinger", 0.1, 0.97),
    Column("n15_duration", "numeric", "exponential", "hellinger", 0.1, 1.05),
    Column("c1_region", "categorical", "region", "jensenshannon", 0.1, 0.0),
    Column("c2_channel", "categorical", "channel", "jensenshannon", 0.1, 0.95),
    Column("c3_purpose", "categorical", "purpose", "jensenshannon", 0.1, 1.05),
    Column("c4_employment", "categorical", "employment", "chisquare", 0.05, 0.02),
    Column("c5_product", "categorical", "product", "psi", 0.1, 0.9),
)

# Categorical columns: (labels, reference shares, drifted shares); "z_new" never occurs in the reference.
CATEGORIES: dict[str, tuple[list[str], list[float], list[float]]] = {
    "region": (["north", "south", "east", "west", "central"], [0.22, 0.24, 0.2, 0.18, 0.16], [0.1, 0.4, 0.2, 0.1, 0.2]),
    "channel": (["branch", "online", "mobile", "broker"], [0.25, 0.4, 0.22, 0.13], [0.05, 0.35, 0.5, 0.1]),
    "purpose": (
        ["debt", "card", "home", "car", "medical", "education", "business", "other"],
        [0.32, 0.18, 0.12, 0.12, 0.06, 0.06, 0.06, 0.08],
        [0.5, 0.25, 0.04, 0.04, 0.1, 0.03, 0.01, 0.03],
    ),
    "employment": (
        ["salaried", "self", "contract", "unemployed", "retired"],
        [0.6, 0.15, 0.12, 0.05, 0.08],
        [0.4] + [0.15] * 4,
    ),
    "product": (
        ["p1", "p2", "p3", "p4", "p5", "p6", "z_new"],
        [0.3, 0.25, 0.2, 0.1, 0.1, 0.05, 0.0],
        [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1],
    ),
}
NULL_SHARE = {"n08_balance": 0.03, "c2_channel": 0.01}


# ---------------------------------------------------------------------------- config


def bench_raw_config(columns: tuple[Column, ...] = COLUMNS, *, default_methods: bool = False) -> dict[str, Any]:
    """A model config for the bench schema, with demo-like validation rules."""
    features: list[dict[str, Any]] = []
    for col in columns:
        feature: dict[str, Any] = {"name": col.name, "type": col.kind}
        if not default_methods:
            feature |= {"drift_method": col.method, "drift_threshold": col.threshold}
        if col.name == "n01_age":
            feature |= {"min": 18, "max": 100}
        if col.name in ("n03_amount", "n11_limit"):
            feature |= {"min": 0}
        if col.name == "n08_balance":
            feature["max_null_fraction"] = 0.1
        if col.kind == "categorical" and col.draw in ("region", "channel", "employment"):
            feature["allowed_values"] = CATEGORIES[col.draw][0]
        features.append(feature)
    return {
        "name": "bench_drift",
        "schema": {"id_column": ID_COLUMN, "target": {"name": "label"}, "features": features},
        # A 5M-row batch is about 600 MB of Parquet: over the default size limit.
        "storage": {
            "bucket": "driftwatch-bench",
            "reference_key": "reference/bench.parquet",
            "max_batch_bytes": 4 * 1024**3,
        },
        "validation": {"min_rows": 100, "max_null_fraction": 0.2, "max_unseen_category_fraction": 0.05},
        "drift": {
            "numeric_method": "wasserstein",
            "numeric_threshold": 0.1,
            "categorical_method": "jensenshannon",
            "categorical_threshold": 0.1,
            "dataset_drift_share": 0.3,
        },
        "alerts": {"recipients": ["bench@example.com"]},
        "monitor": {"start_date": "2026-01-01"},
        "evaluation": {"slice_columns": []},
    }


def bench_config(**kwargs: Any) -> Any:
    from driftwatch.config import parse_config

    return parse_config(bench_raw_config(**kwargs), source="bench")


# ---------------------------------------------------------------------------- data


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _base(draw: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Reference-distribution draws; the drift is applied on top by `_draw`."""
    draws = {
        "normal_int": lambda: np.rint(rng.normal(40, 10, n)).clip(18, 100),
        "lognormal": lambda: rng.lognormal(11, 0.5, n),
        "uniform": lambda: rng.uniform(500, 40_500, n),
        "beta": lambda: rng.beta(2, 5, n),
        "gamma": lambda: rng.gamma(2, 0.15, n),
        "gamma_int": lambda: rng.gamma(2, 30, n),
        "normal": lambda: rng.normal(650, 60, n),
        "lognormal_nan": lambda: rng.lognormal(8, 1.2, n),
        "normal_rate": lambda: rng.normal(0.12, 0.03, n),
        "poisson_small": lambda: rng.poisson(0.5, n).astype(np.float64),
        "gamma_limit": lambda: rng.gamma(3, 2000, n),
        "poisson_visits": lambda: rng.poisson(4, n).astype(np.float64),
        "beta_ratio": lambda: rng.beta(5, 2, n),
        "lognormal_spend": lambda: rng.lognormal(5, 0.8, n),
        "exponential": lambda: rng.exponential(30, n),
    }
    return draws[draw]()


def _draw(col: Column, rng: np.random.Generator, n: int, effect: float, scale: float) -> Any:
    """n values of one column; `effect` is its drift (0 = reference), `scale` the reference std."""
    if col.kind == "categorical":
        labels, p_ref, p_alt = CATEGORIES[col.draw]
        mix = np.cumsum((1 - effect) * np.asarray(p_ref) + effect * np.asarray(p_alt))
        codes = np.minimum(np.searchsorted(mix / mix[-1], rng.random(n), side="right"), len(labels) - 1)
        if col.name in NULL_SHARE:
            codes = np.where(rng.random(n) < NULL_SHARE[col.name], -1, codes)
        return pd.Categorical.from_codes(codes, categories=labels)
    values = _base(col.draw, rng, n)
    if col.draw.startswith("poisson"):
        values = values + (rng.random(n) < effect)  # a share `effect` of rows gets one more event
    elif col.draw == "gamma_int":
        values = np.floor(values + effect * scale)
    elif col.draw == "normal_int":
        values = values + np.rint(effect * scale)
    else:
        values = values + effect * scale  # location shift: normed Wasserstein moves by `effect`
    if col.name in NULL_SHARE:
        values = np.where(rng.random(n) < NULL_SHARE[col.name], np.nan, values)
    return values


def _frame(n: int, seed: int, stream: int, effects: dict[str, float], scales: dict[str, float]) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for i, col in enumerate(COLUMNS):
        data[col.name] = _draw(col, _rng(seed, stream, i), n, effects.get(col.name, 0.0), scales.get(col.name, 1.0))
    return pd.DataFrame(data)


def write_parquet(
    path: Path, n: int, seed: int, stream: int, effects: dict[str, float], scales: dict[str, float]
) -> None:
    """Write n rows in row groups of ROW_GROUP, generated group by group (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for chunk, start in enumerate(range(0, n, ROW_GROUP)):
            rows = min(ROW_GROUP, n - start)
            frame = _frame(rows, seed, stream * 100_000 + chunk, effects, scales)
            frame.insert(0, ID_COLUMN, np.arange(start, start + rows, dtype=np.int64))
            # Categories as plain strings, as a producer would write them.
            for col in COLUMNS:
                if col.kind == "categorical":
                    frame[col.name] = frame[col.name].astype(object)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()


def _ks_critical(n_ref: int, n: int) -> float:
    return KS_CRITICAL * math.sqrt(1 / n_ref + 1 / n)


def calibrate(reference: pd.DataFrame, seed: int, n_ref: int, sizes: list[int]) -> dict[str, Any]:
    """Drift effects that put each column's score at its target multiple of the threshold."""
    from driftwatch.config import parse_config
    from driftwatch.profile import build_profile, fast_drift

    scales = {
        c.name: float(np.nanstd(reference[c.name].replace([np.inf, -np.inf], np.nan)))
        for c in COLUMNS
        if c.kind == "numeric"
    }
    effects: dict[str, float] = {}
    ks_shift: dict[str, float] = {}
    for i, col in enumerate(COLUMNS):
        if col.target == 0:
            effects[col.name] = 0.0
        elif col.method == "chisquare":
            effects[col.name] = col.target
        elif col.method == "ks":
            values = reference[col.name].replace([np.inf, -np.inf], np.nan).dropna().to_numpy()
            hist, edges = np.histogram(values, bins=400, range=tuple(np.percentile(values, [0.5, 99.5])))
            density = float(np.max(hist / (len(values) * np.diff(edges))))
            # A location shift d moves the CDF by about d * max density: aim D at target x critical value.
            ks_shift[col.name] = col.target / (density * scales[col.name])
        else:
            raw = bench_raw_config((col,))
            cfg = parse_config(raw, source="calibration")
            profile = build_profile(reference[[col.name]], cfg)

            def score(effect: float, col: Column = col, cfg: Any = cfg, profile: Any = profile, i: int = i) -> float:
                sample = _draw(col, _rng(seed, 9, i), CALIBRATION_ROWS, effect, scales.get(col.name, 1.0))
                return fast_drift(profile, pd.DataFrame({col.name: sample}), cfg).features[0].score

            goal = col.target * col.threshold
            # Mixing weights and event shares are probabilities; shifts can grow.
            limit = 1.0 if col.kind == "categorical" or col.draw.startswith("poisson") else 64.0
            lo, hi = 0.0, min(1.0, limit)
            while score(hi) < goal and hi < limit:
                hi *= 2
            for _ in range(22):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if score(mid) < goal else (lo, mid)
            effects[col.name] = (lo + hi) / 2
    per_size = {
        str(n): {name: shift * _ks_critical(n_ref, n) for name, shift in ks_shift.items()} | effects for n in sizes
    }
    return {"scales": scales, "effects": per_size}
