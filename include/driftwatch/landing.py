"""Landing files where a model's config says batches, labels and the reference arrive.

Raw batches are never overwritten: landing a different file under a key that already holds
one is refused, and landing the same bytes again is a no-op, so a retried upload is safe.
"""

from __future__ import annotations

from pathlib import Path

from driftwatch import layout, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import S3Client

CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


class LandingError(ValueError):
    """A file cannot be landed; the message says what to change."""


def _content_type(path: Path) -> str:
    fmt = layout.batch_format(path.name)
    if fmt is None:
        raise LandingError(f"{path}: expected a .csv or .parquet file")
    if not path.is_file():
        raise LandingError(f"{path}: no such file")
    return CONTENT_TYPES[fmt]


def _ensure_bucket(client: S3Client, bucket: str, create: bool) -> None:
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        if not create:
            raise LandingError(f"bucket {bucket!r} does not exist: create it, or pass --create-bucket") from None
        if str(err.response.get("Error", {}).get("Code")) not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        client.create_bucket(Bucket=bucket)


def put_once(client: S3Client, bucket: str, key: str, path: Path) -> str:
    """Upload a file unless the key holds it already; refuse to replace different bytes."""
    content_type = _content_type(path)
    data = path.read_bytes()
    if storage.head_object(client, bucket, key) is not None:
        if storage.read_bytes(client, bucket, key) == data:
            return storage.s3_uri(bucket, key)
        raise LandingError(
            f"s3://{bucket}/{key} already holds a different file, and landed data is never overwritten: "
            "land the new file under another name (it joins the same batch) or another date"
        )
    return storage.write_bytes(client, bucket, key, data, content_type)


def land(
    client: S3Client,
    cfg: ModelConfig,
    *,
    batch_date: str | None,
    batch: Path | None = None,
    labels: Path | None = None,
    reference: Path | None = None,
    create_bucket: bool = False,
) -> list[str]:
    """Land a batch and/or its labels under their date, or the reference at storage.reference_key."""
    if not (batch or labels or reference):
        raise LandingError("nothing to land: give a batch file, --labels or --reference")
    if (batch or labels) and not batch_date:
        raise LandingError("a batch or labels need --date YYYY-MM-DD")
    bucket = cfg.storage.bucket
    _ensure_bucket(client, bucket, create_bucket)
    landed = []
    if reference is not None:
        landed.append(put_once(client, bucket, cfg.storage.reference_key, reference))
    if batch_date:
        try:
            day = layout.batch_date_str(batch_date)
        except ValueError as err:
            raise LandingError(str(err)) from None
        if batch is not None:
            landed.append(put_once(client, bucket, layout.incoming_key(cfg, day, batch.name), batch))
        if labels is not None:
            landed.append(put_once(client, bucket, layout.labels_key(cfg, day, labels.name), labels))
    return landed
