"""Records a run whose every stage is a cache hit of another run's, as the runner does (runs in .venv-runtime).

``python ui_cached_run.py <pipeline> <source run id> <new run id>`` with ``MLPIPE_MLMD_CONFIG`` set: for each
execution of the source run, a CACHED execution in the new run with the same inputs, the source's outputs and
``cached_from`` (the runner's ``finish_execution(..., {"cached_from": id}, State.CACHED)``). Prints
``RESULT`` and the new run's StageResults by task id, as the UI fixture pipeline does.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def record_cached_run(pipeline: str, source_run: str, new_run: str) -> dict[str, Any]:
    from ml_metadata.proto import metadata_store_pb2 as pb

    from airflow_provider_mlpipe.protocol import StageResult
    from airflow_provider_mlpipe.runtime.metadata.client import RUN_CONTEXT, MetadataClient, State, properties_of

    client = MetadataClient()
    source_ctx = client.store.get_context_by_type_and_name(RUN_CONTEXT, f"{pipeline}.{source_run}")
    results: dict[str, Any] = {}
    for source in client.executions_in_context(source_ctx):
        if source.last_known_state not in (State.COMPLETE, State.CACHED):
            continue
        props = properties_of(source)
        original = props.get("cached_from", source.id)  # a hit of a hit reuses the original
        node_id = props["node_id"]
        contexts = client.lineage_contexts(pipeline, new_run, node_id)
        events = client.store.get_events_by_execution_ids([source.id])
        slots = {e.artifact_id: e.path.steps[0].key for e in events if e.type == pb.Event.INPUT and e.path.steps}
        inputs = [client.artifact_ref(a, slots[a.id]) for a in client.store.get_artifacts_by_id(list(slots))]
        [execution_type] = client.store.get_execution_types_by_id([source.type_id])
        base = {"pipeline": pipeline, "node_id": node_id, "run_id": new_run, "cache_key": props.get("cache_key", "")}
        execution_id = client.start_execution(execution_type.name, contexts, inputs, base)
        outputs = client.outputs_of(source.id)
        client.finish_execution(execution_id, contexts, outputs, {"cached_from": original}, State.CACHED)
        results[node_id] = StageResult(node_id, execution_id, True, outputs, {"cached_from": original}).to_dict()
    return results


if __name__ == "__main__":
    print("RESULT " + json.dumps(record_cached_run(*sys.argv[1:4]), default=str))
