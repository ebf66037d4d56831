"""The penguins pipeline on production-like stacks: PostgreSQL for Airflow and MLMD, a real scheduler.

Shared by the topology tests (LocalExecutor, CeleryExecutor): the spec copy that allows concurrent runs, the
triggered run plus a concurrent two-day backfill, the wait for them, and the exactly-once checks on MLMD.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg2

from tests.support.airflow_env import REPO, AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, wait_for
from tests.support.postgres import PostgresServer

# dag_run.conf reaches the stages from the REST API, the CLI and a backfill alike.
PENGUINS_CONF: dict[str, Any] = {"stages": {"trainer": {"hyperparameters": {"seed": 7}}}}
BACKFILL_DAYS = ("2024-01-01", "2024-01-02")
TRIGGERED_DAY = "2024-01-04"


def penguins_dags(target: Path, replace: dict[str, str] | None = None) -> Path:
    """A copy of the bundled dags folder whose penguins spec allows concurrent runs and trains briefly.

    ``replace`` maps further spec text to its replacement (each must occur).
    """
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
        *(replace or {}).items(),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    spec.write_text(text)
    return dags


def mlmd_connection(postgres: PostgresServer, database: str) -> str:
    """``AIRFLOW_CONN_MLMD_DEFAULT`` for an MLMD store in ``database`` on the session's PostgreSQL."""
    return json.dumps(
        {
            "conn_type": "mlmd",
            "schema": "postgresql",
            "host": postgres.host,
            "port": postgres.port,
            "login": postgres.user,
            "password": postgres.password,
            "extra": {"database": database},
        }
    )


def mlmd_config(env: AirflowEnv) -> dict[str, Any]:
    """The MLMD config of the stack's ``mlmd_default`` connection, for ``mlmd_dump``."""
    conn = json.loads(env.extra_env["AIRFLOW_CONN_MLMD_DEFAULT"])
    return {
        "backend": "postgresql",
        "host": conn["host"],
        "port": conn["port"],
        "user": conn["login"],
        "password": conn["password"],
        "database": conn["extra"]["database"],
    }


def sql(stack: AirflowStack, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """A query of the stack's PostgreSQL Airflow DB."""
    conn = psycopg2.connect(stack.env.extra_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", ""))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def wait_until_parsed(stack: AirflowStack, dag_id: str = "penguins") -> None:
    def parsed() -> bool:
        stack.check_alive()
        return bool(sql(stack, "select 1 from serialized_dag where dag_id = %s", dag_id))

    wait_for(f"the dag-processor to parse the {dag_id} spec", parsed, timeout=300, interval=2)


def backfill_two_days(env: AirflowEnv, conf: dict[str, Any] = PENGUINS_CONF) -> None:
    """Two spans with two active runs at once, created while the stack runs."""
    env.run(
        "backfill", "create", "--dag-id", "penguins", "--from-date", BACKFILL_DAYS[0], "--to-date", BACKFILL_DAYS[1],
        "--max-active-runs", "2", "--dag-run-conf", json.dumps(conf),
        "--reprocess-behavior", "failed",  # required: the span-ordered stages use depends_on_past
    )  # fmt: skip


def wait_for_three_runs(stack: AirflowStack, log_homes: Iterable[Path] | None = None) -> list[tuple[Any, ...]]:
    """Wait until the triggered run and the two backfill runs succeeded; on a failure, fail with the task logs.

    ``log_homes``: the AIRFLOW_HOMEs holding task logs (the workers' under the CeleryExecutor).
    """
    env = stack.env
    homes = list(log_homes or [env.home])

    def finished() -> list[tuple[Any, ...]] | None:
        stack.check_alive()
        rows = sql(stack, "select run_id, run_type, state from dag_run where dag_id = 'penguins'")
        failed = [r for r in rows if r[2] == "failed"]
        if failed:
            bad = sql(stack, "select run_id, task_id from task_instance where dag_id = 'penguins' and state = 'failed'")
            logs = [
                f"--- {path}\n{path.read_text(errors='replace')[-5000:]}"
                for run_id, task_id in bad
                for home in homes
                for path in (home / "logs").glob(f"dag_id=penguins/run_id={run_id}/task_id={task_id}/*.log")
            ]
            mlmd = mlmd_dump(config=mlmd_config(env))
            lineage = [(a["id"], a["type"], a["properties"].get("span"), a["uri"][-40:]) for a in mlmd["artifacts"]]
            raise AssertionError(f"runs failed: {failed}\n" + "\n".join(logs) + f"\nartifacts: {lineage}")
        runs = [r for r in rows if r[1] in ("manual", "backfill")]
        return rows if len(runs) == 3 and all(r[2] == "success" for r in rows) else None

    return wait_for("the triggered run and two backfill runs to succeed", finished, timeout=1500, interval=5)


def assert_each_run_stage_once(mlmd: dict[str, Any], run_ids: set[str]) -> None:
    """Each (run, stage) has exactly one completed execution, each artifact exactly one producer, each span is
    ingested once, and the pushed versions are distinct."""
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
