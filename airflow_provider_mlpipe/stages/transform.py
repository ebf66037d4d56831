"""Transform: tf.Transform on Beam with the user's ``preprocessing_fn``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airflow_provider_mlpipe.stages.description import (
    EXAMPLES,
    SCHEMA,
    TRANSFORM_GRAPH,
    InputSlot,
    OutputSlot,
    StageDescription,
    StageParams,
)


class TransformParams(StageParams):
    module_file: str = Field(description="Python file defining preprocessing_fn, relative to the spec's folder.")
    analyze_splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1)
    missing_values: Literal["sparse", "strict"] = Field(
        "sparse",
        description="sparse: dense INT/BYTES features are read as sparse, so a missing value reaches "
        "preprocessing_fn; strict: the schema's shapes, as TFX.",
    )


DESCRIPTION = StageDescription(
    name="transform",
    component="Transform",
    params=TransformParams,
    executor="airflow_provider_mlpipe.runtime.executors.transform",
    inputs=(InputSlot("examples", EXAMPLES), InputSlot("schema", SCHEMA)),
    outputs=(OutputSlot("transform_graph", TRANSFORM_GRAPH), OutputSlot("transformed_examples", EXAMPLES)),
    uses_beam=True,
    user_function="preprocessing_fn",
    ui_color="#d0e0e3",
    order=50,
    doc="tf.Transform on Beam with the user's `preprocessing_fn`; the transform graph is exported with the model",
)
