"""Trainer: the user's ``run_fn(fn_args)`` trains a Keras model."""

from __future__ import annotations

from typing import Any

from pydantic import Field

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


class TrainerParams(StageParams):
    module_file: str = Field(description="Python file defining run_fn, relative to the spec's folder.")
    train_steps: int = Field(ge=1)
    eval_steps: int | None = Field(None, ge=1)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "eval"


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
