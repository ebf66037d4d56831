"""Artifacts on gs:// against gcp-storage-emulator: publish, localize, discard, and a whole stage run.

Also pins down how the ML libraries' own gs:// I/O reaches an emulator, which the URI-native Beam stages rely on:
- TensorFlow's GCS filesystem has the Google endpoints compiled in, but honours ``https_proxy``; the emulator's
  HTTPS front answers for those endpoints (tests/support/gcs_tls_front.py);
- Beam 2.61's GcsIO is built on google-cloud-storage and honours STORAGE_EMULATOR_HOST.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.io.artifact_store import (
    COMPLETE_MARKER,
    ArtifactStore,
    UnsafePathError,
    ensure_within,
)
from airflow_provider_mlpipe.runtime.runner import run_stage
from airflow_provider_mlpipe.storage import default_storage, join
from tests.support.gcs_emulator import GcsEmulator, running_emulator
from tests.support.mlmd import sqlite_client
from tests.support.paths import REPO

BUCKET = "mlpipe-test"


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(default_bucket=BUCKET) as emu:
        yield emu


@pytest.fixture
def store(emulator: GcsEmulator, tmp_path: Path, request: pytest.FixtureRequest) -> ArtifactStore:
    # A root per test, so tests sharing the module's emulator never see each other's objects.
    return ArtifactStore(f"gs://{BUCKET}/{request.node.name}/", scratch_dir=str(tmp_path / "scratch"))


def fill(directory: str) -> dict[str, bytes]:
    files = {"model/saved_model.pb": b"\x08\x01binary\x00", "model/variables/v.index": b"idx", "meta.json": b"{}"}
    for rel, data in files.items():
        path = Path(directory, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_publish_uploads_everything_then_the_marker(store: ArtifactStore, emulator: GcsEmulator) -> None:
    uri = store.final_uri("penguins", "trainer", 7, "model")
    assert uri == f"{store.pipeline_root}/penguins/trainer/7/model"
    staging = store.staging_dir(uri)
    assert not staging.startswith("gs://") and os.path.isdir(staging)  # executors write locally
    files = fill(staging)
    assert not store.is_complete(uri)

    store.publish(staging, uri)

    prefix = uri[len(f"gs://{BUCKET}/") :]
    names = emulator.objects(BUCKET, prefix + "/")
    assert names == sorted([f"{prefix}/{rel}" for rel in files] + [f"{prefix}/{COMPLETE_MARKER}"])
    assert store.is_complete(uri)
    assert not os.path.exists(staging)  # the local staging copy is gone once uploaded


def test_localize_downloads_identical_bytes_once(store: ArtifactStore) -> None:
    uri = store.final_uri("penguins", "trainer", 8, "model")
    staging = store.staging_dir(uri)
    files = fill(staging)
    store.publish(staging, uri)

    local = store.localize(uri, "Model-8")
    for rel, data in files.items():
        assert Path(local, rel).read_bytes() == data
    assert Path(local, COMPLETE_MARKER).exists()
    # A second localize is served from the scratch cache, even after the objects changed underneath.
    default_storage().write_text(join(uri, "meta.json"), '{"changed": true}')
    assert store.localize(uri, "Model-8") == local
    assert Path(local, "meta.json").read_bytes() == b"{}"


def test_localize_of_a_missing_artifact_fails_and_leaves_no_cache(store: ArtifactStore, tmp_path: Path) -> None:
    uri = store.final_uri("penguins", "trainer", 9, "model")
    with pytest.raises(FileNotFoundError, match="No objects found"):
        store.localize(uri, "Model-9")
    assert not Path(store.scratch_dir, "in", "Model-9").exists()


def test_discard_uploads_nothing(store: ArtifactStore, emulator: GcsEmulator) -> None:
    uri = store.final_uri("penguins", "trainer", 10, "model")
    staging = store.staging_dir(uri)
    fill(staging)
    store.discard(staging)
    assert not os.path.exists(staging)
    assert emulator.objects(BUCKET, uri[len(f"gs://{BUCKET}/") :]) == []
    assert not store.is_complete(uri)


def test_uris_outside_the_root_are_refused(store: ArtifactStore) -> None:
    with pytest.raises(UnsafePathError):
        ensure_within(store.pipeline_root, f"{store.pipeline_root}/../other/x")
    with pytest.raises(UnsafePathError):
        store.final_uri("penguins", "../../escape", 1, "model")


def test_probe_stage_on_gcs_with_lineage_and_cache(emulator: GcsEmulator, tmp_path: Path) -> None:
    client = sqlite_client(tmp_path)
    root = f"gs://{BUCKET}/stage-run"

    def request(run_id: str) -> StageRequest:
        return StageRequest(
            pipeline="probe", pipeline_root=root, stage="probe", node_id="probe", run_id=run_id,
            params={"values": [0.5, 1.5]},
        )  # fmt: skip

    first = run_stage(request("run-1"), client)
    uri = first.artifact("probe").uri
    assert uri == f"{root}/probe/probe/{first.execution_id}/probe"
    prefix = uri[len(f"gs://{BUCKET}/") :]
    assert emulator.objects(BUCKET, prefix + "/") == [f"{prefix}/{COMPLETE_MARKER}", f"{prefix}/probe.json"]
    assert json.loads(default_storage().read_text(f"{uri}/probe.json"))["sum"] == 2.0
    [stored] = client.store.get_artifacts_by_id([first.artifact("probe").id])
    assert stored.uri == uri

    second = run_stage(request("run-2"), client)
    assert second.cached and second.artifact("probe").uri == uri


TF_ROUND_TRIP = """
import sys
import tensorflow as tf
root = sys.argv[1]
assert tf.io.gfile.GFile(root + "/hello.txt").read() == "hi"
with tf.io.gfile.GFile(root + "/from-tf.txt", "w") as fh:
    fh.write("written by tf")
class Doubler(tf.Module):
    def __init__(self):
        self.factor = tf.Variable(2.0)
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return x * self.factor
tf.saved_model.save(Doubler(), root + "/model")
print(tf.saved_model.load(root + "/model")(tf.constant([1.0, 3.0])).numpy().tolist())
"""


def test_tensorflow_reaches_the_emulator_through_its_https_front(emulator: GcsEmulator) -> None:
    """Reads, writes and a SavedModel round trip on gs:// from TensorFlow, in a fresh runtime process."""
    root = f"gs://{BUCKET}/tf-probe"
    default_storage().write_text(f"{root}/hello.txt", "hi")
    env = {**os.environ, **emulator.env, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", TF_ROUND_TRIP, root], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == "[2.0, 6.0]"
    assert default_storage().read_text(f"{root}/from-tf.txt") == "written by tf"
    assert default_storage().exists(f"{root}/model/saved_model.pb")


def test_beam_filesystems_honour_the_emulator(emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beam's GcsIO reads and writes gs:// through google-cloud-storage, so the emulator serves it."""
    import apache_beam as beam
    from apache_beam.internal.gcp import auth
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    # Beam first retries Application Default Credentials for ~25 s before it connects anonymously;
    # start anonymous right away (what it ends up doing anyway without credentials).
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    default_storage().write_text(f"gs://{BUCKET}/beam/in/a.txt", "x\ny\n")
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromText(f"gs://{BUCKET}/beam/in/*.txt")
            | beam.Map(str.upper)
            | beam.io.WriteToText(f"gs://{BUCKET}/beam/out/upper", num_shards=1)
        )
    [match] = FileSystems.match([f"gs://{BUCKET}/beam/out/upper*"])
    [written] = match.metadata_list
    assert written.path == f"gs://{BUCKET}/beam/out/upper-00000-of-00001"
    assert default_storage().read_text(written.path).split() == ["X", "Y"]
