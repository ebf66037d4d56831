"""The Evaluator's fast engine: batched SavedModel predictions over Arrow, metrics in numpy.

Same inputs as TFMA: Parquet rows are encoded into serialized ``tf.Example``s (tfx_bsl's C++ encoder) and fed to
the model's ``serving_default``; labels come from the ``transform_features`` signature when the label key is a
transformed feature, else from the raw column; slices look in transformed features first, then raw ones (TFMA's
order). The metrics it supports are computed with the exact arithmetic of their Keras/TFMA implementations,
so their values are identical to TFMA's, not merely close:

- ``ExampleCount`` / ``WeightedExampleCount`` (no weights): the number of examples in the slice.
- ``SparseCategoricalAccuracy``: float32(sum of argmax == label) / float32(count), which is what Keras' mean
  metric computes (sums of 0/1 are exact in float32 below 2**24 examples per slice).
- ``BinaryAccuracy``: the same with ``prediction > 0.5``.

Any other metric makes ``engine: auto`` use TFMA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airflow_provider_mlpipe.runtime.evaluation.metric_config import (
    OVERALL,
    TRANSFORM_SIGNATURE,
    EvalSpec,
    slice_name,
)
from airflow_provider_mlpipe.runtime.io import schema_tables
from airflow_provider_mlpipe.stages.evaluator import FAST_ENGINE_METRICS as SUPPORTED  # also what the lint checks

MAX_EXACT = 2**24  # float32 counts are exact up to here
SliceMetrics = dict[str, dict[str, float]]


def unsupported(spec: EvalSpec) -> list[str]:
    """Metric class names the fast engine cannot compute exactly."""
    return sorted({m.class_name for m in spec.metrics if m.class_name not in SUPPORTED})


@dataclass
class Predictions:
    labels: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    slice_values: dict[str, list[list[Any]]] = field(default_factory=dict)

    def finish(self) -> tuple[np.ndarray, np.ndarray, dict[str, list[Any]]]:
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0)
        outputs = np.concatenate(self.outputs) if self.outputs else np.zeros((0, 1))
        slices = {k: [v for part in parts for v in part] for k, parts in self.slice_values.items()}
        return labels, outputs, slices


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


def predict(
    model_dir: str, files: list[str], schema: Any, spec: EvalSpec, batch_size: int = 32768
) -> tuple[np.ndarray, np.ndarray, dict[str, list[Any]]]:
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    serve = model.signatures["serving_default"]
    transform = model.signatures.get(TRANSFORM_SIGNATURE)
    [input_name] = list(serve.structured_input_signature[1])
    transformed_keys = set(transform.structured_outputs) if transform is not None else set()
    slice_features = sorted({f for s in spec.slices for f in s})
    need_transform = spec.label_key in transformed_keys or any(f in transformed_keys for f in slice_features)
    columns = [f.name for f in schema.feature]
    result = Predictions(slice_values={f: [] for f in slice_features})
    for batch in schema_tables.iter_batches(files, batch_size, columns):
        list_batch = schema_tables.to_list_batch(batch, schema, strict=False)
        examples = tf.constant(schema_tables.encode_examples(list_batch))
        outputs = _pick_output(serve(**{input_name: examples}), spec.prediction_key).numpy()
        transformed = transform(**{input_name: examples}) if need_transform else {}
        if spec.label_key in transformed:
            labels = transformed[spec.label_key].numpy()
        elif spec.label_key in batch.schema.names:
            labels = batch.column(spec.label_key).to_numpy(zero_copy_only=False)
        else:
            raise ValueError(f"The label {spec.label_key!r} is neither a transformed feature nor a raw column.")
        result.outputs.append(outputs)
        result.labels.append(np.asarray(labels).reshape(-1))
        for feature in slice_features:
            if feature in transformed:
                values = _column_values(transformed[feature].numpy())
            elif feature in batch.schema.names:
                values = batch.column(feature).to_pylist()
            else:
                raise ValueError(f"Cannot slice on {feature!r}: the examples have no such feature.")
            result.slice_values[feature].append(values)
    return result.finish()


def _per_example(class_name: str, labels: np.ndarray, outputs: np.ndarray) -> np.ndarray | None:
    """The 0/1 value a mean metric averages, per example; None for counts."""
    if class_name == "SparseCategoricalAccuracy":
        if outputs.ndim != 2:
            raise ValueError("SparseCategoricalAccuracy needs class scores of shape [batch, classes].")
        return (np.argmax(outputs, axis=-1).astype(np.float64) == labels.astype(np.float64)).astype(np.float32)
    if class_name == "BinaryAccuracy":
        scores = outputs.reshape(outputs.shape[0], -1)[:, 0]
        return ((scores > 0.5).astype(np.float32) == labels.astype(np.float32)).astype(np.float32)
    return None


def _groups(spec: EvalSpec, slices: dict[str, list[Any]], size: int) -> list[tuple[str, np.ndarray]]:
    """(slice name, example indices) for every slice; examples missing a slice feature join no slice of it."""
    groups: list[tuple[str, np.ndarray]] = []
    for features in spec.slices:
        if not features:
            groups.append((OVERALL, np.arange(size)))
            continue
        import pandas as pd

        frame = pd.DataFrame({f: pd.Series(slices[f], dtype=object) for f in features})
        indices = frame.groupby(features, dropna=True, sort=False).indices
        for values, rows in sorted(indices.items(), key=lambda kv: str(kv[0])):
            values = values if isinstance(values, tuple) else (values,)
            groups.append((slice_name(list(zip(features, values, strict=True))), np.asarray(rows)))
    return groups


def compute(spec: EvalSpec, labels: np.ndarray, outputs: np.ndarray, slices: dict[str, list[Any]]) -> SliceMetrics:
    per_example = {m.name: _per_example(m.class_name, labels, outputs) for m in spec.metrics}
    result: SliceMetrics = {}
    for name, rows in _groups(spec, slices, len(labels)):
        count = len(rows)
        if count > MAX_EXACT:
            raise ValueError(f"The slice {name} has {count} examples, more than the fast engine counts exactly.")
        values: dict[str, float] = {}
        for metric in spec.metrics:
            column = per_example[metric.name]
            if column is None:
                values[metric.name] = float(count)
            else:
                total = np.float32(column[rows].sum(dtype=np.float64))
                values[metric.name] = float(total / np.float32(count))
        result[name] = values
    return result


def evaluate(
    spec: EvalSpec, model_dir: str, baseline_dir: str | None, files: list[str], schema: Any
) -> tuple[SliceMetrics, SliceMetrics | None]:
    missing = unsupported(spec)
    if missing:
        raise ValueError(f"The fast engine cannot compute {missing} exactly; use engine: tfma.")
    candidate = compute(spec, *predict(model_dir, files, schema, spec))
    baseline = compute(spec, *predict(baseline_dir, files, schema, spec)) if baseline_dir else None
    return candidate, baseline
