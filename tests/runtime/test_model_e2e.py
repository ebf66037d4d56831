"""The shipped penguins spec end to end in the runtime: data stages feed the model stages, two daily spans.

Uses the real ExampleGen/StatisticsGen/SchemaGen executors, so a change in what the data stages write (Parquet
types, nulls, schema shapes) that the model stages cannot read shows up here. Span 2 evaluates against span 1's
model as the baseline, on data whose missing values differ from span 1's (the schema is re-inferred per span).
"""

from __future__ import annotations

import os

import pytest

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.runner import run_stage
from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.mlmd import sqlite_client
from tests.support.paths import REPO

pytestmark = pytest.mark.runtime


def test_two_spans_of_the_penguins_spec(tmp_path):
    pipeline = load_pipeline(REPO / "dags" / "pipelines" / "penguins.yaml")
    params = {name: dict(values) for name, values in pipeline.stage_params.items()}
    params["pusher"]["destination"] = str(tmp_path / "serving")
    params["trainer"]["train_steps"] = 100
    client = sqlite_client(tmp_path)

    def run(stage: str, day: int, **inputs):
        request = StageRequest(
            pipeline="penguins",
            pipeline_root=str(tmp_path / "root"),
            stage=stage,
            node_id=stage,
            run_id=f"scheduled__2024-01-0{day}",
            params=params[stage],
            inputs={slot: [ref] for slot, ref in inputs.items()},
            spec_dir=str(pipeline.base_dir),
            data_interval_start=f"2024-01-0{day}T00:00:00+00:00",
            logical_date=f"2024-01-0{day}T00:00:00+00:00",
        )
        return run_stage(request, client)

    blessings = []
    for day in (1, 2):
        examples = run("example_gen", day).artifact("examples")
        statistics = run("statistics_gen", day, examples=examples).artifact("statistics")
        schema = run("schema_gen", day, statistics=statistics).artifact("schema")
        transform = run("transform", day, examples=examples, schema=schema)
        model = run(
            "trainer",
            day,
            examples=transform.artifact("transformed_examples"),
            schema=schema,
            transform_graph=transform.artifact("transform_graph"),
        ).artifact("model")
        assert model.properties["span"] == 20240100 + day
        evaluation = run("evaluator", day, examples=examples, model=model)
        blessing = evaluation.artifact("blessing")
        blessings.append(blessing)
        assert blessing.properties["blessed"] == 1, blessing.properties["reason"]
        pushed = run("pusher", day, model=model, blessing=blessing).artifact("pushed_model")
        assert pushed.properties["version"] == day

    assert "baseline_model_id" not in blessings[0].properties
    assert blessings[1].properties["baseline_model_id"] == blessings[0].properties["current_model_id"]
    assert model_versions.list_versions(str(tmp_path / "serving")) == [1, 2]
    assert os.path.isfile(tmp_path / "serving" / "2" / "saved_model.pb")
