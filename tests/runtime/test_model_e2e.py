"""The shipped penguins spec end to end in the runtime: data stages feed the model stages, two daily spans.

Uses the real ExampleGen/StatisticsGen/SchemaGen executors, so a change in what the data stages write (Parquet
types, nulls, schema shapes) that the model stages cannot read shows up here. Span 2 evaluates against span 1's
model as the baseline, on data whose missing values differ from span 1's (the schema is re-inferred per span).
"""

from __future__ import annotations

import os

import pytest

from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.mlmd import sqlite_client
from tests.support.paths import REPO
from tests.support.spec_runs import day_runner, run_every_stage

pytestmark = pytest.mark.runtime


def test_two_spans_of_the_penguins_spec(tmp_path):
    pipeline = load_pipeline(REPO / "dags" / "pipelines" / "penguins.yaml")
    params = {name: dict(values) for name, values in pipeline.stage_params.items()}
    params["pusher"]["destination"] = str(tmp_path / "serving")
    params["trainer"]["train_steps"] = 100
    client = sqlite_client(tmp_path)

    blessings = []
    for day in (1, 2):
        stage = day_runner(client, "penguins", params, root=tmp_path / "root", spec_dir=str(pipeline.base_dir), day=day)
        results = run_every_stage(stage)  # asserts each model blessed before its push
        assert results["trainer"].artifact("model").properties["span"] == 20240100 + day
        blessings.append(results["evaluator"].artifact("blessing"))
        assert results["pusher"].artifact("pushed_model").properties["version"] == day

    assert "baseline_model_id" not in blessings[0].properties
    assert blessings[1].properties["baseline_model_id"] == blessings[0].properties["current_model_id"]
    assert model_versions.list_versions(str(tmp_path / "serving")) == [1, 2]
    assert os.path.isfile(tmp_path / "serving" / "2" / "saved_model.pb")
