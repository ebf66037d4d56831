"""The four data stages wired by hand: ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator.

Environment (set by tests/integration/test_data_stages_airflow.py):
- ``MLPIPE_TEST_PIPELINE_ROOT``: where artifacts go.
- ``MLPIPE_TEST_DATA_ROOT``: the pipeline folder holding ``data/penguins/span-YYYY-MM-DD.csv``.
- ``MLPIPE_TEST_SCHEMA_FILE``: a curated schema inside that folder; the schema is inferred when unset.
"""

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_mlpipe.operators.stages import (
    ExampleGenOperator,
    ExampleValidatorOperator,
    SchemaGenOperator,
    StatisticsGenOperator,
)

PIPELINE_ROOT = os.environ.get("MLPIPE_TEST_PIPELINE_ROOT", "/tmp/mlpipe-data-stages")
DATA_ROOT = os.environ.get("MLPIPE_TEST_DATA_ROOT", os.path.join(os.path.dirname(__file__), "..", "..", "dags"))
SCHEMA_FILE = os.environ.get("MLPIPE_TEST_SCHEMA_FILE", "")

common = {"pipeline": "penguins_data", "pipeline_root": PIPELINE_ROOT, "spec_dir": DATA_ROOT}

with DAG(
    dag_id="mlpipe_data_stages",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    example_gen = ExampleGenOperator(
        task_id="example_gen",
        stage_params={
            "input": {"pattern": "data/penguins/span-{YYYY}-{MM}-{DD}.csv"},
            "splits": {"train": 2, "eval": 1},
        },
        **common,
    )
    statistics_gen = StatisticsGenOperator(
        task_id="statistics_gen", inputs={"examples": "example_gen.examples"}, stage_params={"mode": "auto"}, **common
    )
    schema_gen = SchemaGenOperator(
        task_id="schema_gen",
        inputs={"statistics": "statistics_gen.statistics"},
        stage_params={"schema_file": SCHEMA_FILE} if SCHEMA_FILE else {"allow_missing": True},
        **common,
    )
    example_validator = ExampleValidatorOperator(
        task_id="example_validator",
        inputs={"statistics": "statistics_gen.statistics", "schema": "schema_gen.schema"},
        stage_params={
            "drift": {
                "island": {"comparator": "linf", "threshold": 0.4},
                "flipper_length_mm": {"comparator": "jsd", "threshold": 0.5},
            }
        },
        **common,
    )
    example_gen >> statistics_gen >> schema_gen >> example_validator
