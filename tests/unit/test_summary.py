"""The summary's pure parts: pipeline order and the error line of a task log (Airflow 3 JSON lines or text)."""

from __future__ import annotations

import json

from airflow_provider_mlpipe.protocol import FAILURE_PREFIX
from airflow_provider_mlpipe.summary import error_line, pipeline_order
from tests.support.penguins_variants import PENGUINS_TASK_ORDER


def test_pipeline_order_is_upstream_first_and_keeps_the_declared_order_among_ready_tasks():
    upstream = {
        "example_gen": set(),
        "statistics_gen": {"example_gen"},
        "schema_gen": {"statistics_gen"},
        "example_validator": {"statistics_gen", "schema_gen"},
        "data_validation_gate": {"example_validator"},
        "transform": {"example_gen", "schema_gen", "data_validation_gate"},
        "trainer": {"transform", "schema_gen", "data_validation_gate"},
        "evaluator": {"example_gen", "trainer"},
        "blessing_gate": {"evaluator"},
        "pusher": {"trainer", "evaluator", "blessing_gate"},
    }
    assert pipeline_order(dict(reversed(list(upstream.items())))) == list(PENGUINS_TASK_ORDER)
    assert pipeline_order({"b": set(), "a": set(), "c": {"a"}}) == ["b", "a", "c"]


def test_the_runtime_failure_line_wins_over_the_exception_that_wraps_it():
    log = "\n".join(
        json.dumps(record)
        for record in (
            {"event": "Running stage example_gen in the runtime", "level": "info"},
            {"event": f"{FAILURE_PREFIX}ValueError: No input file matches '/d/span-2024-01-09.csv'", "level": "info"},
            {
                "event": "Task failed with exception",
                "level": "error",
                "error_detail": [{"exc_type": "AirflowException", "exc_value": "The example_gen stage failed: ..."}],
            },
        )
    )
    assert error_line(log) == "ValueError: No input file matches '/d/span-2024-01-09.csv'"


def test_without_a_runtime_line_the_last_exception_is_the_error_and_plain_text_logs_work_too():
    record = {"event": "Task failed", "error_detail": [{"exc_type": "AirflowFailException", "exc_value": "gate\nmore"}]}
    assert error_line(json.dumps(record)) == "AirflowFailException: gate"
    assert error_line(f"[2026-01-01] INFO - {FAILURE_PREFIX}boom\nnext line") == "boom"
    assert error_line("all fine\n") is None


def test_drift_lines_put_the_most_drifting_feature_first_and_name_missing_thresholds(tmp_path):
    from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
    from airflow_provider_mlpipe.summary import _validation_lines

    measured = [
        {"split": "train", "feature": "sex", "kind": "drift", "measure": "L_INFTY", "value": 0.02, "threshold": None},
        {"split": "train", "feature": "island", "kind": "drift", "measure": "L_INFTY", "value": 0.3, "threshold": 0.2},
        {"split": "train", "feature": "sex", "kind": "skew", "measure": "L_INFTY", "value": 0.9, "threshold": None},
    ]
    (tmp_path / "anomalies.json").write_text(json.dumps({"blessed": True, "counts": {}, "measurements": measured}))
    result = StageResult("example_validator", 1, False, {"anomalies": [ArtifactRef("ExampleAnomalies", str(tmp_path))]})
    assert _validation_lines(result)[-3:] == [
        "  Drift against the previous span (most drifting first):",
        "    island (train split): L_INFTY 0.3 (threshold 0.2)",
        "    sex (train split): L_INFTY 0.02 (no threshold)",
    ]


def test_evaluation_lines_list_business_kpis_by_slice_after_the_metrics(tmp_path):
    from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
    from airflow_provider_mlpipe.summary import _evaluation_lines

    evaluation, blessing = tmp_path / "evaluation", tmp_path / "blessing"
    evaluation.mkdir()
    blessing.mkdir()
    kpis = {"slices": [{"slice": "Overall", "metrics": {"error_cost": 12.0, "missed": 2.0}}], "baseline": None}
    metrics = {"engine": "fast", "slices": [{"slice": "Overall", "metrics": {"auc": 0.9}}], "kpis": kpis}
    (evaluation / "metrics.json").write_text(json.dumps(metrics))
    reason = "KPI error_cost on Overall: 12.0000 fails upper_bound 10.0"
    (blessing / "blessing.json").write_text(json.dumps({"blessed": False, "reason": reason}))
    outputs = {"evaluation": [ArtifactRef("ModelEvaluation", str(evaluation))]}
    outputs["blessing"] = [ArtifactRef("ModelBlessing", str(blessing))]
    lines = _evaluation_lines(StageResult("evaluator", 1, False, outputs))
    overall = "  Overall                      "
    assert lines[1:] == [
        "Metrics by slice (engine: fast)",
        f"{overall}auc=0.9000",
        "",
        "Business KPIs by slice",
        f"{overall}error_cost=12.0000, missed=2.0000",
        "",
        "Blessing: NOT_BLESSED",
        f"  {reason}",
    ]
