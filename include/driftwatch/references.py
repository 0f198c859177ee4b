"""The champion's reference data, summarised once and stored next to it.

Every monitor run needs two things from the reference: the drift profile (`profile.py`), from
which the full-data decision is computed without rescanning the reference, and a fixed-size
sample of it for the Evidently report that people read. Both are built the first time a
reference is used (after a promotion, a rollback or a fresh seed) and stored under a key that
is a digest of the reference object (its URI and ETag) and of the configured features, so a
new champion, a rewritten reference or a changed feature list gets a new profile, and every
later batch reads a few hundred kilobytes instead of the whole reference.

    <output_prefix>reference/profiles/<digest>/sample.parquet
                                              /profile.json
                                              /manifest.json    written last
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import weakref
from dataclasses import dataclass
from typing import Any

import pandas as pd

from driftwatch import ingest, layout, storage
from driftwatch.artifacts import MANIFEST, ArtifactSet
from driftwatch.config import ModelConfig
from driftwatch.profile import VERSION, ReferenceProfile, build_profile
from driftwatch.storage import S3Client

log = logging.getLogger(__name__)

PROFILE = "profile.json"
SAMPLE = "sample.parquet"
# Profiles already read, per S3 client (so per task) and by prefix: a prefix names its profile's
# digest, the reference's ETag included, so an entry cannot go stale while its client lives.
_LOADED: weakref.WeakKeyDictionary[Any, dict[str, ReferenceProfile]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class StoredReference:
    """A reference's profile, where it came from, and where its report sample is."""

    profile: ReferenceProfile
    data_uri: str  # the reference data itself
    prefix_uri: str  # the folder holding profile, sample and manifest
    sample_uri: str
    built: bool  # True when this call computed the profile (first use of this reference)


def reference_data_uri(client: S3Client, cfg: ModelConfig) -> str:
    """The champion's reference data (the pointer a promotion writes), else the configured one."""
    pointer = storage.read_json(client, cfg.storage.bucket, layout.reference_pointer_key(cfg))
    return pointer["uri"] if pointer else storage.s3_uri(cfg.storage.bucket, cfg.storage.reference_key)


def _etag(client: S3Client, cfg: ModelConfig, uri: str) -> str:
    head = storage.head_object(client, *storage.parse_s3_uri(uri))
    if head is None:
        raise FileNotFoundError(
            f"reference data for model {cfg.name} not found at {uri}: "
            "seed it (make demo does) or fix storage.reference_key"
        )
    return str(head["ETag"]).strip('"')


def profile_digest(cfg: ModelConfig, data_uri: str, etag: str) -> str:
    """Identity of a stored profile: the reference object's content and the features it covers."""
    features = [{"name": f.name, "type": f.type, "rule": list(cfg.drift_rule(f.name))} for f in cfg.dataset.features]
    sample = cfg.drift.report_sample_rows
    identity = {"uri": data_uri, "etag": etag, "features": features, "version": VERSION, "sample": sample}
    body = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _feature_frame(client: S3Client, cfg: ModelConfig, data_uri: str) -> pd.DataFrame:
    bucket, key = storage.parse_s3_uri(data_uri)
    frame = ingest.normalize_types(ingest.read_table(client, bucket, key, text_columns=ingest.text_columns(cfg)), cfg)
    missing = [name for name in cfg.dataset.feature_names if name not in frame.columns]
    if missing:
        raise ValueError(f"reference data {data_uri} lacks feature column(s): {', '.join(missing)}")
    # Only the configured features: id, target, timestamps and PII never reach a profile or sample.
    return frame[cfg.dataset.feature_names]


def report_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A uniform random sample of at most `rows` rows (the whole frame when it is smaller)."""
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=rows, random_state=seed).sort_index().reset_index(drop=True)


def _load(client: S3Client, cfg: ModelConfig, prefix: str) -> ReferenceProfile | None:
    bucket = cfg.storage.bucket
    cached = _cache(client).get(f"{bucket}/{prefix}")
    if cached is not None:
        return cached
    if storage.read_json(client, bucket, prefix + MANIFEST) is None:
        return None  # never built, or a build that died before its manifest: build again
    profile = ReferenceProfile.from_json(storage.read_bytes(client, bucket, prefix + PROFILE))
    missing = [name for name in cfg.dataset.feature_names if name not in profile.features]
    if missing:
        raise ValueError(f"stored reference profile {prefix} lacks feature(s) {', '.join(missing)}: delete it")
    _cache(client)[f"{bucket}/{prefix}"] = profile
    return profile


def _cache(client: S3Client) -> dict[str, ReferenceProfile]:
    try:
        return _LOADED.setdefault(client, {})
    except TypeError:  # a client that cannot be weakly referenced is simply not cached
        return {}


def load_profile(client: S3Client, cfg: ModelConfig) -> StoredReference:
    """The current reference's profile, building and storing it (with its sample) on first use."""
    return ensure_profile(client, cfg, reference_data_uri(client, cfg))


def load_reference_frame(client: S3Client, cfg: ModelConfig) -> tuple[pd.DataFrame, str]:
    """The current reference's rows (PII dropped, schema types) and their URI, for training on them."""
    uri = reference_data_uri(client, cfg)
    bucket, key = storage.parse_s3_uri(uri)
    try:
        frame = ingest.read_table(client, bucket, key, text_columns=ingest.text_columns(cfg))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"reference data for model {cfg.name} not found at {uri}: "
            "seed it (make demo does) or fix storage.reference_key"
        ) from None
    return ingest.normalize_types(ingest.drop_unused_columns(frame, cfg), cfg), uri


def ensure_profile(client: S3Client, cfg: ModelConfig, data_uri: str) -> StoredReference:
    """The stored profile of the reference data at `data_uri`, built and stored if there is none."""
    prefix = layout.reference_profile_prefix(cfg, profile_digest(cfg, data_uri, _etag(client, cfg, data_uri)))
    bucket = cfg.storage.bucket
    sample_uri = storage.s3_uri(bucket, prefix + SAMPLE)
    profile = _load(client, cfg, prefix)
    built = profile is None
    if profile is None:
        frame = _feature_frame(client, cfg, data_uri)
        profile = build_profile(frame, cfg)
        artifacts = ArtifactSet(client, bucket, prefix)
        sample = report_sample(frame, cfg.drift.report_sample_rows, seed=0)
        artifacts.put(SAMPLE, ingest.to_parquet_bytes(sample), ingest.PARQUET_TYPE)
        artifacts.put_text(PROFILE, profile.to_json(), "application/json")
        _cache(client)[f"{bucket}/{prefix}"] = profile
        artifacts.commit("built", reference_uri=data_uri, profile_id=profile.profile_id, rows=profile.rows)
        log.info("built the reference profile of %s (%d rows) at %s", data_uri, profile.rows, prefix)
    return StoredReference(
        profile=profile,
        data_uri=data_uri,
        prefix_uri=storage.s3_uri(bucket, prefix),
        sample_uri=sample_uri,
        built=built,
    )


def read_sample(client: S3Client, stored: StoredReference) -> pd.DataFrame:
    """The reference's report sample (configured features only)."""
    bucket, key = storage.parse_s3_uri(stored.sample_uri)
    return pd.read_parquet(io.BytesIO(storage.read_bytes(client, bucket, key)))


def promote_reference(client: S3Client, cfg: ModelConfig, reference_uri: str, version: str) -> str:
    """Make the data a new champion represents (training plus holdout) the monitor's drift reference."""
    pointer = {"uri": reference_uri, "model_version": version}
    return storage.write_json(client, cfg.storage.bucket, layout.reference_pointer_key(cfg), pointer)
