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

Version records: ``<destination>/.mlpipe-versions/<version>.json`` says which span, model and pipeline each version
holds (a rollback copy carries its target's span). The Pusher reads the served version's record to refuse a model
trained on an older span; the records live beside the versions, not in them, so a version stays byte-identical to
the SavedModel that was pushed, and TF Serving ignores the hidden folder as it ignores any non-numeric name. A
record is written as soon as its version number is won, so a version without one predates these records.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.storage import default_storage, is_gcs, join

log = logging.getLogger("mlpipe.runtime.push")

_VERSION = re.compile(r"^[0-9]+$")
SAVED_MODEL = "saved_model.pb"
CLAIMS = ".mlpipe-claims"
VERSION_RECORDS = ".mlpipe-versions"
PUSHED_MODEL = "PushedModel"
ROLLBACK_EXECUTION = "mlpipe.Rollback"


class PushError(RuntimeError):
    """A push or rollback could not be done."""


# ----- listing --------------------------------------------------------------------------------------------------
def list_versions(destination: str) -> list[int]:
    """Integer version directories under ``destination``, ascending (hidden temporary folders are ignored)."""
    if is_gcs(destination):
        names = default_storage().list_dirs(destination)
    else:
        names = os.listdir(destination) if os.path.isdir(destination) else []
    return sorted(int(n) for n in names if _VERSION.match(n))


def version_uri(destination: str, version: int) -> str:
    return join(destination, str(version))


def _record_uri(destination: str, version: int) -> str:
    return join(destination, VERSION_RECORDS, f"{version}.json")


def read_version_record(destination: str, version: int) -> dict[str, Any] | None:
    """What a version holds (``span``, ``source_model_id``, ``pipeline``...), or None when it has no record."""
    uri = _record_uri(destination, version)
    try:
        record = json.loads(default_storage().read_text(uri))
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("The version record %s is not valid JSON; treating version %d as unrecorded.", uri, version)
        return None
    return record if isinstance(record, dict) else None


def served_version(destination: str) -> tuple[int, dict[str, Any] | None] | None:
    """The version TF Serving serves (the highest) and its record, or None when nothing is served."""
    versions = list_versions(destination)
    if not versions:
        return None
    return versions[-1], read_version_record(destination, versions[-1])


# ----- pushing --------------------------------------------------------------------------------------------------
def push_version(
    source_dir: str, destination: str, record: dict[str, Any] | None = None, retries: int = 20
) -> tuple[int, str]:
    """Publish the local ``source_dir`` as the next version under ``destination``; returns (version, uri).

    ``record`` (the span and model the version holds) becomes the version's record as soon as the number is won.
    """
    if not os.path.isfile(os.path.join(source_dir, SAVED_MODEL)):
        raise PushError(f"{source_dir} holds no {SAVED_MODEL}; refusing to push it.")
    push = _push_gcs if is_gcs(destination) else _push_local
    tried = 0
    for _ in range(retries):
        # Never retry a number already refused: a GCS claim can outlive a crashed push that left no files.
        version = max(max(list_versions(destination), default=0) + 1, tried + 1)
        if push(source_dir, destination, version, record):
            log.info("Pushed %s as version %d of %s.", source_dir, version, destination)
            return version, version_uri(destination, version)
        log.info("Version %d of %s was taken concurrently; trying the next one.", version, destination)
        tried = version
    raise PushError(f"Could not claim a new version under {destination} after {retries} attempts.")


def _push_local(source_dir: str, destination: str, version: int, record: dict[str, Any] | None = None) -> bool:
    os.makedirs(destination, exist_ok=True)
    tmp = os.path.join(destination, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(source_dir, tmp)
        os.rename(tmp, version_uri(destination, version))  # fails if the version exists (non-empty)
    except OSError:
        if os.path.isdir(version_uri(destination, version)):
            return False
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _write_version_record(destination, version, record or {})
    return True


def _push_gcs(source_dir: str, destination: str, version: int, record: dict[str, Any] | None = None) -> bool:
    storage = default_storage()
    if not storage.create_exclusive(join(destination, CLAIMS, str(version))):
        return False
    # The claim is ours, and the version is not loadable yet: its record is in place before it can be served.
    _write_version_record(destination, version, record or {})
    tmp_prefix = join(destination, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    rels = [p.relative_to(source_dir).as_posix() for p in sorted(Path(source_dir).rglob("*")) if p.is_file()]
    storage.upload_dir(source_dir, tmp_prefix)
    # saved_model.pb last: a version is loadable only once it exists, so readers never load a partial copy.
    for rel in sorted(rels, key=lambda r: r == SAVED_MODEL):
        storage.copy(join(tmp_prefix, rel), join(version_uri(destination, version), rel))
    storage.delete_prefix(tmp_prefix)
    return True


def _write_version_record(destination: str, version: int, record: dict[str, Any]) -> None:
    stamped = {**record, "version": version, "recorded_at": dt.datetime.now(dt.UTC).isoformat()}
    text = json.dumps(stamped, indent=1, sort_keys=True, default=str)
    default_storage().write_text(_record_uri(destination, version), text)


def _delete_version_record(destination: str, version: int) -> None:
    default_storage().delete(_record_uri(destination, version))


def prune(destination: str, keep: int, protect: tuple[int, ...] = ()) -> list[int]:
    """Delete all but the newest ``keep`` versions (never the newest one, nor ``protect``); returns the deleted."""
    if keep < 1:
        raise ValueError(f"keep_versions must be at least 1, not {keep}.")
    versions = list_versions(destination)
    doomed = [v for v in versions[:-keep] if v not in protect]
    for version in doomed:
        uri = version_uri(destination, version)
        if is_gcs(uri):
            # saved_model.pb first, so a reader never sees a loadable version with missing variables.
            default_storage().delete_prefix(uri, first=SAVED_MODEL)
        else:
            # Rename out of the version namespace first, so the deletion itself is invisible to the server.
            doomed_dir = os.path.join(destination, f".deleting-{version}-{uuid.uuid4().hex[:8]}")
            os.rename(uri, doomed_dir)
            shutil.rmtree(doomed_dir, ignore_errors=True)
        _delete_version_record(destination, version)
        log.info("Pruned version %d of %s.", version, destination)
    return doomed


# ----- rollback -------------------------------------------------------------------------------------------------
def pushed_records(client: Any, pipeline: str, destination: str) -> dict[int, ArtifactRef]:
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
    keep_versions: int | None = None,
) -> dict[str, Any]:
    """Make ``to_version`` (default: the version before the served one) the served model, and record it.

    The target is copied to a new highest version (see the module notes), and a ``mlpipe.Rollback`` execution is
    recorded in MLMD with the target's PushedModel (and its source Model) as inputs and the new PushedModel as
    output. ``keep_versions`` then prunes as after a push, but never the new version nor the target. Returns a
    summary with ``version`` (the new one), ``rollback_of``, ``rolled_back_from`` and ``pruned``.
    """
    if client is None:
        from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

        client = MetadataClient()
    current, to_version = _rollback_target(destination, to_version)
    if keep_versions is not None and keep_versions < 1:
        raise PushError(f"Cannot roll back {destination}: keep_versions must be at least 1, not {keep_versions}.")

    client.register_types()
    target = pushed_records(client, pipeline, destination).get(to_version)
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
    # What the copy holds is what the target holds: its span decides what the Pusher may push over it.
    held = {**(target.properties if target is not None else {}), **(read_version_record(destination, to_version) or {})}
    record = {key: held[key] for key in ("span", "source_model_id", "blessing_id") if held.get(key) is not None}
    try:
        source = version_uri(destination, to_version)
        record = {**record, "pipeline": pipeline, "rollback_of": to_version}
        if is_gcs(destination):
            with tempfile.TemporaryDirectory(prefix="mlpipe-rollback-") as local:
                default_storage().download_dir(source, local)
                version, uri = push_version(local, destination, record)
        else:
            version, uri = push_version(source, destination, record)
        properties: dict[str, Any] = {
            **record,
            "pushed": 1,
            "version": version,
            "destination": destination,
            "rolled_back_from": current,
        }
        properties.pop("pipeline")
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
    summary["pruned"] = _prune_after_rollback(destination, keep_versions, version, to_version)
    return summary


def _rollback_target(destination: str, to_version: int | None) -> tuple[int, int]:
    """The served version and the version to serve again, or a PushError that says why there is none."""
    versions = list_versions(destination)
    if not versions:
        raise PushError(f"Cannot roll back: nothing is served under {destination} (it has no version folders).")
    current = versions[-1]
    if to_version is None:
        earlier = [v for v in versions if v < current]
        if not earlier:
            raise PushError(
                f"Cannot roll back: version {current} is the only version under {destination}, so there is "
                "nothing older to serve."
            )
        to_version = earlier[-1]
    if to_version not in versions:
        raise PushError(
            f"Cannot roll back to version {to_version}: it does not exist under {destination} "
            f"(the versions there are {', '.join(map(str, versions))})."
        )
    if to_version == current:
        raise PushError(
            f"Cannot roll back to version {to_version}: it is already the served (highest) version under {destination}."
        )
    return current, to_version


def _prune_after_rollback(destination: str, keep: int | None, served: int, target: int) -> list[int]:
    if not keep:
        return []
    try:
        pruned = prune(destination, keep, protect=(served, target))
    except Exception as exc:
        raise PushError(
            f"Version {served} now serves a copy of version {target}, but pruning to {keep} versions failed: {exc}"
        ) from exc
    if pruned:
        log.info("keep_versions=%d: pruned versions %s of %s.", keep, pruned, destination)
    return pruned


def write_record(path: str, record: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, sort_keys=True, default=str)
