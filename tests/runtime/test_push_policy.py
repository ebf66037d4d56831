"""Serving never moves to an older span by accident: the Pusher through the real runner and a real MLMD (SQLite).

Models here are small SavedModel-shaped folders recorded LIVE in MLMD with a span and a blessing, so each case
runs in a second; test_span_order.py drives the same rules with trained models over the penguins spans.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest, StageResult
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.runner import run_stage
from airflow_provider_mlpipe.runtime.serving import model_versions
from tests.runtime.model_fixtures import tree_digest

pytestmark = pytest.mark.runtime
PIPELINE = "spans"
ALLOW_OLDER = {"stages": {"pusher": {"push_policy": "allow_older_span"}}}


class Serving:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.destination = str(root / "serving")
        self.client = MetadataClient({"backend": "sqlite", "path": str(root / "mlmd.sqlite")})
        self.client.register_types()
        self.count = 0

    def record(self, slot: str, ref: ArtifactRef) -> ArtifactRef:
        """Record ``ref`` LIVE in MLMD, as the Trainer or the Evaluator would have."""
        contexts = self.client.lineage_contexts(PIPELINE, f"seed-{self.count}", "seed")
        execution = self.client.start_execution("mlpipe.TestInputs", contexts, [], {})
        self.client.finish_execution(execution, contexts, {slot: [ref]}, {})
        return ref

    def blessed_model(self, span: int) -> tuple[ArtifactRef, ArtifactRef]:
        self.count += 1
        folder = self.root / "models" / str(self.count)
        serving = folder / "Format-Serving"
        (serving / "variables").mkdir(parents=True)
        (serving / "saved_model.pb").write_bytes(f"graph of span {span}, model {self.count}".encode())
        (serving / "variables" / "variables.index").write_bytes(os.urandom(64))
        model = self.record("model", ArtifactRef("Model", str(folder), properties={"span": span}))
        blessing_dir = self.root / "blessings" / str(self.count)
        blessing_dir.mkdir(parents=True)
        (blessing_dir / "BLESSED").write_text("")
        props = {"blessed": 1, "current_model_id": model.id, "span": span}
        return model, self.record("blessing", ArtifactRef("ModelBlessing", str(blessing_dir), properties=props))

    def push(self, span: int, conf: dict[str, Any] | None = None, keep_versions: int | None = None) -> StageResult:
        model, blessing = self.blessed_model(span)
        params: dict[str, Any] = {"destination": self.destination}
        if keep_versions is not None:
            params["keep_versions"] = keep_versions
        request = StageRequest(
            pipeline=PIPELINE,
            pipeline_root=str(self.root / "root"),
            stage="pusher",
            node_id="pusher",
            run_id=f"run-{self.count}",
            params=params,
            inputs={"model": [model], "blessing": [blessing]},
            conf=conf or {},
        )
        return run_stage(request, self.client)

    def served_span(self) -> int:
        _, record = model_versions.served_version(self.destination)
        return record["span"]


@pytest.fixture
def serving(tmp_path: Path) -> Serving:
    return Serving(tmp_path)


def test_an_older_span_is_withheld_the_task_succeeds_and_mlmd_says_why(serving):
    newer = serving.push(20240105)
    assert newer.summary["pushed"] is True and serving.served_span() == 20240105
    before = tree_digest(serving.destination)

    older = serving.push(20240103)

    assert tree_digest(serving.destination) == before
    assert older.summary["push_withheld"] is True and older.summary["pushed"] is False
    assert (older.summary["served_version"], older.summary["served_span"]) == (1, 20240105)
    assert "trained on span 20240103, older than span 20240105" in older.summary["reason"]
    assert "allow_older_span" in older.summary["reason"]
    [artifact] = serving.client.store.get_artifacts_by_id([older.artifact("pushed_model").id])
    props = properties_of(artifact)
    assert (props["pushed"], props["push_withheld"], props["span"]) == (0, 1, 20240103)
    assert props["push_policy"] == "newest_span_only" and "version" not in props
    assert not artifact.uri.startswith(serving.destination)
    [execution] = serving.client.store.get_executions_by_id([older.execution_id])
    assert execution.last_known_state == pb.Execution.COMPLETE
    assert properties_of(execution)["summary"]["decision"] == "withheld"


def test_allow_older_span_in_the_run_conf_pushes_and_the_served_span_follows(serving):
    serving.push(20240105)
    older = serving.push(20240103, conf=ALLOW_OLDER)
    assert older.summary["version"] == 2 and older.artifact("pushed_model").properties["push_policy"] == (
        "allow_older_span"
    )
    assert serving.served_span() == 20240103
    # The rule compares with what is served now: span 4 is newer than the re-pushed span 3.
    assert serving.push(20240104).summary["version"] == 3


def test_the_same_span_pushes_again_and_a_version_without_a_record_does_not_block(serving):
    serving.push(20240105)
    assert serving.push(20240105).summary["version"] == 2  # a retrained model of the same span
    for name in os.listdir(Path(serving.destination, model_versions.VERSION_RECORDS)):
        os.remove(Path(serving.destination, model_versions.VERSION_RECORDS, name))
    # Versions pushed before records existed hold an unknown span: nothing to compare with, so the push goes on.
    assert serving.push(20240101).summary["version"] == 3


def test_rollback_keeps_the_served_and_target_versions_and_the_copy_carries_the_target_span(serving):
    for day in (1, 2, 3, 4):
        serving.push(20240100 + day)
    target = tree_digest(Path(serving.destination, "1"))

    summary = model_versions.rollback(
        serving.destination, PIPELINE, to_version=1, client=serving.client, keep_versions=2
    )

    assert (summary["version"], summary["rollback_of"], summary["pruned"]) == (5, 1, [2, 3])
    assert model_versions.list_versions(serving.destination) == [1, 4, 5]
    assert tree_digest(Path(serving.destination, "5")) == target
    assert serving.served_span() == 20240101 and summary["span"] == 20240101
    assert sorted(os.listdir(Path(serving.destination, model_versions.VERSION_RECORDS))) == [
        "1.json",
        "4.json",
        "5.json",
    ]
    # After a deliberate rollback, a newer span moves serving forward again; an older one still does not.
    assert serving.push(20240101).summary["version"] == 6
    assert serving.push(20240100).summary["push_withheld"] is True


@pytest.mark.parametrize(
    ("to_version", "message"),
    [
        (7, r"^Cannot roll back to version 7: it does not exist under .* \(the versions there are 1, 2\)\.$"),
        (2, r"^Cannot roll back to version 2: it is already the served \(highest\) version under .*\.$"),
    ],
)
def test_rollback_errors_are_sentences(serving, to_version, message):
    serving.push(20240101)
    serving.push(20240102)
    with pytest.raises(model_versions.PushError, match=message):
        model_versions.rollback(serving.destination, PIPELINE, to_version=to_version, client=serving.client)
    assert model_versions.list_versions(serving.destination) == [1, 2]
