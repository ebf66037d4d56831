"""Retention and garbage collection on real stage outputs and a real MLMD (SQLite).

The penguins spec trains and pushes spans 1-3 (versions 1-3) and ingests spans 4 and 5 (data stages only).
Then version 1 is rolled back to, so the served model (version 4) is span 1's, while the baseline, the newest
blessed model, is span 3's. With ``keep_spans: 2`` and ``keep_versions: 2``, gc must delete span 2 entirely and
the anomalies of spans 1 and 3, keep the whole lineage of both models, prune versions 1 and 2, and remove only
the leftovers that are old and owned by no running execution.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.metadata import resolvers
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
from airflow_provider_mlpipe.runtime.retention.gc import collect
from airflow_provider_mlpipe.runtime.retention.plan import RetentionPolicy
from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.runtime.model_fixtures import REPO
from tests.support.paths import RUNTIME_PYTHON
from tests.support.spec_runs import StageCall, day_runner, run_every_stage

pytestmark = pytest.mark.runtime
# Every output of a run of every stage except the Pusher, whose PushedModel records gc never deletes.
OUTPUTS = (
    ("example_gen", "examples"),
    ("statistics_gen", "statistics"),
    ("schema_gen", "schema"),
    ("example_validator", "anomalies"),
    ("transform", "transform_graph"),
    ("transform", "transformed_examples"),
    ("trainer", "model"),
    ("evaluator", "evaluation"),
    ("evaluator", "blessing"),
    ("evaluator", "served_evaluation"),
)


def span(day: int) -> int:
    return 20240100 + day


class Spans:
    def __init__(self, root: Path) -> None:
        spec = load_pipeline(REPO / "dags" / "pipelines" / "penguins.yaml")
        self.spec_dir = str(spec.base_dir)
        self.params = {name: dict(values) for name, values in spec.stage_params.items()}
        self.root = root / "root"
        self.destination = str(root / "serving")
        self.params["pusher"]["destination"] = self.destination
        self.params["trainer"]["train_steps"] = 100
        for metric in self.params["evaluator"]["metrics"]:
            metric["threshold"]["change"]["absolute"] = -1.0  # every model is blessed
        self.mlmd = {"backend": "sqlite", "path": str(root / "mlmd.sqlite")}
        self.client = MetadataClient(self.mlmd)
        self.ids: dict[int, dict[tuple[str, str], int]] = {}
        self.uris: dict[int, str] = {}

    def stage(self, day: int) -> StageCall:
        return day_runner(self.client, "penguins", self.params, root=self.root, spec_dir=self.spec_dir, day=day)

    def run(self, day: int, *, data_only: bool = False) -> None:
        stage = self.stage(day)
        if data_only:
            examples = stage("example_gen").artifact("examples")
            statistics = stage("statistics_gen", examples=examples).artifact("statistics")
            schema = stage("schema_gen", statistics=statistics).artifact("schema")
            anomalies = stage("example_validator", statistics=statistics, schema=schema).artifact("anomalies")
            refs = dict(zip(OUTPUTS[:4], (examples, statistics, schema, anomalies), strict=True))
        else:
            results = run_every_stage(stage)
            refs = {key: results[key[0]].artifact(key[1]) for key in OUTPUTS}
        self.ids[day] = {key: ref.id for key, ref in refs.items()}
        self.uris.update({ref.id: ref.uri for ref in refs.values()})

    def states(self, ids: list[int]) -> dict[int, int]:
        return {a.id: a.state for a in self.client.store.get_artifacts_by_id(ids)}


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> Spans:
    pipe = Spans(tmp_path_factory.mktemp("gc"))
    for day in (1, 2, 3):
        pipe.run(day)
    for day in (4, 5):
        pipe.run(day, data_only=True)
    model_versions.rollback(pipe.destination, "penguins", to_version=1, client=pipe.client)
    return pipe


def expected_deletions(spans: Spans) -> list[int]:
    span_2 = list(spans.ids[2].values())
    anomalies = [spans.ids[day][("example_validator", "anomalies")] for day in (1, 3)]
    return sorted(span_2 + anomalies)


def run_gc_command(spans: Spans, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(RUNTIME_PYTHON), "-m", "airflow_provider_mlpipe.runtime", "gc", "penguins",
        "--pipeline-root", str(spans.root), "--destination", spans.destination,
        "--keep-spans", "2", "--keep-versions", "2", *extra,
    ]  # fmt: skip
    env = {**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps(spans.mlmd)}
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_the_dry_run_lists_exactly_what_the_policy_deletes_and_changes_nothing(spans: Spans) -> None:
    proc = run_gc_command(spans, "--min-age", "0", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout.strip().splitlines()[-1])
    doomed = expected_deletions(spans)
    assert [e["id"] for e in plan["delete"]] == doomed
    assert {e["span"] for e in plan["delete"]} == {20240101, 20240102, 20240103}
    assert all(e["size"] > 0 for e in plan["delete"])
    assert [(v["version"], v["span"]) for v in plan["prune"]] == [(1, 20240101), (2, 20240102)]
    assert plan["leftovers"] == []
    text = proc.stdout
    assert f"mlpipe gc penguins (dry run): {len(doomed)} artifacts, 2 pushed versions and 0 leftovers" in text
    for artifact_id in doomed:
        assert f"  #{artifact_id} " in text.split("Kept:")[0]
    served = spans.ids[1][("trainer", "model")]
    baseline = spans.ids[3][("trainer", "model")]
    kept = {e["id"]: e["reasons"] for e in plan["keep"]}
    assert any("lineage of the served model 4 of" in r for r in kept[served])
    assert any(f"lineage of the baseline model #{baseline}" in r for r in kept[baseline])
    assert (
        kept[spans.ids[5][("statistics_gen", "statistics")]][0]
        == "the newest ExampleStatistics, read for the next span's drift"
    )
    # Nothing changed: every artifact is LIVE and on disk, and every version is still there.
    assert set(spans.states(doomed).values()) == {pb.Artifact.LIVE}
    assert all(Path(spans.uris[i]).is_dir() for i in doomed)
    assert model_versions.list_versions(spans.destination) == [1, 2, 3, 4]


def test_gc_keeps_the_served_and_baseline_lineage_and_marks_the_rest_deleted(spans: Spans, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    old = time.time() - 3 * 3600
    staging = spans.root / "penguins" / "transform" / ".staging"
    running = spans.client.start_execution(
        "mlpipe.Transform", spans.client.lineage_contexts("penguins", "manual__slow", "transform"), [],
        {"pipeline": "penguins", "node_id": "transform", "run_id": "manual__slow"},
    )  # fmt: skip
    leftovers = {
        "orphan": staging / "999999-transform_graph-0123456789ab",
        "running": staging / f"{running}-transform_graph-0123456789ab",
        "young": staging / "999998-transform_graph-0123456789ab",
        "push": Path(spans.destination) / ".tmp-9-deadbeef",
    }
    for name, folder in leftovers.items():
        folder.mkdir(parents=True)
        (folder / "part").write_text("x" * 100)
        stamp = now.timestamp() - 60 if name == "young" else old
        for path in (folder / "part", folder):
            os.utime(path, (stamp, stamp))

    policy = RetentionPolicy(keep_spans=2, keep_versions=2, min_age=dt.timedelta(hours=1))
    plan = collect(spans.client, "penguins", str(spans.root), [spans.destination], policy, now=now)
    spans.client.fail_execution(running, "ended by the test")

    doomed = expected_deletions(spans)
    assert [e.id for e in plan.delete] == doomed
    assert set(spans.states(doomed).values()) == {pb.Artifact.DELETED}
    assert not any(Path(spans.uris[i]).exists() for i in doomed)
    everything = [i for day in spans.ids.values() for i in day.values()]
    kept = sorted(set(everything) - set(doomed))
    assert set(spans.states(kept).values()) == {pb.Artifact.LIVE}
    assert all((Path(spans.uris[i]) / "_MLPIPE_COMPLETE").is_file() for i in kept)
    for day in (1, 3):  # the served model's and the baseline's whole lineage, with their blessings
        for key in OUTPUTS:
            if key != ("example_validator", "anomalies"):
                assert spans.ids[day][key] in kept, (day, key)
    assert model_versions.list_versions(spans.destination) == [3, 4]
    assert {Path(item.uri).name for item in plan.leftovers} == {leftovers["orphan"].name, ".tmp-9-deadbeef"}
    assert not leftovers["orphan"].exists() and not leftovers["push"].exists()
    assert leftovers["running"].is_dir() and leftovers["young"].is_dir()

    # Lookups never resolve a deleted artifact: span 3's previous statistics are now span 1's, and its baseline is
    # span 1's model even if span 2's blessing were LIVE (a keep_days boundary can split a model from its blessing).
    def request(key: tuple[str, str], day: int = 3) -> StageRequest:
        ref = ArtifactRef(key[1], spans.uris[spans.ids[day][key]], spans.ids[day][key], key[1], {"span": span(day)})
        return StageRequest("penguins", str(spans.root), "evaluator", "evaluator", "r", inputs={key[1]: [ref]})

    statistics = request(("statistics_gen", "statistics"))
    previous = resolvers.previous_span_output(spans.client, statistics, "ExampleStatistics", [])
    assert previous.id == spans.ids[1][("statistics_gen", "statistics")]
    spans.client.set_artifact_state(spans.ids[2][("evaluator", "blessing")], pb.Artifact.LIVE)
    model_3 = spans.ids[3][("trainer", "model")]
    baseline = resolvers.blessed_baseline(spans.client, request(("trainer", "model")), "Model", [model_3])
    assert baseline.id == spans.ids[1][("trainer", "model")]
    spans.client.set_artifact_state(spans.ids[2][("evaluator", "blessing")], pb.Artifact.DELETED)

    # A deleted artifact is never a cache hit: the re-run of span 2 ingests it again.
    again = spans.stage(2)("example_gen")
    assert not again.cached and again.artifact("examples").id not in doomed
    # A second gc finds nothing more to delete among what the first one kept (the new span 2 examples are young).
    second = collect(spans.client, "penguins", str(spans.root), [spans.destination], policy)
    assert [e.id for e in second.delete] == []
