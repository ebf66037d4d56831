"""SIGKILL of the runtime while ExampleGen, the Trainer or the Pusher writes its output, then the retry.

Each case launches ``python -m airflow_provider_mlpipe.runtime run request.json`` in its own process group against a
real MLMD SQLite store, waits until the stage is writing (files in ``<root>/<pipeline>/<node>/.staging/``, or a
``.tmp-*`` folder in the serving directory), kills the group with SIGKILL (no handler runs), and retries the same
request as try 2. Upstream artifacts come from the real penguins stages on span 2024-01-01, computed once.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.runtime.io.artifact_store import STAGING_DIR
from airflow_provider_mlpipe.runtime.runner import run_stage
from airflow_provider_mlpipe.runtime.serving import model_versions
from tests.reliability.penguins_runtime import (
    PIPELINE,
    PenguinsRun,
    assert_killed_attempt_failed,
    assert_no_half_written_artifact,
    kill_when,
    launch,
    node_executions,
    staged_files,
)
from tests.support.paths import REPO
from tests.support.trees import hidden_at_top, tree_digest

pytestmark = pytest.mark.runtime


@pytest.fixture(scope="module")
def penguins(tmp_path_factory: pytest.TempPathFactory) -> PenguinsRun:
    """Span 1 through ExampleGen..Evaluator (a blessed model), not pushed yet."""
    run = PenguinsRun(tmp_path_factory.mktemp("kill"))
    run.data = run.data_stages(day=1)
    run.model_inputs_1 = run.model_inputs(run.data, day=1)
    run.model = run.run("trainer", 1, **run.model_inputs_1).artifact("model")
    run.blessing = run.run("evaluator", 1, examples=run.data["examples"], model=run.model).artifact("blessing")
    assert run.blessing.properties["blessed"] == 1, run.blessing.properties
    return run


def kill_and_retry(run: PenguinsRun, request, ready, what: str):
    """Attempt 1 in a subprocess, SIGKILLed once ``ready()``; attempt 2 (same run, try 2) in-process."""
    work = run.root / f"work-{request.node_id}-{request.run_id}"
    proc, result_file = launch(request, run.mlmd, work)
    kill_when(proc, ready, what=what)
    assert proc.returncode == -signal.SIGKILL, (work / "attempt-1.log").read_text()[-3000:]
    assert not result_file.exists()
    # What the kill left behind: a RUNNING execution, nothing under a final URI.
    [killed] = node_executions(run.client, request.run_id, request.node_id)
    assert killed.last_known_state == pb.Execution.RUNNING
    assert not Path(run.pipeline_root, PIPELINE, request.node_id, str(killed.id)).exists()
    assert_no_half_written_artifact(run.client, run.pipeline_root, request.node_id)
    retry = run_stage(replace(request, try_number=2), run.client)
    assert_killed_attempt_failed(run.client, request.run_id, request.node_id, retry)
    assert_no_half_written_artifact(run.client, run.pipeline_root, request.node_id)
    return killed, retry


def test_kill_example_gen_mid_write(penguins: PenguinsRun, tmp_path: Path) -> None:
    """Inject: SIGKILL while ExampleGen writes Parquet shards of a 60k-row span (small shards give the window).
    Holds: no Examples under a final URI or LIVE from the killed attempt; it is FAILED (Abandoned); the retry ingests
    the whole span, and its shards hold every row."""
    text = (REPO / "dags" / "data" / "penguins" / "span-2024-01-02.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines()))
    big = tmp_path / "big" / "span-2024-01-02.csv"
    big.parent.mkdir()
    with open(big, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(rows[0])
        for _ in range(900):
            writer.writerows(rows[1:])
    expected_rows = 900 * (len(rows) - 1)
    params = {**penguins.params["example_gen"], "rows_per_shard": 100}
    params["input"] = {**params["input"], "pattern": str(tmp_path / "big" / "span-{YYYY}-{MM}-{DD}.csv")}
    request = penguins.request("example_gen", day=2, run_id="kill-example-gen", params=params)
    node_dir = Path(penguins.pipeline_root, PIPELINE, "example_gen")

    _, retry = kill_and_retry(penguins, request, lambda: len(staged_files(node_dir)) >= 3, "ExampleGen wrote shards")

    examples = retry.artifact("examples")
    assert sum(examples.properties["row_counts"].values()) == expected_rows
    import pyarrow.parquet as pq

    shards = sorted(Path(examples.uri).glob("Split-*/*.parquet"))
    assert sum(pq.read_metadata(str(s)).num_rows for s in shards) == expected_rows


def test_kill_trainer_mid_training(penguins: PenguinsRun) -> None:
    """Inject: SIGKILL while the Trainer trains (TensorBoard logs already in its staging folder).
    Holds: no Model under a final URI or LIVE from the killed attempt; it is FAILED (Abandoned); the retry trains and
    exports a servable model, recorded LIVE once."""
    params = {**penguins.params["trainer"], "train_steps": 400}  # another cache key than the fixture's model
    request = penguins.request("trainer", day=1, run_id="kill-trainer", params=params, **penguins.model_inputs_1)
    node_dir = Path(penguins.pipeline_root, PIPELINE, "trainer")
    before = {a.id for a in penguins.client.store.get_artifacts()}

    def training() -> bool:
        return any("model_run" in p.parts for p in staged_files(node_dir))

    _, retry = kill_and_retry(penguins, request, training, "the Trainer started writing logs")

    model = retry.artifact("model")
    assert model.properties["train_steps"] == 400
    assert os.path.isfile(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))
    new = [a for a in penguins.client.store.get_artifacts() if a.id not in before]
    assert [(a.id, a.state) for a in new] == [(model.id, pb.Artifact.LIVE)]


def test_kill_pusher_mid_copy(penguins: PenguinsRun, tmp_path: Path) -> None:
    """Inject: SIGKILL while the Pusher copies the model into a hidden ``.tmp-*`` folder of the serving directory
    (100 MB of padding in the model gives the window). Holds: the serving directory is still exactly the old version
    set after the kill; the retry adds the complete new version; no PushedModel is LIVE from the killed attempt."""
    destination = Path(penguins.params["pusher"]["destination"])
    old_source = tmp_path / "old-model"
    shutil.copytree(Path(penguins.model.uri, "Format-Serving"), old_source)
    (old_source / "assets").mkdir(exist_ok=True)
    (old_source / "assets" / "old.txt").write_text("the version served before this push\n")
    model_versions.push_version(str(old_source), str(destination))  # version 1: what serving had before
    old_digest = tree_digest(destination, hidden_at_top)

    # Padding makes the copy slow enough to catch and the new version distinguishable from the old one.
    model_dir = tmp_path / "padded-model"
    shutil.copytree(penguins.model.uri, model_dir)
    padding = model_dir / "Format-Serving" / "assets"
    padding.mkdir(exist_ok=True)
    for i in range(400):
        (padding / f"padding-{i:03d}.bin").write_bytes(os.urandom(256 * 1024))
    new_digest = tree_digest(model_dir / "Format-Serving")
    model = replace(penguins.model, uri=str(model_dir))
    request = penguins.request("pusher", day=1, run_id="kill-pusher", model=model, blessing=penguins.blessing)

    def copying() -> bool:
        return any(p.name.startswith(".tmp-") for p in destination.iterdir())

    _, retry = kill_and_retry(penguins, request, copying, "the Pusher started copying")

    visible = sorted(p.name for p in destination.iterdir() if not p.name.startswith("."))
    assert visible == ["1", "2"]
    assert tree_digest(destination / "1") == tree_digest(old_source)
    assert tree_digest(destination / "2") == new_digest  # complete, not a mix
    pushed = retry.artifact("pushed_model")
    assert pushed.properties["version"] == 2 and pushed.uri == str(destination / "2")
    records = [a for a in penguins.client.store.get_artifacts() if a.uri.startswith(str(destination))]
    assert [a.id for a in records] == [pushed.id]
    # The kill's leftovers are hidden from TF Serving (it only loads integer folders) and from list_versions.
    assert model_versions.list_versions(str(destination)) == [1, 2]
    assert old_digest != tree_digest(destination, hidden_at_top)


def test_kill_leaves_at_most_hidden_staging(penguins: PenguinsRun) -> None:
    """After the kills above: whatever they left is under ``.staging`` (never read) and no stage's visible folder
    lacks its completion marker or LIVE record."""
    for node in sorted(os.listdir(Path(penguins.pipeline_root, PIPELINE))):
        assert_no_half_written_artifact(penguins.client, penguins.pipeline_root, node)
        listing = sorted(os.listdir(Path(penguins.pipeline_root, PIPELINE, node)))
        assert all(name == STAGING_DIR or name.isdigit() for name in listing), (node, listing)
    failed = [e for e in penguins.client.store.get_executions() if e.last_known_state == pb.Execution.FAILED]
    errors = {json.dumps(str(e.custom_properties["error"].string_value)) for e in failed}
    assert all("Abandoned" in text for text in errors), errors
