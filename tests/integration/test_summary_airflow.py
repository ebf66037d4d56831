"""``mlpipe summary`` of real runs, and an override and a baseline reset deciding the next run's baseline.

One Airflow home runs the penguins stages with ``airflow dags test``, in span order: span 1 pushes; span 1 again is
served from the cache; span 2 with a drift threshold no day can meet is stopped at the data gate; a day without a
data file fails ExampleGen. The summary of each must say what happened, in pipeline order.

The same home hosts a second copy of the pipeline whose blessing gate skips the push: span 1's model fails an
accuracy bound no model meets, is blessed by ``mlpipe bless``, and span 2's Evaluator compares with it; after
``mlpipe baseline reset``, span 3's Evaluator has no baseline and says why.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_env import AIRFLOW, AirflowEnv, mlmd_dump
from tests.support.penguins_variants import PENGUINS_TASK_ORDER, copy_penguins_modules, penguins_variant
from tests.support.spec_fixtures import make_dags_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "penguins_summary"
OVERRIDE_DAG = "penguins_override"
# An accuracy bound no model meets, as a run's override: that run's model is NOT_BLESSED.
UNREACHABLE_ACCURACY = {
    "name": "accuracy",
    "class_name": "SparseCategoricalAccuracy",
    "threshold": {"lower_bound": 1.01},
}
UNREACHABLE = {"stages": {"evaluator": {"metrics": [UNREACHABLE_ACCURACY]}}}
# A drift threshold no two days meet, as a run's override: the data gate stops that run.
STRICT_DRIFT = {"stages": {"example_validator": {"drift": {"island": {"comparator": "linf", "threshold": 0.0001}}}}}


@pytest.fixture(scope="module")
def penguins_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    tmp = tmp_path_factory.mktemp("summary")
    # Scheduled up to the 9th, so the run for the 9th (a day without data) has tasks and fails in ExampleGen.
    strict_gate_no_retry = {"min_severity: ERROR": "min_severity: WARNING", "retries: 1\n": "retries: 0\n"}
    spec = penguins_variant(DAG_ID, tmp / "root", tmp / "serving", last_day="2024-01-09", **strict_gate_no_retry)
    # A NOT_BLESSED model skips the push, so the next span's span-ordered Pusher is not held by a failed one.
    skip_push = {"blessing:\n    policy: fail": "blessing:\n    policy: skip", "retries: 1\n": "retries: 0\n"}
    override_spec = penguins_variant(OVERRIDE_DAG, tmp / "override-root", tmp / "override-serving", **skip_push)
    dags = make_dags_folder(tmp, {DAG_ID: spec, OVERRIDE_DAG: override_spec})
    copy_penguins_modules(dags)
    env = AirflowEnv(tmp / "home", dags)
    env.migrate()
    return env


@pytest.fixture(scope="module")
def summaries(penguins_home: AirflowEnv) -> dict[str, str]:
    env = penguins_home
    out: dict[str, str] = {}
    for name, day, conf, must_pass in (
        ("pushed", "2024-01-01", None, True),
        ("cached", "2024-01-02", {"span": 20240101}, True),
        ("withheld", "2024-01-03", {"span": 20240102, **STRICT_DRIFT}, False),
        ("failed", "2024-01-09", None, False),  # no span-2024-01-09.csv
    ):
        env.dags_test(DAG_ID, day, conf=conf, check=must_pass)
        out[name] = summary(env)
    return out


def mlpipe(env: AirflowEnv, *args: str) -> str:
    command = [str(Path(AIRFLOW).with_name("mlpipe")), *args]
    proc = subprocess.run(command, env=env.env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def summary(env: AirflowEnv) -> str:
    out = mlpipe(env, "summary", DAG_ID)
    return out[out.index("Pipeline ") :]  # Airflow may log a warning line first


def stage_rows(text: str) -> list[tuple[str, ...]]:
    block = text.split("\nStages\n", 1)[1].split("\n\n", 1)[0]
    return [tuple(line.split()) for line in block.splitlines() if not line.startswith(" " * 20)]


def row(text: str, task_id: str) -> tuple[str, ...]:
    return next(r for r in stage_rows(text) if r[0] == task_id)


def test_every_summary_lists_the_stages_in_pipeline_order(summaries: dict[str, Any]) -> None:
    for name, text in summaries.items():
        assert [r[0] for r in stage_rows(text)] == list(PENGUINS_TASK_ORDER), (name, text)


def test_the_pushed_run_names_the_engine_the_gates_and_the_version(summaries: dict[str, Any]) -> None:
    text = summaries["pushed"]
    assert ": success" in text.splitlines()[0]
    assert "Metrics by slice (engine: fast)" in text or "Metrics by slice (engine: tfma)" in text
    assert "data_validation_gate: pass" in text and "blessing_gate: pass" in text
    assert "Pushed: version 1 to " in text
    assert "withheld" not in text


def test_the_cached_run_marks_its_cache_hits(summaries: dict[str, Any]) -> None:
    text = summaries["cached"]
    assert row(text, "example_gen")[-2:] == ("(cache", "hit)"), text
    assert row(text, "statistics_gen")[-2:] == ("(cache", "hit)"), text


def test_the_withheld_push_shows_the_gate_decision_and_the_split_of_each_drift_line(summaries: dict[str, Any]) -> None:
    text = summaries["withheld"]
    assert row(text, "data_validation_gate")[1:2] == ("FAILED",)
    assert "decision: fail (policy fail)" in text
    assert "Pushed: nothing (the data_validation_gate withheld the push)" in text
    assert row(text, "evaluator")[1:3] == ("not", "run") and row(text, "pusher")[1:3] == ("not", "run")
    drift = [line for line in text.splitlines() if "island (" in line and "split" in line]
    assert drift and all(" split)" in line for line in drift), text
    assert "island (train split)" in text or "island (eval split)" in text


def test_the_failed_run_shows_the_error_line_and_not_a_withheld_push(summaries: dict[str, Any]) -> None:
    text = summaries["failed"]
    assert row(text, "example_gen")[1] == "FAILED"
    lines = text.splitlines()
    error = lines[lines.index(next(line for line in lines if line.split()[:1] == ["example_gen"])) + 1]
    assert error.strip().startswith("error:") and ("2024-01-09" in error or "20240109" in error), text
    assert "withheld" not in text
    assert "Pushed: nothing (the run failed at example_gen)" in text


# ----- an override and a reset decide the next run's baseline ------------------------------------------------
def evaluator_documents(env: AirflowEnv, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Evaluator's metrics.json and blessing.json of a run."""
    outputs = env.xcom(OVERRIDE_DAG, "evaluator", run_id)["outputs"]
    metrics = json.loads(Path(outputs["evaluation"][0]["uri"], "metrics.json").read_text())
    return metrics, json.loads(Path(outputs["blessing"][0]["uri"], "blessing.json").read_text())


@pytest.mark.timeout(1800)  # three penguins runs one after another
def test_an_override_is_the_next_baseline_and_a_reset_leaves_the_next_run_without_one(
    penguins_home: AirflowEnv,
) -> None:
    env = penguins_home
    env.dags_test(OVERRIDE_DAG, "2024-01-01", conf=UNREACHABLE)
    [first] = env.run_ids(OVERRIDE_DAG)
    _, verdict = evaluator_documents(env, first)
    assert verdict["blessed"] is False and verdict["baseline_model_id"] is None
    assert env.task_states(OVERRIDE_DAG, first)["pusher"] == "skipped"
    model = env.xcom(OVERRIDE_DAG, "trainer", first)["outputs"]["model"][0]["id"]

    said = mlpipe(env, "bless", OVERRIDE_DAG, "--model", first, "--reason", "accepted by review", "--user", "tester")
    assert f"Blessed model {model} (span 20240101) of {OVERRIDE_DAG} by override" in said

    env.dags_test(OVERRIDE_DAG, "2024-01-02")
    second = env.run_ids(OVERRIDE_DAG)[-1]
    metrics, verdict = evaluator_documents(env, second)
    assert metrics["baseline"]["model_id"] == model and verdict["baseline_model_id"] == model
    assert verdict["blessed"] is True and "change thresholds against the baseline" in verdict["reason"]

    said = mlpipe(env, "baseline", "reset", OVERRIDE_DAG, "--reason", "label redefined", "--user", "tester")
    assert said.startswith(f"Reset the baseline of {OVERRIDE_DAG} from span 20240102")

    env.dags_test(OVERRIDE_DAG, "2024-01-03")
    third = env.run_ids(OVERRIDE_DAG)[-1]
    metrics, verdict = evaluator_documents(env, third)
    assert metrics["baseline"] is None and verdict["baseline_model_id"] is None
    assert metrics["baseline_reset"]["user"] == "tester" and metrics["baseline_reset"]["reason"] == "label redefined"
    assert verdict["reason"].startswith("All value thresholds (baseline reset) passed.")
    assert "The baseline was reset (by tester: label redefined)" in verdict["reason"]

    lineage = mlmd_dump(env.mlmd_path)
    [override] = [e for e in lineage["executions"] if e["type"] == "mlpipe.Override"]
    assert override["properties"]["model_run_id"] == first and override["properties"]["user"] == "tester"
