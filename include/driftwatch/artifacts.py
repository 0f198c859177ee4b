"""Writing a set of related artifacts with a manifest that is written last.

A reader that finds a committed `manifest.json` can trust every object it lists to be complete.
A set that is being written, or rewritten by a rerun, holds a `writing` manifest instead (see
`ArtifactSet.begin`), and a set that never got one holds none: `read_manifest` returns None for
both, so a reader can never take a half-written set for a complete one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from driftwatch import storage
from driftwatch.storage import S3Client

MANIFEST = "manifest.json"
WRITING = "writing"  # the status of a set whose artifacts are being (re)written


class ArtifactSet:
    """Artifacts under one prefix, each recorded with its size and sha256 for the manifest."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.entries: dict[str, dict[str, Any]] = {}

    def uri(self, name: str) -> str:
        return storage.s3_uri(self.bucket, self.prefix + name)

    def put(self, name: str, data: bytes, content_type: str) -> str:
        storage.write_bytes(self.client, self.bucket, self.prefix + name, data, content_type)
        self.entries[name] = {"uri": self.uri(name), "bytes": len(data), "sha256": storage.sha256_hex(data)}
        return self.uri(name)

    def put_text(self, name: str, text: str, content_type: str = "text/html; charset=utf-8") -> str:
        return self.put(name, text.encode("utf-8"), content_type)

    def put_json(self, name: str, payload: Any) -> str:
        data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8")
        return self.put(name, data, "application/json")

    def add_existing(self, name: str, key: str, size: int, sha256: str | None = None) -> None:
        """List an object written by other means (e.g. a server-side copy) in the manifest."""
        self.entries[name] = {"uri": storage.s3_uri(self.bucket, key), "bytes": size, "sha256": sha256}

    def begin(self, **extra: Any) -> str:
        """Mark the set as being written, before its first artifact: a rerun's new artifacts never
        sit under the previous run's manifest, which would vouch for objects it did not hash.

        The earlier manifest is overwritten, not deleted: the pipeline's IAM policy deletes nothing.
        """
        manifest = {
            "status": WRITING,
            "artifacts": {},
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **extra,
        }
        return storage.write_json(self.client, self.bucket, self.prefix + MANIFEST, manifest)

    def commit(self, status: str, **extra: Any) -> str:
        """Write the manifest; call it only after every artifact is in place."""
        if status == WRITING:
            raise ValueError(f"{WRITING!r} is the status of an incomplete set; commit a final status")
        manifest = {
            "status": status,
            "artifacts": dict(sorted(self.entries.items())),
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **extra,
        }
        return storage.write_json(self.client, self.bucket, self.prefix + MANIFEST, manifest)


def read_manifest(client: S3Client, bucket: str, prefix: str) -> dict[str, Any] | None:
    """The manifest of the complete set under `prefix`; None when there is none or it is being written."""
    manifest = storage.read_json(client, bucket, prefix + MANIFEST)
    if manifest is None or manifest.get("status") == WRITING:
        return None
    return manifest
