"""People's decisions about the baseline, as the views show them: overrides (``mlpipe bless``) and baseline resets.

Both are MLMD executions of their own (``mlpipe.Override``, ``mlpipe.BaselineReset``), recorded outside any
Airflow run; the run view finds the override of its model and the reset its Evaluator ran under, the pipeline
view lists them all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from airflow_provider_mlpipe.ui.mlmd_reader import Artifact, Execution, MlmdReader

OVERRIDE, RESET = "override", "baseline reset"


@dataclass
class Decision:
    kind: str  # OVERRIDE or RESET
    execution_id: int
    state: str
    user: str
    reason: str
    when: str  # UTC, to the second
    model_id: int | None = None  # an override's model
    run_id: str = ""  # an override: the run whose NOT_BLESSED verdict it overrode
    span: Any = None  # a reset: the first span it applies to; an override: the model's

    @property
    def badge(self) -> str:
        return "blessed by override" if self.kind == OVERRIDE else "baseline reset"


def _when(execution: Execution) -> str:
    if not execution.created_ms:
        return ""
    return dt.datetime.fromtimestamp(execution.created_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _decision(kind: str, execution: Execution) -> Decision:
    props = execution.properties
    model_id = props.get("model_id")
    summary = props.get("summary") if isinstance(props.get("summary"), dict) else {}
    return Decision(
        kind=kind,
        execution_id=execution.id,
        state=execution.state,
        user=str(props.get("user", "")),
        reason=str(props.get("reason", "")),
        when=_when(execution),
        model_id=model_id if isinstance(model_id, int) else None,
        run_id=str(props.get("model_run_id", "")),
        span=props.get("span", summary.get("span")),
    )


def pipeline_decisions(reader: MlmdReader, pipeline: str) -> list[Decision]:
    """Every completed override and reset of the pipeline, oldest first."""
    found = [
        _decision(kind, execution)
        for kind, type_part in ((OVERRIDE, "mlpipe.Override"), (RESET, "mlpipe.BaselineReset"))
        for execution in reader.pipeline_executions_like(pipeline, type_part)
        if execution.state == "COMPLETE"
    ]
    return sorted(found, key=lambda d: d.execution_id)


def override_of(decisions: list[Decision], model_id: Any) -> Decision | None:
    """The override that blessed this model, if any."""
    return next((d for d in decisions if d.kind == OVERRIDE and d.model_id == model_id and model_id is not None), None)


def overridden_runs(decisions: list[Decision]) -> dict[str, Decision]:
    """run id -> the override of the model that run's Evaluator did not bless."""
    return {d.run_id: d for d in decisions if d.kind == OVERRIDE and d.run_id}


def reset_of(reader: MlmdReader, evaluation: Artifact | None, artifacts: dict[int, Artifact]) -> Decision | None:
    """The baseline reset this run's Evaluator ran under (no baseline, value thresholds only), if any."""
    reset_id = evaluation.properties.get("baseline_reset_id") if evaluation is not None else None
    if not isinstance(reset_id, int):
        return None
    artifact = artifacts.get(reset_id) or reader.artifacts([reset_id]).get(reset_id)
    if artifact is None:
        return None
    props = artifact.properties
    when = str(props.get("recorded_at", ""))[:19].replace("T", " ")
    return Decision(
        RESET, 0, "COMPLETE", str(props.get("user", "")), str(props.get("reason", "")), when, span=props.get("span")
    )
