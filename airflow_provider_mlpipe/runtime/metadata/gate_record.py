"""Records a gate decision or a person's approval in MLMD (the runtime's ``gate-record`` subcommand calls this).

The gate sensors and the approval operator run on the Airflow side, which must not import ml_metadata, so they
hand the decision to the runtime. A gate's decision becomes one ``mlpipe.Gate`` execution, an approval one
``mlpipe.Approval`` execution, in the pipeline, run and node contexts, with the verdict artifact (ExampleAnomalies
or ModelBlessing) as an INPUT event (an approval also has the candidate Model), so the lineage of a withheld push
says which verdict or which person withheld it and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client module imports ml_metadata; only type checkers need it here
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

GATE_EXECUTION_TYPE = "mlpipe.Gate"
APPROVAL_EXECUTION_TYPE = "mlpipe.Approval"
APPROVAL_GATE = "approval"
WITHHOLDING = ("fail", "skip", "reject")  # decisions that hold the push back


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
    model_artifact_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Create a COMPLETE ``mlpipe.Gate`` (``mlpipe.Approval`` for the approval gate) execution; return its id.

    :param model_artifact_id: the candidate Model an approval was about (a second INPUT event).
    :param details: further properties, e.g. an approval's ``approver``, ``responded_at``, ``timed_out``.
    """
    contexts = client.lineage_contexts(pipeline, run_id, node_id)
    inputs = []
    for slot, artifact_id in (("verdict", input_artifact_id), ("model", model_artifact_id)):
        if artifact_id is None:
            continue
        found = client.store.get_artifacts_by_id([int(artifact_id)])
        if not found:
            raise LookupError(f"The {slot} artifact {artifact_id} is not in MLMD; nothing was recorded.")
        inputs.append(client.artifact_ref(found[0], name=slot))
    properties: dict[str, Any] = {
        "gate": gate,
        "decision": decision,
        "reason": reason,
        "policy": policy,
        "push_withheld": int(decision in WITHHOLDING),
        "run_id": run_id,
        **{k: v for k, v in (details or {}).items() if v is not None},
    }
    if verdict_uri:
        properties["verdict_uri"] = verdict_uri
    execution_type = APPROVAL_EXECUTION_TYPE if gate == APPROVAL_GATE else GATE_EXECUTION_TYPE
    execution_id = client.start_execution(execution_type, contexts, inputs, properties)
    client.finish_execution(execution_id, contexts, {}, {})
    return execution_id
