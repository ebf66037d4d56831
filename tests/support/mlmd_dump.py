"""Dumps an MLMD store as one JSON line. Runs in .venv-runtime; used by Airflow-side tests."""

import json
import sys

from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of


def main() -> None:
    client = MetadataClient(json.loads(sys.argv[1]), retries=1)
    store = client.store
    atypes = {t.id: t.name for t in store.get_artifact_types()}
    etypes = {t.id: t.name for t in store.get_execution_types()}
    ctypes = {t.id: t.name for t in store.get_context_types()}
    states = {v: k for k, v in pb.Execution.State.items()}
    astates = {v: k for k, v in pb.Artifact.State.items()}
    executions = store.get_executions()
    contexts = store.get_contexts()
    out = {
        "artifacts": [
            {
                "id": a.id,
                "type": atypes[a.type_id],
                "uri": a.uri,
                "state": astates[a.state],
                "properties": properties_of(a),
            }
            for a in store.get_artifacts()
        ],
        "executions": [
            {
                "id": e.id,
                "type": etypes[e.type_id],
                "state": states[e.last_known_state],
                "properties": properties_of(e),
                "contexts": [c.id for c in store.get_contexts_by_execution(e.id)],
            }
            for e in executions
        ],
        "events": [
            {
                "execution_id": ev.execution_id,
                "artifact_id": ev.artifact_id,
                "type": "INPUT" if ev.type == pb.Event.INPUT else "OUTPUT",
                "slot": ev.path.steps[0].key if ev.path.steps else "",
            }
            for ev in store.get_events_by_execution_ids([e.id for e in executions])
        ],
        "contexts": [{"id": c.id, "type": ctypes[c.type_id], "name": c.name} for c in contexts],
    }
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
