"""The runner against a real MLMD SQLite store: lineage, cache, failures and killed attempts (probe stage)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.runtime.io.artifact_store import COMPLETE_MARKER, STAGING_DIR
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.runner import run_stage
from tests.support.mlmd import probe_request


def test_probe_writes_artifact_and_lineage(tmp_path: Path, mlmd_client: MetadataClient) -> None:
    result = run_stage(probe_request(tmp_path / "root"), mlmd_client)

    artifact = result.artifact("probe")
    assert artifact.uri == str(tmp_path / "root" / "probe" / "probe" / str(result.execution_id) / "probe")
    assert json.loads(Path(artifact.uri, "probe.json").read_text())["sum"] == 7.5
    assert Path(artifact.uri, COMPLETE_MARKER).exists()
    assert result.summary["sum"] == 7.5 and not result.cached

    store = mlmd_client.store
    [execution] = store.get_executions_by_id([result.execution_id])
    assert execution.last_known_state == pb.Execution.COMPLETE
    [stored] = store.get_artifacts_by_id([artifact.id])
    assert stored.state == pb.Artifact.LIVE and properties_of(stored)["sum"] == 7.5
    [event] = store.get_events_by_execution_ids([result.execution_id])
    assert event.type == pb.Event.OUTPUT and event.path.steps[0].key == "probe"
    names = sorted(c.name for c in store.get_contexts_by_execution(result.execution_id))
    assert names == ["probe", "probe.probe", "probe.run-1"]


def test_rerun_is_a_cache_hit_with_lineage(tmp_path: Path, mlmd_client: MetadataClient) -> None:
    first = run_stage(probe_request(tmp_path / "root"), mlmd_client)
    second = run_stage(probe_request(tmp_path / "root", run_id="run-2"), mlmd_client)
    changed = run_stage(probe_request(tmp_path / "root", run_id="run-3", values=[1.0]), mlmd_client)

    assert second.cached and second.artifact("probe").id == first.artifact("probe").id
    assert second.summary["cached_from"] == first.execution_id
    [execution] = mlmd_client.store.get_executions_by_id([second.execution_id])
    assert execution.last_known_state == pb.Execution.CACHED
    assert not changed.cached and changed.artifact("probe").id != first.artifact("probe").id


def test_cache_can_be_disabled(tmp_path: Path, mlmd_client: MetadataClient) -> None:
    run_stage(probe_request(tmp_path / "root"), mlmd_client)
    request = probe_request(tmp_path / "root", run_id="run-2")
    request.enable_cache = False
    assert not run_stage(request, mlmd_client).cached


def test_failure_publishes_nothing_and_marks_failed(tmp_path: Path, mlmd_client: MetadataClient) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_stage(probe_request(tmp_path / "root", fail="boom"), mlmd_client)

    [execution] = mlmd_client.store.get_executions()
    assert execution.last_known_state == pb.Execution.FAILED
    assert "boom" in properties_of(execution)["error"]
    assert mlmd_client.store.get_artifacts() == []
    node_dir = tmp_path / "root" / "probe" / "probe"
    assert not (node_dir / str(execution.id)).exists()
    assert os.listdir(node_dir / STAGING_DIR) == []


def test_abandoned_attempt_is_marked_failed_on_retry(tmp_path: Path, mlmd_client: MetadataClient) -> None:
    # Simulate a SIGKILLed attempt: an execution left RUNNING in this run's node context.
    contexts = mlmd_client.lineage_contexts("probe", "run-1", "probe")
    mlmd_client.register_types()
    stale = mlmd_client.start_execution("mlpipe.RuntimeProbe", contexts, [], {"try_number": 1})

    result = run_stage(probe_request(tmp_path / "root"), mlmd_client)

    [old] = mlmd_client.store.get_executions_by_id([stale])
    assert old.last_known_state == pb.Execution.FAILED
    assert "Abandoned" in properties_of(old)["error"]
    assert not result.cached


def test_dag_run_conf_overrides_reach_params_and_the_cache_key(tmp_path: Path, mlmd_client: MetadataClient) -> None:
    first = run_stage(probe_request(tmp_path / "root"), mlmd_client)
    request = probe_request(tmp_path / "root", run_id="run-2")
    request.conf = {"stages": {"probe": {"values": [10.0, 20.0]}}}
    overridden = run_stage(request, mlmd_client)

    assert not overridden.cached
    assert overridden.summary["sum"] == 30.0 and first.summary["sum"] == 7.5
