"""Safety: artifact paths never escape ``pipeline_root``; user modules load only from the pipeline's folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.context import UserModuleError, load_user_module
from airflow_provider_mlpipe.runtime.io.artifact_store import ArtifactStore, UnsafePathError, ensure_within
from airflow_provider_mlpipe.runtime.runner import run_stage
from tests.support.mlmd import sqlite_client

pytestmark = pytest.mark.runtime


def probe_request(root: Path, pipeline: str = "probe", node_id: str = "probe") -> StageRequest:
    return StageRequest(
        pipeline=pipeline, pipeline_root=str(root), stage="probe", node_id=node_id, run_id="r1", params={}
    )


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("{root}/p/n/1/out", True),
        ("{root}", True),
        ("{root}/../outside", False),
        ("{root}/p/../../outside", False),
        ("{root}-sibling/p", False),  # a shared prefix is not containment
        ("/etc/passwd", False),
        ("gs://bucket/x", False),  # another scheme is not under a local root
    ],
)
def test_ensure_within_refuses_traversal(tmp_path: Path, uri: str, ok: bool) -> None:
    """Inject URIs with ``..``, a sibling prefix, an absolute path, another scheme: only those under the root pass."""
    root = str(tmp_path / "root")
    uri = uri.format(root=root)
    if ok:
        assert ensure_within(root, uri) == uri
    else:
        with pytest.raises(UnsafePathError):
            ensure_within(root, uri)


def test_ensure_within_follows_symlinks(tmp_path: Path) -> None:
    """Inject a symlink inside the root that points outside: the resolved path is refused."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "link")
    with pytest.raises(UnsafePathError):
        ensure_within(str(root), str(root / "link" / "x"))


def test_gcs_traversal_is_refused() -> None:
    """Inject ``..`` into a gs:// URI: normalisation cannot climb out of the bucket prefix."""
    assert ensure_within("gs://b/root", "gs://b/root/p/n/1/x") == "gs://b/root/p/n/1/x"
    with pytest.raises(UnsafePathError):
        ensure_within("gs://b/root", "gs://b/root/../other/x")


def test_final_uri_refuses_an_escaping_node(tmp_path: Path) -> None:
    """Inject a node id of ``../../..`` into the store's URI planning: refused before any folder is made."""
    store = ArtifactStore(str(tmp_path / "root"))
    with pytest.raises(UnsafePathError):
        store.final_uri("p", "../../..", 1, "out")


@pytest.mark.parametrize(
    ("pipeline", "node_id"),
    [
        ("probe", "../../../escaped"),
        ("probe", "../other_pipeline_node"),  # stays under the root, but inside another pipeline's folder
        ("../probe", "probe"),
        ("probe", "a/b"),
        ("probe", ".."),
        ("probe", ""),
    ],
)
def test_runner_refuses_names_that_are_not_one_segment(tmp_path: Path, pipeline: str, node_id: str) -> None:
    """Inject a StageRequest whose pipeline or node_id holds ``..`` or ``/``: refused before MLMD or disk is touched."""
    client = sqlite_client(tmp_path)
    with pytest.raises(UnsafePathError, match="not a plain name"):
        run_stage(probe_request(tmp_path / "a" / "b" / "root", pipeline, node_id), client)
    assert files_under(tmp_path / "a") == []  # no root, no staging, nothing beside it
    assert client.store.get_executions() == [] and client.store.get_artifacts() == []


def test_plain_names_still_run(tmp_path: Path) -> None:
    """Control: names with dots and dashes (not ``..``) are accepted and land under the root."""
    client = sqlite_client(tmp_path)
    result = run_stage(probe_request(tmp_path / "root", "team.probe-v2", "probe_1"), client)
    assert result.artifact("probe").uri.startswith(str(tmp_path / "root" / "team.probe-v2" / "probe_1") + os.sep)


@pytest.mark.parametrize("module_file", ["../../etc/x.py", "/etc/hostname", "../outside.py"])
def test_user_module_outside_the_pipeline_folder_is_refused(tmp_path: Path, module_file: str) -> None:
    """Inject module paths that climb out of (or bypass) the pipeline folder, to a file that exists: refused."""
    spec_dir = tmp_path / "pipeline"
    spec_dir.mkdir()
    (tmp_path / "outside.py").write_text("raise SystemExit('must never be imported')\n")
    with pytest.raises(UserModuleError, match="outside the pipeline's folder"):
        load_user_module(module_file, str(spec_dir), ("run_fn",))


def test_user_module_symlinked_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    """Inject a symlink inside the pipeline folder pointing at a module outside it: refused (resolved path)."""
    spec_dir = tmp_path / "pipeline"
    spec_dir.mkdir()
    (tmp_path / "evil.py").write_text("raise SystemExit('must never be imported')\n")
    os.symlink(tmp_path / "evil.py", spec_dir / "trainer.py")
    with pytest.raises(UserModuleError, match="outside the pipeline's folder"):
        load_user_module("trainer.py", str(spec_dir), ("run_fn",))
