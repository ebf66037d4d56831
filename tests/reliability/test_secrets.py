"""Secrets from connections never appear in logs, XCom or request files; MLMD on PostgreSQL through Airflow.

Injects: an `mlmd` connection to a real PostgreSQL server whose password is a distinctive string.
Must hold: the stage runs and records lineage in PostgreSQL, and the password is nowhere in the task's output,
in Airflow's log files, or in XCom.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.airflow_env import mlmd_dump

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
DAGS = Path(__file__).resolve().parents[1] / "dags"
PASSWORD = "Zq9-s3cr3t-mlmd-pw"


def test_mlmd_password_stays_secret(make_airflow, postgres, tmp_path):
    psql = ["psql", "-h", postgres.host, "-p", str(postgres.port), "-U", "postgres", "-qAt", "-c"]
    subprocess.run([*psql, f"CREATE ROLE vault LOGIN PASSWORD '{PASSWORD}'"], check=True)
    subprocess.run([*psql, "CREATE DATABASE mlmd_secret OWNER vault"], check=True)
    conn = {
        "conn_type": "mlmd",
        "schema": "postgresql",
        "host": postgres.host,
        "port": postgres.port,
        "login": "vault",
        "password": PASSWORD,
        "extra": {"database": "mlmd_secret"},
    }
    airflow = make_airflow(
        DAGS, MLPIPE_TEST_PIPELINE_ROOT=str(tmp_path / "root"), AIRFLOW_CONN_MLMD_DEFAULT=json.dumps(conn)
    )

    proc = airflow.dags_test("mlpipe_probe")

    assert PASSWORD not in proc.stdout + proc.stderr
    for path in (airflow.home / "logs").rglob("*"):
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace"), path
    result = airflow.xcom("mlpipe_probe", "probe")
    assert PASSWORD not in json.dumps(result)

    dump = mlmd_dump(config={**postgres.mlmd_config("mlmd_secret"), "user": "vault", "password": PASSWORD})
    assert [e["state"] for e in dump["executions"]] == ["COMPLETE"]
    assert dump["artifacts"][0]["id"] == result["outputs"]["probe"][0]["id"]
