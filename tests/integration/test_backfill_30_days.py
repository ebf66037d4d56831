"""A 30-day backfill through a real scheduler on PostgreSQL (the Airflow DB and MLMD), one stack for the module.

The pipeline is ExampleGen, StatisticsGen and SchemaGen on the warm runtime, over generated daily spans of 24
penguins each: real TFDV and MLMD, and a span-ordered stage (SchemaGen compares with the previous span's schema,
so it takes the spans in order while the rest overlaps). That is what a backfill stresses, at a cost that fits
``make test``: with three active runs the month takes about ten runs' latency, and each task adds a few seconds
of Airflow overhead to every run. The other stages would add tasks (ExampleValidator is a fourth task per run,
span-ordered like SchemaGen) or minutes of training, and nothing to what is checked here: ingestion once per
span, the cache, and publishing under a cancelled backfill.

- ``airflow backfill create`` over 30 days with ``max_active_runs`` 3: 30 successful runs, at most three at once,
  each span ingested by exactly one ExampleGen execution (no cached duplicate, no second ingestion).
- Clearing one day's run re-runs its three tasks, and each is a cache hit on the artifacts it made the first time.
- A second backfill, cancelled through the REST API while its first runs work: Airflow fails the queued runs and
  lets the running ones finish. Nothing is left half-published: no staging or temp folder remains, every visible
  artifact folder has its completion marker and a LIVE record, and every LIVE record has its files.
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_env import AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, rest_api, rest_api_env, running_stack, stack_env, wait_for
from tests.support.penguins_stack import mlmd_config, mlmd_connection, sql, wait_until_parsed
from tests.support.penguins_variants import PENGUINS_DATA
from tests.support.postgres import free_port
from tests.support.spec_fixtures import make_dags_folder

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]
DAG_ID = "backfill30"
PASSWORD = "backfill-admin-pw"
FIRST_DAY = date(2024, 1, 1)
BACKFILL_DAYS = [FIRST_DAY + timedelta(days=i) for i in range(30)]
CANCELLED_DAYS = [BACKFILL_DAYS[-1] + timedelta(days=i) for i in range(1, 11)]
NODES = ("example_gen", "statistics_gen", "schema_gen")
COMPLETE_MARKER, STAGING_DIR = "_MLPIPE_COMPLETE", ".staging"  # runtime/io/artifact_store.py (runtime venv only)
SPEC = """\
name: {name}
schedule: "@daily"
start_date: {first}
end_date: {last}  # no scheduled run for today: only the backfills run
catchup: false
max_active_runs: 3
retries: 0
pipeline_root: {root}
stages:
  example_gen:
    params:
      input: {{pattern: "{data}/span-{{YYYY}}-{{MM}}-{{DD}}.csv", format: csv}}
  statistics_gen:
    params: {{mode: arrow}}
  schema_gen:
    params: {{allow_missing: true}}
"""


def write_daily_spans(folder: Path, days: list[date], rows: int = 24) -> Path:
    """One CSV per day, each a different seeded sample of the bundled penguins."""
    penguins: list[list[str]] = []
    for path in sorted(PENGUINS_DATA.glob("span-*.csv")):
        with path.open(newline="") as fh:
            header, *body = list(csv.reader(fh))
        penguins += body
    for day in days:
        sample = random.Random(day.toordinal()).sample(penguins, rows)
        with (folder / f"span-{day:%Y-%m-%d}.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows([header, *sample])
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[AirflowStack]:
    postgres.create_database("airflow_backfill30")
    postgres.create_database("mlmd_backfill30")
    data = write_daily_spans(tmp_path_factory.mktemp("spans"), BACKFILL_DAYS + CANCELLED_DAYS)
    root = tmp_path_factory.mktemp("backfill30-root")
    spec = SPEC.format(name=DAG_ID, first=FIRST_DAY, last=CANCELLED_DAYS[-1], root=root, data=data)
    dags = make_dags_folder(tmp_path_factory.mktemp("backfill30-dags"), {DAG_ID: spec})
    home = tmp_path_factory.mktemp("airflow")
    port = free_port()
    env = AirflowEnv(
        home,
        dags,
        {
            **stack_env(port),
            **rest_api_env(home, port, PASSWORD),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("airflow_backfill30"),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW_CONN_MLMD_DEFAULT": mlmd_connection(postgres, "mlmd_backfill30"),
            "MLPIPE_PIPELINE_ROOT": str(root),
        },
    )
    with running_stack(env, port, apps="all") as running:
        wait_until_parsed(running, DAG_ID)
        yield running


def create_backfill(env: AirflowEnv, days: list[date]) -> None:
    env.run(
        "backfill", "create", "--dag-id", DAG_ID, "--from-date", str(days[0]), "--to-date", str(days[-1]),
        "--max-active-runs", "3",
        "--reprocess-behavior", "failed",  # required: the span-ordered stages use depends_on_past
    )  # fmt: skip


def latest_backfill(stack: AirflowStack) -> int:
    [(backfill_id,)] = sql(stack, "select max(id) from backfill where dag_id = %s", DAG_ID)
    return backfill_id


def backfill_runs(stack: AirflowStack, backfill_id: int) -> list[tuple[Any, ...]]:
    """(run_id, state, data interval start, start, end) of a backfill's runs, in span order."""
    return sql(
        stack,
        "select run_id, state, data_interval_start, start_date, end_date from dag_run"
        " where dag_id = %s and backfill_id = %s order by data_interval_start",
        DAG_ID,
        backfill_id,
    )


def backfill_tasks(stack: AirflowStack, backfill_id: int, where: str) -> list[tuple[Any, ...]]:
    """(run_id, task_id) of the backfill's task instances (``ti``) in runs (``dr``) that match ``where``."""
    return sql(
        stack,
        "select ti.run_id, ti.task_id from task_instance ti join dag_run dr"
        f" on dr.run_id = ti.run_id and dr.dag_id = ti.dag_id where dr.backfill_id = %s and {where}",
        backfill_id,
    )


def wait_until_settled(stack: AirflowStack, backfill_id: int, count: int, *, all_succeed: bool) -> list[tuple]:
    """Wait until the backfill's ``count`` runs have all finished; on an unexpected failure, fail with its tasks."""

    def settled() -> list[tuple] | None:
        stack.check_alive()
        rows = backfill_runs(stack, backfill_id)
        failed = [row[0] for row in rows if row[1] == "failed"]
        if all_succeed and failed:
            tasks = sql(
                stack, "select run_id, task_id from task_instance where state = 'failed' and dag_id = %s", DAG_ID
            )
            logs = [
                path.read_text(errors="replace")[-3000:]
                for run_id, task_id in tasks
                for path in (stack.env.home / "logs").glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id={task_id}/*")
            ]
            raise AssertionError(f"backfill runs failed: {failed}\n{tasks}\n" + "\n".join(logs))
        return rows if len(rows) == count and all(row[1] in ("success", "failed") for row in rows) else None

    return wait_for(f"the {count} runs of backfill {backfill_id} to finish", settled, timeout=1200, interval=3)


def executions_of(store: dict[str, Any], node: str, run_id: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in store["executions"]
        if e["properties"].get("pipeline") == DAG_ID
        and e["properties"].get("node_id") == node
        and run_id in (None, e["properties"].get("run_id"))
    ]


def outputs_of(store: dict[str, Any], execution: dict[str, Any]) -> list[int]:
    return sorted(ev["artifact_id"] for ev in store["events"]
                  if ev["execution_id"] == execution["id"] and ev["type"] == "OUTPUT")  # fmt: skip


def ingested_spans(store: dict[str, Any]) -> list[int]:
    """The span of every Examples artifact an ExampleGen execution produced (not reused from the cache)."""
    artifacts = {a["id"]: a for a in store["artifacts"]}
    return sorted(
        artifacts[artifact_id]["properties"]["span"]
        for e in executions_of(store, "example_gen")
        if e["state"] == "COMPLETE"
        for artifact_id in outputs_of(store, e)
    )


def span(day: date) -> int:
    return int(f"{day:%Y%m%d}")


def test_thirty_day_backfill_runs_each_span_once_with_three_runs_at_a_time(stack: AirflowStack) -> None:
    create_backfill(stack.env, BACKFILL_DAYS)
    backfill_id = latest_backfill(stack)
    rows = wait_until_settled(stack, backfill_id, len(BACKFILL_DAYS), all_succeed=True)

    assert [row[1] for row in rows] == ["success"] * 30
    assert [row[2].date() for row in rows] == BACKFILL_DAYS
    # Runs overlapped, three at most: count the runs already started and not yet ended when each one started.
    overlaps = [sum(1 for other in rows if other[3] <= row[3] < other[4]) for row in rows]
    assert 2 <= max(overlaps) <= 3, overlaps

    store = mlmd_dump(config=mlmd_config(stack.env))
    run_ids = {row[0] for row in rows}
    for node in NODES:
        executions = executions_of(store, node)
        assert Counter(e["state"] for e in executions) == {"COMPLETE": 30}, node
        assert {e["properties"]["run_id"] for e in executions} == run_ids, node
    assert ingested_spans(store) == [span(day) for day in BACKFILL_DAYS]
    assert not [e for e in store["executions"] if e["state"] in ("RUNNING", "FAILED")]


def test_clearing_one_day_reruns_it_from_the_cache(stack: AirflowStack) -> None:
    backfill_id = latest_backfill(stack)
    run_id = backfill_runs(stack, backfill_id)[14][0]  # the 15th day
    before = mlmd_dump(config=mlmd_config(stack.env))

    clear = {"dry_run": False, "dag_run_id": run_id, "reset_dag_runs": True, "only_failed": False}
    cleared = rest_api(stack, PASSWORD, "POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances", clear)
    assert sorted(ti["task_id"] for ti in cleared["task_instances"]) == sorted(NODES)

    def rerun() -> bool:
        stack.check_alive()
        states = sql(stack, "select state, try_number from task_instance where dag_id = %s and run_id = %s",
                     DAG_ID, run_id)  # fmt: skip
        [(run_state,)] = sql(stack, "select state from dag_run where dag_id = %s and run_id = %s", DAG_ID, run_id)
        assert run_state != "failed", states
        return run_state == "success" and all(state == "success" and tries == 2 for state, tries in states)

    wait_for(f"the cleared run {run_id} to succeed again", rerun, timeout=600, interval=2)

    after = mlmd_dump(config=mlmd_config(stack.env))
    for node in NODES:
        first, again = sorted(executions_of(after, node, run_id), key=lambda e: e["id"])
        assert (first["state"], again["state"]) == ("COMPLETE", "CACHED"), node
        assert again["properties"]["cached_from"] == first["id"]
        assert outputs_of(after, again) == outputs_of(after, first), node
    # Nothing was ingested or written anew.
    assert {a["id"] for a in after["artifacts"]} == {a["id"] for a in before["artifacts"]}
    assert ingested_spans(after) == ingested_spans(before)


def test_a_cancelled_backfill_leaves_nothing_half_published(stack: AirflowStack) -> None:
    create_backfill(stack.env, CANCELLED_DAYS)
    backfill_id = latest_backfill(stack)

    def working() -> bool:
        stack.check_alive()
        return bool(backfill_tasks(stack, backfill_id, "ti.state = 'running'"))

    wait_for("a task of the second backfill to run", working, timeout=600, interval=0.5)
    cancelled = rest_api(stack, PASSWORD, "PUT", f"/api/v2/backfills/{backfill_id}/cancel")
    assert cancelled["completed_at"] and cancelled["is_paused"]

    rows = wait_until_settled(stack, backfill_id, len(CANCELLED_DAYS), all_succeed=False)
    states = Counter(row[1] for row in rows)
    # Cut short mid-way: the runs that had started finished, the rest never ran.
    assert states["success"] >= 1 and states["failed"] >= 1 and sum(states.values()) == len(CANCELLED_DAYS), states
    # The failed runs are the ones Airflow failed while queued: none of their tasks ever started.
    started = backfill_tasks(stack, backfill_id, "dr.state = 'failed' and ti.start_date is not null")
    assert not started, started

    store = mlmd_dump(config=mlmd_config(stack.env))
    assert_nothing_half_published(store, Path(stack.env.extra_env["MLPIPE_PIPELINE_ROOT"]))
    succeeded = [span(row[2].date()) for row in rows if row[1] == "success"]
    assert ingested_spans(store) == sorted([span(day) for day in BACKFILL_DAYS] + succeeded)


def assert_nothing_half_published(store: dict[str, Any], root: Path) -> None:
    """No staging or temp folder is left; every visible artifact folder is complete and LIVE, and vice versa."""
    leftovers = [
        str(path)
        for path in root.rglob("*")
        if (path.name == STAGING_DIR and any(path.iterdir())) or path.name.startswith(".tmp-")
    ]
    assert not leftovers, leftovers
    assert not [e for e in store["executions"] if e["state"] in ("RUNNING", "FAILED")]
    artifacts = {a["uri"]: a for a in store["artifacts"]}
    for artifact in artifacts.values():
        assert artifact["state"] == "LIVE", artifact
        assert os.path.exists(os.path.join(artifact["uri"], COMPLETE_MARKER)), artifact["uri"]
    executions = {e["id"]: e for e in store["executions"]}
    for node in NODES:
        for execution_dir in (root / DAG_ID / node).iterdir():
            if execution_dir.name == STAGING_DIR:
                continue
            assert executions[int(execution_dir.name)]["state"] == "COMPLETE", execution_dir
            for output in execution_dir.iterdir():
                assert str(output) in artifacts and (output / COMPLETE_MARKER).exists(), output
