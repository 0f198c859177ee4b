"""The per-model batch history: one JSON record per batch date, read back for trends."""

from __future__ import annotations

import json
from typing import Any

from driftwatch import layout, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client


def write_record(client: S3Client, cfg: ModelConfig, batch_date: str, record: dict[str, Any]) -> str:
    """Store the record of one batch; a rerun of the same date replaces it."""
    payload = {"model": cfg.name, "batch_date": batch_date, **record}
    return storage.write_json(client, cfg.storage.bucket, layout.history_key(cfg, batch_date), payload)


def read_record(client: S3Client, cfg: ModelConfig, batch_date: str) -> dict[str, Any] | None:
    return storage.read_json(client, cfg.storage.bucket, layout.history_key(cfg, batch_date))


def read_history(client: S3Client, cfg: ModelConfig, last: int | None = None) -> list[dict[str, Any]]:
    """All batch records of a model in date order, or the `last` N of them."""
    objects = storage.list_objects(client, cfg.storage.bucket, layout.history_prefix(cfg))
    objects = [o for o in objects if o.key.endswith(".json")]
    if last is not None:
        objects = objects[-last:]
    return [json.loads(storage.read_bytes(client, cfg.storage.bucket, o.key)) for o in objects]
