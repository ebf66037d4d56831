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


__all__ = [
    "ANOMALIES",
    "EXAMPLES",
    "MODEL",
    "MODEL_BLESSING",
    "MODEL_EVALUATION",
    "PUSHED_MODEL",
    "SCHEMA",
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
]
