"""Versioned pushes to a serving directory, pruning, and rollback, for local paths and ``gs://``.

Layout: ``<destination>/<version>/`` holds one SavedModel per integer version, the layout TF Serving watches; it
serves the highest version. History is immutable: a push always adds the next version, and a **rollback pushes a
copy of the target version as a new, higher version** (recorded in MLMD as a PushedModel with ``rollback_of``).
Deleting the newer versions instead would also re-point serving, but it destroys what was served (needed for a
post-mortem or to roll forward again) and races with a serving process that is loading them; pinning a version in
TF Serving's model config would need a config push to every server. A copy works with the default "latest"
version policy, on any file system, and keeps every version ever served.

Atomicity: locally, the version is copied into a hidden ``.tmp-*`` folder of the destination (same file system)
and renamed into place; ``rename`` fails if another pusher took that number first, and we retry with the next
one. On GCS, where prefixes cannot be renamed, a version number is claimed with a create-only object
(``.mlpipe-claims/<version>``, ``if_generation_match=0``), the files are uploaded under a hidden temporary prefix
and then copied into ``<version>/`` with ``saved_model.pb`` copied **last**: TF Serving cannot load a version
before its ``saved_model.pb`` exists, so it never loads a half-copied one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.io.artifact_store import _gcs_client, download_dir, is_gcs, join, split_gcs

log = logging.getLogger("mlpipe.runtime.push")

_VERSION = re.compile(r"^[0-9]+$")
SAVED_MODEL = "saved_model.pb"
CLAIMS = ".mlpipe-claims"
PUSHED_MODEL = "PushedModel"
ROLLBACK_EXECUTION = "mlpipe.Rollback"


class PushError(RuntimeError):
    """A push or rollback could not be done."""


# ----- listing --------------------------------------------------------------------------------------------------
def list_versions(destination: str) -> list[int]:
    """Integer version directories under ``destination``, ascending (hidden temporary folders are ignored)."""
    if is_gcs(destination):
        bucket, prefix = split_gcs(destination)
        pages = _gcs_client().list_blobs(bucket, prefix=f"{prefix}/" if prefix else "", delimiter="/")
        names: list[str] = []
        for page in pages.pages:
            names.extend(p.rstrip("/").rsplit("/", 1)[-1] for p in page.prefixes)
    else:
        names = os.listdir(destination) if os.path.isdir(destination) else []
    return sorted(int(n) for n in names if _VERSION.match(n))


def version_uri(destination: str, version: int) -> str:
    return join(destination, str(version))


# ----- pushing --------------------------------------------------------------------------------------------------
def push_version(source_dir: str, destination: str, retries: int = 20) -> tuple[int, str]:
    """Publish the local ``source_dir`` as the next version under ``destination``; returns (version, uri)."""
    if not os.path.isfile(os.path.join(source_dir, SAVED_MODEL)):
        raise PushError(f"{source_dir} holds no {SAVED_MODEL}; refusing to push it.")
    push = _push_gcs if is_gcs(destination) else _push_local
    tried = 0
    for _ in range(retries):
        # Never retry a number already refused: a GCS claim can outlive a crashed push that left no files.
        version = max(max(list_versions(destination), default=0) + 1, tried + 1)
        if push(source_dir, destination, version):
            log.info("Pushed %s as version %d of %s.", source_dir, version, destination)
            return version, version_uri(destination, version)
        log.info("Version %d of %s was taken concurrently; trying the next one.", version, destination)
        tried = version
    raise PushError(f"Could not claim a new version under {destination} after {retries} attempts.")


def _push_local(source_dir: str, destination: str, version: int) -> bool:
    os.makedirs(destination, exist_ok=True)
    tmp = os.path.join(destination, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(source_dir, tmp)
        os.rename(tmp, version_uri(destination, version))  # fails if the version exists (non-empty)
        return True
    except OSError:
        if os.path.isdir(version_uri(destination, version)):
            return False
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _push_gcs(source_dir: str, destination: str, version: int) -> bool:
    from google.api_core import exceptions as gexc

    bucket_name, prefix = split_gcs(destination)
    bucket = _gcs_client().bucket(bucket_name)
    try:
        bucket.blob(posixpath.join(prefix, CLAIMS, str(version))).upload_from_string("", if_generation_match=0)
    except gexc.PreconditionFailed:
        return False
    tmp_prefix = posixpath.join(prefix, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    files = sorted(p for p in Path(source_dir).rglob("*") if p.is_file())
    rels = [p.relative_to(source_dir).as_posix() for p in files]
    for path, rel in zip(files, rels, strict=True):
        bucket.blob(posixpath.join(tmp_prefix, rel)).upload_from_filename(str(path))
    # saved_model.pb last: a version is loadable only once it exists, so readers never load a partial copy.
    for rel in sorted(rels, key=lambda r: r == SAVED_MODEL):
        source = bucket.blob(posixpath.join(tmp_prefix, rel))
        bucket.copy_blob(source, bucket, posixpath.join(prefix, str(version), rel))
    for rel in rels:
        bucket.blob(posixpath.join(tmp_prefix, rel)).delete()
    return True


def prune(destination: str, keep: int, protect: tuple[int, ...] = ()) -> list[int]:
    """Delete all but the newest ``keep`` versions (never the newest one, nor ``protect``); returns the deleted."""
    if keep < 1:
        raise ValueError(f"keep_versions must be at least 1, not {keep}.")
    versions = list_versions(destination)
    doomed = [v for v in versions[:-keep] if v not in protect]
    for version in doomed:
        uri = version_uri(destination, version)
        if is_gcs(uri):
            bucket_name, prefix = split_gcs(uri)
            client = _gcs_client()
            # saved_model.pb first, so a reader never sees a loadable version with missing variables.
            blobs = sorted(
                client.list_blobs(bucket_name, prefix=prefix + "/"), key=lambda b: not b.name.endswith(SAVED_MODEL)
            )
            for blob in blobs:
                blob.delete()
        else:
            # Rename out of the version namespace first, so the deletion itself is invisible to the server.
            doomed_dir = os.path.join(destination, f".deleting-{version}-{uuid.uuid4().hex[:8]}")
            os.rename(uri, doomed_dir)
            shutil.rmtree(doomed_dir, ignore_errors=True)
        log.info("Pruned version %d of %s.", version, destination)
    return doomed


# ----- rollback -------------------------------------------------------------------------------------------------
def _pushed_records(client: Any, pipeline: str, destination: str) -> dict[int, ArtifactRef]:
    """PushedModel artifacts of ``pipeline`` at ``destination``, by version (the newest record wins)."""
    records: dict[int, ArtifactRef] = {}
    for artifact in client.live_artifacts(pipeline, PUSHED_MODEL):
        ref = client.artifact_ref(artifact)
        if _same_destination(str(ref.properties.get("destination", "")), destination):
            version = ref.properties.get("version")
            if isinstance(version, int):
                records[version] = ref
    return records


def _same_destination(a: str, b: str) -> bool:
    if is_gcs(a) or is_gcs(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def rollback(
    destination: str,
    pipeline: str,
    to_version: int | None = None,
    client: Any = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Make ``to_version`` (default: the version before the served one) the served model, and record it.

    The target is copied to a new highest version (see the module notes), and a ``mlpipe.Rollback`` execution is
    recorded in MLMD with the target's PushedModel (and its source Model) as inputs and the new PushedModel as
    output. Returns a summary with ``version`` (the new one), ``rollback_of`` and ``rolled_back_from``.
    """
    if client is None:
        from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

        client = MetadataClient()
    versions = list_versions(destination)
    if not versions:
        raise PushError(f"Nothing is served under {destination}: it has no version directories.")
    current = versions[-1]
    if to_version is None:
        earlier = [v for v in versions if v < current]
        if not earlier:
            raise PushError(f"Version {current} is the only version under {destination}; there is nothing older.")
        to_version = earlier[-1]
    if to_version not in versions:
        raise PushError(f"Version {to_version} does not exist under {destination} (versions: {versions}).")
    if to_version == current:
        raise PushError(f"Version {to_version} is already the served (highest) version under {destination}.")

    client.register_types()
    records = _pushed_records(client, pipeline, destination)
    target = records.get(to_version)
    run_id = run_id or f"rollback-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    contexts = client.lineage_contexts(pipeline, run_id, "rollback")
    inputs: list[ArtifactRef] = []
    if target is not None:
        inputs.append(ArtifactRef(PUSHED_MODEL, target.uri, target.id, "rollback_target", target.properties))
        model_id = target.properties.get("source_model_id")
        if isinstance(model_id, int) and client.store.get_artifacts_by_id([model_id]):
            inputs.append(ArtifactRef("Model", "", model_id, "model"))
    props = {"pipeline": pipeline, "run_id": run_id, "destination": destination, "rollback_of": to_version}
    execution_id = client.start_execution(ROLLBACK_EXECUTION, contexts, inputs, props)
    try:
        source = version_uri(destination, to_version)
        if is_gcs(destination):
            with tempfile.TemporaryDirectory(prefix="mlpipe-rollback-") as local:
                download_dir(source, local)
                version, uri = push_version(local, destination)
        else:
            version, uri = push_version(source, destination)
        properties: dict[str, Any] = {
            "pushed": 1,
            "version": version,
            "destination": destination,
            "rollback_of": to_version,
            "rolled_back_from": current,
        }
        for key in ("source_model_id", "blessing_id"):
            if target is not None and target.properties.get(key) is not None:
                properties[key] = target.properties[key]
        output = ArtifactRef(PUSHED_MODEL, uri, None, "pushed_model", properties)
        summary = {**properties, "uri": uri, "execution_id": execution_id}
        client.finish_execution(execution_id, contexts, {"pushed_model": [output]}, {"summary": summary})
    except BaseException as exc:
        client.fail_execution(execution_id, f"{type(exc).__name__}: {exc}")
        raise
    summary["pushed_model_id"] = output.id
    if target is None:
        log.warning("No PushedModel record of version %d in MLMD; the rollback is recorded without it.", to_version)
    log.info("Rolled back %s: version %d now serves a copy of version %d.", destination, version, to_version)
    return summary


def write_record(path: str, record: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, sort_keys=True, default=str)
