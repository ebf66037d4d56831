"""The Evaluator's reference engine: TFMA's ``run_model_analysis`` on Beam, metrics read back from its output.

TFMA reads ``tf.Example`` TFRecords, so the Parquet eval split is first encoded, in a Beam pipeline on the same
runner, with the same helpers the fast engine uses. Both pipelines read and write at their URIs (``gs://`` on a
GCS root), so remote Beam workers reach everything. TFMA writes its own output (metrics, plots, validations)
under ``tfma/`` in the evaluation artifact.

A slice on one of the candidate's transformed features is decided by the candidate alone (``slicing.py``): the
encoding pipeline adds the candidate's value of that feature to each example under a private name, and TFMA
slices on it, so the baseline is scored on the same groups.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam
import pyarrow as pa

from airflow_provider_mlpipe.runtime.beam_options import pipeline_options
from airflow_provider_mlpipe.runtime.evaluation import plots, slicing
from airflow_provider_mlpipe.runtime.evaluation.metric_config import (
    BASELINE,
    CANDIDATE,
    TRANSFORM_SIGNATURE,
    EvalSpec,
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


def read_output(
    output_path: str, spec: EvalSpec | None = None
) -> tuple[dict[str, SliceMetrics], dict[str, dict[str, dict[str, Any]]]]:
    """TFMA's metrics and plots output, each read once: ``{model: {slice: {metric: value}}}`` and
    ``{model: {slice: {plot or matrix name: proto}}}`` (diff keys are dropped).

    Slice names use feature names (not the private names the TFMA engine slices on), crosses in ``spec``'s order.
    """
    import tensorflow_model_analysis as tfma

    metrics: dict[str, SliceMetrics] = {}
    protos: dict[str, dict[str, dict[str, Any]]] = {}
    for record in tfma.load_metrics(output_path):
        name = slicing.ordered_slice_name(spec, _slice_pairs(record.slice_key))
        for item in record.metric_keys_and_values:
            if item.key.is_diff:
                continue
            model = item.key.model_name or CANDIDATE
            if item.key.name in plots.PLOT_NAMES:  # the confusion matrix at 0.5 the run view draws
                protos.setdefault(model, {}).setdefault(name, {})[item.key.name] = _plot_proto(item.value)
                continue
            values = metrics.setdefault(model, {}).setdefault(name, {})
            if item.value.HasField("double_value"):
                values[item.key.name] = float(item.value.double_value.value)
            elif item.value.HasField("confusion_matrix_at_thresholds"):
                values.update(plots.matrix_numbers(item.key.name, item.value.confusion_matrix_at_thresholds))
    for record in tfma.load_plots(output_path):
        name = slicing.ordered_slice_name(spec, _slice_pairs(record.slice_key))
        for item in record.plot_keys_and_values:
            model = item.key.model_name or CANDIDATE
            protos.setdefault(model, {}).setdefault(name, {})[item.key.name] = _plot_proto(item.value)
    return metrics, protos


def read_metrics(output_path: str, spec: EvalSpec | None = None) -> dict[str, SliceMetrics]:
    """Only the metrics of ``read_output``."""
    return read_output(output_path, spec)[0]


def _plot_proto(value: Any) -> Any:
    for field in (
        "confusion_matrix_at_thresholds",
        "calibration_histogram_buckets",
        "multi_class_confusion_matrix_at_thresholds",
    ):
        if value.HasField(field):
            return getattr(value, field)
    return None


class EncodeWithCandidateSlices(beam.DoFn):
    """Parquet batches -> serialized ``tf.Example``s, each carrying the candidate's value of every transformed
    slice feature as an extra raw feature (``slicing.private_name``)."""

    def __init__(self, schema: Any, model_dir: str | None, features: list[str], label_column: str | None) -> None:
        self._schema = schema
        self._label_column = label_column
        self._model_dir = model_dir
        self._features = features
        self._transform: Any = None
        self._input_name = ""

    def setup(self) -> None:
        if not self._features:
            return
        import tensorflow as tf

        # Loaded once per worker; the signature keeps the model's variables alive.
        self._transform = tf.saved_model.load(self._model_dir).signatures[TRANSFORM_SIGNATURE]
        [self._input_name] = list(self._transform.structured_input_signature[1])

    def process(self, batch: pa.Table | pa.RecordBatch) -> Any:
        batch = schema_tables.labeled_rows(batch, self._label_column)
        if not batch.num_rows:
            return
        list_batch = schema_tables.to_list_batch(batch, self._schema, strict=False)
        examples = schema_tables.encode_examples(list_batch)
        if not self._features:
            yield from examples
            return
        import tensorflow as tf

        outputs = self._transform(**{self._input_name: tf.constant(examples)})
        columns = list(list_batch.columns)
        names = list(list_batch.schema.names)
        for feature in self._features:
            value = outputs[feature]
            if not isinstance(value, tf.Tensor):
                raise ValueError(
                    f"Cannot slice on {feature!r}: the candidate's transform_features returns it as a "
                    f"{type(value).__name__}, not a dense tensor; slice on a dense transformed feature."
                )
            columns.append(slicing.slice_value_column(value.numpy()))
            names.append(slicing.private_name(feature))
        yield from schema_tables.encode_examples(pa.RecordBatch.from_arrays(columns, names))


def encode_eval_examples(
    files: list[str],
    schema: Any,
    prefix: str,
    beam_args: list[str],
    model_dir: str | None = None,
    slice_features: list[str] | None = None,
    label_column: str | None = None,
) -> str:
    """Write the Parquet rows of ``files`` as ``tf.Example`` TFRecords under ``prefix``; returns their pattern.

    ``slice_features``: transformed features of the candidate at ``model_dir`` to add under their private names;
    ``label_column``: rows without it are left out, as the fast engine leaves them out.
    """
    encode = EncodeWithCandidateSlices(schema, model_dir, slice_features or [], label_column)
    with beam.Pipeline(options=pipeline_options(beam_args, "Evaluator (encoding eval examples)")) as pipeline:
        _ = (
            pipeline
            | "ListFiles" >> beam.Create(files)
            | "ReadParquet" >> beam.io.ReadAllFromParquetBatched()
            | "Encode" >> beam.ParDo(encode)
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
) -> tuple[SliceMetrics, SliceMetrics | None, dict[str, Any] | None, bool]:
    """Run TFMA; returns candidate metrics, baseline metrics (or None), plot data (``plots.json``'s candidate and
    baseline) and TFMA's own ``validation_ok``."""
    import tensorflow_model_analysis as tfma

    transformed = slicing.transformed_slice_features(
        spec, slicing.signature_outputs(model_dir, TRANSFORM_SIGNATURE) or []
    )
    if data_location is None:
        data_location = encode_eval_examples(
            files, schema, temp_uri, beam_args, model_dir, transformed, spec.label_column
        )
    # TFMA slices on the candidate's values under their private names, never on a model's own transform.
    private = {feature: slicing.private_name(feature) for feature in transformed}
    tfma_spec = dataclasses.replace(spec, slices=[[private.get(f, f) for f in s] for s in spec.slices])
    eval_config = tfma_eval_config(tfma_spec, has_transform, baseline_dir is not None, with_plots=True)
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
    metrics, protos = read_output(output_path, spec)
    plot_data: dict[str, Any] | None = None
    if spec.plots:
        by_model = {
            model: {name: plots.from_plot_protos(named) for name, named in by_slice.items()}
            for model, by_slice in protos.items()
        }
        plot_data = {
            "candidate": by_model.get(CANDIDATE, {}),
            "baseline": by_model.get(BASELINE, {}) if baseline_dir else None,
        }
    validation = tfma.load_validation_result(output_path)
    candidate, baseline = metrics.get(CANDIDATE, {}), metrics.get(BASELINE) if baseline_dir else None
    return candidate, baseline, plot_data, validation.validation_ok
