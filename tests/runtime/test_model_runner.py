"""The model stages through the real runner and a real MLMD (SQLite): blessing, refusal, rollback, serving.

Run 1 trains a good model: blessed (no baseline yet) and pushed as version 1. Run 2 shuffles the labels through
``dag_run.conf``: NOT_BLESSED against the baseline, the Pusher refuses it and the serving tree is byte-identical.
Run 3 trains another good model (another seed): pushed as version 2. Rollbacks then re-point serving.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.executors.pusher import NotBlessedError
from airflow_provider_mlpipe.runtime.metadata.client import properties_of
from airflow_provider_mlpipe.runtime.runner import run_stage
from airflow_provider_mlpipe.runtime.serving import model_versions
from tests.runtime.model_fixtures import (
    EVAL_PARAMS,
    TRAINER_PARAMS,
    TRANSFORM_PARAMS,
    write_examples,
    write_schema,
)
from tests.support.mlmd import sqlite_client
from tests.support.paths import REPO
from tests.support.trees import tree_digest

pytestmark = pytest.mark.runtime
PIPELINE = "penguins"
# Overall only: per-island slices of ~17 eval rows make a change threshold flip on a single example.
RUNNER_EVAL_PARAMS = {**EVAL_PARAMS, "slices": [[]]}


class Pipeline:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.destination = str(root / "serving")
        self.client = sqlite_client(root)
        self.client.register_types()
        inputs = {"examples": [write_examples(root / "data" / "examples")], "schema": [write_schema(root / "schema")]}
        # Record the inputs LIVE in MLMD, as ExampleGen and SchemaGen would have.
        contexts = self.client.lineage_contexts(PIPELINE, "seed", "inputs")
        execution = self.client.start_execution("mlpipe.TestInputs", contexts, [], {})
        self.client.finish_execution(execution, contexts, inputs, {})
        self.examples, self.schema = inputs["examples"][0], inputs["schema"][0]
        self.results: dict[str, dict] = {}

    def stage(self, stage: str, run_id: str, inputs: dict[str, ArtifactRef], params: dict, conf: dict | None = None):
        request = StageRequest(
            pipeline=PIPELINE,
            pipeline_root=str(self.root / "root"),
            stage=stage,
            node_id=stage,
            run_id=run_id,
            params=params,
            inputs={slot: [replace(ref, properties=dict(ref.properties))] for slot, ref in inputs.items()},
            conf=conf or {},
            spec_dir=str(REPO / "dags"),
        )
        return run_stage(request, self.client)

    def run(self, run_id: str, conf: dict | None = None) -> dict:
        out: dict = {}
        out["transform"] = self.stage(
            "transform", run_id, {"examples": self.examples, "schema": self.schema}, TRANSFORM_PARAMS, conf
        )
        graph = out["transform"].artifact("transform_graph")
        out["trainer"] = self.stage(
            "trainer",
            run_id,
            {
                "examples": out["transform"].artifact("transformed_examples"),
                "schema": self.schema,
                "transform_graph": graph,
            },
            TRAINER_PARAMS,
            conf,
        )
        model = out["trainer"].artifact("model")
        out["evaluator"] = self.stage(
            "evaluator", run_id, {"examples": self.examples, "model": model}, RUNNER_EVAL_PARAMS, conf
        )
        blessing = out["evaluator"].artifact("blessing")
        try:
            out["pusher"] = self.stage(
                "pusher", run_id, {"model": model, "blessing": blessing}, {"destination": self.destination}, conf
            )
        except NotBlessedError as exc:
            out["pusher_error"] = exc
        self.results[run_id] = out
        return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    pipe = Pipeline(tmp_path_factory.mktemp("model-runner"))
    pipe.run("run-1")
    pipe.digest_after_run_1 = tree_digest(pipe.destination)
    pipe.run("run-2", {"stages": {"trainer": {"hyperparameters": {"shuffle_labels": True}}}})
    pipe.digest_after_run_2 = tree_digest(pipe.destination)
    pipe.run("run-3", {"stages": {"trainer": {"hyperparameters": {"seed": 11}}}})
    return pipe


def test_first_model_is_blessed_and_pushed(pipeline):
    run = pipeline.results["run-1"]
    blessing = run["evaluator"].artifact("blessing")
    assert blessing.properties["blessed"] == 1
    assert blessing.properties["current_model_id"] == run["trainer"].artifact("model").id
    assert "baseline_model_id" not in blessing.properties
    pushed = run["pusher"].artifact("pushed_model")
    assert pushed.uri == os.path.join(pipeline.destination, "1")
    assert pushed.properties["version"] == 1 and pushed.properties["pushed"] == 1
    assert pushed.properties["source_model_id"] == run["trainer"].artifact("model").id
    assert pushed.properties["blessing_id"] == blessing.id
    [artifact] = pipeline.client.store.get_artifacts_by_id([pushed.id])
    assert artifact.uri == pushed.uri and properties_of(artifact)["destination"] == pipeline.destination


def test_worse_model_is_not_blessed_not_pushed_and_serving_is_unchanged(pipeline):
    first, second = pipeline.results["run-1"], pipeline.results["run-2"]
    assert second["transform"].cached  # same inputs and module: the Transform output is reused
    assert not second["trainer"].cached  # the conf override is part of the Trainer's cache key
    blessing = second["evaluator"].artifact("blessing")
    assert blessing.properties["blessed"] == 0
    assert blessing.properties["baseline_model_id"] == first["trainer"].artifact("model").id
    assert "vs baseline" in blessing.properties["reason"]
    assert "pusher" not in second and "NOT_BLESSED" in str(second["pusher_error"])
    assert pipeline.digest_after_run_2 == pipeline.digest_after_run_1
    states = {
        properties_of(e)["run_id"]: e.last_known_state
        for e in pipeline.client.store.get_executions_by_type("mlpipe.Pusher")
    }
    assert states["run-2"] == pb.Execution.FAILED  # the refusal is recorded, not hidden


def test_a_good_model_after_a_bad_one_is_compared_with_the_last_blessed(pipeline):
    first, third = pipeline.results["run-1"], pipeline.results["run-3"]
    blessing = third["evaluator"].artifact("blessing")
    assert blessing.properties["blessed"] == 1, blessing.properties["reason"]
    assert blessing.properties["baseline_model_id"] == first["trainer"].artifact("model").id
    assert third["pusher"].artifact("pushed_model").properties["version"] == 2
    assert model_versions.list_versions(pipeline.destination) == [1, 2]


def test_rollback_serves_a_copy_of_the_previous_version_and_is_recorded(pipeline):
    client, destination = pipeline.client, pipeline.destination
    v1 = tree_digest(os.path.join(destination, "1"))
    v2 = tree_digest(os.path.join(destination, "2"))
    assert v1 != v2
    summary = model_versions.rollback(destination, PIPELINE, client=client)
    assert (summary["version"], summary["rollback_of"], summary["rolled_back_from"]) == (3, 1, 2)
    assert model_versions.list_versions(destination) == [1, 2, 3]
    assert tree_digest(os.path.join(destination, "3")) == v1
    assert tree_digest(os.path.join(destination, "1")) == v1  # history is untouched
    model1 = pipeline.results["run-1"]["trainer"].artifact("model").id
    [artifact] = client.store.get_artifacts_by_id([summary["pushed_model_id"]])
    props = properties_of(artifact)
    assert artifact.uri == os.path.join(destination, "3")
    assert props["rollback_of"] == 1 and props["source_model_id"] == model1
    [execution] = client.store.get_executions_by_type(model_versions.ROLLBACK_EXECUTION)
    assert execution.last_known_state == pb.Execution.COMPLETE
    events = client.store.get_events_by_execution_ids([execution.id])
    first_push = pipeline.results["run-1"]["pusher"].artifact("pushed_model").id
    assert {(e.type, e.artifact_id) for e in events} == {
        (pb.Event.OUTPUT, artifact.id),
        (pb.Event.INPUT, first_push),
        (pb.Event.INPUT, model1),
    }

    again = model_versions.rollback(destination, PIPELINE, to_version=2, client=client)
    assert again["version"] == 4 and tree_digest(os.path.join(destination, "4")) == v2
    with pytest.raises(model_versions.PushError, match="already the served"):
        model_versions.rollback(destination, PIPELINE, to_version=4, client=client)
    with pytest.raises(model_versions.PushError, match="does not exist"):
        model_versions.rollback(destination, PIPELINE, to_version=99, client=client)


def test_served_prediction_equals_the_trainers_own(pipeline):
    """The pushed SavedModel on raw tf.Examples == the trained Keras model on features from the Transform stage."""
    import pyarrow.parquet as pq
    import tensorflow as tf
    import tensorflow_transform as tft

    from airflow_provider_mlpipe.runtime.context import load_user_module
    from airflow_provider_mlpipe.runtime.io import schema_tables

    run = pipeline.results["run-1"]
    schema = schema_tables.load_schema(pipeline.schema.uri)
    table = pq.read_table(schema_tables.split_files(pipeline.examples.uri, "eval"))
    serialized = tf.constant(schema_tables.encode_examples(schema_tables.to_list_batch(table, schema)))

    served_model = tf.saved_model.load(run["pusher"].artifact("pushed_model").uri)
    served = served_model.signatures["serving_default"](examples=serialized)["probabilities"].numpy()

    # The trainer's side: the Transform stage's own graph, the user module's feature assembly, the Keras model.
    module = load_user_module("modules/penguins_trainer.py", str(REPO / "dags"))
    graph = tft.TFTransformOutput(run["transform"].artifact("transform_graph").uri)
    raw = tf.io.parse_example(serialized, module._raw_spec(graph, with_label=False))
    features = module.features_to_vector(graph.transform_raw_features(raw), graph)
    keras_model = tf.saved_model.load(os.path.join(run["trainer"].artifact("model").uri, "Format-Serving"))
    own = keras_model(features).numpy()

    assert served.shape == (table.num_rows, 3)
    np.testing.assert_allclose(served, own, rtol=1e-6, atol=1e-7)
    missing = [i for i, row in enumerate(table.to_pylist()) if any(v is None for v in row.values())]
    assert missing, "the eval split should include rows with missing values"
    assert np.isfinite(served[missing]).all()
