"""Versioned pushes and rollback on a gs:// destination, against gcp-storage-emulator, with a real MLMD."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.serving import model_versions
from tests.support.gcs_emulator import running_emulator

pytestmark = pytest.mark.runtime
BUCKET = "mlpipe-rollback"
DESTINATION = f"gs://{BUCKET}/serving/penguins"


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(default_bucket=BUCKET) as emu:
        yield emu


def _saved_model(root: Path, graph: bytes) -> str:
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(graph)
    (root / "variables" / "variables.index").write_bytes(b"index-" + graph)
    return str(root)


def _version_bytes(emulator, version: int) -> dict[str, bytes]:
    bucket = emulator.client().bucket(BUCKET)
    prefix = f"serving/penguins/{version}/"
    return {name[len(prefix) :]: bucket.blob(name).download_as_bytes() for name in emulator.objects(BUCKET, prefix)}


def test_rollback_on_gcs_copies_the_target_to_a_new_version(emulator, tmp_path):
    client = MetadataClient({"backend": "sqlite", "path": str(tmp_path / "mlmd.sqlite")})
    client.register_types()
    contexts = client.lineage_contexts("penguins", "run-1", "pusher")
    for number, graph in enumerate((b"good-model", b"newer-model"), start=1):
        version, uri = model_versions.push_version(_saved_model(tmp_path / f"m{number}", graph), DESTINATION)
        assert (version, uri) == (number, f"{DESTINATION}/{number}")
        execution = client.start_execution("mlpipe.Pusher", contexts, [], {})
        props = {"pushed": 1, "version": version, "destination": DESTINATION, "source_model_id": 100 + number}
        client.finish_execution(
            execution, contexts, {"pushed_model": [ArtifactRef("PushedModel", uri, None, "", props)]}, {}
        )
    assert model_versions.list_versions(DESTINATION) == [1, 2]
    assert not [n for n in emulator.objects(BUCKET, "serving/") if "/.tmp-" in n]

    summary = model_versions.rollback(DESTINATION, "penguins", client=client)
    assert (summary["version"], summary["rollback_of"], summary["rolled_back_from"]) == (3, 1, 2)
    assert (
        _version_bytes(emulator, 3)
        == _version_bytes(emulator, 1)
        == {
            "saved_model.pb": b"good-model",
            "variables/variables.index": b"index-good-model",
        }
    )
    [artifact] = client.store.get_artifacts_by_id([summary["pushed_model_id"]])
    assert artifact.uri == f"{DESTINATION}/3"
    assert properties_of(artifact)["source_model_id"] == 101


def test_a_stale_claim_does_not_block_pushes(emulator, tmp_path):
    """A claim left by a crashed push (no files) makes the next push move on to the following number."""
    destination = f"gs://{BUCKET}/serving/claims"
    calls: list[int] = []
    real = model_versions._push_gcs

    def refuse_first(source: str, dest: str, version: int, record: dict) -> bool:
        calls.append(version)
        return False if version == 1 else real(source, dest, version, record)

    model_versions._push_gcs = refuse_first
    try:
        version, _ = model_versions.push_version(_saved_model(tmp_path / "m", b"graph"), destination)
    finally:
        model_versions._push_gcs = real
    assert calls == [1, 2] and version == 2
    assert os.path.basename(model_versions.version_uri(destination, version)) == "2"
