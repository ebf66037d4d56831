"""The Evaluator's reference engine: TFMA's ``run_model_analysis`` on Beam, metrics read back from its output.

TFMA reads ``tf.Example`` TFRecords, so the Parquet eval split is first encoded, in a Beam pipeline on the same
runner, with the same helpers the fast engine uses. Both pipelines read and write at their URIs (``gs://`` on a
GCS root), so remote Beam workers reach everything. TFMA writes its own output (metrics, plots, validations)
under ``tfma/`` in the evaluation artifact.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_mlpipe.runtime.beam_options import pipeline_options
from airflow_provider_mlpipe.runtime.evaluation.metric_config import (
    BASELINE,
    CANDIDATE,
    EvalSpec,
    slice_name,
    tfma_eval_config,
)
from airflow_provider_mlpipe.runtime.io import schema_tables
from airflow_provider_mlpipe.storage import join

SliceMetrics = dict[str, dict[str, float]]


def _slice_pairs(slice_key: Any) -> list[tuple[str, Any]]:
    pairs = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind) if kind else None
        pairs.append((single.column, value))
    return pairs


def read_metrics(output_path: str) -> dict[str, SliceMetrics]:
    """``{model name: {slice name: {metric: value}}}`` from TFMA's metrics output (diff keys are dropped)."""
    import tensorflow_model_analysis as tfma

    result: dict[str, SliceMetrics] = {}
    for record in tfma.load_metrics(output_path):
        name = slice_name(_slice_pairs(record.slice_key))
        for item in record.metric_keys_and_values:
            if item.key.is_diff or not item.value.HasField("double_value"):
                continue
            model = item.key.model_name or CANDIDATE
            result.setdefault(model, {}).setdefault(name, {})[item.key.name] = float(item.value.double_value.value)
    return result


def encode_eval_examples(files: list[str], schema: Any, prefix: str, beam_args: list[str]) -> str:
    """Write the Parquet rows of ``files`` as ``tf.Example`` TFRecords under ``prefix``; returns their pattern."""
    import apache_beam as beam

    with beam.Pipeline(options=pipeline_options(beam_args, "Evaluator (encoding eval examples)")) as pipeline:
        _ = (
            pipeline
            | "ListFiles" >> beam.Create(files)
            | "ReadParquet" >> beam.io.ReadAllFromParquetBatched()
            | "Encode"
            >> beam.FlatMap(
                lambda batch: schema_tables.encode_examples(schema_tables.to_list_batch(batch, schema, strict=False))
            )
            | "Write" >> beam.io.WriteToTFRecord(join(prefix, "eval-examples"), file_name_suffix=".tfrecord")
        )
    return join(prefix, "eval-examples*.tfrecord")


def evaluate(
    spec: EvalSpec,
    model_dir: str,
    baseline_dir: str | None,
    files: list[str],
    schema: Any,
    output_path: str,
    temp_uri: str,
    beam_args: list[str],
    has_transform: bool,
    data_location: str | None = None,
) -> tuple[SliceMetrics, SliceMetrics | None, bool]:
    """Run TFMA; returns candidate metrics, baseline metrics (or None) and TFMA's own ``validation_ok``."""
    import tensorflow_model_analysis as tfma

    if data_location is None:
        data_location = encode_eval_examples(files, schema, temp_uri, beam_args)
    eval_config = tfma_eval_config(spec, has_transform, baseline_dir is not None)
    models = [tfma.default_eval_shared_model(model_dir, eval_config=eval_config, model_name=CANDIDATE)]
    if baseline_dir:
        models.append(tfma.default_eval_shared_model(baseline_dir, eval_config=eval_config, model_name=BASELINE))
    tfma.run_model_analysis(
        eval_shared_model=models if len(models) > 1 else models[0],
        eval_config=eval_config,
        data_location=data_location,
        output_path=output_path,
        pipeline_options=pipeline_options(beam_args, "Evaluator (TFMA)"),
    )
    metrics = read_metrics(output_path)
    validation = tfma.load_validation_result(output_path)
    return metrics.get(CANDIDATE, {}), metrics.get(BASELINE) if baseline_dir else None, validation.validation_ok
