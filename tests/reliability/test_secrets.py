"""Secrets from connections never appear in logs, XCom or request files; MLMD on a database server through Airflow.

Injects: an `mlmd` connection to a real PostgreSQL, then MariaDB (MySQL protocol), server whose password is a
distinctive string.
Must hold: the stage runs and records lineage on that server, and the password is nowhere in the task's output,
in Airflow's log files, or in XCom.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.airflow_env import mlmd_dump

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[1] / "dags"
PASSWORD = "Zq9-s3cr3t-mlmd-pw"


@pytest.mark.parametrize(
    "server", [pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)]
)
def test_mlmd_password_stays_secret(make_airflow, server, request, tmp_path):
    config = request.getfixturevalue(server).create_owner("vault", PASSWORD, "mlmd_secret")
    conn = {
        "conn_type": "mlmd",
        "schema": config["backend"],
        "host": config["host"],
        "port": config["port"],
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

    dump = mlmd_dump(config=config)
    assert [e["state"] for e in dump["executions"]] == ["COMPLETE"]
    assert dump["artifacts"][0]["id"] == result["outputs"]["probe"][0]["id"]
