"""Object storage helpers over a boto3 S3 client.

The client is passed in, never created here, so the same code runs against moto, MinIO or
AWS, and Airflow tasks can build it from a Connection.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

S3Client = Any  # boto3's client type is generated at run time; Any keeps this module import-light.


class ObjectTooLarge(ValueError):
    """An object is larger than the configured limit; it was not read."""


class WriteConflict(RuntimeError):
    """A conditional write found the object changed (or created) since it was read."""


# What S3 (and MinIO, and moto) answer when a conditional PUT loses: 412, or 409 for a racing PUT.
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


def s3_uri(bucket: str, key: str) -> str:
    """Format an s3:// URI."""
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split an s3:// URI into (bucket, key)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def list_objects(client: S3Client, bucket: str, prefix: str) -> list[ObjectInfo]:
    """List every object under a prefix, following pagination, sorted by key."""
    found: list[ObjectInfo] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found.append(ObjectInfo(key=item["Key"], size=int(item["Size"]), etag=item.get("ETag", "").strip('"')))
    return sorted(found, key=lambda o: o.key)


def head_object(client: S3Client, bucket: str, key: str) -> dict[str, Any] | None:
    """An object's metadata (size, ETag...), or None when it does not exist."""
    try:
        return dict(client.head_object(Bucket=bucket, Key=key))
    except client.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise


def object_size(client: S3Client, bucket: str, key: str) -> int | None:
    """Size of an object in bytes, or None when it does not exist."""
    head = head_object(client, bucket, key)
    return None if head is None else int(head["ContentLength"])


def read_bytes(client: S3Client, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
    """Read an object whole; with max_bytes, refuse a larger one before downloading it."""
    if max_bytes is not None:
        size = object_size(client, bucket, key)
        if size is None:
            raise FileNotFoundError(s3_uri(bucket, key))
        if size > max_bytes:
            raise ObjectTooLarge(f"{s3_uri(bucket, key)} is {size} bytes, over the limit of {max_bytes} bytes")
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        raise FileNotFoundError(s3_uri(bucket, key)) from None


def write_bytes(client: S3Client, bucket: str, key: str, data: bytes, content_type: str) -> str:
    """Write (or overwrite) an object and return its URI."""
    client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return s3_uri(bucket, key)


def upload_file(client: S3Client, bucket: str, key: str, fileobj: Any, content_type: str) -> str:
    """Upload (or overwrite) an object from an open binary file, in parts when it is large."""
    client.upload_fileobj(fileobj, bucket, key, ExtraArgs={"ContentType": content_type})
    return s3_uri(bucket, key)


def download_file(client: S3Client, bucket: str, key: str, path: Any) -> None:
    """Copy an object to a local file, in parts when it is large: its bytes never sit in memory."""
    client.download_file(bucket, key, str(path))


def write_json(client: S3Client, bucket: str, key: str, payload: Any) -> str:
    """Write a JSON document with stable key order, so reruns produce identical bytes."""
    data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8")
    return write_bytes(client, bucket, key, data, "application/json")


def read_json(client: S3Client, bucket: str, key: str) -> Any | None:
    """Read a JSON object, or None when it does not exist."""
    try:
        return json.loads(read_bytes(client, bucket, key))
    except FileNotFoundError:
        return None


def read_json_versioned(client: S3Client, bucket: str, key: str) -> tuple[Any | None, str | None]:
    """A JSON object and its ETag, or (None, None) when it does not exist: the input of write_json_if."""
    try:
        reply = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        return None, None
    return json.loads(reply["Body"].read()), str(reply["ETag"])


def write_json_if(client: S3Client, bucket: str, key: str, payload: Any, etag: str | None) -> str:
    """Write a JSON object only if it still has `etag` (with None: only if it does not exist yet).

    Raises WriteConflict when another writer got in between; the caller reads again and retries.
    """
    data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8")
    condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json", **condition)
    except client.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in _CONFLICT_CODES:
            raise WriteConflict(f"{s3_uri(bucket, key)} changed while it was being updated") from None
        raise
    return s3_uri(bucket, key)


def copy_object(client: S3Client, bucket: str, source_key: str, target_key: str) -> str:
    """Server-side copy; the source is left untouched."""
    client.copy_object(Bucket=bucket, Key=target_key, CopySource={"Bucket": bucket, "Key": source_key})
    return s3_uri(bucket, target_key)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over one object that fetches only the byte ranges asked for.

    Parquet readers seek to the footer and then to the column chunks they need, so a drift
    partition downloads its own row groups rather than the whole staged batch. Each request
    fetches at least `read_ahead` bytes and keeps them: a row group's column chunks lie side by
    side, and reading them one small request at a time costs a round trip each (163 for a 1M-row
    partition). Memory stays at one block.
    """

    READ_AHEAD = 8 * 1024 * 1024

    def __init__(self, client: S3Client, bucket: str, key: str, read_ahead: int = READ_AHEAD) -> None:
        super().__init__()
        self.client, self.bucket, self.key = client, bucket, key
        size = object_size(client, bucket, key)
        if size is None:
            raise FileNotFoundError(s3_uri(bucket, key))
        self.size, self.position, self.read_ahead = size, 0, read_ahead
        self._block_start, self._block = 0, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` from the position (short only at the end of the object)."""
        view = memoryview(buffer).cast("B")
        stop = min(self.size, self.position + len(view))
        done = 0
        while self.position < stop:
            if not self._block_start <= self.position < self._block_start + len(self._block):
                end = min(self.size, self.position + max(stop - self.position, self.read_ahead))
                span = f"bytes={self.position}-{end - 1}"
                body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=span)
                self._block_start, self._block = self.position, body["Body"].read()
                if not self._block:
                    break
            offset = self.position - self._block_start
            data = self._block[offset : offset + (stop - self.position)]
            view[done : done + len(data)] = data
            done += len(data)
            self.position += len(data)
        return done
