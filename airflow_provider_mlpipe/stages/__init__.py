"""The pipeline stages: one module per stage holds its params model and its ``DESCRIPTION``.

Adding a stage means one module here (or anywhere, named in ``MLPIPE_STAGE_MODULES``) and one executor module;
see docs/adding-a-stage.md.
"""

from __future__ import annotations

from airflow_provider_mlpipe.stages.description import (
    ANOMALIES,
    EXAMPLES,
    MODEL,
    MODEL_BLESSING,
    MODEL_EVALUATION,
    PUSHED_MODEL,
    SCHEMA,
    SERVED_MODEL_EVALUATION,
    STATISTICS,
    TRANSFORM_GRAPH,
    InputSlot,
    OutputSlot,
    ResolvedInput,
    StageDescription,
    StageParams,
)
from airflow_provider_mlpipe.stages.registry import STAGE_MODULES_ENV, StageRegistry

REGISTRY = StageRegistry()
REGISTRY.load_builtin()
REGISTRY.load_from_env()


def all_stages() -> dict[str, StageDescription]:
    """Every known stage by name, in pipeline order."""
    return REGISTRY.ordered()


def get_stage(name: str, module: str | None = None) -> StageDescription:
    """The stage called ``name``; ``module`` (a stage request's) is imported first when the stage is unknown."""
    return REGISTRY.get(name, module)


def stage_module(name: str) -> str:
    """The module that defines the stage, which a stage request carries to the runtime."""
    return REGISTRY.module_of(name)


def stages_table() -> str:
    """The README's table of stages, derived from the descriptions (a test keeps the README in step)."""
    rows = ["| stage | spec `kind` | inputs → outputs | what it does |", "|---|---|---|---|"]
    for stage in all_stages().values():
        inputs = ", ".join(f"`{slot.name}`" + (" (optional)" if slot.optional else "") for slot in stage.inputs)
        outputs = ", ".join(f"`{slot.name}`" for slot in stage.outputs)
        flow = f"{inputs or '—'} → {outputs}"
        rows.append(f"| {stage.component} | `{stage.name}` | {flow} | {stage.doc} |")
    return "\n".join(rows) + "\n"


__all__ = [
    "ANOMALIES",
    "EXAMPLES",
    "MODEL",
    "MODEL_BLESSING",
    "MODEL_EVALUATION",
    "PUSHED_MODEL",
    "SCHEMA",
    "SERVED_MODEL_EVALUATION",
    "STAGE_MODULES_ENV",
    "STATISTICS",
    "TRANSFORM_GRAPH",
    "InputSlot",
    "OutputSlot",
    "ResolvedInput",
    "StageDescription",
    "StageParams",
    "all_stages",
    "get_stage",
    "stage_module",
    "stages_table",
]
