"""Airflow on the CeleryExecutor with two workers that share no disk, running the penguins pipeline.

The stack: a Redis broker, the Airflow DB and Celery's result backend on PostgreSQL, MLMD on PostgreSQL, the
pipeline root and the pusher's destination on the GCS emulator. Two ``airflow celery worker`` processes act as two
hosts: each has its own AIRFLOW_HOME, TMPDIR, HOME, working directory and copy of the dags folder. The spec's
``queue`` keys pin the stages: everything on ``general`` (worker A), the Trainer on ``highmem`` (worker B).

One triggered run and a concurrent two-day backfill must all succeed, with each (run, stage) executed exactly once
in MLMD, every artifact on GCS, each stage on the worker its queue names, and no artifact file on either worker's
disk afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_env import AirflowEnv, mlmd_dump
from tests.support.airflow_stack import CeleryStack, CeleryWorker, celery_stack_env, running_celery_stack
from tests.support.gcs_emulator import GcsEmulator, running_emulator
from tests.support.penguins_stack import (
    PENGUINS_CONF,
    TRIGGERED_DAY,
    assert_each_run_stage_once,
    backfill_two_days,
    mlmd_config,
    mlmd_connection,
    penguins_dags,
    sql,
    wait_for_three_runs,
    wait_until_parsed,
)
from tests.support.postgres import free_port
from tests.support.redis import running_redis

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow, pytest.mark.celery]
BUCKET = "mlpipe-celery"
GENERAL, HIGHMEM = "general", "highmem"
# The pipeline-wide queue, and the Trainer moved to the big-memory pool.
QUEUE_KEYS = {
    "mlmd_conn_id: mlmd_default\n": f"mlmd_conn_id: mlmd_default\nqueue: {GENERAL}\n",
    "  trainer:\n    params:\n": f"  trainer:\n    queue: {HIGHMEM}\n    params:\n",
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    with running_emulator(default_bucket=BUCKET) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: Any, emulator: GcsEmulator) -> Iterator[CeleryStack]:
    postgres.create_database("airflow_celery")
    postgres.create_database("mlmd_celery")
    port = free_port()
    result_backend = "db+" + postgres.url("airflow_celery", driver="postgresql")
    workers = [
        # Short roots: the warm runtime's socket lives under each worker's AIRFLOW_HOME.
        CeleryWorker("worker-a", (GENERAL,), tmp_path_factory.mktemp("wa"), concurrency=3),
        CeleryWorker("worker-b", (HIGHMEM,), tmp_path_factory.mktemp("wb"), concurrency=1),
    ]
    with running_redis() as redis:
        env = AirflowEnv(
            tmp_path_factory.mktemp("airflow"),
            penguins_dags(tmp_path_factory.mktemp("celery"), QUEUE_KEYS),
            {
                **celery_stack_env(port, redis.url(), result_backend),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("airflow_celery"),
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW_CONN_MLMD_DEFAULT": mlmd_connection(postgres, "mlmd_celery"),
                "MLPIPE_PIPELINE_ROOT": f"gs://{BUCKET}/root",
                "MLPIPE_SERVING_DIR": f"gs://{BUCKET}/serving/penguins",
                **emulator.env,  # reaches every worker, and through them every runtime
            },
        )
        with running_celery_stack(env, port, workers) as running:
            yield running


def worker_files(worker: CeleryWorker) -> list[Path]:
    return sorted(p for folder in worker.disk for p in folder.rglob("*") if p.is_file())


def task_logs(worker: CeleryWorker) -> set[tuple[str, str]]:
    """(run id, task id) of every task log in the worker's own AIRFLOW_HOME."""
    pattern = re.compile(r"dag_id=penguins/run_id=([^/]+)/task_id=([^/]+)/")
    found = (pattern.search(p.relative_to(worker.home).as_posix()) for p in (worker.home / "logs").rglob("*.log"))
    return {(m.group(1), m.group(2)) for m in found if m}


def test_penguins_on_two_celery_workers_that_share_no_disk(stack: CeleryStack, emulator: GcsEmulator) -> None:
    env = stack.env
    wait_until_parsed(stack)
    # A CLI-triggered run's data interval is the moment it was triggered, so the spec's span param names the day.
    conf = {**PENGUINS_CONF, "span": int(TRIGGERED_DAY.replace("-", ""))}
    env.run("dags", "trigger", "penguins", "--logical-date", f"{TRIGGERED_DAY}T00:00:00+00:00",
            "--conf", json.dumps(conf))  # fmt: skip
    backfill_two_days(env)
    rows = wait_for_three_runs(stack, log_homes=[w.home for w in stack.workers.values()])
    run_ids = {r[0] for r in rows}

    # Each stage ran where its queue sent it, and both workers took part.
    tis = sql(stack, "select run_id, task_id, queue, hostname, state from task_instance where dag_id = 'penguins'")
    assert {r[0] for r in tis} == run_ids
    placed = {(run, task): (queue, host) for run, task, queue, host, state in tis if state == "success"}
    assert len(placed) == len(tis), [r for r in tis if r[4] != "success"]
    expected = {task: (HIGHMEM, "worker-b") if task == "trainer" else (GENERAL, "worker-a") for _, task in placed}
    assert placed == {key: expected[key[1]] for key in placed}
    assert {host for _, host in placed.values()} == {"worker-a", "worker-b"}
    # The workers' own records agree: each holds the logs of exactly the tasks it ran, and its Celery log names them.
    for worker in stack.workers.values():
        ran_here = {key for key, (_, host) in placed.items() if host == worker.name}
        assert task_logs(worker) == ran_here, worker.name
        celery_log = stack.log(worker.process_name)
        for run_id, task_id in ran_here:
            assert re.search(rf"Executing workload in Celery.*task_id='{task_id}'.*run_id='{re.escape(run_id)}'",
                             celery_log), (worker.name, run_id, task_id)  # fmt: skip

    mlmd = mlmd_dump(config=mlmd_config(env))
    assert_each_run_stage_once(mlmd, run_ids)
    local = [a["uri"] for a in mlmd["artifacts"] if not a["uri"].startswith(f"gs://{BUCKET}/")]
    assert not local, f"artifacts outside the bucket: {local}"

    # Nothing a stage produced stayed on a worker: no file on either disk is named like an object in the bucket.
    objects = emulator.objects(BUCKET)
    assert any(name.startswith("serving/penguins/") for name in objects)
    object_names = {name.rsplit("/", 1)[-1] for name in objects}
    for worker in stack.workers.values():
        files = worker_files(worker)
        left = [str(p) for p in files if p.name in object_names]
        assert not left, f"{worker.name} kept {len(left)} artifact file(s) after the runs, e.g. {left[:5]}"
        other_runs = [str(p) for p in files if any(run in str(p) for run in run_ids) and p.suffix != ".log"]
        assert not other_runs, f"{worker.name} kept run outputs: {other_runs}"
