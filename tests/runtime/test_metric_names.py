"""The metric class names the spec lint accepts are the ones TFMA 0.47 builds from a class name alone.

``stages/evaluator.py`` declares them without TensorFlow, for the Airflow side; these tests hold that declaration
against the installed TFMA and tf_keras, so an upgrade that adds, drops or changes a metric shows up here.
"""

from __future__ import annotations

import inspect
import json

import tensorflow_model_analysis as tfma
import tf_keras
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from airflow_provider_mlpipe.runtime.evaluation import fast_metrics, metric_config
from airflow_provider_mlpipe.stages.evaluator import (
    ARGUMENT_METRICS,
    EVALUATOR_METRICS,
    FAST_ENGINE_METRICS,
    KERAS_METRICS,
    TFMA_METRICS,
    UNAVAILABLE_METRICS,
    EvaluatorParams,
)

EXAMPLE_ARGUMENTS = {"thresholds": [0.5], "recall": 0.8, "precision": 0.8, "specificity": 0.8, "sensitivity": 0.8}


def _arguments(class_name: str) -> dict:
    return {a: EXAMPLE_ARGUMENTS.get(a, 0.1) for a in ARGUMENT_METRICS.get(class_name, ())}


def _build(class_name: str) -> object:
    """What the Evaluator's EvalConfig asks TFMA for: the class name, the metric's name and its ``config``."""
    config = tfma.MetricConfig(class_name=class_name, config=json.dumps({**_arguments(class_name), "name": "m"}))
    return metric_specs.metric_instance(config)


def _keras_metric_classes() -> set[str]:
    return {
        name
        for name, value in vars(tf_keras.metrics).items()
        if inspect.isclass(value) and issubclass(value, tf_keras.metrics.Metric)
    }


def test_every_declared_metric_builds_from_its_class_name_alone() -> None:
    failures = {}
    for class_name in sorted(EVALUATOR_METRICS):
        try:
            _build(class_name)
        except Exception as exc:  # collect them all: one failing name should not hide the next
            failures[class_name] = f"{type(exc).__name__}: {exc}"
    assert failures == {}


def test_tfma_names_resolve_to_tfma_and_keras_names_to_tf_keras() -> None:
    registered = set(metric_types.registered_metrics())
    assert registered >= TFMA_METRICS
    assert not registered & KERAS_METRICS  # TFMA looks in its own registry first
    assert all(isinstance(_build(name), tf_keras.metrics.Metric) for name in KERAS_METRICS)
    assert FAST_ENGINE_METRICS <= EVALUATOR_METRICS


def test_every_other_known_metric_class_has_a_reason() -> None:
    """Each metric TFMA registers or tf_keras exports is computed or refused with a reason, never left unknown."""
    known = set(metric_types.registered_metrics()) | _keras_metric_classes()
    assert known - EVALUATOR_METRICS - set(UNAVAILABLE_METRICS) == set()
    assert set(UNAVAILABLE_METRICS) <= known  # no reason for a class that does not exist
    assert not set(UNAVAILABLE_METRICS) & EVALUATOR_METRICS


def test_every_fast_engine_metric_has_a_vectorized_accumulator_for_each_tfma_combiner() -> None:
    refused = {}
    for class_name in sorted(FAST_ENGINE_METRICS):
        params = EvaluatorParams(label_key="y", metrics=[{"class_name": class_name, "config": _arguments(class_name)}])
        config = metric_config.tfma_eval_config(metric_config.eval_spec(params), False, False, with_plots=True)
        try:
            fast_metrics.computations(config)
        except fast_metrics.Unsupported as exc:
            refused[class_name] = str(exc)
    assert refused == {}


def test_metrics_said_to_need_arguments_cannot_be_built_from_a_name() -> None:
    needing = [name for name, reason in UNAVAILABLE_METRICS.items() if "constructor arguments" in reason]
    built = []
    for class_name in [*needing, *ARGUMENT_METRICS]:
        try:
            metric_specs.metric_instance(tfma.MetricConfig(class_name=class_name, config=json.dumps({"name": "m"})))
            built.append(class_name)
        except (TypeError, ValueError):
            pass
    assert built == []
