"""A tiny DAG whose only task launches the real ML runtime (tests of the stage protocol)."""

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_mlpipe.operators.stages import operator_for

RuntimeProbeOperator = operator_for("probe")  # the test-only stage of tests/support/probe_stage.py

with DAG(
    dag_id="mlpipe_probe",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={},
):
    RuntimeProbeOperator(
        task_id="probe",
        pipeline="probe",
        pipeline_root=os.environ.get("MLPIPE_TEST_PIPELINE_ROOT", "/tmp/mlpipe-probe"),
        stage_params={
            "values": [1.5, 2.5, 4.0],
            "fail": os.environ.get("MLPIPE_TEST_PROBE_FAIL", ""),
            "sleep_s": float(os.environ.get("MLPIPE_TEST_PROBE_SLEEP", "0")),
        },
        enable_cache=os.environ.get("MLPIPE_TEST_PROBE_CACHE", "1") == "1",
    )
