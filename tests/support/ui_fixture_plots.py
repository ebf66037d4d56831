"""The UI fixture pipeline's ``plots.json``: its nearest-centroid model scored as an Adelie-or-not classifier.

Plain Python (the fixture runs no TensorFlow). The shape is the Evaluator's (see ``airflow_provider_mlpipe/ui/
plots.py``): per slice, ROC and PR points at ascending thresholds (an example counts as positive when its score
is above the threshold, as in TFMA), the non-empty calibration buckets and the confusion matrix at 0.5.
"""

from __future__ import annotations

import math
from typing import Any

CALIBRATION_BUCKETS = 10
DECISION_THRESHOLD = 0.5


def _counts(labels: list[bool], scores: list[float], threshold: float) -> tuple[int, int, int, int]:
    """(true negatives, false positives, false negatives, true positives) at ``threshold``."""
    tp = sum(1 for y, s in zip(labels, scores, strict=True) if y and s > threshold)
    fp = sum(1 for y, s in zip(labels, scores, strict=True) if not y and s > threshold)
    positives = sum(labels)
    return len(labels) - positives - fp, fp, positives - tp, tp


def binary_slice_plots(labels: list[bool], scores: list[float]) -> dict[str, Any]:
    thresholds = sorted({0.0, *(round(s, 6) for s in scores if s < 1.0)})
    fpr, tpr, precision = [], [], []
    for threshold in thresholds:
        tn, fp, fn, tp = _counts(labels, scores, threshold)
        fpr.append(fp / (fp + tn) if fp + tn else 0.0)
        tpr.append(tp / (tp + fn) if tp + fn else 0.0)
        precision.append(tp / (tp + fp) if tp + fp else 1.0)  # nothing predicted positive: nothing wrong
    calibration = []
    for bucket in range(CALIBRATION_BUCKETS):
        lower, upper = bucket / CALIBRATION_BUCKETS, (bucket + 1) / CALIBRATION_BUCKETS
        inside = [
            (y, s) for y, s in zip(labels, scores, strict=True) if lower <= s < upper or (upper == 1.0 and s == 1.0)
        ]
        if inside:
            calibration.append(
                {
                    "lower": lower,
                    "upper": upper,
                    "mean_prediction": sum(s for _, s in inside) / len(inside),
                    "mean_label": sum(1.0 for y, _ in inside if y) / len(inside),
                    "weight": float(len(inside)),
                }
            )
    tn, fp, fn, tp = _counts(labels, scores, DECISION_THRESHOLD)
    return {
        "thresholds": thresholds,
        "roc": {"fpr": fpr, "tpr": tpr},
        "pr": {"recall": tpr, "precision": precision},
        "calibration": calibration,
        "confusion_matrix": {"labels": ["0", "1"], "counts": [[tn, fp], [fn, tp]], "threshold": DECISION_THRESHOLD},
    }


def adelie_scores(model: dict[str, Any], rows: list[dict[str, Any]]) -> list[float]:
    """P(Adelie) per row: a softmax over minus half the squared scaled distance to each species' centroid."""
    scores = []
    for row in rows:
        closeness = {
            species: math.exp(-0.5 * sum(((row[k] - centroid[k]) / model["scale"][k]) ** 2 for k in model["features"]))
            for species, centroid in model["centroids"].items()
        }
        scores.append(closeness.get("Adelie", 0.0) / (sum(closeness.values()) or 1.0))
    return scores


def adelie_plots(model: dict[str, Any], slices: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``{slice name: plots}`` of one fixture model over the rows of each slice."""
    return {
        name: binary_slice_plots([r["species"] == "Adelie" for r in rows], adelie_scores(model, rows))
        for name, rows in slices.items()
    }
