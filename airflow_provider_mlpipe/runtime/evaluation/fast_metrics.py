"""TFMA's own metric computations, with each per-example Beam combiner replaced by one numpy pass over a slice.

TFMA turns a configured metric into computations: combiners that accumulate example by example (a calibration
histogram, confusion matrices at thresholds, sums of errors, Keras metric weights), then derived computations
that turn the accumulators into values (AUC's interpolation, precision at a threshold, calibration, plots). The
fast engine builds the very same computations from the same ``EvalConfig``, fills each combiner's accumulator
for a whole slice in numpy, and hands it to TFMA's own ``extract_output`` and derived ``result``s. So every value
comes out of TFMA's own arithmetic; only the order of the sums differs (Beam merges bundles in its own order),
which moves float64 results by ~1e-15 and float32 Keras sums by ~1e-7.

A combiner this module has no vectorized accumulator for, or a metric option it does not mirror (class weights,
aggregation, sub keys other than ``top_k``), raises ``Unsupported`` so ``engine: auto`` uses TFMA.

The accumulators read the combiners' settings from their private attributes and build TFMA's accumulator types;
TFMA is pinned (0.47), and ``tests/runtime/test_metric_names.py`` (every fast metric builds here) and
``tests/runtime/test_evaluator_equivalence.py`` (every value against TFMA's) catch an upgrade that changes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

EPSILON = 1e-7  # TFMA's boundary epsilon for thresholds (binary_confusion_matrices._EPSILON)


@dataclass
class SliceInputs:
    """One model's labels, predictions and example weights for the examples of one slice, as TFMA extracts them.

    ``labels``: ``[n, 1]`` (class ids or values); ``predictions``: ``[n, classes]`` (``[n, 1]`` for binary and
    regression); ``weights``: ``[n]`` float32, or None when the evaluation is unweighted.
    """

    labels: np.ndarray
    predictions: np.ndarray
    weights: np.ndarray | None

    def take(self, rows: np.ndarray) -> SliceInputs:
        return SliceInputs(
            self.labels[rows], self.predictions[rows], None if self.weights is None else self.weights[rows]
        )

    def example_weights(self, weighted: bool) -> np.ndarray:
        """The weight TFMA uses per example: the example's weight, or float32 1.0 when unweighted."""
        if weighted and self.weights is not None:
            return self.weights.astype(np.float32)
        return np.ones(len(self.labels), dtype=np.float32)


class Unsupported(ValueError):
    """The fast engine has no exact vectorized form of this computation."""


def _plain(combiner: Any, *, top_k_ok: bool = False) -> None:
    """Refuse the options whose per-example handling is not mirrored here."""
    if getattr(combiner, "_class_weights", None):
        raise Unsupported("class_weights")
    if getattr(combiner, "_aggregation_type", None):
        raise Unsupported("aggregation_type")
    key = getattr(combiner, "_key", None) or getattr(combiner, "_metric_key", None)
    sub_key = getattr(key, "sub_key", None) or getattr(combiner, "_sub_key", None)
    if sub_key is not None and not (top_k_ok and sub_key.top_k is not None and sub_key.class_id is None):
        raise Unsupported(f"sub_key {sub_key}")


def _flat(inputs: SliceInputs, combiner: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``to_label_prediction_example_weight(flatten=True)``: one (label, prediction, weight) per output value.

    Binary: the single score per example. ``top_k``: every class, the label one-hot, the scores outside the top k
    set to -inf (TFMA's treatment without an aggregation type)."""
    weights = inputs.example_weights(combiner._example_weighted)
    predictions = inputs.predictions
    key = getattr(combiner, "_key", None)
    top_k = key.sub_key.top_k if key is not None and key.sub_key is not None else None
    if top_k is None:
        if predictions.shape[1] != 1:
            raise Unsupported("a binary metric over a multi-class output without top_k or class_id")
        return inputs.labels.reshape(-1), predictions.reshape(-1), weights
    classes = predictions.shape[1]
    order = np.argsort(-predictions, axis=1, kind="stable")[:, :top_k]
    kept = np.full(predictions.shape, -np.inf)
    np.put_along_axis(kept, order, np.take_along_axis(predictions, order, axis=1), axis=1)
    labels = np.zeros(predictions.shape, dtype=np.float64)
    labels[np.arange(len(labels)), inputs.labels.reshape(-1).astype(np.int64)] = 1.0
    return labels.reshape(-1), kept.reshape(-1), np.repeat(weights, classes)


def _fractional(labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFMA's fractional labels: each example is a negative of weight w(1-l) and a positive of weight w*l, and
    entries of (close to) zero weight are dropped. Returns the (negative, positive) weights, 0 where dropped."""
    if labels.size and (np.nanmin(labels) < 0 or np.nanmax(labels) > 1):
        raise ValueError("Labels must be within [0, 1] for binary classification metrics.")
    negative = weights * (1 - labels)
    positive = weights * labels
    negative = np.where(np.isclose(negative, 0.0, rtol=1e-09, atol=0.0), 0.0, negative)
    positive = np.where(np.isclose(positive, 0.0, rtol=1e-09, atol=0.0), 0.0, positive)
    return negative.astype(np.float64), positive.astype(np.float64)


def _example_count(combiner: Any, inputs: SliceInputs) -> float:
    if combiner._example_weighted and inputs.weights is not None:
        return 0.0 + float(np.sum(inputs.weights.astype(np.float64)))
    return float(len(inputs.labels))


def _calibration_histogram(combiner: Any, inputs: SliceInputs) -> dict[int, Any]:
    from tensorflow_model_analysis.metrics.calibration_histogram import Bucket

    _plain(combiner, top_k_ok=True)
    labels, predictions, weights = _flat(inputs, combiner)
    predictions = predictions.astype(np.float64)
    labels = labels.astype(np.float64)
    if combiner._fractional_labels:
        negative, positive = _fractional(labels, weights)
        entries_labels = np.concatenate([np.zeros_like(labels), np.ones_like(labels)])
        entries_predictions = np.concatenate([predictions, predictions])
        entries_weights = np.concatenate([negative, positive])
        kept = entries_weights != 0.0
        labels, predictions, weights = entries_labels[kept], entries_predictions[kept], entries_weights[kept]
    else:
        weights = weights.astype(np.float64)
    value = predictions if combiner._prediction_based_bucketing else labels
    with np.errstate(invalid="ignore"):
        position = (value - combiner._left) / combiner._range * combiner._num_buckets + 1
    last = combiner._num_buckets + 1
    index = np.where(position < 0, 0, np.where(position >= last, last, np.trunc(np.nan_to_num(position))))
    index = index.astype(np.int64)
    size = last + 1
    counts = np.bincount(index, minlength=size)
    sums = {
        "labels": np.bincount(index, weights=labels * weights, minlength=size),
        "predictions": np.bincount(index, weights=predictions * weights, minlength=size),
        "examples": np.bincount(index, weights=weights, minlength=size),
    }
    return {
        int(b): Bucket(int(b), float(sums["labels"][b]), float(sums["predictions"][b]), float(sums["examples"][b]))
        for b in np.nonzero(counts)[0]
    }


def _binary_confusion_matrices(combiner: Any, inputs: SliceInputs) -> dict[float, Any]:
    from tensorflow_model_analysis.contrib.aggregates.binary_confusion_matrices import Matrix, _ThresholdEntry

    _plain(combiner, top_k_ok=True)
    if combiner._example_id_key:
        raise Unsupported("example ids")
    labels, predictions, weights = _flat(inputs, combiner)
    thresholds = combiner._binary_confusion_matrices._thresholds
    fractional = combiner._enable_fractional_labels
    if fractional:
        negative, positive = _fractional(labels.astype(np.float64), weights)
    else:
        weights = weights.astype(np.float64)
    accumulator = {}
    for threshold in thresholds:
        above = predictions > threshold
        if fractional:
            tp, fn = positive[above].sum(), positive[~above].sum()
            fp, tn = negative[above].sum(), negative[~above].sum()
        else:
            is_positive = labels > threshold
            tp, fn = weights[is_positive & above].sum(), weights[is_positive & ~above].sum()
            fp, tn = weights[~is_positive & above].sum(), weights[~is_positive & ~above].sum()
        matrix = Matrix(tp=float(tp), tn=float(tn), fp=float(fp), fn=float(fn))
        accumulator[threshold] = _ThresholdEntry(matrix, [], [], [], [])
    return accumulator


def _weighted_labels_predictions(combiner: Any, inputs: SliceInputs) -> Any:
    from tensorflow_model_analysis.metrics.calibration import _WeightedLabelsPredictionsExamples

    _plain(combiner)
    if inputs.predictions.shape[1] != 1:
        raise Unsupported("calibration over a multi-class output")
    weights = inputs.example_weights(combiner._example_weighted).astype(np.float64)
    accumulator = _WeightedLabelsPredictionsExamples()
    accumulator.total_weighted_examples = float(weights.sum())
    accumulator.total_weighted_labels = float((inputs.labels.reshape(-1).astype(np.float64) * weights).sum())
    accumulator.total_weighted_predictions = float((inputs.predictions.reshape(-1).astype(np.float64) * weights).sum())
    return accumulator


def _binary_cross_entropy(combiner: Any, inputs: SliceInputs) -> Any:
    from tensorflow_model_analysis.metrics.cross_entropy_metrics import _CrossEntropyAccumulator

    _plain(combiner)
    if inputs.predictions.shape[1] != 1:
        raise Unsupported("binary cross entropy over a multi-class output")
    label = inputs.labels.reshape(-1)
    prediction = inputs.predictions.reshape(-1)
    label = label * (1.0 - combiner._label_smoothing) + 0.5 * combiner._label_smoothing
    with np.errstate(divide="ignore", invalid="ignore"):
        if combiner._from_logits:
            per_example = np.maximum(prediction, 0) - prediction * label + np.log(1 + np.exp(-np.abs(prediction)))
        else:
            per_example = -(label * np.log(prediction)) - (1 - label) * np.log(1 - prediction)
    weights = inputs.example_weights(combiner._example_weighted).astype(np.float64)
    accumulator = _CrossEntropyAccumulator()
    accumulator.total_cross_entropy = float((per_example.astype(np.float64) * weights).sum())
    accumulator.total_example_weights = float(weights.sum())
    return accumulator


def _regression_error(kind: str) -> Callable[[Any, SliceInputs], Any]:
    def accumulate(combiner: Any, inputs: SliceInputs) -> Any:
        from tensorflow_model_analysis.metrics.mean_regression_error import _MeanRegressionErrorAccumulator

        _plain(combiner)
        if inputs.predictions.shape[1] != 1:
            raise Unsupported("a regression error over a multi-output prediction")
        label = inputs.labels.reshape(-1)
        difference = label - inputs.predictions.reshape(-1)  # in the inputs' own dtypes, as TFMA subtracts
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "absolute":
                error = np.abs(difference).astype(np.float64)
            elif kind == "squared":
                error = np.sqrt(difference * difference).astype(np.float64) ** 2  # TFMA: norm(d) ** 2
            else:  # absolute percentage; a zero label has no percentage and is skipped
                error = np.where(label == 0, np.nan, 100 * np.abs(difference / label).astype(np.float64))
        weights = inputs.example_weights(combiner._example_weighted).astype(np.float64)
        counted = ~np.isnan(error)
        accumulator = _MeanRegressionErrorAccumulator()
        accumulator.total_regression_error = float((error[counted] * weights[counted]).sum())
        accumulator.total_example_weights = float(weights[counted].sum())
        return accumulator

    return accumulate


def _multi_class_confusion_matrices(combiner: Any, inputs: SliceInputs) -> Any:
    from tensorflow_model_analysis.metrics.multi_class_confusion_matrix_metrics import (
        NO_PREDICTED_CLASS_ID,
        Matrices,
        MatrixEntryKey,
    )

    predictions = inputs.predictions
    if predictions.shape[1] < 2:
        raise ValueError("Predictions shape must be > 1 for a multi-class confusion matrix.")
    actual = inputs.labels.reshape(-1).astype(np.int64)
    predicted = np.argmax(predictions, axis=1)
    top = predictions[np.arange(len(predicted)), predicted]
    weights = inputs.example_weights(combiner._example_weighted).astype(np.float64)
    accumulator = Matrices()
    withheld = np.zeros(len(predicted), dtype=bool)
    for threshold in combiner._thresholds:
        withheld |= top <= threshold  # once withheld, TFMA keeps the class withheld for later thresholds
        classes = np.where(withheld, NO_PREDICTED_CLASS_ID, predicted)
        pairs, where = np.unique(np.stack([actual, classes], axis=1), axis=0, return_inverse=True)
        sums = np.bincount(where.reshape(-1), weights=weights, minlength=len(pairs))
        accumulator[threshold] = {
            MatrixEntryKey(int(a), int(p)): float(s) for (a, p), s in zip(pairs, sums, strict=True)
        }
    return accumulator


def _keras_metrics(combiner: Any, inputs: SliceInputs) -> Any:
    """Keras metrics: TFMA's combiner calls ``update_state(labels, predictions, weights)`` per batch and sums
    the weights; here one update covers the slice, with the same shapes and dtypes."""
    _plain(combiner)
    if combiner._output_names != [""]:
        raise Unsupported("a multi-output model")
    combiner.setup()
    accumulator = combiner.create_accumulator()
    weights = inputs.example_weights(combiner._example_weighted)
    for index, metric in enumerate(combiner._metrics[""]):
        metric.reset_states()
        metric.update_state(inputs.labels, inputs.predictions, weights)
        accumulator.add_weights(0, index, metric.get_weights())
    return accumulator


ACCUMULATORS: dict[str, Callable[[Any, SliceInputs], Any]] = {
    "_ExampleCountCombiner": _example_count,
    "_CalibrationHistogramCombiner": _calibration_histogram,
    "_BinaryConfusionMatrixCombiner": _binary_confusion_matrices,
    "_WeightedLabelsPredictionsExamplesCombiner": _weighted_labels_predictions,
    "_BinaryCrossEntropyCombiner": _binary_cross_entropy,
    "_MeanAbsoluteErrorCombiner": _regression_error("absolute"),
    "_MeanSquaredErrorCombiner": _regression_error("squared"),
    "_MeanAbsolutePercentageErrorCombiner": _regression_error("percentage"),
    "_MultiClassConfusionMatrixCombiner": _multi_class_confusion_matrices,
    "_CompilableMetricsCombiner": _keras_metrics,
}


@dataclass
class Computations:
    """TFMA's computations for an EvalConfig, deduplicated in TFMA's order."""

    combined: list[Any]
    derived: list[Any]


def computations(eval_config: Any) -> Computations:
    """For a single-model EvalConfig (TFMA then leaves model names empty)."""
    from tensorflow_model_analysis.metrics import metric_specs, metric_types

    combined: list[Any] = []
    derived: list[Any] = []
    for computation in metric_specs.to_computations(list(eval_config.metrics_specs), eval_config=eval_config):
        if isinstance(computation, metric_types.CrossSliceMetricComputation):
            raise Unsupported("cross-slice metrics")
        if isinstance(computation, metric_types.DerivedMetricComputation):
            if computation not in derived:
                derived.append(computation)
        elif computation not in combined:
            combined.append(computation)
    for computation in combined:
        # The standard preprocessor only selects what a combiner reads; any other one changes the inputs.
        if any(type(p).__name__ != "StandardMetricInputsPreprocessor" for p in computation.preprocessors or []):
            raise Unsupported("metric preprocessors")
        if type(computation.combiner).__name__ not in ACCUMULATORS:
            raise Unsupported(type(computation.combiner).__name__)
    return Computations(combined, derived)


def compute(plan: Computations, inputs: SliceInputs) -> dict[Any, Any]:
    """Every metric key of the plan for one slice: TFMA's ``extract_output`` and derived results, in order."""
    values: dict[Any, Any] = {}
    for computation in plan.combined:
        combiner = computation.combiner
        accumulator = ACCUMULATORS[type(combiner).__name__](combiner, inputs)
        values.update(combiner.extract_output(accumulator))
    for computation in plan.derived:
        values.update(computation.result(values))
    return values


def as_number(value: Any) -> float | None:
    """A scalar metric value as a float (TFMA writes these as ``double_value``); None for matrices and plots."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(-1)[0])
    return None
