"""The penguins pipeline stage by stage through the real runner and a real MLMD SQLite, for the reliability tests.

Imported only by ``tests/runtime/test_reliability_*.py`` (it needs the runtime venv). Params come from the shipped
``dags/pipelines/penguins.yaml`` so the faults are injected into the pipeline as users run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, ArtifactRef, StageRequest, StageResult
from airflow_provider_mlpipe.runtime.io.artifact_store import COMPLETE_MARKER, STAGING_DIR
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.runner import run_stage
from tests.support.mlmd import open_store, sqlite_config
from tests.support.paths import REPO

SPEC = REPO / "dags" / "pipelines" / "penguins.yaml"
PIPELINE = "penguins"


def spec_params() -> tuple[dict[str, dict[str, Any]], str]:
    """Each stage's params from the shipped spec, and the pipeline folder handed to the runtime as spec_dir."""
    from airflow_provider_mlpipe.spec.validate import load_pipeline

    pipeline = load_pipeline(SPEC)
    return {name: deepcopy(dict(values)) for name, values in pipeline.stage_params.items()}, str(pipeline.base_dir)


class PenguinsRun:
    """One pipeline root, one MLMD store, and the shipped stage params (small overrides per test)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pipeline_root = str(root / "root")
        self.mlmd = sqlite_config(root)
        self.client = open_store(self.mlmd)
        self.params, self.spec_dir = spec_params()
        self.params["pusher"]["destination"] = str(root / "serving")
        self.params["trainer"]["train_steps"] = 60
        self.params["trainer"]["eval_steps"] = 5

    def request(
        self, stage: str, day: int = 1, run_id: str | None = None, params: dict[str, Any] | None = None, **inputs
    ) -> StageRequest:
        date = f"2024-01-{day:02d}T00:00:00+00:00"
        return StageRequest(
            pipeline=PIPELINE,
            pipeline_root=self.pipeline_root,
            stage=stage,
            node_id=stage,
            run_id=run_id or f"scheduled__2024-01-{day:02d}",
            params=deepcopy(params if params is not None else self.params[stage]),
            inputs={slot: [ref] for slot, ref in inputs.items()},
            spec_dir=self.spec_dir,
            data_interval_start=date,
            logical_date=date,
        )

    def run(self, stage: str, day: int = 1, run_id: str | None = None, params=None, **inputs) -> StageResult:
        return run_stage(self.request(stage, day, run_id, params, **inputs), self.client)

    def data_stages(self, day: int = 1, run_id: str | None = None, example_gen: dict | None = None) -> dict:
        """ExampleGen → StatisticsGen → SchemaGen → ExampleValidator; returns the artifacts by slot."""
        out: dict[str, ArtifactRef] = {}
        out["examples"] = self.run("example_gen", day, run_id, example_gen).artifact("examples")
        out["statistics"] = self.run("statistics_gen", day, run_id, examples=out["examples"]).artifact("statistics")
        out["schema"] = self.run("schema_gen", day, run_id, statistics=out["statistics"]).artifact("schema")
        out["anomalies"] = self.run(
            "example_validator", day, run_id, statistics=out["statistics"], schema=out["schema"]
        ).artifact("anomalies")
        return out

    def model_inputs(self, data: dict[str, ArtifactRef], day: int = 1, run_id: str | None = None) -> dict:
        transform = self.run("transform", day, run_id, examples=data["examples"], schema=data["schema"])
        return {
            "examples": transform.artifact("transformed_examples"),
            "schema": data["schema"],
            "transform_graph": transform.artifact("transform_graph"),
        }


# ----- killing a runtime subprocess -------------------------------------------------------------------------
def launch(request: StageRequest, mlmd: dict[str, Any], workdir: Path) -> tuple[subprocess.Popen, Path]:
    """The runtime as the operators launch it: its own process group, MLMD config in the environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    request_file = workdir / f"request-{request.try_number}.json"
    request.write(request_file)
    result_file = workdir / f"result-{request.try_number}.json"
    env = {**os.environ, MLMD_CONFIG_ENV: json.dumps(mlmd), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = open(workdir / f"attempt-{request.try_number}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_mlpipe.runtime",
            "run",
            str(request_file),
            "--result",
            str(result_file),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return proc, result_file


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240.0, what: str = "") -> None:
    """SIGKILL the process group as soon as ``ready()`` holds; fail if the process ends first (no window)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return
        if proc.poll() is not None:
            raise AssertionError(f"The runtime ended (rc {proc.returncode}) before {what}; no window to kill it in.")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"Timed out waiting for {what}.")


def staged_files(node_dir: Path) -> list[Path]:
    """Files an executor has written into its staging folder so far."""
    staging = node_dir / STAGING_DIR
    return [p for p in staging.rglob("*") if p.is_file()] if staging.is_dir() else []


# ----- what must hold after a fault -------------------------------------------------------------------------
def node_executions(client: MetadataClient, run_id: str, node_id: str) -> list:
    ctx = client.store.get_context_by_type_and_name("node", f"{PIPELINE}.{node_id}")
    run = client.store.get_context_by_type_and_name("pipeline_run", f"{PIPELINE}.{run_id}")
    in_run = {e.id for e in client.store.get_executions_by_context(run.id)}
    return sorted((e for e in client.store.get_executions_by_context(ctx.id) if e.id in in_run), key=lambda e: e.id)


def assert_no_half_written_artifact(client: MetadataClient, pipeline_root: str, node_id: str) -> None:
    """Every LIVE artifact is complete on disk, and every visible folder of the node is a LIVE artifact."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    live = {a.uri for a in client.store.get_artifacts() if a.state == pb.Artifact.LIVE}
    for artifact in client.store.get_artifacts():
        assert artifact.state == pb.Artifact.LIVE, f"artifact {artifact.id} is recorded but not LIVE"
        if artifact.uri.startswith(pipeline_root):
            assert os.path.exists(os.path.join(artifact.uri, COMPLETE_MARKER)), artifact.uri
        else:  # a PushedModel's URI is the serving version: complete means loadable
            assert os.path.isfile(os.path.join(artifact.uri, "saved_model.pb")), artifact.uri
    node_dir = Path(pipeline_root, PIPELINE, node_id)
    for execution_dir in node_dir.iterdir():
        if execution_dir.name == STAGING_DIR:
            continue
        # A visible execution folder belongs to a COMPLETE execution whose outputs are all LIVE (a PushedModel's
        # record folder is published here while its URI is the serving version).
        [execution] = client.store.get_executions_by_id([int(execution_dir.name)])
        assert execution.last_known_state == pb.Execution.COMPLETE, f"{execution_dir} is from an unfinished attempt"
        events = client.store.get_events_by_execution_ids([execution.id])
        outputs = client.store.get_artifacts_by_id([e.artifact_id for e in events if e.type == pb.Event.OUTPUT])
        assert outputs and all(a.uri in live for a in outputs), execution_dir
        for output in execution_dir.iterdir():
            assert (output / COMPLETE_MARKER).exists(), f"{output} is under a final URI without its completion marker"


def assert_killed_attempt_failed(client: MetadataClient, run_id: str, node_id: str, retry: StageResult) -> None:
    """The killed attempt's execution is FAILED as abandoned, has no outputs; the retry's is COMPLETE."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    executions = node_executions(client, run_id, node_id)
    killed = [e for e in executions if properties_of(e).get("try_number") == 1]
    assert len(killed) == 1, [(e.id, properties_of(e)) for e in executions]
    assert killed[0].last_known_state == pb.Execution.FAILED
    assert "Abandoned" in properties_of(killed[0])["error"]
    events = client.store.get_events_by_execution_ids([killed[0].id])
    assert [e for e in events if e.type == pb.Event.OUTPUT] == []
    [done] = [e for e in executions if e.id == retry.execution_id]
    assert done.last_known_state == pb.Execution.COMPLETE and properties_of(done)["try_number"] == 2
    assert not retry.cached
