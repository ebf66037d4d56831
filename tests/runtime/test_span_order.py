"""Span order through the real runner and a real MLMD (SQLite): the shipped penguins spec over daily spans.

Spans 1, 2 and 4 run and are pushed (versions 1-3); then span 3 runs late, as in a backfill. It must diff its
schema and compare its statistics with span 2 (not span 4, the newest in time), be evaluated against span 2's
model, and not replace span 4's model in serving. Re-runs of span 2 after that: unchanged, every stage is a
cache hit; with a harmless evaluator change, the push is withheld and recorded; with ``push_policy:
allow_older_span`` it is pushed. A rollback with ``keep_versions`` then keeps the served and target versions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.runtime.model_fixtures import REPO, tree_digest
from tests.support.spec_runs import day_runner, run_every_stage

pytestmark = pytest.mark.runtime
DATA_STAGES = ("example_gen", "statistics_gen", "schema_gen", "example_validator")
HARMLESS_EVALUATOR_CHANGE = {"stages": {"evaluator": {"slices": [[]]}}}  # overall only, no per-island slices


def span(day: int) -> int:
    return 20240100 + day


class SpanPipeline:
    """Runs every stage of the penguins spec for one day, as the DAG would, and keeps each run's results."""

    def __init__(self, root: Path) -> None:
        spec = load_pipeline(REPO / "dags" / "pipelines" / "penguins.yaml")
        self.spec_dir = str(spec.base_dir)
        self.params = {name: dict(values) for name, values in spec.stage_params.items()}
        self.root = root
        self.destination = str(root / "serving")
        self.params["pusher"]["destination"] = self.destination
        self.params["trainer"]["train_steps"] = 100
        # The change threshold stays (so the baseline is resolved and compared) but cannot fail on ~40 eval rows.
        for metric in self.params["evaluator"]["metrics"]:
            metric["threshold"]["change"]["absolute"] = -1.0
        self.client = MetadataClient({"backend": "sqlite", "path": str(root / "mlmd.sqlite")})
        self.runs: dict[str, dict[str, StageResult]] = {}
        self.digests: dict[str, str] = {}

    def run(self, day: int, run_id: str | None = None, conf: dict[str, Any] | None = None) -> dict[str, StageResult]:
        run_id = run_id or f"scheduled__2024-01-0{day}"
        stage = day_runner(
            self.client, "penguins", self.params, root=self.root / "root", spec_dir=self.spec_dir, day=day,
            run_id=run_id, conf=conf,
        )  # fmt: skip
        results = run_every_stage(stage)
        self.runs[run_id] = results
        self.digests[run_id] = tree_digest(self.destination)
        return results

    def artifact(self, run_id: str, stage: str, slot: str) -> ArtifactRef:
        return self.runs[run_id][stage].artifact(slot)


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> SpanPipeline:
    pipe = SpanPipeline(tmp_path_factory.mktemp("span-order"))
    for day in (1, 2, 4, 3):
        pipe.run(day)
    pipe.run(2, "manual__rerun-unchanged")
    pipe.run(2, "manual__rerun-evaluator-change", HARMLESS_EVALUATOR_CHANGE)
    pipe.run(2, "manual__rerun-evaluator-change-again", HARMLESS_EVALUATOR_CHANGE)
    allow = {"stages": {**HARMLESS_EVALUATOR_CHANGE["stages"], "pusher": {"push_policy": "allow_older_span"}}}
    pipe.run(2, "manual__repush-span-2", allow)
    return pipe


def test_every_artifact_carries_the_span_it_was_made_from(spans):
    for slot_owner in (
        ("example_gen", "examples"),
        ("statistics_gen", "statistics"),
        ("schema_gen", "schema"),
        ("example_validator", "anomalies"),
        ("transform", "transform_graph"),
        ("trainer", "model"),
        ("evaluator", "evaluation"),
        ("evaluator", "blessing"),
        ("pusher", "pushed_model"),
    ):
        ref = spans.artifact("scheduled__2024-01-03", *slot_owner)
        [recorded] = spans.client.store.get_artifacts_by_id([ref.id])
        assert properties_of(recorded)["span"] == span(3), slot_owner


def test_a_late_span_resolves_its_predecessors_by_span_not_by_time(spans):
    late = "scheduled__2024-01-03"
    day2 = "scheduled__2024-01-02"
    assert spans.artifact(late, "schema_gen", "schema").properties["previous_schema_id"] == (
        spans.artifact(day2, "schema_gen", "schema").id
    )
    validator = spans.runs[late]["example_validator"].summary
    assert validator["previous_statistics_id"] == spans.artifact(day2, "statistics_gen", "statistics").id
    blessing = spans.artifact(late, "evaluator", "blessing")
    assert blessing.properties["baseline_model_id"] == spans.artifact(day2, "trainer", "model").id
    # Span 4, evaluated before span 3 existed, was compared with span 2 as well.
    day4_blessing = spans.artifact("scheduled__2024-01-04", "evaluator", "blessing")
    assert day4_blessing.properties["baseline_model_id"] == spans.artifact(day2, "trainer", "model").id


def test_a_late_span_does_not_replace_a_newer_span_in_serving(spans):
    late = spans.runs["scheduled__2024-01-03"]["pusher"]
    assert not late.cached
    assert late.summary["push_withheld"] is True and late.summary["served_span"] == span(4)
    assert "older than span 20240104" in late.summary["reason"]
    assert spans.digests["scheduled__2024-01-03"] == spans.digests["scheduled__2024-01-04"]
    assert model_versions.read_version_record(spans.destination, 3)["span"] == span(4)
    pushed = late.artifact("pushed_model")
    [recorded] = spans.client.store.get_artifacts_by_id([pushed.id])
    props = properties_of(recorded)
    assert props["pushed"] == 0 and props["push_withheld"] == 1 and props["served_version"] == 3
    assert recorded.uri.startswith(str(spans.root / "root"))  # the record only, nothing under the serving dir
    [execution] = spans.client.store.get_executions_by_id([late.execution_id])
    assert execution.last_known_state == pb.Execution.COMPLETE
    assert properties_of(execution)["summary"]["decision"] == "withheld"


def test_an_unchanged_rerun_of_an_old_span_is_a_cache_hit_and_serving_is_unchanged(spans):
    rerun = spans.runs["manual__rerun-unchanged"]
    assert {name: result.cached for name, result in rerun.items()} == dict.fromkeys(rerun, True)
    assert spans.digests["manual__rerun-unchanged"] == spans.digests["scheduled__2024-01-04"]


def test_a_rerun_with_an_evaluator_change_keeps_the_span_baseline_and_withholds_the_push(spans):
    rerun = spans.runs["manual__rerun-evaluator-change"]
    assert all(rerun[name].cached for name in (*DATA_STAGES, "transform", "trainer"))
    assert not rerun["evaluator"].cached and not rerun["pusher"].cached
    day1_model = spans.artifact("scheduled__2024-01-01", "trainer", "model").id
    assert rerun["evaluator"].artifact("blessing").properties["baseline_model_id"] == day1_model
    assert rerun["pusher"].summary["push_withheld"] is True
    assert spans.digests["manual__rerun-evaluator-change"] == spans.digests["scheduled__2024-01-04"]
    again = spans.runs["manual__rerun-evaluator-change-again"]
    assert {name: result.cached for name, result in again.items()} == dict.fromkeys(again, True)


def test_allow_older_span_pushes_the_older_model_on_purpose(spans):
    repush = spans.runs["manual__repush-span-2"]
    assert repush["evaluator"].cached and not repush["pusher"].cached
    pushed = repush["pusher"].artifact("pushed_model")
    assert pushed.properties["pushed"] == 1 and pushed.properties["version"] == 4
    assert pushed.properties["span"] == span(2) and pushed.properties["push_policy"] == "allow_older_span"
    version, record = model_versions.served_version(spans.destination)
    assert (
        version == 4 and record["span"] == span(2) and record["source_model_id"] == pushed.properties["source_model_id"]
    )


def test_rollback_with_keep_versions_keeps_the_served_and_the_target_version(spans):
    destination = spans.destination
    v3 = tree_digest(os.path.join(destination, "3"))
    summary = model_versions.rollback(destination, "penguins", to_version=3, client=spans.client, keep_versions=2)
    assert (summary["version"], summary["rollback_of"], summary["rolled_back_from"]) == (5, 3, 4)
    assert summary["pruned"] == [1, 2] and summary["span"] == span(4)
    assert model_versions.list_versions(destination) == [3, 4, 5]
    assert tree_digest(os.path.join(destination, "5")) == v3
    assert model_versions.served_version(destination)[1]["span"] == span(4)
    [artifact] = spans.client.store.get_artifacts_by_id([summary["pushed_model_id"]])
    assert properties_of(artifact)["span"] == span(4) and properties_of(artifact)["rollback_of"] == 3
