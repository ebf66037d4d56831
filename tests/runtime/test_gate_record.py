"""A gate decision recorded in a real (SQLite) MLMD store: execution, INPUT event, contexts, properties."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("ml_metadata", reason="runs in .venv-runtime")

from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, ArtifactRef, runtime_command
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.metadata.gate_record import (
    APPROVAL_EXECUTION_TYPE,
    APPROVAL_GATE,
    GATE_EXECUTION_TYPE,
    record_gate_decision,
)
from tests.support.mlmd import sqlite_client

pytestmark = pytest.mark.runtime


def _validator_output(client: MetadataClient, run_id: str) -> int:
    """Record an ExampleValidator execution with one ExampleAnomalies output, as the runner would."""
    contexts = client.lineage_contexts("penguins", run_id, "example_validator")
    execution_id = client.start_execution("mlpipe.ExampleValidator", contexts, [], {})
    ref = ArtifactRef("ExampleAnomalies", "/tmp/anomalies/7", properties={"blessed": 0, "anomaly_count": 2})
    client.finish_execution(execution_id, contexts, {"anomalies": [ref]}, {})
    assert ref.id is not None
    return ref.id


def _gate_executions(client: MetadataClient) -> list[pb.Execution]:
    return client.store.get_executions_by_type(GATE_EXECUTION_TYPE)


def test_records_a_withheld_push_with_input_event_contexts_and_properties(tmp_path) -> None:
    client = sqlite_client(tmp_path, retries=1)
    artifact_id = _validator_output(client, "manual__1")
    reason = "Data validation gate fails the run: 1 anomaly at or above WARNING\n  - body_mass_g [ERROR]: dropped"

    execution_id = record_gate_decision(
        client, "penguins", "manual__1", "data_gate", "data_validation", "fail", reason, artifact_id, policy="fail"
    )

    [execution] = _gate_executions(client)
    assert execution.id == execution_id
    assert execution.last_known_state == pb.Execution.COMPLETE
    props = properties_of(execution)
    assert props["decision"] == "fail"
    assert props["policy"] == "fail"
    assert props["reason"] == reason
    assert props["push_withheld"] == 1
    assert props["gate"] == "data_validation"

    events = client.store.get_events_by_execution_ids([execution_id])
    assert [(e.artifact_id, e.type) for e in events] == [(artifact_id, pb.Event.INPUT)]

    names = {
        (client.store.get_context_types_by_id([c.type_id])[0].name, c.name)
        for c in client.store.get_contexts_by_execution(execution_id)
    }
    assert names == {
        ("pipeline", "penguins"),
        ("pipeline_run", "penguins.manual__1"),
        ("node", "penguins.data_gate"),
    }
    # The gate shares the run context with the validator that produced the verdict.
    run_ctx = client.store.get_context_by_type_and_name("pipeline_run", "penguins.manual__1")
    in_run = {e.id for e in client.store.get_executions_by_context(run_ctx.id)}
    assert execution_id in in_run and len(in_run) == 2


def test_a_pass_is_recorded_without_withholding_and_an_unknown_artifact_is_refused(tmp_path) -> None:
    client = sqlite_client(tmp_path, retries=1)
    artifact_id = _validator_output(client, "r2")
    record_gate_decision(client, "penguins", "r2", "blessing_gate", "model_blessing", "pass", "blessed", artifact_id)
    [execution] = _gate_executions(client)
    assert properties_of(execution)["push_withheld"] == 0

    with pytest.raises(LookupError, match="not in MLMD"):
        record_gate_decision(client, "penguins", "r2", "g", "model_blessing", "skip", "x", artifact_id + 100)
    assert len(_gate_executions(client)) == 1


def test_gate_record_subcommand_reads_the_store_from_the_environment(tmp_path) -> None:
    config = {"backend": "sqlite", "path": str(tmp_path / "mlmd.sqlite")}
    client = MetadataClient(config, retries=1)
    artifact_id = _validator_output(client, "r3")
    payload = {
        "pipeline": "penguins",
        "run_id": "r3",
        "node_id": "blessing_gate",
        "gate": "model_blessing",
        "decision": "skip",
        "reason": "accuracy on Overall = 0.41, threshold lower_bound 0.8",
        "policy": "skip",
        "input_artifact_id": artifact_id,
        "verdict_uri": "/tmp/blessing/blessing.json",
    }
    proc = subprocess.run(
        runtime_command(sys.executable, "gate-record", json.dumps(payload)),
        env={**os.environ, MLMD_CONFIG_ENV: json.dumps(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [execution] = _gate_executions(MetadataClient(config, retries=1))
    props = properties_of(execution)
    assert props["decision"] == "skip" and props["push_withheld"] == 1
    assert props["verdict_uri"] == "/tmp/blessing/blessing.json"

    bad = subprocess.run(
        runtime_command(sys.executable, "gate-record", "{not json"),
        env={**os.environ, MLMD_CONFIG_ENV: json.dumps(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "mlpipe stage failed: JSONDecodeError" in bad.stderr


def test_an_approval_is_an_mlpipe_approval_execution_tied_to_the_blessing_and_the_model(tmp_path) -> None:
    client = sqlite_client(tmp_path, retries=1)
    contexts = client.lineage_contexts("penguins", "r4", "evaluator")
    execution_id = client.start_execution("mlpipe.Evaluator", contexts, [], {})
    model = ArtifactRef("Model", "/tmp/model/3")
    blessing = ArtifactRef("ModelBlessing", "/tmp/blessing/4", properties={"blessed": 1})
    client.finish_execution(execution_id, contexts, {"model": [model], "blessing": [blessing]}, {})
    details = {"approver": "admin", "approver_name": "admin", "timed_out": 0, "comment": "looks good", "x": None}

    approval_id = record_gate_decision(
        client, "penguins", "r4", "approval_gate", APPROVAL_GATE, "approve", "Approval: admin chose Approve.",
        blessing.id, policy="skip", model_artifact_id=model.id, details=details,
    )  # fmt: skip

    assert not _gate_executions(client)
    [execution] = client.store.get_executions_by_type(APPROVAL_EXECUTION_TYPE)
    assert execution.id == approval_id
    props = properties_of(execution)
    assert (props["decision"], props["approver"], props["comment"], props["push_withheld"]) == (
        "approve", "admin", "looks good", 0,
    )  # fmt: skip
    assert "x" not in props  # an empty detail is left out
    events = client.store.get_events_by_execution_ids([approval_id])
    assert sorted((e.artifact_id, e.type) for e in events) == sorted(
        [(blessing.id, pb.Event.INPUT), (model.id, pb.Event.INPUT)]
    )
    record_gate_decision(client, "penguins", "r5", "approval_gate", APPROVAL_GATE, "reject", "timed out", blessing.id)
    rejected = client.store.get_executions_by_type(APPROVAL_EXECUTION_TYPE)[-1]
    assert properties_of(rejected)["push_withheld"] == 1
