"""Records a gate decision in MLMD: ``python -m airflow_provider_mlpipe.runtime.metadata.gate_record '<json>'``.

The gate sensors run on the Airflow side, which must not import ml_metadata, so they hand the decision to
this module in the runtime venv. A decision becomes one ``mlpipe.Gate`` execution in the pipeline, run and
node contexts, with the verdict artifact (ExampleAnomalies or ModelBlessing) as its INPUT event, so the
lineage of a withheld push says which verdict withheld it and why.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

from airflow_provider_mlpipe.protocol import FAILURE_PREFIX

GATE_EXECUTION_TYPE = "mlpipe.Gate"
log = logging.getLogger("mlpipe.runtime.gate")


def record_gate_decision(
    client: Any,  # runtime.metadata.MetadataClient; imported lazily so --help works without ml_metadata
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    if len(args) != 1:
        print(f"{FAILURE_PREFIX}usage: python -m {__spec__.name if __spec__ else __name__} '<json>'", flush=True)
        return 2
    try:
        from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

        data = json.loads(args[0])
        execution_id = record_gate_decision(
            MetadataClient(),
            data["pipeline"],
            data["run_id"],
            data["node_id"],
            data["gate"],
            data["decision"],
            data["reason"],
            data.get("input_artifact_id"),
            policy=data.get("policy", ""),
            verdict_uri=data.get("verdict_uri", ""),
        )
    except Exception as exc:
        traceback.print_exc(file=sys.stdout)
        print(f"{FAILURE_PREFIX}{type(exc).__name__}: {exc}", flush=True)
        return 1
    log.info("Recorded the %s decision %r as MLMD execution %d.", data["gate"], data["decision"], execution_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
