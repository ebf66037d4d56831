"""Reading input files into Arrow, hash splitting, and the on-disk layouts of the data artifacts.

Examples are stored as Parquet (one directory per split): pyarrow reads it back in a fraction of a second,
TFDV and tf.Transform take Arrow record batches, and Beam reads it with ``ReadFromParquetBatched``.
Every reader raises ``ValueError`` naming the file and the problem, so a bad span fails before anything is
published.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_mlpipe.storage import default_storage, join

if TYPE_CHECKING:
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

# Spellings of "missing" in CSV files; pandas' default set minus ones that are plausible category values.
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A"]
STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"
SCHEMA_FILE = "schema.pbtxt"
DEFAULT_ROWS_PER_SHARD = 1_000_000


def split_dir(artifact_dir: str, split: str) -> str:
    return join(artifact_dir, f"Split-{split}")


def artifact_splits(artifact_dir: str, properties: dict[str, Any] | None = None) -> list[str]:
    """Split names from the artifact's properties, else from its ``Split-*`` directories (local or ``gs://``)."""
    names = (properties or {}).get("split_names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    found = sorted(d[len("Split-") :] for d in default_storage().list_dirs(artifact_dir) if d.startswith("Split-"))
    if not found:
        raise ValueError(f"The artifact at {artifact_dir} has no Split-* directories.")
    return found


# ----- reading input files ------------------------------------------------------------------------------
def _check_utf8(table: pa.Table, path: str) -> None:
    # pyarrow infers ``binary`` instead of ``string`` for a column holding invalid UTF-8.
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            raise ValueError(f"The input file {path} is not valid UTF-8: column {name!r} holds undecodable bytes.")


def read_csv(path: str, delimiter: str = ",") -> pa.Table:
    import pyarrow.csv as pcsv

    if os.path.getsize(path) == 0:
        raise ValueError(f"The input file {path} is empty.")
    with open(path, "rb") as fh:
        header = fh.readline()
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"The input file {path} is not valid UTF-8: its header cannot be decoded.") from None
    try:
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(null_values=NULL_VALUES, strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"The input file {path} cannot be read as CSV: {exc}") from exc
    names = table.column_names
    if any(not n.strip() for n in names) or len(set(names)) != len(names):
        raise ValueError(f"The input file {path} has an empty or duplicated column name in its header {names}.")
    _check_utf8(table, path)
    return table


def read_parquet(path: str) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"The input file {path} cannot be read as Parquet: {exc}") from exc


def _flatten_univalent(table: pa.Table) -> pa.Table:
    """tf.Example features are lists; store a list of at most one value as a plain (nullable) column."""
    arrays, names = [], []
    for name, column in zip(table.column_names, table.columns, strict=True):
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = pc.fill_null(pc.list_value_length(column), 0)
            if len(column) == 0 or pc.max(lengths).as_py() <= 1:
                column = pc.list_element(
                    pc.if_else(pc.equal(lengths, 0), pa.nulls(len(column), column.type), column), 0
                )
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            try:
                column = column.cast(pa.string())
            except pa.ArrowInvalid:
                pass  # genuinely binary data (e.g. serialized images) stays binary
        arrays.append(column)
        names.append(name)
    return pa.table(arrays, names=names)


def read_tfrecord(path: str) -> pa.Table:
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    compression = "GZIP" if path.endswith(".gz") else ""
    try:
        records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=compression)]
    except tf.errors.OpError as exc:
        raise ValueError(f"The input file {path} cannot be read as TFRecord: {exc.message}") from exc
    if not records:
        raise ValueError(f"The input file {path} is empty: it holds no records.")
    try:
        batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    except Exception as exc:  # tfx_bsl raises its own status errors for bad protos
        raise ValueError(f"The input file {path} does not hold tf.Example records: {exc}") from exc
    return _flatten_univalent(pa.Table.from_batches([batch]))


def read_file(path: str, fmt: str, delimiter: str = ",") -> pa.Table:
    if not os.path.isfile(path):
        raise ValueError(f"The input file {path} does not exist or is not a file.")
    if not os.access(path, os.R_OK):
        raise ValueError(f"The input file {path} is not readable.")
    readers = {"csv": lambda p: read_csv(p, delimiter), "parquet": read_parquet, "tfrecord": read_tfrecord}
    table = readers[fmt](path)
    if table.num_rows == 0:
        raise ValueError(f"The input file {path} has no rows (a header without data).")
    return _temporal_as_text(table)


def _temporal_as_text(table: pa.Table) -> pa.Table:
    """tf.Example and TFDV have no date or time type (StatisticsGen would fail on the column): pyarrow reads
    ``2024-01-05`` in a CSV as a date, so dates and times are kept as their ISO text."""
    for i, field in enumerate(table.schema):
        if pa.types.is_date(field.type) or pa.types.is_timestamp(field.type) or pa.types.is_time(field.type):
            table = table.set_column(i, field.name, pc.cast(table.column(i), pa.string()))
    return table


def _unified_type(types: set[pa.DataType]) -> pa.DataType:
    types = {t for t in types if not pa.types.is_null(t)}
    if not types:
        return pa.null()
    if len(types) == 1:
        return types.pop()
    if all(pa.types.is_integer(t) for t in types):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        return pa.float64()
    return pa.string()


def concat_files(tables: list[tuple[str, pa.Table]]) -> pa.Table:
    """Concatenate the files of one split; their columns must agree, types are widened where needed."""
    first_path, first = tables[0]
    for path, table in tables[1:]:
        if table.column_names != first.column_names:
            missing = sorted(set(first.column_names) - set(table.column_names))
            extra = sorted(set(table.column_names) - set(first.column_names))
            detail = f"missing {missing}, unexpected {extra}" if missing or extra else "columns in another order"
            raise ValueError(
                f"The input file {path} does not have the columns of {first_path}: {detail} "
                f"(expected {first.column_names}, got {table.column_names})."
            )
    if len(tables) == 1:
        return first
    target = {name: _unified_type({t.schema.field(name).type for _, t in tables}) for name in first.column_names}
    schema = pa.schema([(name, typ) for name, typ in target.items()])
    return pa.concat_tables([t.cast(schema) for _, t in tables])


# ----- splitting ----------------------------------------------------------------------------------------
def _as_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The column as strings, nulls as NUL (which no CSV value holds), for hashing."""
    try:
        text = pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # lists and other nested values
        text = pa.array([None if v is None else repr(v) for v in column.to_pylist()], pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return pc.fill_null(text, "\x00")


def hash_buckets(table: pa.Table, total: int, partition_feature: str | None = None) -> list[int]:
    """A bucket in ``[0, total)`` per row from an MD5 of the row (or of its partition feature).

    MD5 rather than Python's ``hash()``: the assignment must be the same in every process and on every machine.
    The key is built column-wise in Arrow; only the digest runs per row.
    """
    if partition_feature:
        if partition_feature not in table.column_names:
            raise ValueError(
                f"partition_feature {partition_feature!r} is not a column of the input (columns: {table.column_names})."
            )
        keys = _as_text(table.column(partition_feature))
    else:
        columns = [_as_text(c) for c in table.columns]
        keys = pc.binary_join_element_wise(*columns, "\x1f") if len(columns) > 1 else columns[0]
    md5 = hashlib.md5
    return [int.from_bytes(md5(key.encode()).digest()[:8], "big") % total for key in keys.to_pylist()]


def split_table(table: pa.Table, buckets: dict[str, int], partition_feature: str | None = None) -> dict[str, pa.Table]:
    if not buckets or any(int(n) <= 0 for n in buckets.values()):
        raise ValueError(f"splits must map split names to positive bucket counts, got {buckets!r}.")
    total = sum(int(n) for n in buckets.values())
    row_bucket = pa.array(hash_buckets(table, total, partition_feature), pa.int64())
    out, start = {}, 0
    for name, count in buckets.items():
        end = start + int(count)
        mask = pc.and_(pc.greater_equal(row_bucket, start), pc.less(row_bucket, end))
        out[name] = table.filter(mask)
        start = end
    return out


# ----- Examples artifacts ---------------------------------------------------------------------------------
def write_split(table: pa.Table, directory: str, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> int:
    os.makedirs(directory, exist_ok=True)
    shards = max(1, -(-table.num_rows // rows_per_shard))
    for shard in range(shards):
        part = table.slice(shard * rows_per_shard, rows_per_shard)
        pq.write_table(part, os.path.join(directory, f"data-{shard:05d}.parquet"))
    return shards


def split_files(examples_dir: str, split: str, suffix: str = ".parquet") -> list[str]:
    """The split's data files, sorted (local or ``gs://``)."""
    directory = split_dir(examples_dir, split)
    names = [n for n in default_storage().list_files(directory) if "/" not in n and n.endswith(suffix)]
    if not names:
        raise ValueError(f"The Examples artifact at {examples_dir} has no {suffix} files in split {split!r}.")
    return [join(directory, n) for n in names]


def parquet_metadata(uri: str) -> pq.FileMetaData:
    """A Parquet file's footer, local or read by byte range from ``gs://`` (row counts, row-group sizes)."""
    with default_storage().open(uri, "rb") as fh:
        return pq.ParquetFile(fh).metadata


def read_parquet_file(uri: str) -> pa.Table:
    """One Parquet file, local or streamed from ``gs://`` into memory (never through the local disk)."""
    with default_storage().open(uri, "rb") as fh:
        return pq.read_table(fh)


def read_split(examples_dir: str, split: str) -> pa.Table:
    return pa.concat_tables([read_parquet_file(f) for f in split_files(examples_dir, split)])


# ----- statistics, schema, anomalies --------------------------------------------------------------------
def write_stats(stats: statistics_pb2.DatasetFeatureStatisticsList, directory: str) -> str:
    path = join(directory, STATS_FILE)
    with default_storage().open(path, "wb") as fh:
        fh.write(stats.SerializeToString())
    return path


def _file_in(directory_or_file: str, name: str) -> str:
    return directory_or_file if default_storage().size(directory_or_file) is not None else join(directory_or_file, name)


def load_stats(directory_or_file: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    path = _file_in(directory_or_file, STATS_FILE)
    try:
        data = default_storage().read_bytes(path)
    except FileNotFoundError:
        raise ValueError(f"No statistics file at {path}.") from None
    return statistics_pb2.DatasetFeatureStatisticsList.FromString(data)


def load_split_stats(stats_dir: str, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    return load_stats(split_dir(stats_dir, split))


def load_schema(path: str) -> schema_pb2.Schema:
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = _file_in(path, SCHEMA_FILE)
    try:
        text = default_storage().read_text(path)
    except OSError as exc:
        raise ValueError(f"The schema file {path} cannot be read: {exc.strerror or exc}.") from exc
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as exc:
        raise ValueError(f"The schema file {path} is not a valid Schema text proto: {exc}") from exc


def write_schema(schema: schema_pb2.Schema, directory: str) -> str:
    from google.protobuf import text_format

    path = join(directory, SCHEMA_FILE)
    default_storage().write_text(path, text_format.MessageToString(schema))
    return path


def feature_names(items: Iterable[Any]) -> list[str]:
    """Dotted names of FeatureNameStatistics or schema features."""
    names = []
    for item in items:
        if getattr(item, "path", None) is not None and item.path.step:
            names.append(".".join(item.path.step))
        else:
            names.append(item.name)
    return names
