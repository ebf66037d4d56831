"""Resolving a run that a gate stopped, so later runs' span-ordered stages go on (docs/ordering.md)."""

from __future__ import annotations

from tests.support.airflow_env import AirflowEnv


def accept_stopped_run(env: AirflowEnv, dag_id: str) -> list[str]:
    """Mark the newest run's ``upstream_failed`` tasks ``skipped``, as "Mark as skipped" in the UI or REST does.

    A gate with ``policy: fail`` leaves the stages after it ``upstream_failed``; Airflow's ``depends_on_past``
    holds the same stages of later runs until that is resolved. Returns the task ids it marked.
    """
    with env.db() as conn:
        (run_id,) = conn.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (dag_id,)
        ).fetchone()
        tasks = [
            task_id
            for (task_id,) in conn.execute(
                "select task_id from task_instance where dag_id=? and run_id=? and state='upstream_failed'",
                (dag_id, run_id),
            )
        ]
        conn.execute(
            "update task_instance set state='skipped' where dag_id=? and run_id=? and state='upstream_failed'",
            (dag_id, run_id),
        )
    return tasks
