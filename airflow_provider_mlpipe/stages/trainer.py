"""Trainer: the user's ``run_fn(fn_args)`` trains a Keras model."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from airflow_provider_mlpipe.stages.description import (
    EXAMPLES,
    MODEL,
    SCHEMA,
    TRANSFORM_GRAPH,
    InputSlot,
    OutputSlot,
    StageDescription,
    StageParams,
)
from airflow_provider_mlpipe.stages.tabular import TabularModel


class TrainerParams(StageParams):
    module_file: str | None = Field(
        None,
        description="Python file defining run_fn, relative to the spec's folder; without it, the built-in "
        "tabular model (`model`) on the built-in transform's output.",
    )
    train_steps: int | None = Field(None, ge=1, description="Required with module_file (FnArgs.train_steps).")
    model: TabularModel | None = Field(None, description="The built-in tabular model and its hyperparameters.")
    eval_steps: int | None = Field(None, ge=1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "eval"

    @model_validator(mode="after")
    def _module_or_builtin(self) -> TrainerParams:
        if self.module_file:
            if self.model is not None:
                raise ValueError("Give either module_file (your own run_fn) or model (the built-in), not both.")
            if self.train_steps is None:
                raise ValueError("A module_file trainer needs train_steps, e.g. train_steps: 200.")
        elif self.model is None:
            self.model = TabularModel()
        return self

    @property
    def builtin(self) -> bool:
        return not self.module_file


DESCRIPTION = StageDescription(
    name="trainer",
    component="Trainer",
    params=TrainerParams,
    executor="airflow_provider_mlpipe.runtime.executors.trainer",
    inputs=(
        InputSlot("examples", EXAMPLES),
        InputSlot("schema", SCHEMA),
        InputSlot("transform_graph", TRANSFORM_GRAPH, optional=True),
    ),
    outputs=(OutputSlot("model", MODEL),),
    user_function="run_fn",
    ui_color="#d0e0e3",
    order=60,
    doc=(
        "the user's `run_fn(fn_args)` with TFX-like `FnArgs`; a Keras SavedModel whose `serving_default` takes "
        "serialized `tf.Example`s"
    ),
)
