"""The Pusher end to end on GCS: model and blessing under a gs:// pipeline root, pushed to a gs:// destination.

Runs through the runner against gcp-storage-emulator, so inputs are localized from the bucket, the push goes
through the version-claim path of ``model_push`` and the PushedModel lands in MLMD with its gs:// URI.

Not testable here: the emulator ignores ``ifGenerationMatch`` preconditions (a second create-only upload of the
same object succeeds), so the claim that keeps two concurrent pushers off one version number is only enforced
by real GCS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.io.artifact_store import COMPLETE_MARKER, ArtifactStore
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
from airflow_provider_mlpipe.runtime.runner import run_stage
from airflow_provider_mlpipe.storage import default_storage
from tests.support.gcs_emulator import GcsEmulator, running_emulator
from tests.support.mlmd import sqlite_client

BUCKET = "mlpipe-push"
ROOT = f"gs://{BUCKET}/root"
SERVING = f"gs://{BUCKET}/serving/penguins"
SAVED_MODEL = b"\x08\x01saved-model-graph"


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(default_bucket=BUCKET) as emu:
        yield emu


def publish(store: ArtifactStore, node: str, execution_id: int, slot: str, files: dict[str, bytes]) -> str:
    uri = store.final_uri("penguins", node, execution_id, slot)
    staging = store.staging_dir(uri)
    for rel, data in files.items():
        Path(staging, rel).parent.mkdir(parents=True, exist_ok=True)
        Path(staging, rel).write_bytes(data)
    store.publish(staging, uri)
    return uri


@pytest.fixture(scope="module")
def upstream(emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArtifactRef]:
    store = ArtifactStore(ROOT, scratch_dir=str(tmp_path_factory.mktemp("scratch")))
    model_uri = publish(
        store, "trainer", 1, "model",
        {
            "Format-Serving/saved_model.pb": SAVED_MODEL,
            "Format-Serving/variables/variables.index": b"index",
            "Format-Serving/variables/variables.data-00000-of-00001": os.urandom(4096),
        },
    )  # fmt: skip
    blessing_uri = publish(store, "evaluator", 2, "blessing", {"BLESSED": b"", "blessing.json": b'{"blessed": true}'})
    return {
        "model": ArtifactRef("Model", model_uri, None, "model", {"span": 20240105}),
        "blessing": ArtifactRef("ModelBlessing", blessing_uri, None, "blessing", {"blessed": 1}),
    }


def push(client: MetadataClient, upstream: dict[str, ArtifactRef], run_id: str, **params: object):
    request = StageRequest(
        pipeline="penguins",
        pipeline_root=ROOT,
        stage="pusher",
        node_id="pusher",
        run_id=run_id,
        params={"destination": SERVING, **params},
        inputs={slot: [ArtifactRef(r.type, r.uri, r.id, r.name, dict(r.properties))] for slot, r in upstream.items()},
        enable_cache=False,
    )
    return run_stage(request, client)


def test_pushes_become_versions_on_gcs_with_lineage(
    emulator: GcsEmulator, upstream: dict[str, ArtifactRef], tmp_path: Path
) -> None:
    client = sqlite_client(tmp_path)
    first = push(client, upstream, "run-1")
    second = push(client, upstream, "run-2", keep_versions=1)

    assert (first.summary["version"], second.summary["version"]) == (1, 2)
    assert first.artifact("pushed_model").uri == f"{SERVING}/1"
    assert second.artifact("pushed_model").uri == f"{SERVING}/2"
    assert second.summary["pruned"] == [1]

    # The claim and version-record folders are bookkeeping beside the versions, not served content.
    serving = [n for n in emulator.objects(BUCKET, "serving/penguins/") if "/.mlpipe-" not in n]
    # Only version 2 is left, complete, and no temporary upload prefix remains.
    assert serving == [
        "serving/penguins/2/saved_model.pb",
        "serving/penguins/2/variables/variables.data-00000-of-00001",
        "serving/penguins/2/variables/variables.index",
    ]
    served = emulator.client().bucket(BUCKET).blob("serving/penguins/2/saved_model.pb").download_as_bytes()
    assert served == SAVED_MODEL

    # The push record is itself an artifact under the gs:// pipeline root, published with its marker.
    [execution] = [e for e in client.store.get_executions() if e.id == second.execution_id]
    record_prefix = f"root/penguins/pusher/{execution.id}/pushed_model/"
    assert emulator.objects(BUCKET, record_prefix) == [f"{record_prefix}{COMPLETE_MARKER}", f"{record_prefix}push.json"]
    record = json.loads(default_storage().read_text(f"gs://{BUCKET}/{record_prefix}push.json"))
    assert record["uri"] == f"{SERVING}/2" and record["destination"] == SERVING
    [stored] = client.store.get_artifacts_by_id([second.artifact("pushed_model").id])
    assert stored.uri == f"{SERVING}/2"


def test_an_unblessed_model_leaves_the_bucket_untouched(
    emulator: GcsEmulator, upstream: dict[str, ArtifactRef], tmp_path: Path
) -> None:
    client = sqlite_client(tmp_path)
    store = ArtifactStore(ROOT, scratch_dir=str(tmp_path / "scratch"))
    refused_uri = publish(store, "evaluator", 3, "blessing", {"NOT_BLESSED": b"accuracy 0.41 is below 0.8"})
    refused = ArtifactRef("ModelBlessing", refused_uri, None, "blessing", {"blessed": 0})
    before = emulator.objects(BUCKET, "serving/")

    with pytest.raises(RuntimeError, match="NOT_BLESSED"):
        push(client, {**upstream, "blessing": refused}, "run-3")

    assert emulator.objects(BUCKET, "serving/") == before
    [execution] = client.store.get_executions()
    assert "NotBlessedError: The model is NOT_BLESSED" in execution.custom_properties["error"].string_value
