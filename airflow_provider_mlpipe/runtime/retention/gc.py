"""Apply a garbage-collection plan, and say what it did (or, in a dry run, would do) and what it kept and why.

Deleting one artifact: MLMD first marks it ``MARKED_FOR_DELETION`` (no resolver or cache lookup uses it from
then on, as both read LIVE artifacts only), then its files go, completion marker first so a half-deleted folder
never looks finished, then MLMD marks it ``DELETED`` with ``deleted_at``. A gc killed half-way leaves artifacts
marked for deletion, which the next gc finishes. Lineage events stay, so runs keep showing what they made.
"""

from __future__ import annotations

import datetime as dt
import logging

from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.runtime.io.artifact_store import ArtifactStore
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
from airflow_provider_mlpipe.runtime.retention.plan import GcPlan, Planner, RetentionPolicy
from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.storage import Storage

log = logging.getLogger("mlpipe.runtime.gc")


def collect(
    client: MetadataClient,
    pipeline: str,
    pipeline_root: str,
    destinations: list[str],
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> GcPlan:
    """Plan, and unless ``dry_run`` delete what the plan says; returns the plan."""
    storage = Storage()
    plan = Planner(client, pipeline, pipeline_root, destinations, policy, now, storage).plan()
    if dry_run:
        return plan
    store = ArtifactStore(pipeline_root, storage=storage)
    for entry in plan.delete:
        _set_state(client, entry.id, pb.Artifact.MARKED_FOR_DELETION)
        store.unpublish(entry.uri)
        _set_state(client, entry.id, pb.Artifact.DELETED)
        log.info("Deleted artifact %d (%s, span %s): %s", entry.id, entry.type, entry.span, entry.uri)
    if policy.keep_versions:
        for destination in destinations:
            model_versions.prune(destination, policy.keep_versions)
    for leftover in plan.leftovers:
        storage.delete_tree(leftover.uri)
        log.info("Removed the leftover %s (%s).", leftover.uri, leftover.reason)
    return plan


def _set_state(client: MetadataClient, artifact_id: int, state: int) -> None:
    deleted = {"deleted_at": dt.datetime.now(dt.UTC).isoformat()} if state == pb.Artifact.DELETED else {}
    client.set_artifact_state(artifact_id, state, deleted)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def report(plan: GcPlan, dry_run: bool) -> str:
    """The plan for people: each deletion with its MLMD id, type, span, run, size and URI; each kept one and why."""
    verb = "Would delete" if dry_run else "Deleted"
    total = plan.to_dict()["bytes"]
    lines = [
        f"mlpipe gc {plan.pipeline}{' (dry run)' if dry_run else ''}: {len(plan.delete)} artifacts, "
        f"{len(plan.prune)} pushed versions and {len(plan.leftovers)} leftovers, {_size(total)}."
    ]
    if plan.delete:
        lines.append(f"{verb} artifacts:")
        for e in plan.delete:
            lines.append(f"  #{e.id} {e.type} span {e.span} run {e.run_id} {_size(e.size)} {e.uri}")
    if plan.prune:
        lines.append(f"{'Would prune' if dry_run else 'Pruned'} pushed versions (keep_versions):")
        for v in plan.prune:
            uri = model_versions.version_uri(v.destination, v.version)
            lines.append(f"  version {v.version} span {v.span} {_size(v.size)} {uri}")
    if plan.leftovers:
        lines.append(f"{'Would remove' if dry_run else 'Removed'} leftovers:")
        for item in plan.leftovers:
            lines.append(f"  {item.uri} {_size(item.size)}, {item.age_s:.0f} s old: {item.reason}")
    if plan.keep:
        lines.append("Kept:")
        for e in plan.keep:
            lines.append(f"  #{e.id} {e.type} span {e.span} run {e.run_id}: {'; '.join(e.reasons)}")
    return "\n".join(lines)
