"""Landing demo data in object storage the way an upstream producer would."""

from __future__ import annotations

from datetime import date

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


def labels_key(cfg: ModelConfig, batch: DemoBatch) -> str:
    return layout.labels_key(cfg, batch.batch_date.isoformat(), "labels.csv")


def write_labels(client: S3Client, cfg: ModelConfig, batch: DemoBatch) -> str:
    """Land the labels of a batch under labels/dt=YYYY-MM-DD/, as they would arrive later."""
    data = demo_data.to_bytes(batch.labels, "csv")
    return storage.write_bytes(client, cfg.storage.bucket, labels_key(cfg, batch), data, "text/csv")


def land_labels(client: S3Client, cfg: ModelConfig, batch: DemoBatch) -> bool:
    """Land a batch's labels unless some are there already (never overwritten); whether it wrote them."""
    if storage.object_size(client, cfg.storage.bucket, labels_key(cfg, batch)) is not None:
        return False
    write_labels(client, cfg, batch)
    return True


def seed_scenario(
    client: S3Client, cfg: ModelConfig, start: date, days: int, rows_per_day: int, seed: int, with_labels: bool
) -> tuple[list[DemoBatch], int]:
    """Land the reference and the scenario's batches that are not there yet (never overwritten), their
    labels too when `with_labels`; the scenario's batches, and how many of them were new."""
    if storage.object_size(client, cfg.storage.bucket, cfg.storage.reference_key) is None:
        write_reference(client, cfg, demo_data.generate_reference(seed=seed))
    batches, landed = demo_data.generate_scenario(start, days=days, seed=seed, rows_per_day=rows_per_day), 0
    for batch in batches:
        if storage.object_size(client, cfg.storage.bucket, batch_key(cfg, batch)) is None:
            write_batch(client, cfg, batch)
            landed += 1
        if with_labels:
            land_labels(client, cfg, batch)
    return batches, landed


def labels_due(dates: list[str], decided: set[str], delay: int) -> list[str]:
    """Of consecutive batch `dates`, those whose labels may land `delay` days late: day i once the
    monitor runs of every day up to i + delay - 1 have `decided` (read every label they use), so
    that the run of day d sees the labels of days <= d - delay only (and, in date order, all of them)."""
    if delay <= 0:
        return list(dates)
    return [d for i, d in enumerate(dates) if i + delay <= len(dates) and decided.issuperset(dates[: i + delay])]


class LateLabels:
    """Lands each batch's labels `delay` days after it, as the monitor runs decide (see labels_due)."""

    def __init__(self, client: S3Client, cfg: ModelConfig, batches: list[DemoBatch], delay: int) -> None:
        self.client, self.cfg, self.delay = client, cfg, delay
        self.batches = {b.batch_date.isoformat(): b for b in batches}
        self.done: set[str] = set()

    def land(self, decided: set[str]) -> list[str]:
        """Land the labels now due that are not in the bucket yet (never overwritten); the days landed."""
        landed = []
        for day in labels_due(list(self.batches), decided, self.delay):
            if day not in self.done and land_labels(self.client, self.cfg, self.batches[day]):
                landed.append(day)
            self.done.add(day)
        return landed


def _content_type(fmt: str) -> str:
    return "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
