"""One thin operator class per stage, derived from its description (name, UI colour).

All behaviour lives in ``MlpipeStageOperator`` and the runtime executor. The built-in classes are module
attributes (``ExampleGenOperator`` …) so DAG authors can import them; any stage, including one added through
``MLPIPE_STAGE_MODULES``, gets its class from ``operator_for``.
"""

from __future__ import annotations

from airflow_provider_mlpipe.operators.stage import MlpipeStageOperator
from airflow_provider_mlpipe.stages import StageDescription, get_stage

_OPERATORS: dict[str, type[MlpipeStageOperator]] = {}


def _operator_class(stage: StageDescription) -> type[MlpipeStageOperator]:
    namespace = {
        "stage_kind": stage.name,
        "ui_color": stage.ui_color,
        "__module__": __name__,
        "__doc__": f"Runs the {stage.component} stage: {stage.doc}",
    }
    return type(stage.operator_name, (MlpipeStageOperator,), namespace)


def operator_for(stage: str) -> type[MlpipeStageOperator]:
    """The operator class of a stage (one class per stage, created once)."""
    if stage not in _OPERATORS:
        _OPERATORS[stage] = _operator_class(get_stage(stage))
    return _OPERATORS[stage]


ExampleGenOperator = operator_for("example_gen")
StatisticsGenOperator = operator_for("statistics_gen")
SchemaGenOperator = operator_for("schema_gen")
ExampleValidatorOperator = operator_for("example_validator")
TransformOperator = operator_for("transform")
TrainerOperator = operator_for("trainer")
EvaluatorOperator = operator_for("evaluator")
PusherOperator = operator_for("pusher")
