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

from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe import __version__
from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of


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
    """Return (execution id, outputs) of the newest COMPLETE execution with this key, if its outputs are LIVE."""
    for execution in reversed(client.executions_in_context(node_context)):
        if execution.last_known_state != pb.Execution.COMPLETE:
            continue
        if properties_of(execution).get("cache_key") != key:
            continue
        outputs = client.outputs_of(execution.id)
        ids = [ref.id for refs in outputs.values() for ref in refs]
        artifacts = client.store.get_artifacts_by_id(ids)
        if artifacts and all(a.state == pb.Artifact.LIVE for a in artifacts):
            return execution.id, outputs
    return None
