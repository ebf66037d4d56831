"""``mlpipe summary`` of real runs: a pushed run, a cached re-run, a withheld push and a failed run.

One Airflow home runs the penguins stages with ``airflow dags test``, in span order: span 1 pushes; span 1 again is
served from the cache; span 2 with a drift threshold no day can meet is stopped at the data gate; a day without a
data file fails ExampleGen. The summary of each must say what happened, in pipeline order.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_env import AIRFLOW, AirflowEnv
from tests.support.penguins_variants import PENGUINS_TASK_ORDER, copy_penguins_modules, penguins_variant
from tests.support.spec_fixtures import make_dags_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "penguins_summary"
# A drift threshold no two days meet, as a run's override: the data gate stops that run.
STRICT_DRIFT = {"stages": {"example_validator": {"drift": {"island": {"comparator": "linf", "threshold": 0.0001}}}}}


@pytest.fixture(scope="module")
def summaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("summary")
    # Scheduled up to the 9th, so the run for the 9th (a day without data) has tasks and fails in ExampleGen.
    strict_gate_no_retry = {"min_severity: ERROR": "min_severity: WARNING", "retries: 1\n": "retries: 0\n"}
    spec = penguins_variant(DAG_ID, tmp / "root", tmp / "serving", last_day="2024-01-09", **strict_gate_no_retry)
    dags = make_dags_folder(tmp, {DAG_ID: spec})
    copy_penguins_modules(dags)
    env = AirflowEnv(tmp / "home", dags)
    env.migrate()
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


def summary(env: AirflowEnv) -> str:
    mlpipe = Path(AIRFLOW).with_name("mlpipe")
    proc = subprocess.run(
        [str(mlpipe), "summary", DAG_ID], env=env.env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout[proc.stdout.index("Pipeline ") :]  # Airflow may log a warning line first


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
