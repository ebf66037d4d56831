"""ExampleGen: ingest one span of CSV, Parquet or TFRecord input and write hash-split Parquet Examples.

The span comes from the run (data interval start, else logical date, else ``conf["span"]``), so a backfill
over N days ingests N spans and a re-run of a day reads the same files. ``fingerprint`` hashes those files, so a
re-run is a cache hit and a changed file is not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.io import example_io, span_patterns
from airflow_provider_mlpipe.stages.example_gen import ExampleGenParams
from airflow_provider_mlpipe.storage import default_storage, is_gcs, split_gcs

log = logging.getLogger("mlpipe.runtime")


def fingerprint(request: StageRequest, params: ExampleGenParams) -> str:
    """Span, version and the identity (size and content hash) of every input file of this span."""
    try:
        day = span_patterns.span_date(request.conf, request.data_interval_start, request.logical_date)
        resolved, version = span_patterns.resolve_inputs(params, day, request.spec_dir)
    except ValueError as exc:
        # Let execute() raise the same error inside a recorded (then FAILED) execution.
        return f"unresolved: {exc}"
    payload = {
        "span": span_patterns.span_id(day),
        "version": version,
        "files": {
            split: [[f.uri, f.size, f.signature] for f in item.files] for split, item in sorted(resolved.items())
        },
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _local_copy(uri: str, tmp_dir: str) -> str:
    if not is_gcs(uri):
        return uri
    bucket, name = split_gcs(uri)
    target = os.path.join(tmp_dir, "gcs-input", bucket, name)
    try:
        default_storage().download_file(uri, target)
    except Exception as exc:  # gcsfs and its HTTP client raise several error types
        raise ValueError(f"The input file {uri} cannot be downloaded: {exc}") from exc
    return target


def _read_split(files: list[str], params: ExampleGenParams, tmp_dir: str) -> Any:
    delimiter = params.csv.delimiter if params.csv else ","
    tables = []
    for uri in files:
        local = _local_copy(uri, tmp_dir)
        table = example_io.read_file(local, span_patterns.input_format(params.input.format, uri), delimiter)
        tables.append((uri, table))
    return example_io.concat_files(tables)


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    params: ExampleGenParams = ctx.params
    day = span_patterns.span_date(ctx.conf, ctx.data_interval_start, ctx.logical_date)
    span = span_patterns.span_id(day)
    resolved, version = span_patterns.resolve_inputs(params, day, ctx.spec_dir)
    input_files = [f.uri for item in resolved.values() for f in item.files]
    log.info("ExampleGen: span %d, version %s, %d input file(s).", span, version, len(input_files))

    if "" in resolved:
        table = _read_split([f.uri for f in resolved[""].files], params, ctx.tmp_dir)
        splits = example_io.split_table(table, dict(params.splits), params.partition_feature)
    else:
        splits = {
            name: _read_split([f.uri for f in item.files], params, ctx.tmp_dir) for name, item in resolved.items()
        }
        columns = {name: t.column_names for name, t in splits.items()}
        if len({tuple(c) for c in columns.values()}) > 1:
            raise ValueError(f"The pre-split inputs do not share their columns: {columns}.")

    out = ctx.output("examples")
    row_counts: dict[str, int] = {}
    for name, part in splits.items():
        example_io.write_split(part, example_io.split_dir(out.path, name), params.rows_per_shard)
        row_counts[name] = part.num_rows
        if part.num_rows == 0:
            log.warning("ExampleGen: the %r split of span %d is empty (too few rows for its buckets).", name, span)
    first = next(iter(splits.values()))
    out.properties.update(
        {
            "span": span,
            "split_names": list(splits),
            "row_counts": row_counts,
            "format": "parquet",
            "input_files": input_files,
        }
    )
    if version is not None:  # only versioned patterns ({VERSION}) have one
        out.properties["version"] = version
    return {
        "span": span,
        "version": version,
        "row_counts": row_counts,
        "num_rows": sum(row_counts.values()),
        "columns": first.column_names,
        "input_files": input_files,
    }
