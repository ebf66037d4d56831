"""Reading the Parquet ``Examples`` of ExampleGen for the model stages, consistently with the schema.

Transform, Evaluator (both engines) and the tests all turn Parquet columns into the same Arrow layout: one
list column per schema feature, cast to the schema's type (INT -> int64, FLOAT -> float32, BYTES -> binary).
A null becomes a null list (a missing feature in a ``tf.Example``), except in a dense FLOAT feature, where it
becomes NaN: a schema inferred from pandas statistics marks such columns dense, and the user's
``preprocessing_fn`` imputes NaN. Encoding that layout with tfx_bsl's C++ encoder gives the serialized
``tf.Example``s that the serving signature takes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tensorflow_metadata.proto.v0 import schema_pb2

from airflow_provider_mlpipe.runtime.io import example_io
from airflow_provider_mlpipe.runtime.io.example_io import SCHEMA_FILE, load_schema
from airflow_provider_mlpipe.storage import default_storage

__all__ = ["SCHEMA_FILE", "load_schema"]  # shared with example_io, re-exported for the model stages


def schema_from_parquet(files: list[str]) -> schema_pb2.Schema:
    """A schema without shapes from Parquet column types, for when no Schema artifact is wired.

    Every feature may be missing (a null becomes an absent feature), which a serving signature that gives dense
    features defaults accepts.
    """
    with default_storage().open(files[0], "rb") as fh:
        arrow_schema = pq.read_schema(fh)
    schema = schema_pb2.Schema()
    for name, kind in zip(arrow_schema.names, arrow_schema.types, strict=True):
        base = kind.value_type if pa.types.is_list(kind) or pa.types.is_large_list(kind) else kind
        if pa.types.is_integer(base) or pa.types.is_boolean(base):
            feature_type = schema_pb2.INT
        elif pa.types.is_floating(base):
            feature_type = schema_pb2.FLOAT
        elif pa.types.is_string(base) or pa.types.is_large_string(base) or pa.types.is_binary(base):
            feature_type = schema_pb2.BYTES
        else:
            continue  # timestamps, structs ...: not model features
        schema.feature.add(name=name, type=feature_type)
    return schema


def split_files(examples_uri: str, split: str, suffix: str = ".parquet") -> list[str]:
    """The split's data files, local or ``gs://``; ``FileNotFoundError`` when there are none."""
    try:
        return example_io.split_files(examples_uri, split, suffix)
    except ValueError as exc:
        raise FileNotFoundError(str(exc)) from None


def split_names(examples_uri: str, declared: list[str] | None = None) -> list[str]:
    """The splits of an Examples artifact: its ``split_names`` property, or its ``Split-*`` folders."""
    return example_io.artifact_splits(examples_uri, {"split_names": declared})


_ARROW_TYPES = {
    schema_pb2.INT: pa.int64(),
    schema_pb2.FLOAT: pa.float32(),
    schema_pb2.BYTES: pa.binary(),
}


def _is_dense(feature: schema_pb2.Feature) -> bool:
    return feature.HasField("shape")


def _to_list_column(column: pa.Array, feature: schema_pb2.Feature, strict: bool) -> pa.Array:
    target = _ARROW_TYPES.get(feature.type)
    if target is None:
        raise ValueError(f"The feature {feature.name!r} has a schema type mlpipe cannot read ({feature.type}).")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return column.cast(pa.large_list(target))
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.large_binary()).cast(target) if target == pa.binary() else column.cast(target)
    else:
        column = column.cast(target, safe=target != pa.float32())
    if column.null_count and _is_dense(feature):
        if target != pa.float32() and strict:
            raise ValueError(
                f"The schema marks {feature.name!r} as always present, but {column.null_count} value(s) are null; "
                "infer the schema from these examples or curate it so the feature may be missing."
            )
        if target == pa.float32():
            column = pc.fill_null(column, np.float32("nan"))
    if not column.null_count:
        return pa.LargeListArray.from_arrays(pa.array(np.arange(len(column) + 1, dtype=np.int64)), column)
    # A null row becomes a null list, which the tf.Example encoder writes as a feature without values: parsing
    # treats it as missing (a dense feature takes its default), where an empty list would be "zero values".
    valid = column.is_valid().to_numpy(False)
    offsets = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(valid, out=offsets[1:])
    mask = np.append(~valid, False)
    return pa.LargeListArray.from_arrays(pa.array(offsets, mask=mask), column.drop_null())


def to_list_batch(table: pa.Table | pa.RecordBatch, schema: schema_pb2.Schema, strict: bool = True) -> pa.RecordBatch:
    """Arrow columns as one list column per schema feature (columns the schema does not name are dropped).

    ``strict``: a null in a dense non-FLOAT feature is an error (tf.Transform needs a value there). Otherwise it
    becomes a missing feature and the model's parsing spec decides, as it would for a serving request.
    """
    names = set(table.schema.names)
    arrays, fields = [], []
    for feature in schema.feature:
        if feature.name not in names:
            raise ValueError(f"The examples have no column {feature.name!r}, which the schema requires.")
        arrays.append(_to_list_column(table.column(feature.name), feature, strict))
        fields.append(feature.name)
    return pa.RecordBatch.from_arrays(arrays, fields)


def iter_batches(files: list[str], batch_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    storage = default_storage()
    for path in files:
        with storage.open(path, "rb") as fh:  # streamed: row groups are fetched as they are read
            yield from pq.ParquetFile(fh).iter_batches(batch_size=batch_size, columns=columns)


def labeled_rows(batch: pa.RecordBatch | pa.Table, column: str | None) -> pa.RecordBatch | pa.Table:
    """The rows whose ``column`` holds a value (not null, not NaN); all rows when ``column`` is None or absent."""
    if column is None or column not in batch.schema.names:
        return batch
    values = batch.column(column)
    present = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        present = pc.and_(present, pc.invert(pc.fill_null(pc.is_nan(values), True)))
    return batch.filter(present)


def encode_examples(batch: pa.RecordBatch) -> list[bytes]:
    """Serialized ``tf.Example``s of a list-column batch (tfx_bsl's C++ encoder)."""
    from tfx_bsl.coders import example_coder

    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def relax_dense_features(schema: schema_pb2.Schema) -> list[str]:
    """Make the dense non-FLOAT features variable-length (sparse), in place; returns their names.

    A schema inferred from one split or span may call a feature always present while later rows, or serving
    requests, lack it; a dense INT or BYTES tensor has no way to say "missing", so parsing would fail. Read
    sparse, the gap reaches the user's ``preprocessing_fn``. Dense FLOAT features keep their shape: a missing
    value is NaN (and the serving parser can default it to NaN).
    """
    relaxed = []
    for feature in schema.feature:
        if _is_dense(feature) and feature.type != schema_pb2.FLOAT:
            feature.ClearField("shape")
            feature.presence.min_fraction = 0.0
            relaxed.append(feature.name)
    return relaxed


def write_tfrecords(
    files: list[str], schema: schema_pb2.Schema, path: str, batch_size: int = 65536, compress: bool = True
) -> int:
    """Write the rows of Parquet ``files`` as (gzipped) ``tf.Example`` TFRecords; returns the row count."""
    import tensorflow as tf

    count = 0
    columns = [f.name for f in schema.feature]
    with tf.io.TFRecordWriter(path, options="GZIP" if compress else None) as writer:
        for batch in iter_batches(files, batch_size, columns):
            for record in encode_examples(to_list_batch(batch, schema, strict=False)):
                writer.write(record)
                count += 1
    return count
