"""What a stage is, declared once: its params model, its inputs, its outputs, its executor and how it looks.

In the spirit of a TFX ``ComponentSpec``: the spec's stage models, the operator classes, the runtime's lineage
types and the README's stage tables are all derived from these descriptions. This module must stay importable
without Airflow and without the ML stack (pydantic is in both environments).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

# MLMD artifact type names, kept identical to TFX's so tools that know TFX read our store.
EXAMPLES = "Examples"
STATISTICS = "ExampleStatistics"
SCHEMA = "Schema"
ANOMALIES = "ExampleAnomalies"
TRANSFORM_GRAPH = "TransformGraph"
MODEL = "Model"
MODEL_EVALUATION = "ModelEvaluation"
MODEL_BLESSING = "ModelBlessing"
PUSHED_MODEL = "PushedModel"
BASELINE_RESET = "BaselineReset"  # recorded by `mlpipe baseline reset`, read by the Evaluator's baseline lookup
# mlpipe's own type (TFX has none): the served model scored on a new span, beside the candidate's evaluation.
SERVED_MODEL_EVALUATION = "mlpipe.ServedModelEvaluation"


class StageParams(BaseModel):
    """Base of every stage's params model: unknown keys are errors, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class InputSlot:
    """An input wired from an upstream stage's output of the same artifact type."""

    name: str
    artifact_type: str
    optional: bool = False


@dataclass(frozen=True)
class ResolvedInput:
    """An input the runtime looks up in MLMD rather than receiving from upstream (a TFX "resolver").

    ``strategy`` names a lookup in ``runtime.metadata.resolvers``: e.g. the previous span's statistics for
    drift, or the newest blessed model of a span not later than the candidate's as the evaluation baseline.
    """

    name: str
    artifact_type: str
    strategy: str


@dataclass(frozen=True)
class OutputSlot:
    name: str
    artifact_type: str


@dataclass(frozen=True)
class StageDescription:
    """One stage. ``executor`` is the dotted module with ``execute(ctx)`` (and optionally ``fingerprint``)."""

    name: str
    component: str
    params: type[StageParams]
    executor: str
    inputs: tuple[InputSlot, ...] = ()
    outputs: tuple[OutputSlot, ...] = ()
    resolved_inputs: tuple[ResolvedInput, ...] = ()
    uses_beam: bool = False
    user_function: str | None = None  # the function a user module must define (``module_file`` param)
    ui_color: str = "#ffffff"
    order: int = 100  # position in listings and docs tables
    doc: str = ""

    @property
    def execution_type(self) -> str:
        return f"mlpipe.{self.component}"

    @property
    def operator_name(self) -> str:
        return f"{self.component}Operator"

    @property
    def params_required(self) -> bool:
        """A stage whose params have a required field must have ``params`` in the spec."""
        return any(f.is_required() for f in self.params.model_fields.values())

    def output_types(self) -> set[str]:
        return {slot.artifact_type for slot in self.outputs}

    def artifact_types(self) -> set[str]:
        slots = (*self.inputs, *self.outputs, *self.resolved_inputs)
        return {slot.artifact_type for slot in slots}
