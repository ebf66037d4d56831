"""The production topology without Docker: PostgreSQL for Airflow and MLMD, a real scheduler (LocalExecutor),
dag-processor, triggerer and api-server on loopback, the penguins pipeline triggered through the REST API.

Also the concurrency case of the reliability suite: a backfill of two spans with two active runs at once, next to
the REST-triggered run, against PostgreSQL-backed MLMD. Must hold: every run succeeds, each (run, stage) has
exactly one completed execution, each artifact is produced by exactly one execution, each span is ingested
once, and the pushed versions are distinct.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.support.airflow_env import REPO, AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, running_stack, stack_env, wait_for
from tests.support.postgres import free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]
ADMIN_PASSWORD = "topology-admin-pw"


def penguins_dags(target: Path) -> Path:
    """A copy of the bundled dags folder whose penguins spec allows concurrent runs and trains briefly."""
    dags = target / "dags"
    shutil.copytree(REPO / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    spec = dags / "pipelines" / "penguins.yaml"
    text = spec.read_text()
    for old, new in (
        ("start_date: 2024-01-01\n", "start_date: 2024-01-01\nend_date: 2024-01-05\n"),
        ("max_active_runs: 1\n", "max_active_runs: 3\n"),
        ("train_steps: 200", "train_steps: 60"),
        # Drift and accuracy changes between days of ~20 eval rows are noise, and which concurrent run becomes the
        # baseline is up to the scheduler; the gates' own tests show them stopping runs. Here every run must pass.
        ("bill_length_mm: {comparator: jsd, threshold: 0.3}", "bill_length_mm: {comparator: jsd, threshold: 0.9}"),
        ("absolute: -0.05}", "absolute: -1.0}"),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    spec.write_text(text)
    return dags


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[AirflowStack]:
    postgres.create_database("airflow_topology")
    postgres.create_database("mlmd_topology")
    home = tmp_path_factory.mktemp("airflow")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    port = free_port()
    mlmd_conn = {
        "conn_type": "mlmd",
        "schema": "postgresql",
        "host": postgres.host,
        "port": postgres.port,
        "login": postgres.user,
        "password": postgres.password,
        "extra": {"database": "mlmd_topology"},
    }
    env = AirflowEnv(
        home,
        penguins_dags(tmp_path_factory.mktemp("topology")),
        {
            **stack_env(port),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("airflow_topology"),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW_CONN_MLMD_DEFAULT": json.dumps(mlmd_conn),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "MLPIPE_PIPELINE_ROOT": str(tmp_path_factory.mktemp("pipeline-root")),
            "MLPIPE_SERVING_DIR": str(tmp_path_factory.mktemp("serving") / "penguins"),
        },
    )
    with running_stack(env, port, apps="all") as stack:
        yield stack


def sql(stack: AirflowStack, query: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(stack.env.extra_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", ""))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def api(stack: AirflowStack, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    base = f"http://127.0.0.1:{stack.port}"
    login = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=60) as resp:
        token = json.loads(resp.read())["access_token"]
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def test_penguins_on_postgres_through_the_rest_api_and_a_concurrent_backfill(stack: AirflowStack) -> None:
    env = stack.env

    def parsed() -> bool:
        stack.check_alive()
        return bool(sql(stack, "select 1 from serialized_dag where dag_id = 'penguins'"))

    wait_for("the dag-processor to parse the penguins spec", parsed, timeout=300, interval=2)

    def api_up() -> bool:
        stack.check_alive()
        try:
            return api(stack, "GET", "/api/v2/dags/penguins")["dag_id"] == "penguins"
        except OSError:
            return False

    wait_for("the REST API", api_up, timeout=180, interval=2)
    # dag_run.conf reaches the stages from the REST API and from a backfill alike.
    conf = {"stages": {"trainer": {"hyperparameters": {"seed": 7}}}}
    triggered = api(
        stack, "POST", "/api/v2/dags/penguins/dagRuns", {"logical_date": "2024-01-04T00:00:00Z", "conf": conf}
    )
    env.run(
        "backfill", "create", "--dag-id", "penguins", "--from-date", "2024-01-01", "--to-date", "2024-01-02",
        "--max-active-runs", "2", "--dag-run-conf", json.dumps(conf),
        "--reprocess-behavior", "failed",  # required: the span-ordered stages use depends_on_past
    )  # fmt: skip

    def finished() -> list[tuple[Any, ...]] | None:
        stack.check_alive()
        rows = sql(stack, "select run_id, run_type, state from dag_run where dag_id = 'penguins'")
        failed = [r for r in rows if r[2] == "failed"]
        if failed:
            bad = sql(stack, "select run_id, task_id from task_instance where dag_id = 'penguins' and state = 'failed'")
            logs = [
                f"--- {path.relative_to(env.home)}\n{path.read_text(errors='replace')[-5000:]}"
                for run_id, task_id in bad
                for path in (env.home / "logs").glob(f"dag_id=penguins/run_id={run_id}/task_id={task_id}/*.log")
            ]
            mlmd = mlmd_dump(config=_mlmd_config(env))
            lineage = [(a["id"], a["type"], a["properties"].get("span"), a["uri"][-40:]) for a in mlmd["artifacts"]]
            raise AssertionError(f"runs failed: {failed}\n" + "\n".join(logs) + f"\nartifacts: {lineage}")
        runs = [r for r in rows if r[1] in ("manual", "backfill")]
        return rows if len(runs) == 3 and all(r[2] == "success" for r in rows) else None

    rows = wait_for("the REST-triggered run and two backfill runs to succeed", finished, timeout=1500, interval=5)
    assert triggered["dag_run_id"] in {r[0] for r in rows}
    assert api(stack, "GET", f"/api/v2/dags/penguins/dagRuns/{triggered['dag_run_id']}")["state"] == "success"

    mlmd = mlmd_dump(config=_mlmd_config(env))
    run_ids = {r[0] for r in rows}
    completed = [e for e in mlmd["executions"] if e["state"] in ("COMPLETE", "CACHED")]
    # Stage executions carry their node id, gate decisions the gate's name.
    per_node = Counter(
        (e["properties"]["run_id"], e["properties"].get("node_id") or e["properties"]["gate"]) for e in completed
    )
    assert {run for run, _ in per_node} == run_ids
    assert set(per_node.values()) == {1}, per_node
    assert not [e for e in mlmd["executions"] if e["state"] in ("RUNNING", "FAILED")]

    outputs = Counter(ev["artifact_id"] for ev in mlmd["events"] if ev["type"] == "OUTPUT")
    produced = {e["id"] for e in completed if e["state"] == "COMPLETE"}
    first_outputs = Counter(
        ev["artifact_id"] for ev in mlmd["events"] if ev["type"] == "OUTPUT" and ev["execution_id"] in produced
    )
    assert set(first_outputs.values()) == {1}
    assert set(outputs) == {a["id"] for a in mlmd["artifacts"]}

    spans = sorted(a["properties"]["span"] for a in mlmd["artifacts"] if a["type"] == "Examples" and
                   a["properties"].get("format") == "parquet")  # fmt: skip
    assert {20240101, 20240102, 20240104} <= set(spans)
    assert len(spans) == len(set(spans)) == len(run_ids)
    versions = [a["properties"]["version"] for a in mlmd["artifacts"] if a["type"] == "PushedModel"]
    assert len(versions) == len(set(versions)) >= 1


def _mlmd_config(env: AirflowEnv) -> dict[str, Any]:
    conn = json.loads(env.extra_env["AIRFLOW_CONN_MLMD_DEFAULT"])
    return {
        "backend": "postgresql",
        "host": conn["host"],
        "port": conn["port"],
        "user": conn["login"],
        "password": conn["password"],
        "database": conn["extra"]["database"],
    }
