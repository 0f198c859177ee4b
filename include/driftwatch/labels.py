"""Labels: read where they land, checked and normalised once, joined by id with anything scored.

Labels arrive apart from their batch, often later and from another system, so they are read
here the same way for training and for live performance: the id as canonical text (so int,
text, UUID and zero-padded ids meet their batch's), the target as a class label or a number,
duplicates resolved (the last one wins: a correction lands later), and rows without a target
or for an id the batch does not know counted, not silently used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from driftwatch import ingest, layout, storage
from driftwatch.config import ModelConfig
from driftwatch.dtypes import class_labels, numeric_target, text_value, text_values
from driftwatch.errors import SchemaMismatch
from driftwatch.storage import S3Client

KEY = "_driftwatch_key"


@dataclass(frozen=True)
class JoinInfo:
    """What a join of labels onto rows matched, and what it left out."""

    rows: int
    label_rows: int
    matched: int
    unmatched_rows: int
    unknown_label_ids: int
    duplicate_label_ids: int
    missing_target: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def read_labels(client: S3Client, cfg: ModelConfig, batch_date: str) -> pd.DataFrame | None:
    """The labels landed for one batch date (id and target, normalised), or None when none have arrived."""
    objects = storage.list_objects(client, cfg.storage.bucket, layout.labels_prefix(cfg, batch_date))
    objects = [o for o in objects if layout.batch_format(o.key) is not None]
    if not objects:
        return None
    frames = []
    for obj in objects:
        frame = ingest.read_table(client, cfg.storage.bucket, obj.key, text_columns=[cfg.dataset.id_column])
        frames.append(normalize_labels(frame, cfg, source=f"s3://{cfg.storage.bucket}/{obj.key}"))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def normalize_labels(frame: pd.DataFrame, cfg: ModelConfig, source: str = "labels") -> pd.DataFrame:
    """The id and target columns of a labels file, as canonical text and class label (or number)."""
    id_col, target = cfg.dataset.id_column, cfg.dataset.target.name
    absent = [c for c in (id_col, target) if c not in frame.columns]
    if absent:
        raise SchemaMismatch(
            f"{source} lacks column(s) {', '.join(absent)} (it has {', '.join(map(str, frame.columns[:10]))}): "
            f"labels need the id column schema.id_column={id_col!r} and the target schema.target.name={target!r}"
        )
    return pd.DataFrame({id_col: text_values(frame[id_col]), target: target_values(frame[target], cfg)})


def target_values(series: pd.Series, cfg: ModelConfig) -> pd.Series:
    """A target column as the pipeline compares it: class labels as text, regression targets as floats."""
    if cfg.dataset.target.task == "classification":
        return class_labels(series)
    values = numeric_target(series, cfg.dataset.target.name)
    return values.where(values.abs() != float("inf"))


def join_labels(rows: pd.DataFrame, labels: pd.DataFrame, cfg: ModelConfig) -> tuple[pd.DataFrame, JoinInfo]:
    """Inner-join labels onto rows (a batch, or its predictions) by id; report what did not match.

    Both sides' ids are compared as canonical text. Duplicate label ids keep the last one, and
    labels without a target are dropped. A target column already in `rows` is replaced.
    """
    id_col, target = cfg.dataset.id_column, cfg.dataset.target.name
    if id_col not in rows.columns:
        raise SchemaMismatch(f"rows to label have no id column {id_col!r} (schema.id_column)")
    labelled = normalize_labels(labels, cfg)
    labelled[KEY] = labelled[id_col]
    duplicates = int(labelled[KEY].duplicated(keep="last").sum())
    labelled = labelled.drop_duplicates(KEY, keep="last")
    missing = labelled[target].isna()
    labelled = labelled[~missing]

    left = rows.drop(columns=[target], errors="ignore").copy()
    left[KEY] = text_values(left[id_col])
    joined = left.merge(labelled[[KEY, target]], on=KEY, how="inner", validate="many_to_one")
    joined = joined.drop(columns=KEY).reset_index(drop=True)
    row_keys, label_keys = set(left[KEY].dropna()), set(labelled[KEY].dropna())
    info = JoinInfo(
        rows=len(rows),
        label_rows=len(labels),
        matched=len(joined),
        unmatched_rows=int((~left[KEY].isin(label_keys)).sum()),
        unknown_label_ids=len(label_keys - row_keys),
        duplicate_label_ids=duplicates,
        missing_target=int(missing.sum()),
    )
    return joined, info


def live_label_problems(labels: pd.Series, cfg: ModelConfig, model_classes: list[Any] | None) -> list[str]:
    """What makes live labels unusable to measure a model: the training checks, plus classes the model never saw."""
    problems = class_problems(labels, cfg)
    if cfg.dataset.target.task == "classification" and model_classes is not None:
        known = {text_value(c) for c in model_classes}
        unseen = sorted({text_value(v) for v in labels.dropna().unique()} - known)
        if unseen:
            problems.append(
                f"labels hold class(es) {', '.join(map(repr, unseen[:6]))} the model was not trained on "
                f"(it knows {', '.join(map(repr, sorted(known)))}): fix the labels or schema.target"
            )
    return problems


def class_problems(labels: pd.Series, cfg: ModelConfig) -> list[str]:
    """What makes a classification target unusable for a binary model: more than two classes."""
    if cfg.dataset.target.task != "classification":
        return []
    classes = sorted(labels.dropna().unique())
    if len(classes) > 2:
        shown = ", ".join(map(repr, classes[:6]))
        return [
            f"target {cfg.dataset.target.name!r} holds {len(classes)} classes ({shown}); only binary "
            "classification is supported: map the classes to two, or use task: regression"
        ]
    return []
