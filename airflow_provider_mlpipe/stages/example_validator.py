"""ExampleValidator: statistics against the schema, with drift, skew and schema-change checks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from airflow_provider_mlpipe.stages.description import (
    ANOMALIES,
    SCHEMA,
    STATISTICS,
    InputSlot,
    OutputSlot,
    ResolvedInput,
    StageDescription,
    StageParams,
)


class Comparator(StageParams):
    comparator: Literal["linf", "jsd"] | None = Field(None, description="Default: jsd numeric, linf categorical.")
    threshold: float = Field(ge=0)


class SkewConfig(BaseModel):
    """``serving_statistics`` (a URI), ``serving_split``, plus feature -> comparator entries."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "additionalProperties": {
                "type": "object",
                "properties": {"comparator": {"enum": ["linf", "jsd"]}, "threshold": {"type": "number", "minimum": 0}},
                "required": ["threshold"],
                "additionalProperties": False,
            }
        },
    )
    serving_statistics: str
    serving_split: str | None = None

    @model_validator(mode="after")
    def _features(self) -> SkewConfig:
        extra = self.model_extra or {}
        for feature, value in extra.items():
            extra[feature] = Comparator.model_validate(value)
        return self

    def comparators(self) -> dict[str, Comparator]:
        return dict(self.model_extra or {})


class ExampleValidatorParams(StageParams):
    drift: dict[str, Comparator] = Field(default_factory=dict)
    schema_changes: bool = Field(
        True, description="Report SchemaGen's changes against the previous schema (a dropped column is an ERROR)."
    )
    skew: SkewConfig | None = None


DESCRIPTION = StageDescription(
    name="example_validator",
    component="ExampleValidator",
    params=ExampleValidatorParams,
    executor="airflow_provider_mlpipe.runtime.executors.example_validator",
    inputs=(InputSlot("statistics", STATISTICS), InputSlot("schema", SCHEMA)),
    resolved_inputs=(ResolvedInput("previous_statistics", STATISTICS, "previous_span_statistics"),),
    outputs=(OutputSlot("anomalies", ANOMALIES),),
    ui_color="#fff2cc",
    order=40,
    doc=(
        "anomalies against the schema, drift against the previous span's statistics (from MLMD), optional skew "
        "against serving statistics; a `blessed` property as in TFX and an `anomalies.json` summary"
    ),
)
