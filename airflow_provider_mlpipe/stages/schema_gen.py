"""SchemaGen: infers a schema or imports a curated one, and diffs it against the previous schema."""

from __future__ import annotations

from pydantic import Field

from airflow_provider_mlpipe.stages.description import (
    SCHEMA,
    STATISTICS,
    InputSlot,
    OutputSlot,
    ResolvedInput,
    StageDescription,
    StageParams,
)


class SchemaGenParams(StageParams):
    schema_file: str | None = Field(None, description="A curated schema.pbtxt, relative to the spec's folder.")
    infer_feature_shape: bool = True
    allow_missing: bool | list[str] | None = Field(
        None, description="Inferred schema lets these features (true: all) be absent in some examples."
    )


DESCRIPTION = StageDescription(
    name="schema_gen",
    component="SchemaGen",
    params=SchemaGenParams,
    executor="airflow_provider_mlpipe.runtime.executors.schema_gen",
    inputs=(InputSlot("statistics", STATISTICS),),
    resolved_inputs=(ResolvedInput("previous_schema", SCHEMA, "previous_output"),),
    outputs=(OutputSlot("schema", SCHEMA),),
    ui_color="#d9ead3",
    order=30,
    doc="infers a schema or imports a curated `.pbtxt`; records which, and the diff against the previous schema",
)
