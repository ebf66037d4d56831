"""Evaluator executor: metrics per slice, baseline comparison, blessing, and fast == TFMA metrics."""

from __future__ import annotations

import json
import os

import pytest

from airflow_provider_mlpipe.runtime.evaluation import metric_config
from airflow_provider_mlpipe.runtime.executors import evaluator
from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams
from tests.runtime.model_fixtures import EVAL_PARAMS, make_context

pytest_plugins = ["tests.runtime.model_fixtures"]
pytestmark = pytest.mark.runtime


def _evaluate(tmp_path, inputs, model, baseline=None, **params):
    ctx = make_context(
        tmp_path,
        "evaluator",
        {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
        params={**EVAL_PARAMS, **params},
        inputs={"examples": [inputs["examples"]], "model": [model]},
        resolved={"baseline_model": baseline},
    )
    summary = evaluator.execute(ctx)
    evaluation, blessing = ctx.output("evaluation"), ctx.output("blessing")
    with open(os.path.join(evaluation.path, "metrics.json"), encoding="utf-8") as fh:
        metrics = json.load(fh)
    with open(os.path.join(blessing.path, "blessing.json"), encoding="utf-8") as fh:
        record = json.load(fh)
    return summary, metrics, record, evaluation, blessing


def test_first_model_is_blessed_without_baseline(tmp_path, penguins_inputs, penguins_model):
    summary, metrics, record, evaluation, blessing = _evaluate(tmp_path, penguins_inputs, penguins_model)
    assert summary["engine"] == "fast" and summary["blessed"] is True
    names = [s["slice"] for s in metrics["slices"]]
    assert names == ["Overall", "island=Biscoe", "island=Dream", "island=Torgersen"]
    overall = metrics["slices"][0]["metrics"]
    assert overall["example_count"] == penguins_inputs["examples"].properties["row_counts"]["eval"]
    assert overall["accuracy"] > 0.9
    assert sum(s["metrics"]["example_count"] for s in metrics["slices"][1:]) == overall["example_count"]
    assert metrics["baseline"] is None
    assert metrics["thresholds"][0]["change_applied"] is False
    assert os.path.exists(os.path.join(blessing.path, "BLESSED"))
    assert not os.path.exists(os.path.join(blessing.path, "NOT_BLESSED"))
    assert record["blessed"] is True and record["baseline_model_id"] is None
    assert blessing.properties["blessed"] == 1
    assert blessing.properties["current_model_id"] == penguins_model.id
    assert "baseline_model_id" not in blessing.properties
    assert evaluation.properties["span"] == penguins_inputs["examples"].properties["span"]


def test_worse_model_is_not_blessed_against_the_baseline(tmp_path, penguins_inputs, penguins_model, penguins_bad_model):
    summary, metrics, record, evaluation, blessing = _evaluate(
        tmp_path, penguins_inputs, penguins_bad_model, baseline=penguins_model
    )
    assert summary["blessed"] is False
    marker = os.path.join(blessing.path, "NOT_BLESSED")
    assert os.path.exists(marker) and not os.path.exists(os.path.join(blessing.path, "BLESSED"))
    with open(marker, encoding="utf-8") as fh:
        assert "vs baseline" in fh.read()
    overall_failures = [f for f in record["failed"] if f["slice"] == "Overall" and "change" in f["threshold"]]
    assert overall_failures and overall_failures[0]["diff"] < -0.05
    assert blessing.properties == {
        "blessed": 0,
        "reason": record["reason"],
        "current_model_id": penguins_bad_model.id,
        "baseline_model_id": penguins_model.id,
        "span": penguins_inputs["examples"].properties["span"],
    }
    assert evaluation.properties["baseline_model_id"] == penguins_model.id
    assert metrics["baseline"]["model_id"] == penguins_model.id
    assert metrics["thresholds"][0]["change_applied"] is True


def test_fast_engine_metrics_equal_tfma(tmp_path, penguins_inputs, penguins_model, penguins_bad_model):
    """The same candidate and baseline through both engines: identical numbers, same blessing."""
    fast = _evaluate(tmp_path / "fast", penguins_inputs, penguins_bad_model, penguins_model, engine="fast")
    tfma = _evaluate(tmp_path / "tfma", penguins_inputs, penguins_bad_model, penguins_model, engine="tfma")
    assert fast[1]["slices"] == tfma[1]["slices"]
    assert fast[1]["baseline"]["slices"] == tfma[1]["baseline"]["slices"]
    assert fast[2]["blessed"] == tfma[2]["blessed"] == tfma[1]["tfma_validation_ok"]
    assert os.path.isdir(os.path.join(tfma[3].path, "tfma"))
    assert tfma[0]["engine"] == "tfma"


def _params(raw: dict) -> metric_config.EvalSpec:
    return metric_config.eval_spec(EvaluatorParams.model_validate(raw))


def _spec(**threshold):
    return _params(
        {"label_key": "y", "metrics": [{"name": "m", "class_name": "BinaryAccuracy", "threshold": threshold}]}
    )


def test_threshold_rules_follow_tfma():
    value = _spec(lower_bound=0.5, upper_bound=0.9)
    assert metric_config.validate(value, {"Overall": {"m": 0.5}}, None) == []
    assert metric_config.validate(value, {"Overall": {"m": 0.9}}, None) == []
    assert metric_config.validate(value, {"Overall": {"m": 0.49}}, None)[0]["threshold"] == "lower_bound 0.5"
    assert metric_config.validate(value, {"Overall": {"m": 0.91}}, None)[0]["threshold"] == "upper_bound 0.9"
    higher = _spec(change={"direction": "higher_is_better", "absolute": -0.01})
    assert metric_config.validate(higher, {"Overall": {"m": 0.79}}, None) == []  # no baseline: skipped
    assert metric_config.validate(higher, {"Overall": {"m": 0.795}}, {"Overall": {"m": 0.8}}) == []
    assert metric_config.validate(higher, {"Overall": {"m": 0.78}}, {"Overall": {"m": 0.8}})
    lower = _spec(change={"direction": "lower_is_better", "relative": 0.1})
    assert metric_config.validate(lower, {"Overall": {"m": 1.05}}, {"Overall": {"m": 1.0}}) == []
    assert metric_config.validate(lower, {"Overall": {"m": 1.2}}, {"Overall": {"m": 1.0}})
    assert _spec(change={"absolute": 0.1}).metrics[1].change.direction == "higher_is_better"  # the default
    with pytest.raises(ValueError, match="direction"):
        _spec(change={"direction": "up", "absolute": 0.1})


def test_auto_engine_uses_tfma_only_for_a_metric_the_fast_engine_lacks():
    spec = _params({"label_key": "y", "metrics": [{"class_name": "SparseCategoricalCrossentropy"}]})
    assert evaluator.choose_engine(spec) == "fast"
    spec = _params({"label_key": "y", "metrics": [{"class_name": "AUC"}, {"class_name": "SquaredPearsonCorrelation"}]})
    assert evaluator.choose_engine(spec) == "tfma"
    assert [m.name for m in spec.metrics] == ["example_count", "auc", "squared_pearson_correlation"]
    spec.engine = "fast"
    with pytest.raises(ValueError, match="cannot compute"):
        evaluator.choose_engine(spec)


def test_per_slice_thresholds_and_min_examples():
    spec = _params(
        {
            "label_key": "y",
            "metrics": [
                {"name": "m", "class_name": "BinaryAccuracy", "threshold": {"lower_bound": 0.8, "min_examples": 20}},
                {"name": "n", "class_name": "AUC", "threshold": {"lower_bound": 0.9, "slices": ["island=Dream"]}},
            ],
        }
    )
    candidate = {
        "Overall": {"example_count": 100, "m": 0.85, "n": 0.5},
        "island=Dream": {"example_count": 50, "m": 0.7, "n": 0.95},
        "island=Torgersen": {"example_count": 12, "m": 0.1, "n": 0.1},
    }
    failed = metric_config.validate(spec, candidate, None)
    assert [(f["metric"], f["slice"]) for f in failed] == [("m", "island=Dream")]
    skipped = metric_config.unjudged(spec, candidate)
    assert skipped == [{"metric": "m", "slice": "island=Torgersen", "examples": 12, "min_examples": 20}]
    reason = metric_config.reason([], False, skipped)
    assert "Not judged, below min_examples: island=Torgersen (12 examples)" in reason
