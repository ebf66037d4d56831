"""The production topology without Docker: PostgreSQL for Airflow and MLMD, a real scheduler (LocalExecutor),
dag-processor, triggerer and api-server on loopback, the penguins pipeline triggered through the REST API.

Also the concurrency case of the reliability suite: a backfill of two spans with two active runs at once, next to
the REST-triggered run, against PostgreSQL-backed MLMD. Must hold: every run succeeds, each (run, stage) has
exactly one completed execution, each artifact is produced by exactly one execution, each span is ingested
once, and the pushed versions are distinct.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.airflow_env import AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, rest_api, rest_api_env, running_stack, stack_env, wait_for
from tests.support.penguins_stack import (
    PENGUINS_CONF,
    TRIGGERED_DAY,
    assert_each_run_stage_once,
    backfill_two_days,
    mlmd_config,
    mlmd_connection,
    penguins_dags,
    wait_for_three_runs,
    wait_until_parsed,
)
from tests.support.postgres import free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]
ADMIN_PASSWORD = "topology-admin-pw"


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[AirflowStack]:
    postgres.create_database("airflow_topology")
    postgres.create_database("mlmd_topology")
    home = tmp_path_factory.mktemp("airflow")
    port = free_port()
    env = AirflowEnv(
        home,
        penguins_dags(tmp_path_factory.mktemp("topology")),
        {
            **stack_env(port),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("airflow_topology"),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW_CONN_MLMD_DEFAULT": mlmd_connection(postgres, "mlmd_topology"),
            **rest_api_env(home, port, ADMIN_PASSWORD),
            "MLPIPE_PIPELINE_ROOT": str(tmp_path_factory.mktemp("pipeline-root")),
            "MLPIPE_SERVING_DIR": str(tmp_path_factory.mktemp("serving") / "penguins"),
        },
    )
    with running_stack(env, port, apps="all") as stack:
        yield stack


def api(stack: AirflowStack, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return rest_api(stack, ADMIN_PASSWORD, method, path, body)


def test_penguins_on_postgres_through_the_rest_api_and_a_concurrent_backfill(stack: AirflowStack) -> None:
    wait_until_parsed(stack)

    def api_up() -> bool:
        stack.check_alive()
        try:
            return api(stack, "GET", "/api/v2/dags/penguins")["dag_id"] == "penguins"
        except OSError:
            return False

    wait_for("the REST API", api_up, timeout=180, interval=2)
    triggered = api(
        stack,
        "POST",
        "/api/v2/dags/penguins/dagRuns",
        {"logical_date": f"{TRIGGERED_DAY}T00:00:00Z", "conf": PENGUINS_CONF},
    )
    backfill_two_days(stack.env)

    rows = wait_for_three_runs(stack)
    assert triggered["dag_run_id"] in {r[0] for r in rows}
    assert api(stack, "GET", f"/api/v2/dags/penguins/dagRuns/{triggered['dag_run_id']}")["state"] == "success"

    assert_each_run_stage_once(mlmd_dump(config=mlmd_config(stack.env)), {r[0] for r in rows})
