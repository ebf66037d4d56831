"""Leftovers of killed stages and pushes: ``.staging`` entries and hidden ``.tmp-*`` folders nobody will publish.

Where they are (``runtime/io/artifact_store.py``, ``runtime/serving/model_versions.py``):

- a local root stages each output at ``<root>/<pipeline>/<node>/.staging/<execution id>-<slot>-<token>``;
- a ``gs://`` root stages at ``<root>/.staging/<pipeline>-<node>-<execution id>-<slot>-<token>``, and a Beam
  stage's scratch at ``<root>/.staging/<node>-tmp-<token>``;
- a push copies into ``<destination>/.tmp-<version>-<token>`` (and a local prune renames to ``.deleting-*``).

One is removed only when it is older than ``min_age`` (the longest stage timeout: a live stage would have been
stopped by then) **and** no RUNNING execution in MLMD owns it, so a slow stage that is still writing keeps its
staging, whatever its age.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ml_metadata.metadata_store import metadata_store

from airflow_provider_mlpipe.runtime.io.artifact_store import STAGING_DIR
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.serving.model_versions import ROLLBACK_EXECUTION
from airflow_provider_mlpipe.stages import all_stages
from airflow_provider_mlpipe.storage import Storage, is_gcs, join

_SCRATCH = re.compile(r"^(?P<node>.+)-tmp-[0-9a-f]{12}$")
_SERVING_TEMP = (".tmp-", ".deleting-")


@dataclass
class Leftover:
    uri: str
    size: int
    age_s: float
    reason: str


@dataclass(frozen=True)
class _Running:
    pipeline: str
    node: str
    execution_id: int
    type_name: str


def running_executions(client: MetadataClient) -> list[_Running]:
    """Every RUNNING execution in the store (staging under a shared root may belong to any pipeline)."""
    types = {t.id: t.name for t in client.store.get_execution_types()}
    running = []
    # Filtered by MLMD's own query, so a store of years of runs is not read whole.
    only_running = metadata_store.ListOptions(filter_query="last_known_state = RUNNING")
    for execution in client.store.get_executions(list_options=only_running):
        props = properties_of(execution)
        node = str(props.get("node_id", ""))
        running.append(_Running(str(props.get("pipeline", "")), node, execution.id, types.get(execution.type_id, "")))
    return running


def _owner(name: str, local: bool, running: list[_Running]) -> _Running | None:
    for run in running:
        if local and name.startswith(f"{run.execution_id}-"):
            return run
        if not local and name.startswith(f"{run.pipeline}-{run.node}-{run.execution_id}-"):
            return run
        scratch = _SCRATCH.match(name)
        if not local and scratch and scratch.group("node") == run.node:
            return run
    return None


def _staging_entries(storage: Storage, pipeline: str, root: str) -> list[tuple[str, str, bool]]:
    """(uri, name, is_local) of every staging entry of ``pipeline`` under ``root``."""
    if is_gcs(root):
        folder = join(root, STAGING_DIR)
        names = storage.list_dirs(folder)
        ours = [n for n in names if n.startswith(f"{pipeline}-") or _SCRATCH.match(n)]
        return [(join(folder, n), n, False) for n in ours]
    entries = []
    for node in storage.list_dirs(join(root, pipeline)):
        folder = join(root, pipeline, node, STAGING_DIR)
        entries += [(join(folder, n), n, True) for n in storage.list_dirs(folder)]
    return entries


def find_leftovers(
    client: MetadataClient,
    pipeline: str,
    root: str,
    destinations: list[str],
    min_age: dt.timedelta,
    now: dt.datetime,
    storage: Storage,
) -> list[Leftover]:
    running = running_executions(client)
    pushers = {all_stages()["pusher"].execution_type, ROLLBACK_EXECUTION}
    pushing = [r for r in running if r.pipeline == pipeline and r.type_name in pushers]
    candidates = [(uri, _owner(name, local, running)) for uri, name, local in _staging_entries(storage, pipeline, root)]
    for destination in destinations:
        for name in storage.list_dirs(destination):
            if name.startswith(_SERVING_TEMP):
                candidates.append((join(destination, name), pushing[0] if pushing else None))
    found = []
    for uri, owner in candidates:
        size, changed = storage.usage(uri)
        age = now.timestamp() - changed if changed is not None else float("inf")
        if owner is not None or age <= min_age.total_seconds():
            continue
        found.append(Leftover(uri, size, round(age, 1), f"older than {min_age} and no running execution owns it"))
    return found
