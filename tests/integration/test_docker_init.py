"""The compose file's airflow-init script, run for real outside Docker: PostgreSQL for Airflow and for MLMD.

docker/init.sh is what the airflow-init service runs. Here it migrates an Airflow metadata DB on the test
PostgreSQL server and creates the mlmd_default connection with the same environment variables the compose file
sets (pointing at 127.0.0.1 instead of the "postgres" service); then the probe DAG records its lineage in the
second database through that connection, as the compose deployment would.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.airflow_env import AirflowEnv, mlmd_dump
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]
DAGS = REPO / "tests" / "dags"
INIT = REPO / "docker" / "init.sh"
_numbers = itertools.count()


def test_init_script_migrates_and_wires_mlmd_on_postgres(postgres, tmp_path_factory):
    n = next(_numbers)
    airflow_db, mlmd_db = f"airflow_init_{n}", f"mlmd_init_{n}"
    # Its own role with a distinctive password, as POSTGRES_USER / POSTGRES_PASSWORD would be in .env.
    user, password = f"compose_{n}", f"Pg-init-{n}-Xq7"
    psql = ["psql", "-h", postgres.host, "-p", str(postgres.port), "-U", "postgres", "-qAt", "-c"]
    subprocess.run([*psql, f"CREATE ROLE {user} LOGIN PASSWORD '{password}'"], check=True, capture_output=True)
    for db in (airflow_db, mlmd_db):
        subprocess.run([*psql, f"CREATE DATABASE {db} OWNER {user}"], check=True, capture_output=True)
    db_url = f"postgresql+psycopg2://{user}:{password}@{postgres.host}:{postgres.port}/{airflow_db}"
    home = tmp_path_factory.mktemp("airflow-init")
    airflow = AirflowEnv(
        home,
        DAGS,
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "MLPIPE_TEST_PIPELINE_ROOT": str(home / "root"),
        },
    )
    init_env = {
        **airflow.env,
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLMD_CONN_ID": "mlmd_default",
        "MLMD_DB_HOST": postgres.host,
        "MLMD_DB_PORT": str(postgres.port),
        "MLMD_DB_NAME": mlmd_db,
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password,
    }

    for attempt in range(2):  # the script is idempotent: a restarted airflow-init must succeed again
        proc = subprocess.run(["bash", str(INIT)], env=init_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"attempt {attempt}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        assert "mlpipe init done" in proc.stdout
    assert password not in proc.stdout + proc.stderr  # nor does the check at its end print the connection

    conn = airflow.run("connections", "get", "mlmd_default", "-o", "json").stdout
    assert '"conn_type": "mlmd"' in conn and '"schema": "postgresql"' in conn
    assert f'"database": "{mlmd_db}"' in conn and f'"login": "{user}"' in conn

    airflow.dags_test("mlpipe_probe")

    dump = mlmd_dump(config={**postgres.mlmd_config(mlmd_db), "user": user, "password": password})
    [execution] = dump["executions"]
    assert execution["type"] == "mlpipe.RuntimeProbe" and execution["state"] == "COMPLETE"
    [artifact] = dump["artifacts"]
    assert artifact["state"] == "LIVE" and artifact["properties"]["sum"] == 8.0
    assert Path(artifact["uri"], "_MLPIPE_COMPLETE").exists()
    # The Airflow side of the run lives in the first database, not in a SQLite file.
    assert not (home / "airflow.db").exists()
    states = subprocess.run(
        ["psql", "-h", postgres.host, "-p", str(postgres.port), "-U", "postgres", "-d", airflow_db, "-qAt", "-c",
         "select state from task_instance where dag_id = 'mlpipe_probe'"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert states == ["success"]
