"""Hand-written gate DAGs for the integration tests: fake verdict -> gate -> push.

The upstream task plays ExampleValidator or Evaluator: it writes the verdict from ``dag_run.conf["verdict"]``
into a fresh artifact directory (or leaves the file out when ``conf["write_verdict"]`` is false, so the gate has
to wait) and returns a StageResult-shaped dict naming that directory. The push task writes a model version into
the serving directory; the tests check that a blocked gate leaves that directory byte-identical.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
from airflow_provider_mlpipe.sensors import DataValidationSensor, ModelBlessingSensor

ROOT = os.environ.get("MLPIPE_TEST_GATES_ROOT", "/tmp/mlpipe-gates")
KINDS = {
    "data": ("example_validator", "anomalies", "ExampleAnomalies", "anomalies.json"),
    "blessing": ("evaluator", "blessing", "ModelBlessing", "blessing.json"),
}


def _upstream(kind: str):
    stage, slot, artifact_type, filename = KINDS[kind]

    @task(task_id=stage)
    def produce_verdict(dag_run: Any = None, run_id: str | None = None) -> dict[str, Any]:
        conf = dict(dag_run.conf or {})
        uri = Path(ROOT, "artifacts", dag_run.dag_id, str(run_id).replace(":", "_").replace("+", "_"), slot)
        uri.mkdir(parents=True, exist_ok=True)
        if conf.get("write_verdict", True):
            (uri / filename).write_text(json.dumps(conf["verdict"]), encoding="utf-8")
        properties = dict(conf.get("properties") or {})
        ref = ArtifactRef(type=artifact_type, uri=str(uri), id=None, name=slot, properties=properties)
        return StageResult(stage=stage, execution_id=None, cached=False, outputs={slot: [ref]}).to_dict()

    return produce_verdict()


@task(task_id="push")
def push(run_id: str | None = None) -> str:
    serving = Path(ROOT, "serving")
    version = serving / str(run_id).replace(":", "_").replace("+", "_")
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.txt").write_text(f"pushed by {run_id}\n", encoding="utf-8")
    return str(version)


def gate_dag(dag_id: str, kind: str, policy: str, **gate_kwargs: Any) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        tags=["mlpipe-test"],
    ) as dag:
        upstream = _upstream(kind)
        # One retry is allowed, so the tests can see that a blocking gate fails without using it.
        common = {
            "task_id": f"{kind}_gate",
            "policy": policy,
            "pipeline": "gates",
            "timeout": 300,
            "retries": 1,
            "retry_delay": 1,
            **gate_kwargs,
        }
        if kind == "data":
            gate = DataValidationSensor(upstream_task_id="example_validator", **common)
        else:
            gate = ModelBlessingSensor(upstream_task_id="evaluator", **common)
        upstream >> gate >> push()
    return dag


gate_dag("mlpipe_gates_data_fail", "data", "fail")
gate_dag("mlpipe_gates_data_skip", "data", "skip")
gate_dag("mlpipe_gates_data_warn", "data", "warn")
gate_dag("mlpipe_gates_data_filtered", "data", "fail", ignore_features=["body_mass_g"], min_severity="ERROR")
gate_dag("mlpipe_gates_blessing_fail", "blessing", "fail")
gate_dag("mlpipe_gates_blessing_reschedule", "blessing", "fail", deferrable=False, mode="reschedule", poke_interval=2)
gate_dag("mlpipe_gates_deferred", "data", "fail", deferrable=True, poke_interval=2)
