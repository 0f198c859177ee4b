"""Reading one batch (CSV or Parquet objects under its date prefix) into a DataFrame."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from driftwatch import layout, storage
from driftwatch.config import ModelConfig
from driftwatch.storage import ObjectInfo, S3Client

# Zero-byte markers such as _SUCCESS are written by Spark and Glue next to the data.
_MARKER_NAMES = {"_SUCCESS", "_SUCCESS.json", ".keep"}
# Leading bytes of formats that are not text, so a misnamed object gets a reason that says what it is.
_MAGIC = {b"\x1f\x8b": "gzip-compressed data", b"PK\x03\x04": "a ZIP archive", b"PAR1": "Parquet data"}
_OTHER_DELIMITERS = (";", "\t", "|")
PARQUET_TYPE = "application/vnd.apache.parquet"


class IngestError(ValueError):
    """A batch cannot be turned into a DataFrame; `reason` is short enough for an email subject."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.objects: list[ObjectInfo] = []  # the batch's objects when they were found: quarantine copies them


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
        err = IngestError(
            "unsupported file type",
            f"{', '.join(unsupported)}; accepted formats: {', '.join(cfg.storage.formats)}",
        )
        err.objects = objects
        raise err
    return objects


def check_batch_size(objects: list[ObjectInfo], max_bytes: int) -> int:
    """Refuse a batch over the size limit before any byte of it is downloaded."""
    total = sum(o.size for o in objects)
    if total > max_bytes:
        raise IngestError("batch too large", f"{total} bytes in {len(objects)} object(s), limit {max_bytes} bytes")
    return total


def _check_csv_bytes(data: bytes, key: str) -> None:
    """Refuse binary data behind a .csv name before the CSV parser turns it into noise."""
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            raise IngestError(f"{what} in a .csv object", f"{key}: starts with bytes {magic!r}; land plain CSV text")


def _check_delimiter(frame: pd.DataFrame, key: str) -> None:
    """A one-column frame whose header holds another separator was written with the wrong delimiter."""
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    for sep in _OTHER_DELIMITERS:
        if sep in header:
            raise IngestError(
                "wrong delimiter", f"{key}: the header is one column holding {sep!r}; expected comma-separated CSV"
            )


def read_parquet(source: Any, categories: Sequence[str] = ()) -> pd.DataFrame:
    """A Parquet file (bytes, or a seekable binary file) as a DataFrame, row group by row group.

    String columns named in `categories` come back as categoricals: a million category strings
    would otherwise become a million Python objects, and validation then checks integer codes.
    Each row group's column chunks are fetched in one coalesced read, and each Arrow column is
    freed once converted, so the batch is never held twice (nor its file's bytes besides it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    schema = pq.read_schema(source)
    source.seek(0)
    strings = [
        name
        for name in categories
        if name in schema.names
        and (pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type))
    ]
    parquet = pq.ParquetFile(source, read_dictionary=strings, pre_buffer=True)
    groups = [parquet.read_row_group(i) for i in range(parquet.num_row_groups)]
    table = pa.concat_tables(groups) if groups else parquet.schema_arrow.empty_table()
    del groups  # the concatenated table is now the only owner of the buffers self_destruct frees
    return table.to_pandas(self_destruct=True, split_blocks=True)


def parse_object(data: bytes | Any, fmt: str, key: str, categories: Sequence[str] = ()) -> pd.DataFrame:
    """Parse one object (its bytes, or for Parquet a seekable file); every failure becomes an IngestError."""
    if isinstance(data, (bytes, bytearray)) and not data:
        raise IngestError("empty file", key)
    try:
        if fmt == "parquet":
            return read_parquet(data, categories)
        _check_csv_bytes(data, key)
        frame = pd.read_csv(io.BytesIO(data), encoding="utf-8", low_memory=False)
        _check_delimiter(frame, key)
        return frame
    except IngestError:
        raise  # already specific; it is a ValueError and must not be re-worded below
    except UnicodeDecodeError as err:
        raise IngestError("not UTF-8 text", f"{key}: {err.reason} at byte {err.start}") from None
    except pd.errors.EmptyDataError:
        raise IngestError("empty file", key) from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise IngestError(f"unreadable {fmt}", f"{key}: {str(err)[:300]}") from None


def read_batch(client: S3Client, cfg: ModelConfig, batch_date: str) -> Batch:
    """Find, size-check and parse every object of a batch into one DataFrame."""
    objects = find_batch_objects(client, cfg, batch_date)
    try:
        total = check_batch_size(objects, cfg.storage.max_batch_bytes)
        frames = []
        for obj in objects:
            fmt = layout.batch_format(obj.key) or "csv"
            if fmt == "parquet" and obj.size > 0:
                # Read in place by ranged requests: the object's bytes are never held beside the frame.
                data: Any = storage.RangeReader(client, cfg.storage.bucket, obj.key)
            else:
                data = storage.read_bytes(client, cfg.storage.bucket, obj.key, max_bytes=cfg.storage.max_batch_bytes)
            frames.append(parse_object(data, fmt, obj.key, categories=cfg.dataset.categorical_features))
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if frame.empty:
            raise IngestError("no rows", f"{len(objects)} object(s) hold a header but no data")
        check_columns(frame, cfg)
    except IngestError as err:
        err.objects = objects
        raise
    return Batch(frame=frame, objects=objects, total_bytes=total)


def check_columns(frame: pd.DataFrame, cfg: ModelConfig) -> None:
    """Refuse columns the schema does not know: a renamed or unexpected column could carry anything."""
    schema = cfg.dataset
    known = {schema.id_column, schema.timestamp_column, schema.target.name, *schema.feature_names, *schema.pii_columns}
    unexpected = [str(c) for c in frame.columns if c not in known]
    if not unexpected:
        return
    missing = [c for c in [schema.id_column, *schema.feature_names] if c not in frame.columns]
    detail = f"{', '.join(repr(c[:80]) for c in unexpected[:10])} not in the schema of {cfg.name}"
    if missing:
        detail += f"; missing {', '.join(missing)}"
    raise IngestError(f"unexpected column(s) {', '.join(c[:40] for c in unexpected[:3])}", detail)


def normalize_types(frame: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """Give a validated batch the schema's types, so CSV and Parquet batches stage identically."""
    schema = cfg.dataset
    out = frame.copy(deep=False)  # every changed column is replaced, never written into
    for name in schema.numeric_features:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64", copy=False)
    for name in [*schema.categorical_features, schema.id_column]:
        out[name] = out[name].astype("string").astype(object).where(out[name].notna(), None)
    if schema.timestamp_column and schema.timestamp_column in out.columns:
        out[schema.timestamp_column] = pd.to_datetime(out[schema.timestamp_column], errors="coerce", utc=True)
    return out


# Look-alikes for < and >: a category value such as "</script><script>..." stays readable in a
# report but can no longer end the <script> element in which Evidently embeds its data.
_INERT_MARKUP = str.maketrans({"<": "\uff1c", ">": "\uff1e"})


def inert_markup(frame: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """A copy whose categorical values cannot be parsed as HTML, for report generators that embed raw data."""
    out = frame.copy(deep=False)
    for name in cfg.dataset.categorical_features:
        if name not in out.columns:
            continue
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].cat.rename_categories(_inert)
        elif out[name].dtype == object:
            out[name] = out[name].map(_inert)
    return out


def _inert(value: Any) -> Any:
    return value.translate(_INERT_MARKUP) if isinstance(value, str) else value


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


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A DataFrame as the bytes of a Parquet file, without its index."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_parquet(client: S3Client, bucket: str, key: str, frame: pd.DataFrame) -> str:
    """Write a DataFrame as Parquet and return its URI."""
    return storage.write_bytes(client, bucket, key, to_parquet_bytes(frame), PARQUET_TYPE)


def _staged_schema(frame: pd.DataFrame, cfg: ModelConfig) -> Any:
    """The Arrow schema of a staged batch, fixed up front so every row group has the same types."""
    import pyarrow as pa

    schema = cfg.dataset
    text = {*schema.categorical_features, schema.id_column}
    fields = []
    for name in frame.columns:
        if name in schema.numeric_features:
            kind = pa.float64()
        elif name in text:
            kind = pa.string()
        elif name == schema.timestamp_column:
            kind = pa.timestamp("ns", tz="UTC")
        else:  # the target: whatever it holds, read once over the whole column
            kind = pa.array(frame[name], from_pandas=True).type
            kind = pa.string() if pa.types.is_null(kind) else kind
        fields.append(pa.field(str(name), kind))
    return pa.schema(fields)


def write_staged(target: Any, frame: pd.DataFrame, cfg: ModelConfig) -> None:
    """Write the staged copy of a validated batch to a binary file: schema types, one row group at a time.

    Row groups are what drift partitions split on. Converting a row group at a time keeps the
    extra memory to one row group rather than a second copy of the batch, and only the
    categorical features are dictionary-encoded: trying it on a million distinct floats or ids
    and falling back costs more than the rest of the write.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = layout.staged_row_group_rows(cfg)
    schema = _staged_schema(frame, cfg)
    with pq.ParquetWriter(target, schema, use_dictionary=list(cfg.dataset.categorical_features)) as writer:
        for start in range(0, max(len(frame), 1), rows):
            part = normalize_types(frame.iloc[start : start + rows], cfg)
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False), row_group_size=rows)


def upload_staged(client: S3Client, cfg: ModelConfig, key: str, frame: pd.DataFrame) -> str:
    """Stage a validated batch through a local spool file (never a second in-memory copy) and upload it."""
    import tempfile

    with tempfile.TemporaryFile(prefix="driftwatch-staged-") as spool:
        write_staged(spool, frame, cfg)
        spool.seek(0)
        return storage.upload_file(client, cfg.storage.bucket, key, spool, PARQUET_TYPE)


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
