"""Transform: tf.Transform on Beam with the user's ``preprocessing_fn``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from airflow_provider_mlpipe.stages.description import (
    EXAMPLES,
    SCHEMA,
    TRANSFORM_GRAPH,
    InputSlot,
    OutputSlot,
    StageDescription,
    StageParams,
)
from airflow_provider_mlpipe.stages.tabular import LabelSpec, TabularFeatures


class TransformParams(StageParams):
    module_file: str | None = Field(
        None,
        description="Python file defining preprocessing_fn, relative to the spec's folder; without it, the "
        "built-in tabular transform of `features` and `label`.",
    )
    features: Literal["auto"] | TabularFeatures | None = Field(
        None, description="Built-in transform: the feature lists, or auto (from SchemaGen's schema)."
    )
    label: LabelSpec | None = Field(None, description="Built-in transform: the label column and its kind.")
    analyze_splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1)
    missing_values: Literal["sparse", "strict"] = Field(
        "sparse",
        description="sparse: dense INT/BYTES features are read as sparse, so a missing value reaches "
        "preprocessing_fn; strict: the schema's shapes, as TFX.",
    )

    @model_validator(mode="after")
    def _module_or_builtin(self) -> TransformParams:
        if self.module_file and (self.features is not None or self.label is not None):
            raise ValueError(
                "Give either module_file (your own preprocessing_fn) or features and label (the built-in "
                "tabular transform), not both."
            )
        if not self.module_file:
            if self.label is None:
                raise ValueError(
                    "The built-in tabular transform needs a label, e.g. label: {name: churned, kind: binary}; "
                    "or give module_file with your own preprocessing_fn."
                )
            if self.features is None:
                self.features = "auto"
        return self

    @property
    def builtin(self) -> bool:
        return not self.module_file


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
