"""A three-day backfill through a real scheduler: each run ingests the span of its own data interval.

A spec with ExampleGen and StatisticsGen over the penguins spans of 2024-01-01..03 is parsed by the real
dag-processor, ``airflow backfill create`` asks for the three days, the scheduler (LocalExecutor) runs them, and
MLMD then holds three Examples and three ExampleStatistics artifacts, one per span.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.airflow_env import REPO, AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, query, running_stack, stack_env, wait_for
from tests.support.postgres import free_port
from tests.support.spec_fixtures import make_dags_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = """\
name: spans
schedule: "@daily"
start_date: 2024-01-01
end_date: 2024-01-03  # no scheduled run for today: only the backfill runs
catchup: false
max_active_runs: 1  # the embedded SQLite MLMD store takes one writer at a time
pipeline_root: {root}
stages:
  example_gen:
    params:
      input: {{pattern: "{data}/span-{{YYYY}}-{{MM}}-{{DD}}.csv", format: csv}}
  statistics_gen:
    params: {{mode: arrow}}
"""


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("spans-root")
    spec = SPEC.format(root=root, data=REPO / "dags" / "data" / "penguins")
    dags = make_dags_folder(tmp_path_factory.mktemp("spans"), {"spans": spec})
    port = free_port()
    env = AirflowEnv(tmp_path_factory.mktemp("airflow"), dags, {"AIRFLOW__CORE__PARALLELISM": "2", **stack_env(port)})
    with running_stack(env, port) as stack:
        yield stack


def test_backfill_of_three_days_records_three_spans(stack: AirflowStack) -> None:
    env = stack.env

    def parsed() -> bool:
        stack.check_alive()
        return query(env, "select count(*) from serialized_dag where dag_id='spans'")[0][0] == 1

    wait_for("the dag-processor to parse the spec", parsed, timeout=240)
    env.run("backfill", "create", "--dag-id", "spans", "--from-date", "2024-01-01", "--to-date", "2024-01-03")

    def done() -> list[tuple[str, str]] | None:
        stack.check_alive()
        rows = query(env, "select run_id, state from dag_run where dag_id='spans' and run_type='backfill'")
        if any(state == "failed" for _, state in rows):
            raise AssertionError(f"a backfill run failed: {rows}\n{stack.log('scheduler')[-4000:]}")
        return rows if len(rows) == 3 and all(state == "success" for _, state in rows) else None

    wait_for("three successful backfill runs", done, timeout=900, interval=3)
    intervals = query(
        env, "select data_interval_start from dag_run where dag_id='spans' and run_type='backfill' order by 1"
    )
    assert [str(start)[:10] for (start,) in intervals] == ["2024-01-01", "2024-01-02", "2024-01-03"]

    store = mlmd_dump(env.mlmd_path)
    spans = {
        kind: sorted(a["properties"]["span"] for a in store["artifacts"] if a["type"] == kind and a["state"] == "LIVE")
        for kind in ("Examples", "ExampleStatistics")
    }
    assert spans == {"Examples": [20240101, 20240102, 20240103], "ExampleStatistics": [20240101, 20240102, 20240103]}
    run_contexts = [c["name"] for c in store["contexts"] if "backfill" in c["name"]]
    assert len(run_contexts) == 3, store["contexts"]
