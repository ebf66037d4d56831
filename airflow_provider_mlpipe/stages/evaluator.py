"""Evaluator: metrics by slice, thresholds against the baseline, and a blessing."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from airflow_provider_mlpipe.stages.description import (
    EXAMPLES,
    MODEL,
    MODEL_BLESSING,
    MODEL_EVALUATION,
    InputSlot,
    OutputSlot,
    ResolvedInput,
    StageDescription,
    StageParams,
)

EXAMPLE_COUNT = "example_count"


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ChangeThreshold(StageParams):
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    absolute: float | None = None
    relative: float | None = None


class MetricThreshold(StageParams):
    lower_bound: float | None = None
    upper_bound: float | None = None
    change: ChangeThreshold | None = None


class MetricSpec(StageParams):
    """A metric: ``class_name`` is the Keras/TFMA class; ``name`` defaults to its snake_case form."""

    name: str | None = None
    class_name: str | None = Field(None, description="Keras/TFMA metric class; defaults from the name.")
    threshold: MetricThreshold | None = None

    @model_validator(mode="after")
    def _names(self) -> MetricSpec:
        if not self.name and not self.class_name:
            raise ValueError("A metric needs a class_name (for example BinaryAccuracy) or a name.")
        self.class_name = self.class_name or self.name
        self.name = self.name or snake_case(str(self.class_name))
        return self

    # Flat views of the threshold, which the engines and the validation read.
    @property
    def lower_bound(self) -> float | None:
        return self.threshold.lower_bound if self.threshold else None

    @property
    def upper_bound(self) -> float | None:
        return self.threshold.upper_bound if self.threshold else None

    @property
    def change(self) -> ChangeThreshold | None:
        return self.threshold.change if self.threshold else None

    @property
    def has_value_threshold(self) -> bool:
        return self.lower_bound is not None or self.upper_bound is not None

    @property
    def has_change_threshold(self) -> bool:
        return self.change is not None and (self.change.absolute is not None or self.change.relative is not None)


class EvaluatorParams(StageParams):
    label_key: str
    slices: list[list[str]] = Field(default_factory=lambda: [[]], description="Feature lists; [] is overall.")
    metrics: list[MetricSpec] = Field(default_factory=list)
    engine: Literal["auto", "fast", "tfma"] = "auto"
    eval_split: str = "eval"
    prediction_key: str | None = Field(None, description="The model output to evaluate, when it has several.")

    @model_validator(mode="after")
    def _unique_names(self) -> EvaluatorParams:
        names = [m.name for m in self.all_metrics()]
        if len(set(names)) != len(names):
            raise ValueError(f"The evaluator's metric names must be unique: {names}.")
        return self

    def all_metrics(self) -> list[MetricSpec]:
        """The configured metrics, with ExampleCount first unless configured, as TFX reports it."""
        if any(m.class_name == "ExampleCount" for m in self.metrics):
            return list(self.metrics)
        return [MetricSpec(name=EXAMPLE_COUNT, class_name="ExampleCount"), *self.metrics]

    def all_slices(self) -> list[list[str]]:
        """The configured slices with the overall slice (``[]``) always first."""
        slices = [list(s) for s in self.slices]
        return slices if [] in slices else [[], *slices]


DESCRIPTION = StageDescription(
    name="evaluator",
    component="Evaluator",
    params=EvaluatorParams,
    executor="airflow_provider_mlpipe.runtime.executors.evaluator",
    inputs=(InputSlot("examples", EXAMPLES), InputSlot("model", MODEL)),
    resolved_inputs=(ResolvedInput("baseline_model", MODEL, "latest_blessed_model"),),
    outputs=(OutputSlot("evaluation", MODEL_EVALUATION), OutputSlot("blessing", MODEL_BLESSING)),
    uses_beam=True,
    ui_color="#fff2cc",
    order=70,
    doc=(
        "a TFMA `EvalConfig` from the spec; the baseline is the newest blessed model whose training span is not "
        "later than the candidate's (from MLMD); "
        "value and change thresholds; writes metrics by slice and a ModelBlessing (`BLESSED` / `NOT_BLESSED` "
        "with the reason)"
    ),
)
