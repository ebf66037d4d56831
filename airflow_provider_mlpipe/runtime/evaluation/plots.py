"""Plot data (ROC and PR curves, calibration, confusion matrix) and scalar metrics out of TFMA's metric values.

Both engines ask TFMA's own plot metrics for the data: ``ConfusionMatrixPlot`` (ROC and PR points at TFMA's 1000
default thresholds), ``CalibrationPlot`` (1000 buckets), a ``ConfusionMatrixAtThresholds`` at 0.5 for a binary
model, ``MultiClassConfusionMatrixPlot`` for a multi-class one. The fast engine gets them as values of its
in-process computations, the TFMA engine as the ``plots`` output of ``run_model_analysis``; one conversion per
proto type turns either into the ``plots.json`` layout the run view draws:

``{"kind": ..., "candidate": {slice: {"thresholds", "roc", "pr", "calibration", "confusion_matrix"}}, "baseline"}``
"""

from __future__ import annotations

import math
from typing import Any

# Not private ("_") names: TFMA's writers drop those, and the TFMA engine reads these back from its output.
ROC_PR = "mlpipe_plot_roc_pr"
CALIBRATION = "mlpipe_plot_calibration"
BINARY_MATRIX = "mlpipe_plot_confusion_at_0_5"
MULTI_CLASS_MATRIX = "mlpipe_plot_multi_class_confusion"
PLOT_NAMES = frozenset({ROC_PR, CALIBRATION, BINARY_MATRIX, MULTI_CLASS_MATRIX})
DECISION_THRESHOLD = 0.5

# (TFMA class name, name, config) of the plot metrics for each kind of model.
PLOT_METRICS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "binary": [
        ("ConfusionMatrixPlot", ROC_PR, {}),
        ("CalibrationPlot", CALIBRATION, {}),
        ("ConfusionMatrixAtThresholds", BINARY_MATRIX, {"thresholds": [DECISION_THRESHOLD]}),
    ],
    "multiclass": [("MultiClassConfusionMatrixPlot", MULTI_CLASS_MATRIX, {})],
    "regression": [],
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no infinity


def _matrix_proto(value: Any) -> Any:
    """A ConfusionMatrixAtThresholds proto from a fast-engine ``Matrices`` or a proto as it is."""
    if hasattr(value, "to_proto"):
        return value.to_proto().confusion_matrix_at_thresholds
    return value


def matrix_numbers(name: str, proto: Any) -> dict[str, float]:
    """``ConfusionMatrixAtThresholds`` as numbers a threshold can judge: ``<name>/<cell>@<threshold>``."""
    numbers: dict[str, float] = {}
    for matrix in proto.matrices:
        at = f"@{matrix.threshold:g}"
        for cell in ("true_positives", "false_positives", "true_negatives", "false_negatives", "precision", "recall"):
            numbers[f"{name}/{cell}{at}"] = float(getattr(matrix, cell))
    return numbers


def scalar_metrics(values: dict[Any, Any]) -> dict[str, float]:
    """The configured metrics of one slice by name (plots and TFMA's private intermediates left out)."""
    from airflow_provider_mlpipe.runtime.evaluation.fast_metrics import as_number

    result: dict[str, float] = {}
    for key, value in values.items():
        if key.name.startswith("_") or key.name in PLOT_NAMES or type(key).__name__ == "PlotKey":
            continue
        number = as_number(value)
        if number is not None:
            result[key.name] = number
        elif hasattr(value, "to_proto") or type(value).__name__ == "ConfusionMatrixAtThresholds":
            result.update(matrix_numbers(key.name, _matrix_proto(value)))
    return result


def roc_pr(proto: Any) -> dict[str, Any]:
    matrices = list(proto.matrices)
    return {
        "thresholds": [_finite(m.threshold) for m in matrices],
        "roc": {"fpr": [m.false_positive_rate for m in matrices], "tpr": [m.recall for m in matrices]},
        "pr": {"recall": [m.recall for m in matrices], "precision": [m.precision for m in matrices]},
    }


def calibration(proto: Any) -> list[dict[str, Any]]:
    points = []
    for bucket in proto.buckets:
        weight = bucket.num_weighted_examples.value
        if weight <= 0:
            continue
        points.append(
            {
                "lower": _finite(bucket.lower_threshold_inclusive),
                "upper": _finite(bucket.upper_threshold_exclusive),
                "mean_prediction": bucket.total_weighted_refined_prediction.value / weight,
                "mean_label": bucket.total_weighted_label.value / weight,
                "weight": weight,
            }
        )
    return points


def binary_matrix(proto: Any) -> dict[str, Any]:
    [matrix] = [m for m in proto.matrices if math.isclose(m.threshold, DECISION_THRESHOLD)]
    counts = [
        [matrix.true_negatives, matrix.false_positives],
        [matrix.false_negatives, matrix.true_positives],
    ]
    return {"labels": ["0", "1"], "counts": counts, "threshold": DECISION_THRESHOLD}


def multi_class_matrix(proto: Any) -> dict[str, Any]:
    [matrix] = proto.matrices[:1] or [None]
    if matrix is None:
        return {"labels": [], "counts": [], "threshold": 0.0}
    classes = sorted({e.actual_class_id for e in matrix.entries} | {e.predicted_class_id for e in matrix.entries})
    position = {c: i for i, c in enumerate(classes)}
    counts = [[0.0] * len(classes) for _ in classes]
    for entry in matrix.entries:
        counts[position[entry.actual_class_id]][position[entry.predicted_class_id]] += entry.num_weighted_examples
    labels = ["none" if c < 0 else str(c) for c in classes]
    return {"labels": labels, "counts": counts, "threshold": matrix.threshold}


def _plot_of(name: str, proto: Any) -> dict[str, Any]:
    if name == ROC_PR:
        return roc_pr(proto)
    if name == CALIBRATION:
        return {"calibration": calibration(proto)}
    if name == BINARY_MATRIX:
        return {"confusion_matrix": binary_matrix(proto)}
    if name == MULTI_CLASS_MATRIX:
        return {"confusion_matrix": multi_class_matrix(proto)}
    return {}


def from_values(values: dict[Any, Any]) -> dict[str, Any]:
    """One slice's plot data from the fast engine's computed values."""
    plot: dict[str, Any] = {}
    for key, value in values.items():
        if key.name in PLOT_NAMES:
            plot.update(_plot_of(key.name, _matrix_proto(value) if key.name == BINARY_MATRIX else value))
    return plot


def from_plot_protos(named: dict[str, Any]) -> dict[str, Any]:
    """One slice's plot data from TFMA's written output: ``{plot or metric name: proto}``."""
    plot: dict[str, Any] = {}
    for name, proto in named.items():
        plot.update(_plot_of(name, proto))
    return plot


def json_safe(value: Any) -> Any:
    """NaN and infinities (an undefined rate on an empty slice) become null: JSON has neither."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
