"""The gates under real Airflow: ``airflow dags test`` for the policies, and a real triggerer for deferral.

The DAGs live in tests/dags/mlpipe_gates.py: a fake ExampleValidator / Evaluator writes a verdict file, the gate
follows, and a push task writes a model version into a serving directory.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_env import REPO, AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, query, running_stack, stack_env, wait_for
from tests.support.postgres import free_port
from tests.support.trees import tree_checksums

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_FILE = REPO / "tests" / "dags" / "mlpipe_gates.py"
DROPPED_AND_DRIFTED = {
    "blessed": False,
    "span": 20240105,
    "counts": {"ERROR": 1, "WARNING": 1},
    "anomalies": [
        {
            "split": "train",
            "feature": "bill_length_mm",
            "severity": "ERROR",
            "kind": "schema",
            "short_description": "Column dropped",
            "description": "The feature was present in fewer examples than required.",
        },
        {
            "split": "train",
            "feature": "body_mass_g",
            "severity": "WARNING",
            "kind": "drift",
            "short_description": "High Linfty distance between current and previous",
            "description": "The Linfty distance 0.42 is above the threshold 0.1.",
        },
    ],
    "features": ["bill_length_mm", "body_mass_g"],
}
REGRESSED = {
    "blessed": False,
    "reason": "accuracy 0.41 is below the lower bound 0.8",
    "failed": [{"metric": "accuracy", "slice": "Overall", "value": 0.41, "threshold": "lower_bound 0.8"}],
    "current_model_id": 12,
    "baseline_model_id": 7,
}


def run_state(env: AirflowEnv, dag_id: str) -> tuple[str, str]:
    [(run_id, state)] = query(env, "select run_id, state from dag_run where dag_id=? order by id desc limit 1", dag_id)
    return run_id, state


def gate_executions(env: AirflowEnv) -> list[dict[str, Any]]:
    return [e for e in mlmd_dump(env.mlmd_path)["executions"] if e["type"] == "mlpipe.Gate"]


# ----- airflow dags test: the policies ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def gates_env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    dags = tmp_path_factory.mktemp("gate-dags")
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)  # only this file: no other DAG slows parsing or breaks it
    root = tmp_path_factory.mktemp("gate-root")
    env = AirflowEnv(tmp_path_factory.mktemp("airflow"), dags, {"MLPIPE_TEST_GATES_ROOT": str(root)})
    env.migrate()
    return env


@pytest.fixture
def serving(gates_env: AirflowEnv) -> Path:
    """The serving directory with a model already in production; reset for each test."""
    serving = Path(gates_env.extra_env["MLPIPE_TEST_GATES_ROOT"], "serving")
    shutil.rmtree(serving, ignore_errors=True)
    (serving / "v1").mkdir(parents=True)
    (serving / "v1" / "model.txt").write_text("the production model\n")
    return serving


def test_fail_policy_fails_the_run_at_the_data_gate_and_pushes_nothing(gates_env: AirflowEnv, serving: Path) -> None:
    before = tree_checksums(serving)
    proc = gates_env.dags_test("mlpipe_gates_data_fail", conf={"verdict": DROPPED_AND_DRIFTED}, check=False)
    output = proc.stdout + proc.stderr

    run_id, state = run_state(gates_env, "mlpipe_gates_data_fail")
    assert state == "failed"
    states = gates_env.task_states("mlpipe_gates_data_fail", run_id)
    assert states == {"example_validator": "success", "data_gate": "failed", "push": "upstream_failed"}
    # AirflowFailException: one try although the gate allows a retry.
    [(tries,)] = query(gates_env, "select try_number from task_instance where task_id='data_gate' and run_id=?", run_id)
    assert tries == 1
    assert "AirflowFailException: Data validation gate fails the run: 2 anomalies at or above WARNING" in output
    assert "bill_length_mm [ERROR] (train, schema): Column dropped" in output
    assert "body_mass_g [WARNING] (train, drift): High Linfty distance" in output
    assert tree_checksums(serving) == before

    decision = gates_env.xcom("mlpipe_gates_data_fail", "data_gate", run_id, key="gate_decision")
    assert decision["decision"] == "fail" and decision["push_withheld"] is True
    assert [a["feature"] for a in decision["anomalies"]] == ["bill_length_mm", "body_mass_g"]

    [gate] = [e for e in gate_executions(gates_env) if e["properties"]["run_id"] == run_id]
    assert gate["state"] == "COMPLETE"
    assert gate["properties"]["decision"] == "fail" and gate["properties"]["push_withheld"] == 1
    assert "bill_length_mm [ERROR]" in gate["properties"]["reason"]


def test_skip_policy_skips_the_push_and_leaves_serving_byte_identical(gates_env: AirflowEnv, serving: Path) -> None:
    before = tree_checksums(serving)
    gates_env.dags_test("mlpipe_gates_data_skip", conf={"verdict": DROPPED_AND_DRIFTED}, check=False)

    run_id, state = run_state(gates_env, "mlpipe_gates_data_skip")
    # Skipped counts as finished: the run ends "success", with the gate and the push skipped.
    assert state == "success"
    states = gates_env.task_states("mlpipe_gates_data_skip", run_id)
    assert states == {"example_validator": "success", "data_gate": "skipped", "push": "skipped"}
    assert tree_checksums(serving) == before

    decision = gates_env.xcom("mlpipe_gates_data_skip", "data_gate", run_id, key="gate_decision")
    assert decision["decision"] == "skip" and decision["push_withheld"] is True
    assert "Data validation gate skips the push" in decision["reason"]
    [gate] = [e for e in gate_executions(gates_env) if e["properties"]["run_id"] == run_id]
    assert gate["properties"]["decision"] == "skip" and gate["properties"]["push_withheld"] == 1


def test_warn_policy_lets_the_push_through(gates_env: AirflowEnv, serving: Path) -> None:
    proc = gates_env.dags_test("mlpipe_gates_data_warn", conf={"verdict": DROPPED_AND_DRIFTED})

    run_id, state = run_state(gates_env, "mlpipe_gates_data_warn")
    assert state == "success"
    assert gates_env.task_states("mlpipe_gates_data_warn", run_id)["push"] == "success"
    assert "Data validation gate only warns (dev): 2 anomalies" in proc.stdout + proc.stderr
    assert len([p for p in serving.iterdir() if p.is_dir()]) == 2  # v1 and the new version
    decision = gates_env.xcom("mlpipe_gates_data_warn", "data_gate", run_id)  # the return value
    assert decision["decision"] == "warn" and decision["push_withheld"] is False


def test_severity_filters_let_ignored_and_minor_anomalies_through(gates_env: AirflowEnv, serving: Path) -> None:
    # The DAG ignores body_mass_g and blocks from ERROR up; the dropped column is downgraded to a warning here.
    verdict = json.loads(json.dumps(DROPPED_AND_DRIFTED))
    verdict["anomalies"][0]["severity"] = "WARNING"
    verdict["anomalies"][1]["severity"] = "ERROR"
    gates_env.dags_test("mlpipe_gates_data_filtered", conf={"verdict": verdict})

    run_id, state = run_state(gates_env, "mlpipe_gates_data_filtered")
    assert state == "success"
    decision = gates_env.xcom("mlpipe_gates_data_filtered", "data_gate", run_id)
    assert decision["decision"] == "pass" and decision["anomalies"] == []
    assert sorted(a["feature"] for a in decision["ignored"]) == ["bill_length_mm", "body_mass_g"]


def test_a_regressed_model_is_blocked_at_the_blessing_gate(gates_env: AirflowEnv, serving: Path) -> None:
    before = tree_checksums(serving)
    proc = gates_env.dags_test("mlpipe_gates_blessing_fail", conf={"verdict": REGRESSED}, check=False)
    output = proc.stdout + proc.stderr

    run_id, state = run_state(gates_env, "mlpipe_gates_blessing_fail")
    assert state == "failed"
    assert gates_env.task_states("mlpipe_gates_blessing_fail", run_id)["push"] == "upstream_failed"
    assert "Model blessing gate fails the run: model 12 is not blessed" in output
    assert "accuracy on Overall = 0.41, threshold lower_bound 0.8" in output
    assert tree_checksums(serving) == before
    decision = gates_env.xcom("mlpipe_gates_blessing_fail", "blessing_gate", run_id, key="gate_decision")
    assert decision["failed"] == REGRESSED["failed"]


# ----- a real scheduler, triggerer and execution API: deferral and reschedule ------------------------------
@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    dags = tmp_path_factory.mktemp("gate-dags")
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    port = free_port()
    env = AirflowEnv(
        tmp_path_factory.mktemp("airflow"),
        dags,
        {
            "MLPIPE_TEST_GATES_ROOT": str(tmp_path_factory.mktemp("gate-root")),
            # Airflow 3.3 runs LocalExecutor on SQLite (what `airflow standalone` does); no PostgreSQL needed.
            "AIRFLOW__CORE__PARALLELISM": "2",
            **stack_env(port),
        },
    )
    with running_stack(env, port) as stack:
        yield stack


def _artifact_dir(env: AirflowEnv, dag_id: str, run_id: str, slot: str) -> Path:
    return Path(env.extra_env["MLPIPE_TEST_GATES_ROOT"], "artifacts", dag_id, run_id, slot)


def _ti_state(env: AirflowEnv, dag_id: str, run_id: str, task_id: str) -> str | None:
    rows = query(
        env, "select state from task_instance where dag_id=? and run_id=? and task_id=?", dag_id, run_id, task_id
    )
    return rows[0][0] if rows else None


def test_a_deferred_gate_waits_on_the_real_triggerer_and_resumes(stack: AirflowStack) -> None:
    env = stack.env
    deferred_dag, reschedule_dag = "mlpipe_gates_deferred", "mlpipe_gates_blessing_reschedule"

    def parsed() -> bool:
        stack.check_alive()
        rows = query(env, "select count(*) from serialized_dag where dag_id in (?, ?)", deferred_dag, reschedule_dag)
        return rows[0][0] == 2

    wait_for("the dag-processor to parse the gate DAGs", parsed, timeout=180)
    conf = json.dumps({"write_verdict": False, "verdict": {}})
    env.run("dags", "trigger", deferred_dag, "-r", "deferred_run", "-c", conf, timeout=120)
    env.run("dags", "trigger", reschedule_dag, "-r", "reschedule_run", "-c", conf, timeout=120)

    def waiting() -> bool:
        stack.check_alive()
        return (
            _ti_state(env, deferred_dag, "deferred_run", "data_gate") == "deferred"
            and _ti_state(env, reschedule_dag, "reschedule_run", "blessing_gate") == "up_for_reschedule"
        )

    wait_for("the data gate to defer and the blessing gate to reschedule", waiting, timeout=240)

    # The trigger is registered for, and picked up by, the triggerer process we started.
    [(triggerer_id,)] = query(env, "select id from job where job_type='TriggererJob' and state='running'")

    def assigned() -> list[tuple[Any, ...]]:
        return query(env, "select classpath, kwargs, triggerer_id from trigger")

    [(classpath, kwargs, _triggerer)] = wait_for("the triggerer to pick up the trigger", assigned, timeout=60)
    assert classpath == "airflow_provider_mlpipe.triggers.gates.VerdictFileTrigger"
    assert "anomalies.json" in kwargs
    wait_for("the trigger to be assigned", lambda: assigned()[0][2] == triggerer_id, timeout=60)
    time.sleep(3)  # let the trigger poll a missing file at least once
    assert _ti_state(env, deferred_dag, "deferred_run", "data_gate") == "deferred"

    clean = {"blessed": True, "anomalies": [], "counts": {}}
    (_artifact_dir(env, deferred_dag, "deferred_run", "anomalies") / "anomalies.json").write_text(json.dumps(clean))
    blessed = {"blessed": True, "reason": "all thresholds met", "failed": [], "current_model_id": 3}
    (_artifact_dir(env, reschedule_dag, "reschedule_run", "blessing") / "blessing.json").write_text(json.dumps(blessed))

    def finished() -> list[str] | None:
        stack.check_alive()
        states = [run_state(env, deferred_dag)[1], run_state(env, reschedule_dag)[1]]
        return states if all(s in ("success", "failed") for s in states) else None

    assert wait_for("both runs to finish", finished, timeout=240) == ["success", "success"]
    for dag_id, run_id, gate in (
        (deferred_dag, "deferred_run", "data_gate"),
        (reschedule_dag, "reschedule_run", "blessing_gate"),
    ):
        assert env.task_states(dag_id, run_id) == {
            "example_validator" if gate == "data_gate" else "evaluator": "success",
            gate: "success",
            "push": "success",
        }
        assert env.xcom(dag_id, gate, run_id, key="gate_decision")["decision"] == "pass"

    # The triggerer ran our trigger: its log for this task names the triggerer job, shows the polls and the event.
    logs = env.home / "logs" / f"dag_id={deferred_dag}" / "run_id=deferred_run" / "task_id=data_gate"
    trigger_log = (logs / f"attempt=1.log.trigger.{triggerer_id}.log").read_text()
    assert "Waiting for the verdict" in trigger_log
    assert "found after" in trigger_log and "Trigger fired event" in trigger_log
    # The resumed half of the task always logs the verdict; the half that deferred may be rewritten by the resume
    # (seen on a loaded machine), and the deferral itself is proven by the task state and the trigger log above.
    task_log = (logs / "attempt=1.log").read_text()
    assert "The triggerer found the verdict" in task_log
    # Resuming after deferral is the same try; the reschedule-mode sensor really was rescheduled.
    assert query(env, "select try_number from task_instance where task_id='data_gate'") == [(1,)]
    assert query(env, "select count(*) from task_reschedule")[0][0] >= 1
