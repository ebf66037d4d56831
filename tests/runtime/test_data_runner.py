"""The four data stages through the runner with a real MLMD SQLite store: lineage, resolvers and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest, StageResult
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.runner import run_stage
from tests.runtime.data_fixtures import PATTERN, copy_spans
from tests.support.mlmd import sqlite_client
from tests.support.trees import in_staging, tree_checksums

pytestmark = pytest.mark.runtime

PARAMS = {
    "example_gen": {"input": {"pattern": PATTERN}},
    "statistics_gen": {},
    "schema_gen": {"allow_missing": True},
    "example_validator": {"drift": {"island": {"threshold": 0.4}, "flipper_length_mm": {"threshold": 0.5}}},
}


def run_day(client: MetadataClient, tmp_path: Path, day: str, run_id: str) -> dict[str, StageResult]:
    date = f"{day}T00:00:00+00:00"
    results: dict[str, StageResult] = {}

    def run(stage: str, inputs: dict[str, ArtifactRef]) -> StageResult:
        request = StageRequest(
            pipeline="penguins", pipeline_root=str(tmp_path / "root"), stage=stage, node_id=stage, run_id=run_id,
            params=PARAMS[stage], inputs={k: [v] for k, v in inputs.items()}, logical_date=date,
            data_interval_start=date, spec_dir=str(tmp_path / "spec"),
        )  # fmt: skip
        results[stage] = run_stage(request, client)
        return results[stage]

    examples = run("example_gen", {}).artifact("examples")
    statistics = run("statistics_gen", {"examples": examples}).artifact("statistics")
    schema = run("schema_gen", {"statistics": statistics}).artifact("schema")
    run("example_validator", {"statistics": statistics, "schema": schema})
    return results


@pytest.fixture
def client(tmp_path: Path) -> MetadataClient:
    copy_spans(tmp_path / "spec" / "data" / "penguins", days=3)
    return sqlite_client(tmp_path)


def events_of(client: MetadataClient, execution_id: int) -> dict[tuple[str, str], int]:
    return {
        ("INPUT" if e.type == pb.Event.INPUT else "OUTPUT", e.path.steps[0].key): e.artifact_id
        for e in client.store.get_events_by_execution_ids([execution_id])
    }


def test_lineage_resolvers_and_cache(tmp_path: Path, client: MetadataClient) -> None:
    day1 = run_day(client, tmp_path, "2024-01-01", "scheduled__2024-01-01")
    day2 = run_day(client, tmp_path, "2024-01-02", "scheduled__2024-01-02")
    store = client.store

    # Every stage ran, is COMPLETE, sits in the three lineage contexts, and its events link the chain.
    for stage, result in day2.items():
        [execution] = store.get_executions_by_id([result.execution_id])
        assert execution.last_known_state == pb.Execution.COMPLETE and not result.cached
        names = sorted(c.name for c in store.get_contexts_by_execution(result.execution_id))
        assert names == sorted(["penguins", "penguins.scheduled__2024-01-02", f"penguins.{stage}"])
    examples = day2["example_gen"].artifact("examples")
    statistics = day2["statistics_gen"].artifact("statistics")
    schema = day2["schema_gen"].artifact("schema")
    anomalies = day2["example_validator"].artifact("anomalies")
    assert events_of(client, day2["statistics_gen"].execution_id) == {
        ("INPUT", "examples"): examples.id,
        ("OUTPUT", "statistics"): statistics.id,
    }
    # The resolvers: SchemaGen saw day 1's schema, ExampleValidator day 1's statistics (previous span).
    assert events_of(client, day2["schema_gen"].execution_id)[("INPUT", "previous_schema")] == (
        day1["schema_gen"].artifact("schema").id
    )
    assert events_of(client, day2["example_validator"].execution_id) == {
        ("INPUT", "statistics"): statistics.id,
        ("INPUT", "schema"): schema.id,
        ("INPUT", "previous_statistics"): day1["statistics_gen"].artifact("statistics").id,
        ("OUTPUT", "anomalies"): anomalies.id,
    }
    [stored] = store.get_artifacts_by_id([statistics.id])
    props = properties_of(stored)
    assert props["span"] == 20240102 and props["path"] == "arrow" and stored.state == pb.Artifact.LIVE
    assert props["num_examples"] == properties_of(store.get_artifacts_by_id([examples.id])[0])["row_counts"]
    [stored_schema] = store.get_artifacts_by_id([schema.id])
    assert properties_of(stored_schema)["diff"] == [] and properties_of(stored_schema)["source"] == "inferred"
    [stored_anomalies] = store.get_artifacts_by_id([anomalies.id])
    assert properties_of(stored_anomalies)["blessed"] == 1 and properties_of(stored_anomalies)["span"] == 20240102
    report = json.loads(Path(anomalies.uri, "anomalies.json").read_text())
    assert report["previous_statistics_id"] == day1["statistics_gen"].artifact("statistics").id
    assert any(m["kind"] == "drift" for m in report["measurements"])

    # A re-run of day 2 (another Airflow run id) reuses every output.
    before = tree_checksums(tmp_path / "root", in_staging)
    again = run_day(client, tmp_path, "2024-01-02", "manual__2024-01-02")
    for stage, result in again.items():
        assert result.cached, stage
        assert result.summary["cached_from"] == day2[stage].execution_id
        [execution] = store.get_executions_by_id([result.execution_id])
        assert execution.last_known_state == pb.Execution.CACHED
    assert again["example_validator"].artifact("anomalies").id == anomalies.id
    assert tree_checksums(tmp_path / "root", in_staging) == before

    # A changed input file is a cache miss for ExampleGen, and the new span data flows downstream.
    span_file = tmp_path / "spec" / "data" / "penguins" / "span-2024-01-02.csv"
    lines = span_file.read_text().splitlines()
    span_file.write_text("\n".join(lines[:-5]) + "\n")
    changed = run_day(client, tmp_path, "2024-01-02", "manual__2024-01-02b")
    assert not changed["example_gen"].cached and not changed["statistics_gen"].cached
    assert sum(changed["example_gen"].summary["row_counts"].values()) == len(lines) - 6
    assert tree_checksums(tmp_path / "root", in_staging).items() >= before.items()  # earlier artifacts untouched


def test_bad_span_fails_the_execution_and_publishes_nothing(tmp_path: Path, client: MetadataClient) -> None:
    (tmp_path / "spec" / "data" / "penguins" / "span-2024-01-03.csv").write_bytes(b"")
    request = StageRequest(
        pipeline="penguins", pipeline_root=str(tmp_path / "root"), stage="example_gen", node_id="example_gen",
        run_id="r3", params=PARAMS["example_gen"], data_interval_start="2024-01-03T00:00:00+00:00",
        spec_dir=str(tmp_path / "spec"),
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"span-2024-01-03\.csv is empty"):
        run_stage(request, client)
    [execution] = client.store.get_executions()
    assert execution.last_known_state == pb.Execution.FAILED
    assert "is empty" in properties_of(execution)["error"]
    assert client.store.get_artifacts() == []
    node_dir = tmp_path / "root" / "penguins" / "example_gen"
    assert [p.name for p in node_dir.iterdir() if p.name != ".staging"] == []
