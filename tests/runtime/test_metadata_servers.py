"""ML Metadata on real database servers (ml-metadata 1.17.1): schema creation, lineage, cache, failures.

Every test runs on PostgreSQL and on MariaDB (MySQL protocol), the two server backends of the ``mlmd``
connection. Each gets its own database on the session's server, so MLMD creates its schema from scratch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.metadata.client import (
    NODE_CONTEXT,
    PIPELINE_CONTEXT,
    RUN_CONTEXT,
    MetadataClient,
    properties_of,
)
from airflow_provider_mlpipe.runtime.runner import run_stage
from tests.support.mlmd import probe_request


@pytest.fixture
def client(server_mlmd_config: dict[str, object]) -> MetadataClient:
    return MetadataClient(server_mlmd_config)


def probe(root: Path, run_id: str, **params: object) -> StageRequest:
    return probe_request(root, run_id, pipeline="penguins", **params)


def test_stage_run_records_contexts_execution_events(
    client: MetadataClient, server_mlmd_config: dict[str, object], tmp_path: Path
) -> None:
    assert client.config.WhichOneof("config") == server_mlmd_config["backend"]
    result = run_stage(probe(tmp_path / "root", "manual__1"), client)
    store = client.store

    [execution] = store.get_executions_by_id([result.execution_id])
    assert execution.last_known_state == pb.Execution.COMPLETE
    [etype] = store.get_execution_types_by_id([execution.type_id])
    assert etype.name == "mlpipe.RuntimeProbe"
    props = properties_of(execution)
    assert props["pipeline"] == "penguins" and props["run_id"] == "manual__1" and props["summary"]["sum"] == 7.5

    contexts = {(store.get_context_types_by_id([c.type_id])[0].name, c.name) for c in
                store.get_contexts_by_execution(execution.id)}  # fmt: skip
    assert contexts == {
        (PIPELINE_CONTEXT, "penguins"),
        (RUN_CONTEXT, "penguins.manual__1"),
        (NODE_CONTEXT, "penguins.probe"),
    }
    [event] = store.get_events_by_execution_ids([execution.id])
    assert event.type == pb.Event.OUTPUT and event.path.steps[0].key == "probe"
    [artifact] = store.get_artifacts_by_id([event.artifact_id])
    assert artifact.state == pb.Artifact.LIVE and artifact.uri == result.artifact("probe").uri
    assert store.get_artifact_types_by_id([artifact.type_id])[0].name == "RuntimeProbe"
    assert properties_of(artifact)["sum"] == 7.5
    # The pipeline context reaches the artifact too, which is how the resolvers and the UI find it.
    assert [a.id for a in client.live_artifacts("penguins", "RuntimeProbe")] == [artifact.id]


def test_second_run_is_a_cache_hit(client: MetadataClient, tmp_path: Path) -> None:
    first = run_stage(probe(tmp_path / "root", "run-1"), client)
    second = run_stage(probe(tmp_path / "root", "run-2"), client)
    changed = run_stage(probe(tmp_path / "root", "run-3", values=[3.0]), client)

    assert not first.cached and second.cached and not changed.cached
    assert second.artifact("probe").id == first.artifact("probe").id
    assert changed.artifact("probe").id != first.artifact("probe").id
    store = client.store
    states = {e.id: e.last_known_state for e in store.get_executions()}
    assert states == {
        first.execution_id: pb.Execution.COMPLETE,
        second.execution_id: pb.Execution.CACHED,
        changed.execution_id: pb.Execution.COMPLETE,
    }
    # The cached execution still has lineage: its run context, and an OUTPUT event to the reused artifact.
    run2 = store.get_context_by_type_and_name(RUN_CONTEXT, "penguins.run-2")
    assert [e.id for e in store.get_executions_by_context(run2.id)] == [second.execution_id]
    [event] = store.get_events_by_execution_ids([second.execution_id])
    assert event.type == pb.Event.OUTPUT and event.artifact_id == first.artifact("probe").id
    assert properties_of(store.get_executions_by_id([second.execution_id])[0])["cached_from"] == first.execution_id


def test_input_events_and_failed_executions(client: MetadataClient, tmp_path: Path) -> None:
    upstream = run_stage(probe(tmp_path / "root", "run-1"), client)
    ref = upstream.artifact("probe")
    contexts = client.lineage_contexts("penguins", "run-1", "consumer")
    consumer = client.start_execution(
        "mlpipe.StatisticsGen", contexts, [ArtifactRef(ref.type, ref.uri, ref.id, "examples")], {"node_id": "x"}
    )
    client.fail_execution(consumer, "RuntimeError: boom")

    store = client.store
    [execution] = store.get_executions_by_id([consumer])
    assert execution.last_known_state == pb.Execution.FAILED
    assert properties_of(execution)["error"] == "RuntimeError: boom"
    [event] = store.get_events_by_execution_ids([consumer])
    assert (event.type, event.artifact_id, event.path.steps[0].key) == (pb.Event.INPUT, ref.id, "examples")

    failing = run_stage_failure(client, tmp_path)
    assert failing.last_known_state == pb.Execution.FAILED
    assert "probe failed on purpose" in properties_of(failing)["error"]


def run_stage_failure(client: MetadataClient, tmp_path: Path) -> pb.Execution:
    with pytest.raises(RuntimeError, match="probe failed on purpose"):
        run_stage(probe(tmp_path / "root", "run-9", fail="probe failed on purpose"), client)
    [execution] = [e for e in client.store.get_executions() if properties_of(e).get("run_id") == "run-9"]
    assert not list((tmp_path / "root" / "penguins" / "probe").glob(f"{execution.id}/*"))  # nothing published
    return execution


def test_a_second_client_sees_the_same_store(server_mlmd_config: dict[str, object], tmp_path: Path) -> None:
    """Two processes' worth of clients on one database: the schema is created once and shared."""
    first = run_stage(probe(tmp_path / "root", "run-1"), MetadataClient(server_mlmd_config))
    other = MetadataClient(server_mlmd_config)
    again = run_stage(probe(tmp_path / "root", "run-2"), other)
    assert again.cached and again.artifact("probe").id == first.artifact("probe").id
