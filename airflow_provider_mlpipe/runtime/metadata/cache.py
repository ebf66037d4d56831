"""The execution cache: same stage spec, same inputs and same user code reuse earlier outputs.

The key hashes the stage, the node, its parameters, the MLMD ids of its input artifacts, an executor-supplied
fingerprint of anything else it reads (input files for ExampleGen, user modules for Transform and Trainer)
and the mlpipe version. A hit is recorded as a CACHED execution whose OUTPUT events point at the reused
artifacts, so lineage stays complete.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe import __version__
from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient


def cache_key(
    stage: str, node_id: str, params: dict[str, Any], inputs: dict[str, list[ArtifactRef]], fingerprint: str
) -> str:
    payload = {
        "stage": stage,
        "node": node_id,
        "params": params,
        "inputs": {slot: sorted(ref.id or ref.uri for ref in refs) for slot, refs in sorted(inputs.items())},
        "fingerprint": fingerprint,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def find_cached(
    client: MetadataClient, node_context: pb.Context, key: str
) -> tuple[int, dict[str, list[ArtifactRef]]] | None:
    """Return (execution id, outputs) of the newest COMPLETE execution with this key, if its outputs are LIVE.

    The key is matched in the database: a node's history grows by one execution per run.
    """
    if not key.isalnum():
        raise ValueError(f"{key!r} is not a cache key.")
    query = (
        f"contexts_a.id = {node_context.id} AND last_known_state = COMPLETE "
        f"AND custom_properties.cache_key.string_value = '{key}'"
    )
    matches = client.store.get_executions(list_options=metadata_store.ListOptions(filter_query=query))
    for execution in sorted(matches, key=lambda e: e.id, reverse=True):
        outputs = client.outputs_of(execution.id)
        ids = [ref.id for refs in outputs.values() for ref in refs]
        artifacts = client.store.get_artifacts_by_id(ids)
        if artifacts and all(a.state == pb.Artifact.LIVE for a in artifacts):
            return execution.id, outputs
    return None
