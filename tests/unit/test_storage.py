"""The shared storage layer against gcp-storage-emulator and local disk; both venvs run this file.

Objects are written and checked with google-cloud-storage (the emulator's own client), so a read through the
layer is compared with an independent writer, and a write with an independent reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_mlpipe.storage import Storage
from tests.support.gcs_emulator import GcsEmulator, running_emulator

BUCKET = "storage-layer"


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    with running_emulator(default_bucket=BUCKET) as emu:
        yield emu


@pytest.fixture
def root(emulator: GcsEmulator, request: pytest.FixtureRequest) -> str:
    return f"gs://{BUCKET}/{request.node.name}"


def test_reads_and_lists_what_another_client_wrote(emulator: GcsEmulator, root: str) -> None:
    bucket = emulator.client().bucket(BUCKET)
    prefix = root[len(f"gs://{BUCKET}/") :]
    for name, data in {"a/metrics.json": b'{"auc": 0.9}', "a/sub/x.bin": b"\x00\x01", "ab/other": b"o"}.items():
        bucket.blob(f"{prefix}/{name}").upload_from_string(data)
    storage = Storage()
    assert storage.read_text(f"{root}/a/metrics.json") == '{"auc": 0.9}'
    assert storage.size(f"{root}/a/sub/x.bin") == 2 and storage.size(f"{root}/a/none") is None
    assert storage.exists(f"{root}/a/metrics.json") and not storage.exists(f"{root}/a/none")
    # A sibling prefix that merely starts with the same letters is not "under" a/.
    assert storage.list_files(f"{root}/a") == ["metrics.json", "sub/x.bin"]
    assert storage.list_files(f"{root}/a", limit=1) == ["metrics.json"]
    assert storage.list_files(f"{root}/missing") == []
    assert storage.list_dirs(root) == ["a", "ab"] and storage.list_dirs(f"{root}/a") == ["sub"]
    assert storage.glob(f"{root}/a/*.json") == [f"{root}/a/metrics.json"]
    assert storage.glob(f"{root}/a*/*") == [f"{root}/a/metrics.json", f"{root}/a/sub/x.bin", f"{root}/ab/other"]
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{root}/a/none")
    # A file written after a listing is seen at once: gates poll for files other processes write.
    bucket.blob(f"{prefix}/a/late.json").upload_from_string(b"{}")
    assert storage.exists(f"{root}/a/late.json") and "late.json" in storage.list_files(f"{root}/a")


def test_writes_uploads_copies_and_deletes(emulator: GcsEmulator, root: str, tmp_path: Path) -> None:
    storage = Storage()
    local = tmp_path / "model"
    (local / "variables").mkdir(parents=True)
    (local / "saved_model.pb").write_bytes(b"graph")
    (local / "variables" / "v.index").write_bytes(b"index")
    storage.upload_dir(str(local), f"{root}/up")
    prefix = root[len(f"gs://{BUCKET}/") :]
    assert emulator.objects(BUCKET, f"{prefix}/up/") == [
        f"{prefix}/up/saved_model.pb",
        f"{prefix}/up/variables/v.index",
    ]

    storage.write_text(f"{root}/note.txt", "hello")
    assert emulator.client().bucket(BUCKET).blob(f"{prefix}/note.txt").download_as_bytes() == b"hello"
    # gcp-storage-emulator ignores ifGenerationMatch (google-cloud-storage's own second create succeeds there
    # too), so only the claim's creation is checked here; the local test below checks that a second one loses.
    assert storage.create_exclusive(f"{root}/claims/1") is True
    assert storage.exists(f"{root}/claims/1")

    storage.copy(f"{root}/up/saved_model.pb", f"{root}/copy/saved_model.pb")
    assert storage.read_bytes(f"{root}/copy/saved_model.pb") == b"graph"
    first = storage.info(f"{root}/copy/saved_model.pb")
    storage.write_text(f"{root}/copy/saved_model.pb", "graph")  # same bytes, new generation
    assert storage.info(f"{root}/copy/saved_model.pb").signature != first.signature

    down = tmp_path / "down"
    storage.download_dir(f"{root}/up", str(down))
    assert (down / "variables" / "v.index").read_bytes() == b"index"
    with pytest.raises(FileNotFoundError):
        storage.download_dir(f"{root}/nothing", str(tmp_path / "empty"))

    storage.delete_prefix(f"{root}/up", first="saved_model.pb")
    storage.delete(f"{root}/note.txt")
    storage.delete(f"{root}/note.txt")  # already gone: not an error
    assert emulator.objects(BUCKET, f"{prefix}/up/") == [] and not storage.exists(f"{root}/note.txt")


def test_local_paths_behave_like_gcs(tmp_path: Path) -> None:
    storage = Storage()
    target = tmp_path / "a" / "b.json"
    storage.write_text(str(target), "{}")
    assert storage.read_text(str(target)) == "{}" and storage.size(str(target)) == 2
    assert storage.list_files(str(tmp_path)) == ["a/b.json"] and storage.list_dirs(str(tmp_path)) == ["a"]
    assert storage.glob(str(tmp_path / "*" / "*.json")) == [str(target)]
    assert storage.create_exclusive(str(tmp_path / "claim")) and not storage.create_exclusive(str(tmp_path / "claim"))
    assert storage.info(str(target)).size == 2
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tmp_path / "missing"))
    storage.delete(str(target))
    assert not target.exists() and storage.size(str(target)) is None
