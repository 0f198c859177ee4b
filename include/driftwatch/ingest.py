"""Reading one batch (CSV or Parquet objects under its date prefix) into a DataFrame."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from driftwatch import layout, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import ObjectInfo, S3Client

# Zero-byte markers such as _SUCCESS are written by Spark and Glue next to the data.
_MARKER_NAMES = {"_SUCCESS", "_SUCCESS.json", ".keep"}


class IngestError(ValueError):
    """A batch cannot be turned into a DataFrame; `reason` is short enough for an email subject."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Batch:
    frame: pd.DataFrame
    objects: list[ObjectInfo]
    total_bytes: int


def find_batch_objects(client: S3Client, cfg: ModelConfig, batch_date: str) -> list[ObjectInfo]:
    """The data objects of one batch, skipping marker files; raises IngestError when there are none."""
    prefix = layout.incoming_prefix(cfg, batch_date)
    objects = [
        o
        for o in storage.list_objects(client, cfg.storage.bucket, prefix)
        if o.key.rsplit("/", 1)[-1] not in _MARKER_NAMES
    ]
    if not objects:
        raise IngestError("empty batch folder", f"no object under s3://{cfg.storage.bucket}/{prefix}")
    unsupported = [o.key for o in objects if layout.batch_format(o.key) not in cfg.storage.formats]
    if unsupported:
        raise IngestError(
            "unsupported file type",
            f"{', '.join(unsupported)}; accepted formats: {', '.join(cfg.storage.formats)}",
        )
    return objects


def check_batch_size(objects: list[ObjectInfo], max_bytes: int) -> int:
    """Refuse a batch over the size limit before any byte of it is downloaded."""
    total = sum(o.size for o in objects)
    if total > max_bytes:
        raise IngestError("batch too large", f"{total} bytes in {len(objects)} object(s), limit {max_bytes} bytes")
    return total


def parse_object(data: bytes, fmt: str, key: str) -> pd.DataFrame:
    """Parse one object's bytes; every parser failure becomes an IngestError naming the object."""
    if not data:
        raise IngestError("empty file", key)
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data), encoding="utf-8", low_memory=False)
    except UnicodeDecodeError as err:
        raise IngestError("not UTF-8 text", f"{key}: {err.reason} at byte {err.start}") from None
    except pd.errors.EmptyDataError:
        raise IngestError("empty file", key) from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise IngestError(f"unreadable {fmt}", f"{key}: {str(err)[:300]}") from None


def read_batch(client: S3Client, cfg: ModelConfig, batch_date: str) -> Batch:
    """Find, size-check and parse every object of a batch into one DataFrame."""
    objects = find_batch_objects(client, cfg, batch_date)
    total = check_batch_size(objects, cfg.storage.max_batch_bytes)
    frames = []
    for obj in objects:
        data = storage.read_bytes(client, cfg.storage.bucket, obj.key, max_bytes=cfg.storage.max_batch_bytes)
        frames.append(parse_object(data, layout.batch_format(obj.key) or "csv", obj.key))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.empty:
        raise IngestError("no rows", f"{len(objects)} object(s) hold a header but no data")
    return Batch(frame=frame, objects=objects, total_bytes=total)


def normalize_types(frame: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """Give a validated batch the schema's types, so CSV and Parquet batches stage identically."""
    schema = cfg.dataset
    out = frame.copy()
    for name in schema.numeric_features:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    for name in [*schema.categorical_features, schema.id_column]:
        out[name] = out[name].astype("string").astype(object).where(out[name].notna(), None)
    if schema.timestamp_column and schema.timestamp_column in out.columns:
        out[schema.timestamp_column] = pd.to_datetime(out[schema.timestamp_column], errors="coerce", utc=True)
    return out


def drop_pii(frame: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """Remove the configured PII columns, so that nothing downstream can report them."""
    present = [c for c in cfg.dataset.pii_columns if c in frame.columns]
    return frame.drop(columns=present) if present else frame


def read_table(client: S3Client, bucket: str, key: str, max_bytes: int | None = None) -> pd.DataFrame:
    """Read a whole CSV or Parquet object that the pipeline itself manages (reference, staged)."""
    fmt = layout.batch_format(key)
    if fmt is None:
        raise ValueError(f"s3://{bucket}/{key}: expected a .csv or .parquet key")
    return parse_object(storage.read_bytes(client, bucket, key, max_bytes=max_bytes), fmt, key)


def write_parquet(client: S3Client, bucket: str, key: str, frame: pd.DataFrame) -> str:
    """Write a DataFrame as Parquet and return its URI."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return storage.write_bytes(client, bucket, key, buffer.getvalue(), "application/vnd.apache.parquet")


def load_reference(client: S3Client, cfg: ModelConfig) -> tuple[pd.DataFrame, str]:
    """The champion's reference data (via the pointer a promotion writes), else the configured one."""
    pointer = storage.read_json(client, cfg.storage.bucket, layout.reference_pointer_key(cfg))
    uri = pointer["uri"] if pointer else storage.s3_uri(cfg.storage.bucket, cfg.storage.reference_key)
    bucket, key = storage.parse_s3_uri(uri)
    try:
        frame = read_table(client, bucket, key)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"reference data for model {cfg.name} not found at {uri}: "
            "seed it (make demo does) or fix storage.reference_key"
        ) from None
    return normalize_types(drop_pii(frame, cfg), cfg), uri
