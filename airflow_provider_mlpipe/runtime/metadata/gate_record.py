"""Records a gate decision in MLMD (the runtime's ``gate-record`` subcommand calls this).

The gate sensors run on the Airflow side, which must not import ml_metadata, so they hand the decision to
the runtime. A decision becomes one ``mlpipe.Gate`` execution in the pipeline, run and node contexts, with the
verdict artifact (ExampleAnomalies or ModelBlessing) as its INPUT event, so the lineage of a withheld push says
which verdict withheld it and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client module imports ml_metadata; only type checkers need it here
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

GATE_EXECUTION_TYPE = "mlpipe.Gate"


def record_gate_decision(
    client: MetadataClient,
    pipeline: str,
    run_id: str,
    node_id: str,
    gate: str,
    decision: str,
    reason: str,
    input_artifact_id: int | None,
    *,
    policy: str = "",
    verdict_uri: str = "",
) -> int:
    """Create a COMPLETE ``mlpipe.Gate`` execution for one decision and return its id."""
    contexts = client.lineage_contexts(pipeline, run_id, node_id)
    inputs = []
    if input_artifact_id is not None:
        found = client.store.get_artifacts_by_id([int(input_artifact_id)])
        if not found:
            raise LookupError(f"The verdict artifact {input_artifact_id} is not in MLMD; nothing was recorded.")
        artifact = found[0]
        inputs.append(client.artifact_ref(artifact, name="verdict"))
    properties: dict[str, Any] = {
        "gate": gate,
        "decision": decision,
        "reason": reason,
        "policy": policy,
        "push_withheld": int(decision in ("fail", "skip")),
        "run_id": run_id,
    }
    if verdict_uri:
        properties["verdict_uri"] = verdict_uri
    execution_id = client.start_execution(GATE_EXECUTION_TYPE, contexts, inputs, properties)
    client.finish_execution(execution_id, contexts, {}, {})
    return execution_id
