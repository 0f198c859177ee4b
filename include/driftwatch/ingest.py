"""Reading one batch (CSV or Parquet objects under its date prefix): a DataFrame, or Parquet read by columns."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from driftwatch import layout, storage
from driftwatch.config import ModelConfig
from driftwatch.dtypes import text_values
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
class ParquetColumns:
    """A batch of local Parquet files, read a few columns or one chunk of rows at a time.

    Validation reads one column group at a time and staging one chunk of rows at a time, so
    neither holds the whole batch in memory. Several files read as their concatenation: a column
    one file lacks is null there, as pandas.concat would make it. Columns in `dropped` (PII) are
    never read.
    """

    paths: tuple[Path, ...]
    categories: tuple[str, ...] = ()
    dropped: frozenset[str] = field(default_factory=frozenset)

    @cached_property
    def _files(self) -> list[Any]:
        return [_open_parquet(path, self.categories) for path in self.paths]

    @cached_property
    def columns(self) -> list[str]:
        """Every file's columns, in order of first appearance, PII left out."""
        names: dict[str, None] = {}
        for parquet in self._files:
            names.update((n, None) for n in parquet.schema_arrow.names if n not in self.dropped)
        return list(names)

    @cached_property
    def rows(self) -> int:
        return sum(parquet.metadata.num_rows for parquet in self._files)

    def read(self, columns: Sequence[str]) -> pd.DataFrame:
        """These columns over every row (categories as pandas categoricals)."""
        wanted = [c for c in dict.fromkeys(columns) if c not in self.dropped]
        parts = []
        for path, parquet in zip(self.paths, self._files, strict=True):
            try:
                table = parquet.read(columns=self._present(parquet, wanted))
            except (ValueError, OSError) as err:  # a damaged page shows only when it is read
                raise IngestError("unreadable parquet", f"{path.name}: {str(err)[:300]}") from None
            parts.append(self._frame(table, wanted))
        return _concat_columns(parts, wanted)

    def iter_chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        """Every column, `rows` rows at a time (the last chunk holds the rest)."""
        pending: list[Any] = []  # Arrow tables: slicing them is free, and categories stay codes
        held = 0
        for parquet in self._files:
            present = self._present(parquet, self.columns)
            # Row group by row group: iter_batches would pre-buffer the whole file's bytes first.
            for group in range(parquet.num_row_groups):
                pending.append(parquet.read_row_group(group, columns=present))
                held += pending[-1].num_rows
                while held >= rows:
                    table = _concat_tables(pending)
                    yield self._frame(table.slice(0, rows), self.columns)
                    rest = table.slice(rows)
                    pending, held = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        if held:
            yield self._frame(_concat_tables(pending), self.columns)

    @staticmethod
    def _present(parquet: Any, columns: Sequence[str]) -> list[str]:
        names = set(parquet.schema_arrow.names)
        return [c for c in columns if c in names]

    @staticmethod
    def _frame(table: Any, columns: Sequence[str]) -> pd.DataFrame:
        frame = table.to_pandas(split_blocks=True)
        for name in columns:
            if name not in frame.columns:
                frame[name] = pd.Series(float("nan"), index=frame.index)
        return frame[list(columns)] if list(frame.columns) != list(columns) else frame


def _concat_tables(tables: list[Any]) -> Any:
    """One Arrow table of several; a column one file lacks becomes null, like pandas.concat would."""
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise IngestError("files of the batch disagree on column types", str(err)[:300]) from None


def _concat_columns(parts: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Stack frames column by column, so only one column is ever held twice."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, pd.Series] = {}
    for name in columns:
        pieces = [part.pop(name) for part in parts]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in pieces):
            out[name] = pd.Series(pd.api.types.union_categoricals(pieces, ignore_order=True), name=name)
        else:
            out[name] = pd.concat(pieces, ignore_index=True)
    return pd.DataFrame(out, columns=list(columns))


@dataclass(frozen=True)
class Batch:
    """One batch's data (in memory, or Parquet files read by columns), the objects it came from."""

    data: pd.DataFrame | ParquetColumns
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

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    parquet = _open_parquet(source, categories)
    groups = [parquet.read_row_group(i) for i in range(parquet.num_row_groups)]
    table = pa.concat_tables(groups) if groups else parquet.schema_arrow.empty_table()
    del groups  # the concatenated table is now the only owner of the buffers self_destruct frees
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _open_parquet(source: Any, categories: Sequence[str]) -> Any:
    """A ParquetFile that reads the string columns named in `categories` as dictionaries."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(source)
    if hasattr(source, "seek"):
        source.seek(0)
    strings = [
        name
        for name in categories
        if name in schema.names
        and (pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type))
    ]
    return pq.ParquetFile(source, read_dictionary=strings, pre_buffer=True)


def parse_object(
    data: bytes | Any, fmt: str, key: str, categories: Sequence[str] = (), text_columns: Sequence[str] = ()
) -> pd.DataFrame:
    """Parse one object (its bytes, or for Parquet a seekable file); every failure becomes an IngestError.

    CSV columns named in `text_columns` (ids, categories) are read as the text written, so that an
    id 007 keeps its zeros and a category 1 in a column with nulls does not become 1.0.
    """
    if isinstance(data, (bytes, bytearray)) and not data:
        raise IngestError("empty file", key)
    try:
        if fmt == "parquet":
            return read_parquet(data, categories)
        _check_csv_bytes(data, key)
        text = dict.fromkeys(text_columns, str)
        frame = pd.read_csv(io.BytesIO(data), encoding="utf-8", low_memory=False, dtype=text or None)
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


def read_batch(client: S3Client, cfg: ModelConfig, batch_date: str, spool: Path | None = None) -> Batch:
    """Find, size-check and read every object of a batch.

    With a `spool` folder and only Parquet objects, they are copied there and come back as
    ParquetColumns, read a few columns at a time later; otherwise they are parsed into one DataFrame.
    """
    objects = find_batch_objects(client, cfg, batch_date)
    try:
        total = check_batch_size(objects, cfg.storage.max_batch_bytes)
        formats = {layout.batch_format(o.key) or "csv" for o in objects}
        if spool is not None and formats == {"parquet"} and all(o.size > 0 for o in objects):
            data: pd.DataFrame | ParquetColumns = _spool_parquet(client, cfg, objects, spool)
            columns, rows = data.columns, data.rows
        else:
            data = _parse_objects(client, cfg, objects)
            columns, rows = list(data.columns), len(data)
        if rows == 0:
            raise IngestError("no rows", f"{len(objects)} object(s) hold a header but no data")
        check_columns(columns, cfg)
    except IngestError as err:
        err.objects = objects
        raise
    return Batch(data=data, objects=objects, total_bytes=total)


def check_parquet_footer(source: Any, key: str, cfg: ModelConfig, rows_before: int = 0) -> int:
    """Refuse, from the footer alone, a Parquet object too large once decoded or with nested columns.

    The size limit counts compressed bytes: a small file can decode to gigabytes (a "bomb"), and a
    nested column cannot be validated. Either quarantines the batch before any data is read.
    Returns the rows of the batch so far (`rows_before` plus this object's).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    limits = cfg.storage
    try:
        parquet = pq.ParquetFile(source)
        meta, schema = parquet.metadata, parquet.schema_arrow
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise IngestError("unreadable parquet", f"{key}: {str(err)[:300]}") from None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    rows = rows_before + meta.num_rows
    if rows > limits.max_batch_rows:
        raise IngestError(f"batch too large: {rows} rows, over storage.max_batch_rows ({limits.max_batch_rows})", key)
    # Encoded sizes hide run-length bombs: a decoded column takes at least 8 bytes a value.
    decoded = max(
        sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)), meta.num_rows * meta.num_columns * 8
    )
    if decoded > limits.max_uncompressed_bytes:
        raise IngestError(
            f"batch too large: decodes to {decoded} bytes or more, over storage.max_uncompressed_bytes "
            f"({limits.max_uncompressed_bytes})",
            key,
        )
    skipped = set(cfg.dataset.unused_columns)
    nested = [f.name for f in schema if f.name not in skipped and pa.types.is_nested(f.type)]
    if nested:
        raise IngestError(f"nested column(s) {', '.join(nested)}: only flat columns are supported", key)
    return rows


def _parse_objects(client: S3Client, cfg: ModelConfig, objects: list[ObjectInfo]) -> pd.DataFrame:
    frames = []
    rows = 0
    for obj in objects:
        fmt = layout.batch_format(obj.key) or "csv"
        if fmt == "parquet" and obj.size > 0:
            # Read in place by ranged requests: the object's bytes are never held beside the frame.
            data: Any = storage.RangeReader(client, cfg.storage.bucket, obj.key)
            rows = check_parquet_footer(data, obj.key, cfg, rows)
        else:
            data = storage.read_bytes(client, cfg.storage.bucket, obj.key, max_bytes=cfg.storage.max_batch_bytes)
        frames.append(parse_object(data, fmt, obj.key, cfg.dataset.categorical_features, text_columns(cfg)))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _spool_parquet(client: S3Client, cfg: ModelConfig, objects: list[ObjectInfo], spool: Path) -> ParquetColumns:
    """Copy the batch's Parquet objects to local files and check that each one opens."""
    paths = []
    rows = 0
    for number, obj in enumerate(objects):
        path = spool / f"part-{number:05d}.parquet"
        storage.download_file(client, cfg.storage.bucket, obj.key, path)
        rows = check_parquet_footer(path, obj.key, cfg, rows)
        try:
            _open_parquet(path, ())
        except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise IngestError("unreadable parquet", f"{obj.key}: {str(err)[:300]}") from None
        paths.append(path)
    return ParquetColumns(tuple(paths), tuple(cfg.dataset.categorical_features), frozenset(cfg.dataset.unused_columns))


def check_columns(columns: Sequence[Any], cfg: ModelConfig) -> None:
    """Refuse columns the schema does not know: a renamed or unexpected column could carry anything."""
    schema = cfg.dataset
    known = {
        schema.id_column,
        schema.timestamp_column,
        schema.target.name,
        *schema.feature_names,
        *schema.unused_columns,
    }
    unexpected = [str(c) for c in columns if c not in known]
    if not unexpected:
        return
    missing = [c for c in [schema.id_column, *schema.feature_names] if c not in columns]
    detail = f"{', '.join(repr(c[:80]) for c in unexpected[:10])} not in the schema of {cfg.name}"
    if missing:
        detail += f"; missing {', '.join(missing)}"
    raise IngestError(f"unexpected column(s) {', '.join(c[:40] for c in unexpected[:3])}", detail)


def normalize_types(frame: pd.DataFrame, cfg: ModelConfig, leave: Sequence[str] = ()) -> pd.DataFrame:
    """Give a validated batch the schema's types, so CSV and Parquet batches stage identically.

    Text columns named in `leave` are left as they are, for a caller that converts them itself.
    """
    schema = cfg.dataset
    out = frame.copy(deep=False)  # every changed column is replaced, never written into
    for name in schema.numeric_features:
        if name in out.columns:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64", copy=False)
    for name in [*schema.categorical_features, schema.id_column]:
        if name in out.columns and name not in leave:
            out[name] = text_values(out[name])
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


def drop_unused_columns(frame: Any, cfg: ModelConfig) -> Any:
    """Remove the PII and ignored columns, so that nothing downstream can report, stage or score them."""
    unused = cfg.dataset.unused_columns
    if isinstance(frame, ParquetColumns):
        return dataclasses.replace(frame, dropped=frame.dropped | set(unused))
    present = [c for c in unused if c in frame.columns]
    return frame.drop(columns=present) if present else frame


def text_columns(cfg: ModelConfig) -> list[str]:
    """The columns compared as text across sources: the id and the categorical features."""
    return [cfg.dataset.id_column, *cfg.dataset.categorical_features]


def read_table(
    client: S3Client, bucket: str, key: str, max_bytes: int | None = None, text_columns: Sequence[str] = ()
) -> pd.DataFrame:
    """Read a whole CSV or Parquet object (reference, labels, staged, predictions)."""
    fmt = layout.batch_format(key)
    if fmt is None:
        raise ValueError(f"s3://{bucket}/{key}: expected a .csv or .parquet key")
    data = storage.read_bytes(client, bucket, key, max_bytes=max_bytes)
    return parse_object(data, fmt, key, text_columns=text_columns)


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A DataFrame as the bytes of a Parquet file, without its index."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_parquet(client: S3Client, bucket: str, key: str, frame: pd.DataFrame) -> str:
    """Write a DataFrame as Parquet and return its URI."""
    return storage.write_bytes(client, bucket, key, to_parquet_bytes(frame), PARQUET_TYPE)


def _staged_schema(columns: Sequence[str], column: Any, cfg: ModelConfig) -> Any:
    """The Arrow schema of a staged batch, fixed up front so every row group has the same types."""
    import pyarrow as pa

    schema = cfg.dataset
    text = {*schema.categorical_features, schema.id_column}
    fields = []
    for name in columns:
        if name in schema.numeric_features:
            kind = pa.float64()
        elif name in text:
            kind = pa.string()
        elif name == schema.timestamp_column:
            kind = pa.timestamp("ns", tz="UTC")
        else:  # the target: whatever it holds, read once over the whole column
            kind = pa.array(column(name), from_pandas=True).type
            kind = pa.string() if pa.types.is_null(kind) else kind
        fields.append(pa.field(str(name), kind))
    return pa.schema(fields)


def write_staged(target: Any, data: pd.DataFrame | ParquetColumns, cfg: ModelConfig) -> None:
    """Write the staged copy of a validated batch to a binary file: schema types, one row group at a time.

    Row groups are what drift partitions split on. Converting a row group at a time keeps the
    extra memory to one row group rather than a second copy of the batch, and only the
    categorical features are dictionary-encoded: trying it on a million distinct floats or ids
    and falling back costs more than the rest of the write.
    """
    import pyarrow.parquet as pq

    rows = layout.staged_row_group_rows(cfg)
    if isinstance(data, ParquetColumns):
        schema = _staged_schema(data.columns, lambda name: data.read([name])[name], cfg)
        chunks: Any = data.iter_chunks(rows)
    else:
        schema = _staged_schema(list(data.columns), lambda name: data[name], cfg)
        chunks = (data.iloc[start : start + rows] for start in range(0, max(len(data), 1), rows))
    with pq.ParquetWriter(target, schema, use_dictionary=list(cfg.dataset.categorical_features)) as writer:
        for chunk in chunks:
            writer.write_table(_staged_table(chunk, schema, cfg), row_group_size=rows)


def _staged_table(chunk: pd.DataFrame, schema: Any, cfg: ModelConfig) -> Any:
    """One chunk in the staged schema's types, as normalize_types gives them.

    Category codes and integer ids become text in Arrow, without a Python string per value;
    every other column goes through normalize_types.
    """
    import pyarrow as pa

    text = [*cfg.dataset.categorical_features, cfg.dataset.id_column]
    in_arrow = [name for name in text if name in chunk.columns and _arrow_text_matches_pandas(chunk[name])]
    part = normalize_types(chunk, cfg, leave=in_arrow)
    rest = pa.schema([f for f in schema if f.name not in in_arrow])
    table = pa.Table.from_pandas(part.drop(columns=in_arrow), schema=rest, preserve_index=False)
    arrays = {name: pa.array(part[name], from_pandas=True).cast(pa.string()) for name in in_arrow}
    return pa.Table.from_arrays(
        [arrays[f.name] if f.name in arrays else table.column(f.name) for f in schema], schema=schema
    )


def _arrow_text_matches_pandas(series: pd.Series) -> bool:
    """Whether Arrow's cast to text gives what pandas' astype("string") gives: string categories, integers."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return pd.api.types.infer_dtype(series.cat.categories, skipna=True) in {"string", "empty"}
    return pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_extension_array_dtype(series.dtype)


def write_staged_file(path: Path, data: pd.DataFrame | ParquetColumns, cfg: ModelConfig) -> Path:
    """write_staged to a local file; a ParquetColumns batch is read through its own file handles.

    The own handles let staging run on one thread while validation reads the batch on another.
    """
    if isinstance(data, ParquetColumns):
        data = dataclasses.replace(data)
    with open(path, "wb") as target:
        write_staged(target, data, cfg)
    return path


def upload_staged(client: S3Client, cfg: ModelConfig, key: str, path: Path) -> str:
    """Upload a staged file written by write_staged_file; it is streamed in parts, never held in memory."""
    with open(path, "rb") as staged:
        return storage.upload_file(client, cfg.storage.bucket, key, staged, PARQUET_TYPE)
