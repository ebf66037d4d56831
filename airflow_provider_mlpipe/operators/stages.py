"""One thin operator per stage. All behaviour lives in MlpipeStageOperator and the runtime executor."""

from __future__ import annotations

from airflow_provider_mlpipe.operators.stage import MlpipeStageOperator


class RuntimeProbeOperator(MlpipeStageOperator):
    stage_kind = "probe"


class ExampleGenOperator(MlpipeStageOperator):
    stage_kind = "example_gen"
    ui_color = "#d9ead3"


class StatisticsGenOperator(MlpipeStageOperator):
    stage_kind = "statistics_gen"
    ui_color = "#d9ead3"


class SchemaGenOperator(MlpipeStageOperator):
    stage_kind = "schema_gen"
    ui_color = "#d9ead3"


class ExampleValidatorOperator(MlpipeStageOperator):
    stage_kind = "example_validator"
    ui_color = "#fff2cc"


class TransformOperator(MlpipeStageOperator):
    stage_kind = "transform"
    ui_color = "#d0e0e3"


class TrainerOperator(MlpipeStageOperator):
    stage_kind = "trainer"
    ui_color = "#d0e0e3"


class EvaluatorOperator(MlpipeStageOperator):
    stage_kind = "evaluator"
    ui_color = "#fff2cc"


class PusherOperator(MlpipeStageOperator):
    stage_kind = "pusher"
    ui_color = "#f4cccc"


OPERATORS: dict[str, type[MlpipeStageOperator]] = {
    cls.stage_kind: cls
    for cls in (
        RuntimeProbeOperator,
        ExampleGenOperator,
        StatisticsGenOperator,
        SchemaGenOperator,
        ExampleValidatorOperator,
        TransformOperator,
        TrainerOperator,
        EvaluatorOperator,
        PusherOperator,
    )
}


def operator_for(stage: str) -> type[MlpipeStageOperator]:
    return OPERATORS.get(stage, MlpipeStageOperator)
