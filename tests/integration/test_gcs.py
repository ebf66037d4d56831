"""A gs:// pipeline root end to end: real `airflow dags test`, real runtime, gcp-storage-emulator, real MLMD.

The emulator is reached through STORAGE_EMULATOR_HOST, which the Airflow process hands on to the runtime child
with the rest of its environment; no credential appears anywhere in the spec or the DAG.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.airflow_env import mlmd_dump
from tests.support.gcs_emulator import running_emulator

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[1] / "dags"
BUCKET = "mlpipe-it"
MARKER = "_MLPIPE_COMPLETE"


def test_probe_dag_with_a_gcs_pipeline_root(make_airflow):
    with running_emulator(default_bucket=BUCKET) as emulator:
        root = f"gs://{BUCKET}/root"
        airflow = make_airflow(DAGS, MLPIPE_TEST_PIPELINE_ROOT=root, **emulator.env)

        airflow.dags_test("mlpipe_probe")

        result = airflow.xcom("mlpipe_probe", "probe")
        assert result["stage"] == "probe" and result["cached"] is False
        [artifact] = result["outputs"]["probe"]
        uri = artifact["uri"]
        assert uri == f"{root}/probe/probe/{result['execution_id']}/probe"
        prefix = uri[len(f"gs://{BUCKET}/") :]
        # Everything the executor wrote, plus the completion marker that is uploaded last.
        assert emulator.objects(BUCKET, prefix + "/") == [f"{prefix}/{MARKER}", f"{prefix}/probe.json"]
        # Nothing else was left in the bucket: no staging objects, no half-written prefixes.
        assert emulator.objects(BUCKET) == [f"{prefix}/{MARKER}", f"{prefix}/probe.json"]

        dump = mlmd_dump(airflow.mlmd_path)
        [stored] = dump["artifacts"]
        assert stored["uri"] == uri and stored["state"] == "LIVE" and stored["id"] == artifact["id"]
        assert stored["properties"]["sum"] == 8.0
        [execution] = dump["executions"]
        assert execution["state"] == "COMPLETE" and execution["id"] == result["execution_id"]
        assert [(e["type"], e["artifact_id"]) for e in dump["events"]] == [("OUTPUT", stored["id"])]

        # A second run reuses the gs:// artifact: a cache hit recorded in MLMD, no new objects.
        airflow.dags_test("mlpipe_probe", logical_date="2024-01-02")
        runs = airflow.run_ids("mlpipe_probe")
        second = airflow.xcom("mlpipe_probe", "probe", run_id=runs[-1])
        assert second["cached"] is True and second["outputs"]["probe"][0]["uri"] == uri
        assert emulator.objects(BUCKET) == [f"{prefix}/{MARKER}", f"{prefix}/probe.json"]
        states = sorted(e["state"] for e in mlmd_dump(airflow.mlmd_path)["executions"])
        assert states == ["CACHED", "COMPLETE"]
