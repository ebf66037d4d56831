"""Backfills through a real scheduler (LocalExecutor) on the local setup's SQLite databases.

That each run ingests the span of its own data interval, once, is shown at scale by the 30-day backfill on
PostgreSQL (test_backfill_30_days.py).

- A four-day backfill of the penguins pipeline with four active runs at once records the same baselines, the same
  drift and schema comparisons (each span against the span before it) and serves the same final version as the
  same four days run one after another, because the stages that read earlier spans take them in order
  (``depends_on_past``) while the rest overlaps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from tests.support.airflow_env import AirflowEnv, mlmd_dump
from tests.support.airflow_stack import AirflowStack, query, running_stack, stack_env, wait_for
from tests.support.penguins_variants import copy_penguins_modules, penguins_variant
from tests.support.postgres import free_port
from tests.support.spec_fixtures import make_dags_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONCURRENT, SEQUENTIAL = "penguins_concurrent", "penguins_sequential"
ORDERED_NODES = ("schema_gen", "example_validator", "evaluator", "pusher")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("backfill-root")
    serving = tmp_path_factory.mktemp("backfill-serving")
    specs = {name: penguins_variant(name, root, serving / name) for name in (CONCURRENT, SEQUENTIAL)}
    dags = make_dags_folder(tmp_path_factory.mktemp("backfill-dags"), specs)
    copy_penguins_modules(dags)
    port = free_port()
    env = AirflowEnv(tmp_path_factory.mktemp("airflow"), dags, {"AIRFLOW__CORE__PARALLELISM": "4", **stack_env(port)})
    with running_stack(env, port) as running:
        yield running


def wait_parsed(stack: AirflowStack, *dag_ids: str) -> None:
    def parsed() -> bool:
        stack.check_alive()
        rows = query(stack.env, "select dag_id from serialized_dag")
        return set(dag_ids) <= {dag_id for (dag_id,) in rows}

    wait_for(f"the dag-processor to parse {', '.join(dag_ids)}", parsed, timeout=240)


def wait_backfill_runs(stack: AirflowStack, dag_id: str, count: int, timeout: float) -> None:
    def done() -> bool:
        stack.check_alive()
        rows = query(stack.env, "select run_id, state from dag_run where dag_id=? and run_type='backfill'", dag_id)
        if any(state == "failed" for _, state in rows):
            failed = query(
                stack.env, "select run_id, task_id from task_instance where dag_id=? and state='failed'", dag_id
            )
            raise AssertionError(f"a {dag_id} backfill run failed: {rows} {failed}\n{stack.log('scheduler')[-4000:]}")
        return len(rows) == count and all(state == "success" for _, state in rows)

    wait_for(f"{count} successful {dag_id} backfill runs", done, timeout=timeout, interval=3)


# ----- four days with four active runs == four days one after another ----------------------------------------------
def comparisons(store: dict[str, Any], pipeline: str) -> dict[tuple[str, int], dict[str, Any]]:
    """(node, span) -> the spans each ordered stage read and what it decided, from one pipeline's MLMD records.

    E.g. ``("evaluator", 20240103) -> {"baseline_model": 20240102, "blessing": {"blessed": 1, ...}}``.
    """
    artifacts = {a["id"]: a for a in store["artifacts"]}
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for execution in store["executions"]:
        props = execution["properties"]
        if props.get("pipeline") != pipeline or props.get("node_id") not in ORDERED_NODES:
            continue
        if execution["state"] not in ("COMPLETE", "CACHED"):
            continue
        # The served model's evaluation records what was serving when the span was evaluated: monitoring that
        # decides nothing, and in a concurrent backfill the previous span's push may not have happened yet.
        events = [
            ev
            for ev in store["events"]
            if ev["execution_id"] == execution["id"] and ev["slot"] not in ("served_model", "served_evaluation")
        ]
        outputs = {ev["slot"]: artifacts[ev["artifact_id"]]["properties"] for ev in events if ev["type"] == "OUTPUT"}
        inputs = {ev["slot"]: artifacts[ev["artifact_id"]]["properties"].get("span") for ev in events
                  if ev["type"] == "INPUT"}  # fmt: skip
        span = next(p["span"] for p in outputs.values() if "span" in p)
        decided = {
            slot: {k: v for k, v in p.items() if k in ("blessed", "version", "pushed", "span")}
            for slot, p in outputs.items()
        }
        assert (props["node_id"], span) not in out, f"{pipeline}: two executions of {props['node_id']} for {span}"
        out[(props["node_id"], span)] = {**inputs, **decided}
    return out


def ordered_task_windows(env: AirflowEnv, dag_id: str) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each task's (start, end) per run, runs in logical-date order."""
    rows = query(
        env,
        "select ti.task_id, ti.start_date, ti.end_date from task_instance ti join dag_run dr"
        " on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id where ti.dag_id=? order by dr.logical_date",
        dag_id,
    )
    windows: dict[str, list[tuple[datetime, datetime]]] = {}
    for task_id, start, end in rows:
        windows.setdefault(task_id, []).append((datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end))))
    return windows


def test_four_day_backfill_with_four_active_runs_matches_four_runs_one_after_another(stack: AirflowStack) -> None:
    env = stack.env
    wait_parsed(stack, CONCURRENT, SEQUENTIAL)
    days = ("--from-date", "2024-01-01", "--to-date", "2024-01-04", "--reprocess-behavior", "failed")
    env.run("backfill", "create", "--dag-id", SEQUENTIAL, *days, "--max-active-runs", "1")
    env.run("backfill", "create", "--dag-id", CONCURRENT, *days, "--max-active-runs", "4")
    wait_backfill_runs(stack, SEQUENTIAL, 4, timeout=1500)
    wait_backfill_runs(stack, CONCURRENT, 4, timeout=600)

    # The concurrent backfill really overlapped: a later run's ExampleGen started before an earlier run ended.
    runs = query(env, "select start_date, end_date from dag_run where dag_id=? order by logical_date", CONCURRENT)
    assert any(str(later[0]) < str(earlier[1]) for earlier, later in pairwise(runs)), runs
    # ...while each ordered stage took the spans one after another.
    windows = ordered_task_windows(env, CONCURRENT)
    for task_id in ORDERED_NODES:
        spans = windows[task_id]
        assert all(prev[1] <= nxt[0] for prev, nxt in pairwise(spans)), (task_id, spans)

    store = mlmd_dump(env.mlmd_path)
    concurrent, sequential = comparisons(store, CONCURRENT), comparisons(store, SEQUENTIAL)
    assert concurrent == sequential
    # Each span after the first compares with the span before it, in both.
    spans = [20240101, 20240102, 20240103, 20240104]
    for previous, span in pairwise(spans):
        assert sequential[("example_validator", span)]["previous_statistics"] == previous
        assert sequential[("schema_gen", span)]["previous_schema"] == previous
        assert sequential[("evaluator", span)]["baseline_model"] == previous
    # The same final served version, trained on the last span.
    pushed = {name: sorted(p["pushed_model"]["version"] for (node, _), p in found.items() if node == "pusher")
              for name, found in (("c", concurrent), ("s", sequential))}  # fmt: skip
    assert pushed["c"] == pushed["s"] == [1, 2, 3, 4]
    assert concurrent[("pusher", 20240104)]["pushed_model"]["version"] == 4
