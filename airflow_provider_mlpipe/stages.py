"""Stage descriptions shared by the Airflow side and the runtime.

A stage is described once, in the spirit of a TFX component spec: its inputs and outputs by artifact type,
the executor that does the work, and whether it runs on Beam. The operator, the DAG factory and the runtime
are all driven by these descriptions, so adding a stage means one entry here plus one executor module.

This module must stay importable without Airflow and without the ML stack.
"""

from __future__ import annotations

from dataclasses import dataclass

# MLMD artifact type names, kept identical to TFX's so tools that know TFX read our store.
EXAMPLES = "Examples"
STATISTICS = "ExampleStatistics"
SCHEMA = "Schema"
ANOMALIES = "ExampleAnomalies"
TRANSFORM_GRAPH = "TransformGraph"
MODEL = "Model"
MODEL_EVALUATION = "ModelEvaluation"
MODEL_BLESSING = "ModelBlessing"
PUSHED_MODEL = "PushedModel"
PROBE = "RuntimeProbe"

ARTIFACT_TYPES = (
    EXAMPLES,
    STATISTICS,
    SCHEMA,
    ANOMALIES,
    TRANSFORM_GRAPH,
    MODEL,
    MODEL_EVALUATION,
    MODEL_BLESSING,
    PUSHED_MODEL,
    PROBE,
)


@dataclass(frozen=True)
class InputSlot:
    """An input wired from an upstream stage's output of the same artifact type."""

    name: str
    artifact_type: str
    optional: bool = False


@dataclass(frozen=True)
class ResolvedInput:
    """An input the runtime looks up in MLMD rather than receiving from upstream (a TFX "resolver").

    ``strategy`` names a lookup in ``runtime.resolvers``: e.g. the previous span's statistics for drift,
    or the latest blessed model as the evaluation baseline.
    """

    name: str
    artifact_type: str
    strategy: str


@dataclass(frozen=True)
class OutputSlot:
    name: str
    artifact_type: str


@dataclass(frozen=True)
class StageDescription:
    name: str
    component: str
    executor: str
    inputs: tuple[InputSlot, ...] = ()
    outputs: tuple[OutputSlot, ...] = ()
    resolved_inputs: tuple[ResolvedInput, ...] = ()
    uses_beam: bool = False
    doc: str = ""

    @property
    def execution_type(self) -> str:
        return f"mlpipe.{self.component}"

    def output_types(self) -> set[str]:
        return {slot.artifact_type for slot in self.outputs}


_EXECUTORS = "airflow_provider_mlpipe.runtime.executors"

STAGES: dict[str, StageDescription] = {
    stage.name: stage
    for stage in (
        StageDescription(
            name="probe",
            component="RuntimeProbe",
            executor=f"{_EXECUTORS}.probe",
            outputs=(OutputSlot("probe", PROBE),),
            doc="Checks the runtime: imports TensorFlow and MLMD and writes a small artifact.",
        ),
        StageDescription(
            name="example_gen",
            component="ExampleGen",
            executor=f"{_EXECUTORS}.example_gen",
            outputs=(OutputSlot("examples", EXAMPLES),),
            doc="Ingests one span of CSV, Parquet or TFRecord input and splits it.",
        ),
        StageDescription(
            name="statistics_gen",
            component="StatisticsGen",
            executor=f"{_EXECUTORS}.statistics_gen",
            inputs=(InputSlot("examples", EXAMPLES),),
            outputs=(OutputSlot("statistics", STATISTICS),),
            uses_beam=True,
            doc="Computes TFDV statistics per split, in memory or on Beam.",
        ),
        StageDescription(
            name="schema_gen",
            component="SchemaGen",
            executor=f"{_EXECUTORS}.schema_gen",
            inputs=(InputSlot("statistics", STATISTICS),),
            resolved_inputs=(ResolvedInput("previous_schema", SCHEMA, "previous_output"),),
            outputs=(OutputSlot("schema", SCHEMA),),
            doc="Infers a schema or imports a curated one, and diffs it against the previous schema.",
        ),
        StageDescription(
            name="example_validator",
            component="ExampleValidator",
            executor=f"{_EXECUTORS}.example_validator",
            inputs=(InputSlot("statistics", STATISTICS), InputSlot("schema", SCHEMA)),
            resolved_inputs=(ResolvedInput("previous_statistics", STATISTICS, "previous_span_statistics"),),
            outputs=(OutputSlot("anomalies", ANOMALIES),),
            doc="Validates statistics against the schema, with drift and skew checks.",
        ),
        StageDescription(
            name="transform",
            component="Transform",
            executor=f"{_EXECUTORS}.transform",
            inputs=(InputSlot("examples", EXAMPLES), InputSlot("schema", SCHEMA)),
            outputs=(
                OutputSlot("transform_graph", TRANSFORM_GRAPH),
                OutputSlot("transformed_examples", EXAMPLES),
            ),
            uses_beam=True,
            doc="Runs tf.Transform with the user's preprocessing_fn.",
        ),
        StageDescription(
            name="trainer",
            component="Trainer",
            executor=f"{_EXECUTORS}.trainer",
            inputs=(
                InputSlot("examples", EXAMPLES),
                InputSlot("schema", SCHEMA),
                InputSlot("transform_graph", TRANSFORM_GRAPH, optional=True),
            ),
            outputs=(OutputSlot("model", MODEL),),
            doc="Trains a Keras model with the user's run_fn.",
        ),
        StageDescription(
            name="evaluator",
            component="Evaluator",
            executor=f"{_EXECUTORS}.evaluator",
            inputs=(InputSlot("examples", EXAMPLES), InputSlot("model", MODEL)),
            resolved_inputs=(ResolvedInput("baseline_model", MODEL, "latest_blessed_model"),),
            outputs=(
                OutputSlot("evaluation", MODEL_EVALUATION),
                OutputSlot("blessing", MODEL_BLESSING),
            ),
            uses_beam=True,
            doc="Evaluates the model with TFMA against the latest blessed baseline.",
        ),
        StageDescription(
            name="pusher",
            component="Pusher",
            executor=f"{_EXECUTORS}.pusher",
            inputs=(InputSlot("model", MODEL), InputSlot("blessing", MODEL_BLESSING)),
            outputs=(OutputSlot("pushed_model", PUSHED_MODEL),),
            doc="Pushes a blessed model as a new numbered version directory.",
        ),
    )
}


def get_stage(name: str) -> StageDescription:
    try:
        return STAGES[name]
    except KeyError:
        known = ", ".join(sorted(STAGES))
        raise KeyError(f"Unknown stage {name!r}. Known stages are: {known}.") from None
