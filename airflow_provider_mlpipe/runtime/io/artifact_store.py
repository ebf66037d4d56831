"""Artifact storage on local disk or Google Cloud Storage, with atomic publish.

For a local pipeline root, outputs are staged in a hidden ``.staging`` folder beside their final place and
published with one ``rename``, so a reader never sees a half-written artifact under a final URI.

For ``gs://`` roots there are two data planes (docs/storage.md):

- **URI-native** (the Beam stages): the executor reads its inputs at their own ``gs://`` URIs and writes each
  output under a staging prefix ``<root>/.staging/...``, so Beam workers on other hosts can reach both and
  nothing passes through the launching host's disk. Publishing copies the staged objects to the final prefix
  server-side, then writes ``_MLPIPE_COMPLETE``, then removes the staging prefix.
- **Local** (single-host stages): inputs are downloaded to a scratch cache and outputs uploaded when the
  executor finishes, marker last.

Either way MLMD marks the artifact LIVE only after the marker exists. A killed stage leaves at most a
``.staging`` entry or a prefix without the marker, neither of which looks finished. ``gs://`` is reached through
the shared ``airflow_provider_mlpipe.storage`` layer, the same one the Airflow side reads with.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
import uuid
from pathlib import Path

from airflow_provider_mlpipe.storage import Storage, is_gcs, join

COMPLETE_MARKER = "_MLPIPE_COMPLETE"
STAGING_DIR = ".staging"


class UnsafePathError(ValueError):
    """Raised when a path would escape the pipeline root."""


def ensure_within(root: str, uri: str) -> str:
    """Return ``uri`` if it lies under ``root``; refuse traversal such as ``../``."""
    if is_gcs(root) != is_gcs(uri):
        raise UnsafePathError(f"The path {uri!r} is not under the pipeline root {root!r}.")
    if is_gcs(root):
        norm_root = posixpath.normpath(root[len("gs://") :])
        norm = posixpath.normpath(uri[len("gs://") :])
    else:
        norm_root = os.path.realpath(root)
        norm = os.path.realpath(uri)
    if norm != norm_root and not norm.startswith(norm_root.rstrip("/") + "/"):
        raise UnsafePathError(f"The path {uri!r} escapes the pipeline root {root!r}.")
    return uri


def pipeline_root_of(artifact_uri: str, pipeline: str) -> str:
    """The pipeline root an artifact of ``pipeline`` was written under: the inverse of ``ArtifactStore.final_uri``.

    Records made outside a run (an override, a baseline reset) go beside the pipeline's own artifacts, found from
    one of them, so no spec is needed to place them.
    """
    sep = "/" if is_gcs(artifact_uri) else os.sep
    parts = artifact_uri.rstrip(sep).split(sep)
    if len(parts) < 5 or parts[-4] != pipeline:
        raise UnsafePathError(
            f"The artifact URI {artifact_uri} is not laid out as <root>/{pipeline}/<node>/<execution>/<slot>."
        )
    return sep.join(parts[:-4])


class ArtifactStore:
    """Plans, stages, publishes and localizes artifacts under one pipeline root."""

    def __init__(self, pipeline_root: str, scratch_dir: str | None = None, storage: Storage | None = None) -> None:
        self.storage = storage or Storage()
        self.pipeline_root = pipeline_root.rstrip("/") if is_gcs(pipeline_root) else pipeline_root
        self.scratch_dir = scratch_dir or tempfile.mkdtemp(prefix="mlpipe-")
        if not is_gcs(pipeline_root):
            Path(pipeline_root).mkdir(parents=True, exist_ok=True)

    def final_uri(self, pipeline: str, node_id: str, execution_id: int, slot: str) -> str:
        uri = join(self.pipeline_root, pipeline, node_id, str(execution_id), slot)
        return ensure_within(self.pipeline_root, uri)

    def staging_dir(self, final_uri: str) -> str:
        """A fresh local directory where an executor writes an output before it is published."""
        token = uuid.uuid4().hex[:12]
        if is_gcs(final_uri):
            path = os.path.join(self.scratch_dir, "out", token)
        else:
            parent = os.path.dirname(os.path.dirname(final_uri))
            name = f"{os.path.basename(os.path.dirname(final_uri))}-{os.path.basename(final_uri)}-{token}"
            path = os.path.join(parent, STAGING_DIR, name)
        os.makedirs(path)
        return path

    def staging_uri(self, final_uri: str) -> str:
        """Where a URI-native executor writes an output: a fresh ``gs://`` staging prefix, or a local staging dir."""
        if not is_gcs(final_uri):
            return self.staging_dir(final_uri)
        relative = final_uri[len(self.pipeline_root) :].strip("/").replace("/", "-")
        return join(self.pipeline_root, STAGING_DIR, f"{relative}-{uuid.uuid4().hex[:12]}")

    def scratch_uri(self, label: str) -> str:
        """A fresh temporary prefix that Beam workers can reach, under ``.staging/`` of a ``gs://`` root."""
        return join(self.pipeline_root, STAGING_DIR, f"{label}-tmp-{uuid.uuid4().hex[:12]}")

    def publish(self, staging: str, final_uri: str) -> None:
        if is_gcs(staging):
            self.storage.copy_prefix(staging, final_uri, skip=COMPLETE_MARKER)
            self.storage.write_text(join(final_uri, COMPLETE_MARKER), "")
            self.storage.delete_prefix(staging)
            return
        if is_gcs(final_uri):
            self.storage.upload_dir(staging, final_uri)
            self.storage.write_text(join(final_uri, COMPLETE_MARKER), "")
            shutil.rmtree(staging, ignore_errors=True)
            return
        Path(final_uri).parent.mkdir(parents=True, exist_ok=True)
        Path(staging, COMPLETE_MARKER).write_text("", encoding="utf-8")
        # rename(2) is atomic and refuses to replace a non-empty directory, so a published artifact is final.
        os.rename(staging, final_uri)

    def discard(self, staging: str) -> None:
        if is_gcs(staging):
            self.storage.delete_prefix(staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)

    def unpublish(self, final_uri: str) -> None:
        """Remove a published artifact whose MLMD record could not be written (marker first, then the rest)."""
        if is_gcs(final_uri):
            self.storage.delete_prefix(final_uri, first=COMPLETE_MARKER)
            return
        marker = os.path.join(final_uri, COMPLETE_MARKER)
        if os.path.exists(marker):
            os.remove(marker)
        shutil.rmtree(final_uri, ignore_errors=True)
        with contextlib.suppress(OSError):  # the execution folder, if no other output is left in it
            os.rmdir(os.path.dirname(final_uri))

    def localize(self, uri: str, cache_key: str) -> str:
        """Return a local directory holding the artifact at ``uri`` (a download for ``gs://``)."""
        if not is_gcs(uri):
            return uri
        target = os.path.join(self.scratch_dir, "in", cache_key)
        if not os.path.isdir(target):
            partial = f"{target}.partial-{uuid.uuid4().hex[:8]}"
            self.storage.download_dir(uri, partial)
            os.rename(partial, target)
        return target

    def is_complete(self, uri: str) -> bool:
        marker = join(uri, COMPLETE_MARKER)
        return self.storage.exists(marker)
