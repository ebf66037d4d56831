"""StatisticsGen: TFDV statistics per split, in memory on Arrow or on Beam.

Both paths feed the same canonicalized Arrow record batches (every column a list column, a null row a null
list) into TFDV's own statistics generators, so they agree: the in-memory path runs the combiners directly
over the batches (what ``tfdv.generate_statistics_from_dataframe`` does, minus the pandas round trip); the
Beam path runs ``tfdv.GenerateStatistics`` on any runner the spec's ``beam`` options name.

The stage is URI-native: on a ``gs://`` root the Beam path reads the Parquet files and writes the statistics at
their ``gs://`` URIs, so Beam workers on other hosts reach them; the Arrow path streams the files into memory.
Neither goes through the local disk.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_mlpipe.runtime.beam_options import pipeline_options
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.io import example_io
from airflow_provider_mlpipe.stages.statistics_gen import StatisticsGenParams
from airflow_provider_mlpipe.storage import default_storage, is_gcs, join

if TYPE_CHECKING:
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import statistics_pb2

log = logging.getLogger("mlpipe.runtime")

HTML_FILE = "stats.html"
SUMMARY_FILE = "summary.json"
TOP_VALUES = 10  # the UI draws them as bars; the table text shows the first three


def _options() -> Any:
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions()


def _canonical(batch: pa.RecordBatch) -> pa.RecordBatch:
    from tfx_bsl.arrow import table_util

    return table_util.CanonicalizeRecordBatch(batch)


def _canonical_batches(table: pa.Table) -> list[pa.RecordBatch]:
    return [_canonical(b) for b in table.to_batches()]


def uncompressed_bytes(files: list[str]) -> int:
    """The data size the Arrow path would hold in memory, from the Parquet footers only."""
    total = 0
    for path in files:
        meta = example_io.parquet_metadata(path)
        total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return total


def choose_path(mode: str, size: int, arrow_max_bytes: int) -> str:
    if mode not in ("auto", "arrow", "beam"):
        raise ValueError(f"statistics_gen mode {mode!r} is not one of auto, arrow, beam.")
    if mode != "auto":
        return mode
    return "arrow" if size <= arrow_max_bytes else "beam"


def arrow_statistics(files: list[str], options: Any = None) -> statistics_pb2.DatasetFeatureStatisticsList:
    """In-memory statistics: TFDV's combiner generators over the split's record batches."""
    from tensorflow_data_validation.statistics import stats_impl

    options = options or _options()
    generators = stats_impl.get_generators(options, in_memory=True)
    accumulators = [g.create_accumulator() for g in generators]
    for path in files:
        for batch in _canonical_batches(example_io.read_parquet_file(path)):
            accumulators = [g.add_input(acc, batch) for g, acc in zip(generators, accumulators, strict=True)]
    return stats_impl.extract_statistics_output(accumulators, generators)


def beam_statistics(
    split_files: dict[str, list[str]], output_files: dict[str, str], beam_args: list[str], options: Any = None
) -> None:
    """One Beam pipeline computing every split's statistics; each lands in ``output_files[split]``."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv

    options = options or _options()
    with beam.Pipeline(options=pipeline_options(beam_args, "StatisticsGen")) as pipeline:
        for split, files in split_files.items():
            pattern = f"{files[0].rsplit('/', 1)[0]}/*.parquet"  # the split folder, local or gs://
            _ = (
                pipeline
                | f"Read[{split}]" >> beam.io.ReadFromParquetBatched(pattern)
                | f"ToBatches[{split}]" >> beam.FlatMap(_canonical_batches)
                | f"Stats[{split}]" >> tfdv.GenerateStatistics(options)
                | f"Write[{split}]" >> tfdv.WriteStatisticsToBinaryFile(output_files[split])
            )


def _num(value: float) -> float | None:
    return None if value != value else round(float(value), 6)  # NaN -> null keeps the JSON valid


def _standard_buckets(num: Any) -> list[dict[str, float | None]]:
    """TFDV's equal-width histogram, so the UI can draw the distribution without reading the protobuf."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    standard = statistics_pb2.Histogram.HistogramType.STANDARD
    for histogram in num.histograms:
        if histogram.type == standard:
            return [
                {"low": _num(b.low_value), "high": _num(b.high_value), "count": _num(b.sample_count)}
                for b in histogram.buckets
            ]
    return []


def summarize(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, Any]:
    """The small per-split figures the UI shows without TFDV."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    dataset = stats.datasets[0] if stats.datasets else statistics_pb2.DatasetFeatureStatistics()
    features: dict[str, Any] = {}
    for name, feature in zip(example_io.feature_names(dataset.features), dataset.features, strict=True):
        kind = feature.WhichOneof("stats")
        entry: dict[str, Any] = {"type": statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)}
        if kind == "num_stats":
            num = feature.num_stats
            common = num.common_stats
            entry.update(
                mean=_num(num.mean), std_dev=_num(num.std_dev), min=_num(num.min), max=_num(num.max),
                median=_num(num.median), zeros=int(num.num_zeros),
            )  # fmt: skip
            entry["histogram"] = _standard_buckets(num)
        elif kind == "string_stats":
            common = feature.string_stats.common_stats
            entry.update(
                unique=int(feature.string_stats.unique),
                top_values=[
                    {"value": v.value, "count": _num(v.frequency)} for v in feature.string_stats.top_values[:TOP_VALUES]
                ],
            )
        else:
            continue
        entry["missing"] = int(common.num_missing)
        entry["present"] = int(common.num_non_missing)
        total = common.num_missing + common.num_non_missing
        entry["missing_ratio"] = round(common.num_missing / total, 6) if total else 0.0
        features[name] = entry
    return {"num_examples": int(dataset.num_examples), "features": features}


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    from tensorflow_data_validation.utils import display_util

    examples = ctx.input("examples")
    splits = example_io.artifact_splits(examples.uri, examples.properties)
    files = {split: example_io.split_files(examples.uri, split) for split in splits}
    size = sum(uncompressed_bytes(f) for f in files.values())
    params: StatisticsGenParams = ctx.params
    path = choose_path(params.mode, size, params.arrow_max_bytes)
    log.info("StatisticsGen: %d bytes in %d split(s), %s path.", size, len(splits), path)

    out = ctx.output("statistics")
    started = time.monotonic()
    if path == "beam":
        targets = {s: join(example_io.split_dir(out.path, s), example_io.STATS_FILE) for s in splits}
        if not is_gcs(out.path):
            for target in targets.values():
                os.makedirs(os.path.dirname(target), exist_ok=True)
        beam_statistics(files, targets, ctx.beam_args)
        results = {s: example_io.load_stats(t) for s, t in targets.items()}
    else:
        results = {s: arrow_statistics(f) for s, f in files.items()}
        for split, stats in results.items():
            example_io.write_stats(stats, example_io.split_dir(out.path, split))
    compute_s = time.monotonic() - started

    storage = default_storage()
    summary: dict[str, Any] = {"path": path, "splits": {}}
    for split, stats in results.items():
        html = display_util.get_statistics_html(stats)
        storage.write_text(join(example_io.split_dir(out.path, split), HTML_FILE), html)
        summary["splits"][split] = summarize(stats)
    if "span" in examples.properties:
        summary["span"] = examples.properties["span"]
    storage.write_text(join(out.path, SUMMARY_FILE), json.dumps(summary, indent=1, sort_keys=True))

    num_examples = {s: summary["splits"][s]["num_examples"] for s in splits}
    out.properties.update({"split_names": list(splits), "path": path, "num_examples": num_examples})
    if "span" in examples.properties:
        out.properties["span"] = examples.properties["span"]
    return {
        "path": path,
        "num_examples": num_examples,
        "input_bytes": size,
        "compute_s": round(compute_s, 3),
        "num_features": {s: len(summary["splits"][s]["features"]) for s in splits},
    }
