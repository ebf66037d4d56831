"""The Evaluator's fast engine: batched SavedModel predictions over Arrow, metrics by TFMA's own computations.

Same inputs as TFMA: Parquet rows are encoded into serialized ``tf.Example``s (tfx_bsl's C++ encoder) and fed to
the model's ``serving_default``; labels and example weights come from the ``transform_features`` signature when
the key is a transformed feature, else from the raw column (TFMA's order). The metrics are TFMA's own
computations for the same ``EvalConfig``, with each per-example combiner replaced by one numpy pass per slice
(``fast_metrics``), so the values are TFMA's.

Slice membership is decided once, from the candidate's view of each example (its transformed features, else the
raw ones); the baseline is scored on exactly those groups, so a change threshold compares like with like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_mlpipe.runtime.evaluation import fast_metrics, plots
from airflow_provider_mlpipe.runtime.evaluation.fast_metrics import SliceInputs, Unsupported
from airflow_provider_mlpipe.runtime.evaluation.kpis import KpiModule
from airflow_provider_mlpipe.runtime.evaluation.metric_config import (
    OVERALL,
    TRANSFORM_SIGNATURE,
    EvalSpec,
    slice_name,
    tfma_eval_config,
)
from airflow_provider_mlpipe.runtime.io import schema_tables
from airflow_provider_mlpipe.stages.evaluator import FAST_ENGINE_METRICS as SUPPORTED  # also what the lint checks

log = logging.getLogger("mlpipe.runtime.evaluator")
SliceMetrics = dict[str, dict[str, float]]
SlicePlots = dict[str, dict[str, Any]]


def unsupported(spec: EvalSpec) -> list[str]:
    """Metric class names the fast engine does not compute (known without TensorFlow, as the lint knows them)."""
    return sorted({m.class_name for m in spec.metrics if m.class_name not in SUPPORTED})


@dataclass
class Scored:
    """One model's view of the eval split: TFMA-shaped labels, predictions and weights, and slice values."""

    inputs: SliceInputs
    slice_values: dict[str, list[Any]] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # raw columns, when asked for (KPIs read them)


def _pick_output(outputs: dict[str, Any], prediction_key: str | None) -> Any:
    if prediction_key:
        if prediction_key not in outputs:
            raise ValueError(f"The model has no output {prediction_key!r}; it has {sorted(outputs)}.")
        return outputs[prediction_key]
    if len(outputs) != 1:
        raise ValueError(f"The model returns {sorted(outputs)}; set params.prediction_key to choose one.")
    return next(iter(outputs.values()))


def _column_values(values: Any) -> list[Any]:
    """One Python value per example (None when missing), decoding bytes like TFMA's slice keys do."""
    array = np.asarray(values)
    if array.ndim > 1:
        array = array.reshape(array.shape[0], -1)[:, 0]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v.item() for v in array]


def _single_values(list_batch: pa.RecordBatch, name: str, role: str) -> np.ndarray:
    """A raw feature with exactly one value per example, in the dtype TFMA parses it to (int64, float32)."""
    column = list_batch.column(list_batch.schema.get_field_index(name))
    if column.null_count or pc.any(pc.not_equal(pc.list_value_length(column), 1)).as_py():
        raise ValueError(f"The {role} {name!r} must have exactly one value in every eval example.")
    return column.flatten().to_numpy(zero_copy_only=False)


def _lookup(name: str, role: str, transformed: dict[str, Any], list_batch: pa.RecordBatch) -> np.ndarray:
    if name in transformed:
        return np.asarray(transformed[name].numpy()).reshape(len(list_batch), -1)[:, 0]
    if name in list_batch.schema.names:
        return _single_values(list_batch, name, role)
    raise ValueError(f"The {role} {name!r} is neither a transformed feature nor a raw column.")


def predict(
    model_dir: str,
    files: list[str],
    schema: Any,
    spec: EvalSpec,
    with_slices: bool = True,
    batch_size: int = 32768,
    with_features: bool = False,
) -> Scored:
    """Score every eval example; ``with_slices`` also reads the slice features (the candidate's view),
    ``with_features`` every raw column as a numpy array (row for row with the predictions)."""
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    serve = model.signatures["serving_default"]
    transform = model.signatures.get(TRANSFORM_SIGNATURE)
    [input_name] = list(serve.structured_input_signature[1])
    transformed_keys = set(transform.structured_outputs) if transform is not None else set()
    slice_features = sorted({f for s in spec.slices for f in s}) if with_slices else []
    keys = [spec.label_key, *([spec.example_weight_key] if spec.example_weight_key else []), *slice_features]
    need_transform = any(k in transformed_keys for k in keys)
    labels: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    slice_values: dict[str, list[Any]] = {f: [] for f in slice_features}
    raw_columns: dict[str, list[np.ndarray]] = {}
    for batch in schema_tables.iter_batches(files, batch_size, [f.name for f in schema.feature]):
        batch = schema_tables.labeled_rows(batch, spec.label_column)
        if not batch.num_rows:
            continue
        list_batch = schema_tables.to_list_batch(batch, schema, strict=False)
        examples = tf.constant(schema_tables.encode_examples(list_batch))
        scores = np.asarray(_pick_output(serve(**{input_name: examples}), spec.prediction_key).numpy())
        outputs.append(scores.reshape(len(list_batch), -1))
        if with_features:
            for name in batch.schema.names:
                raw_columns.setdefault(name, []).append(batch.column(name).to_numpy(zero_copy_only=False))
        transformed = transform(**{input_name: examples}) if need_transform else {}
        labels.append(_lookup(spec.label_key, "label", transformed, list_batch))
        if spec.example_weight_key:
            weights.append(_lookup(spec.example_weight_key, "example weight", transformed, list_batch))
        for feature in slice_features:
            if feature in transformed:
                slice_values[feature].extend(_column_values(transformed[feature].numpy()))
            elif feature in list_batch.schema.names:
                slice_values[feature].extend(batch.column(feature).to_pylist())
            else:
                raise ValueError(f"Cannot slice on {feature!r}: the examples have no such feature.")
    label_array = np.concatenate(labels) if labels else np.zeros(0)
    inputs = SliceInputs(
        labels=label_array.reshape(-1, 1),
        predictions=np.concatenate(outputs) if outputs else np.zeros((0, 1), dtype=np.float32),
        weights=np.concatenate(weights).astype(np.float32) if weights else None,
    )
    features = {name: np.concatenate(parts) for name, parts in raw_columns.items()}
    return Scored(inputs, slice_values, features)


def groups(spec: EvalSpec, slices: dict[str, list[Any]], size: int) -> list[tuple[str, np.ndarray]]:
    """(slice name, example indices) for every slice; examples missing a slice feature join no slice of it."""
    result: list[tuple[str, np.ndarray]] = []
    for features in spec.slices:
        if not features:
            result.append((OVERALL, np.arange(size)))
            continue
        import pandas as pd

        frame = pd.DataFrame({f: pd.Series(slices[f], dtype=object) for f in features})
        indices = frame.groupby(features, dropna=True, sort=False).indices
        for values, rows in sorted(indices.items(), key=lambda kv: str(kv[0])):
            values = values if isinstance(values, tuple) else (values,)
            result.append((slice_name(list(zip(features, values, strict=True))), np.asarray(rows)))
    return result


def compute(
    spec: EvalSpec, inputs: SliceInputs, slice_groups: list[tuple[str, np.ndarray]]
) -> tuple[SliceMetrics, SlicePlots]:
    """Metrics (and plot data) per slice, from TFMA's computations for the spec's EvalConfig."""
    eval_config = tfma_eval_config(spec, has_transform=False, with_baseline=False, with_plots=True)
    plan = fast_metrics.computations(eval_config)
    metrics: SliceMetrics = {}
    slice_plots: SlicePlots = {}
    for name, rows in slice_groups:
        values = fast_metrics.compute(plan, inputs.take(rows))
        metrics[name] = plots.scalar_metrics(values)
        plot = plots.from_values(values)
        if plot:
            slice_plots[name] = plot
    return metrics, slice_plots


def evaluate(
    spec: EvalSpec,
    model_dir: str,
    baseline_dir: str | None,
    files: list[str],
    schema: Any,
    kpis: KpiModule | None = None,
) -> tuple[SliceMetrics, SliceMetrics | None, dict[str, SlicePlots | None], tuple[SliceMetrics, SliceMetrics | None]]:
    """Candidate and baseline metrics on the candidate's slices, their plot data, and the candidate's and the
    baseline's KPIs (empty without ``kpis``); ``Unsupported`` when a configured metric needs a computation the
    fast engine does not mirror."""
    missing = unsupported(spec)
    if missing:
        raise Unsupported(f"The fast engine does not compute {missing}; use engine: tfma or auto.")
    with_features = kpis is not None
    candidate = predict(model_dir, files, schema, spec, with_features=with_features)
    slice_groups = groups(spec, candidate.slice_values, len(candidate.inputs.labels))
    candidate_metrics, candidate_plots = compute(spec, candidate.inputs, slice_groups)
    candidate_kpis = kpis.by_slice(candidate, slice_groups) if kpis else {}
    if not baseline_dir:
        return candidate_metrics, None, {"candidate": candidate_plots, "baseline": None}, (candidate_kpis, None)
    baseline = predict(baseline_dir, files, schema, spec, with_slices=False, with_features=with_features)
    baseline_metrics, baseline_plots = compute(spec, baseline.inputs, slice_groups)
    baseline_kpis = kpis.by_slice(baseline, slice_groups) if kpis else None
    plot_data = {"candidate": candidate_plots, "baseline": baseline_plots}
    return candidate_metrics, baseline_metrics, plot_data, (candidate_kpis, baseline_kpis)
