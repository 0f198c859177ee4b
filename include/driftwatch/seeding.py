"""Landing demo data in object storage the way an upstream producer would."""

from __future__ import annotations

import pandas as pd

from driftwatch import demo_data, layout, storage
from driftwatch.config import ModelConfig
from driftwatch.demo_data import DemoBatch
from driftwatch.storage import S3Client


def write_reference(client: S3Client, cfg: ModelConfig, frame: pd.DataFrame) -> str:
    """Store the initial reference data where the config says it is."""
    key = cfg.storage.reference_key
    fmt = layout.batch_format(key) or "parquet"
    return storage.write_bytes(client, cfg.storage.bucket, key, demo_data.to_bytes(frame, fmt), _content_type(fmt))


def batch_key(cfg: ModelConfig, batch: DemoBatch) -> str:
    return layout.incoming_key(cfg, batch.batch_date.isoformat(), f"part-000.{batch.fmt}")


def write_batch(client: S3Client, cfg: ModelConfig, batch: DemoBatch) -> str:
    """Land one batch under incoming/dt=YYYY-MM-DD/."""
    data = demo_data.to_bytes(batch.features, batch.fmt)
    return storage.write_bytes(client, cfg.storage.bucket, batch_key(cfg, batch), data, _content_type(batch.fmt))


def write_labels(client: S3Client, cfg: ModelConfig, batch: DemoBatch) -> str:
    """Land the labels of a batch under labels/dt=YYYY-MM-DD/, as they would arrive later."""
    key = layout.labels_key(cfg, batch.batch_date.isoformat(), "labels.csv")
    return storage.write_bytes(client, cfg.storage.bucket, key, demo_data.to_bytes(batch.labels, "csv"), "text/csv")


def _content_type(fmt: str) -> str:
    return "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
