"""Small tabular datasets over the axes real data varies on, for the schema matrix and the README walk.

A `Case` picks one value per axis: the id's type, the labels' file format and quirks, a
timestamp or none, the target's encoding, how a categorical is stored, the batch's format and
how many files it comes in. `make_frames` builds a reference, a batch and its labels with a
known signal, so a drifted variant really drifts and a model really learns.

    python -m tests.datasets.generator --out /tmp/bank      # the README's "Monitor your own dataset"
"""

from __future__ import annotations

import argparse
import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "outcome"
ID = "record_id"
TIMESTAMP = "event_time"
EXTRAS = ("note", "ingest_batch")


@dataclass(frozen=True)
class Case:
    """One point of the schema matrix."""

    name: str
    id_kind: str = "int64"  # int64, text, uuid, zero_padded
    labels_format: str = "csv"  # csv, parquet
    batch_format: str = "parquet"  # csv, parquet
    reference_format: str = "parquet"
    timestamp: bool = True
    target: str = "01"  # 01, bool, yesno, string_positive, regression
    category: str = "int_codes"  # int_codes, bool, high_cardinality
    extras: bool = False  # non-feature columns the batch carries (ignored_columns)
    shuffled: bool = False  # the batch's columns in another order than the reference's
    files: int = 1  # the batch split into this many objects
    label_quirks: frozenset[str] = field(default_factory=frozenset)  # missing, duplicated, unknown, late

    @property
    def classification(self) -> bool:
        return self.target != "regression"


def _ids(case: Case, start: int, rows: int) -> pd.Series:
    numbers = np.arange(start, start + rows)
    if case.id_kind == "int64":
        return pd.Series(numbers.astype("int64"))
    if case.id_kind == "text":
        return pd.Series([f"rec-{n}" for n in numbers])
    if case.id_kind == "uuid":
        return pd.Series([str(uuid.UUID(int=int(n) * 7919 + 17)) for n in numbers])
    return pd.Series([f"{n:08d}" for n in numbers])  # zero_padded: 00000042


def _category(case: Case, rng: np.random.Generator, rows: int, shift: float) -> pd.Series:
    if case.category == "int_codes":
        weights = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
        weights = weights[::-1] if shift else weights
        return pd.Series(rng.choice(np.arange(1, 6), size=rows, p=weights / weights.sum()).astype("int64"))
    if case.category == "bool":
        return pd.Series(rng.random(rows) < (0.8 if shift else 0.3))
    cities = np.array([f"city_{i:03d}" for i in range(300)])
    weights = 1.0 / np.arange(1, 301) ** (0.3 if shift else 1.1)
    return pd.Series(rng.choice(cities, size=rows, p=weights / weights.sum()))


def make_frames(
    case: Case, *, rows: int, seed: int, start_id: int = 0, shift: float = 0.0, day: str = "2026-03-01"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features with id and extras, labels with id and target); `shift` > 0 moves three features."""
    rng = np.random.default_rng(seed)
    amount = (rng.lognormal(3.0, 0.6, rows) * (1 + 2 * shift)).astype("float32")
    count = pd.array(rng.integers(0, 100, rows) + int(40 * shift), dtype="Int64")
    count[rng.random(rows) < 0.05] = pd.NA
    score = rng.normal(0.0 + 2.0 * shift, 1.0, rows)
    plans = np.array(["basic", "plus", "pro"])
    plan = rng.choice(plans, size=rows, p=[0.2, 0.3, 0.5] if shift else [0.5, 0.3, 0.2])
    frame = pd.DataFrame(
        {
            ID: _ids(case, start_id, rows),
            "amount": amount,
            "visits": count,
            "score": score,
            "plan": plan,
            "segment": _category(case, rng, rows, shift),
            "customer_email": [f"user{start_id + i}@example.com" for i in range(rows)],
        }
    )
    if case.timestamp:
        stamps = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400, rows), unit="s")
        frame[TIMESTAMP] = stamps
    if case.extras:
        frame["note"] = [f"free text {uuid.UUID(int=int(i) + seed * 10**6)}" for i in range(rows)]
        frame["ingest_batch"] = [str(uuid.UUID(int=seed * 10**7 + i)) for i in range(rows)]
    z = (np.log(amount.astype("float64")) - 3.0) / 0.6
    logit = 1.6 * z - 0.8 * score + 1.2 * (plan == "pro") - 0.4
    if case.classification:
        y = rng.random(rows) < 1 / (1 + np.exp(-logit))
        encoded = {
            "01": y.astype("int64"),
            "bool": y,
            "yesno": np.where(y, "yes", "no"),
            "string_positive": np.where(y, "churned", "stayed"),
        }[case.target]
    else:
        encoded = 10 * logit + rng.normal(0, 1, rows)
    labels = pd.DataFrame({ID: frame[ID], TARGET: encoded})
    return frame, labels


def reference_frame(case: Case, rows: int = 1500, seed: int = 1) -> pd.DataFrame:
    """The reference: features and target together, over several days when the case has a timestamp."""
    parts = []
    for index, day in enumerate(pd.date_range("2026-02-20", periods=5, freq="D")):
        features, labels = make_frames(
            case, rows=rows // 5, seed=seed + index, start_id=10_000_000 + index * rows, day=str(day.date())
        )
        parts.append(features.assign(**{TARGET: labels[TARGET].to_numpy()}))
    reference = pd.concat(parts, ignore_index=True)
    return reference.drop(columns=list(EXTRAS), errors="ignore")


def quirky_labels(case: Case, labels: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Labels as they really arrive: some missing, some twice, some for ids the batch never had."""
    rng = np.random.default_rng(seed)
    out = labels
    if "missing" in case.label_quirks:
        out = out[rng.random(len(out)) > 0.15]
    if "duplicated" in case.label_quirks:
        out = pd.concat([out, out.head(20)], ignore_index=True)
    if "unknown" in case.label_quirks:
        strangers = make_frames(case, rows=10, seed=seed + 99, start_id=90_000_000)[1]
        out = pd.concat([out, strangers], ignore_index=True)
    return out.reset_index(drop=True)


def file_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """A frame as the bytes of a CSV or Parquet file, as a producer would write it."""
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.to_csv(buffer, index=False)
    else:
        frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def batch_files(case: Case, batch: pd.DataFrame) -> list[tuple[str, bytes]]:
    """The batch as the case lands it: column order, format and number of files."""
    if case.shuffled:
        batch = batch[list(reversed(batch.columns))]
    if not case.extras:
        batch = batch.drop(columns=list(EXTRAS), errors="ignore")
    chunks = np.array_split(np.arange(len(batch)), case.files)
    return [
        (f"part-{i:03d}.{case.batch_format}", file_bytes(batch.iloc[c], case.batch_format))
        for i, c in enumerate(chunks)
    ]


BANK = Case(
    "bank_marketing",
    id_kind="zero_padded",
    labels_format="parquet",
    timestamp=False,
    target="yesno",
    category="high_cardinality",
    extras=True,
    reference_format="csv",
)


def main(argv: list[str] | None = None) -> int:
    """Write a reference, a stable batch and a drifted one with labels: the README's walk-through data."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reference.csv").write_bytes(file_bytes(reference_frame(BANK), "csv"))
    for name, shift, start in (("stable", 0.0, 0), ("drifted", 1.0, 5000)):
        features, labels = make_frames(BANK, rows=600, seed=start + 3, start_id=start, shift=shift)
        (args.out / f"{name}.csv").write_bytes(file_bytes(features, "csv"))
        (args.out / f"{name}-labels.parquet").write_bytes(file_bytes(labels, "parquet"))
    print(f"wrote reference.csv, stable.csv, drifted.csv and their labels to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
