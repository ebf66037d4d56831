"""``mlpipe doctor``: is this Airflow ready to run a pipeline's runs (a backfill, a trigger)? Names what is missing.

A paused DAG's runs stay ``queued`` and tasks without an api-server fail with ``Connection refused``; neither says
why, and no task of ours runs early enough to tell. So the checks run here, before the runs are created, against
the same metadata database and configuration the scheduler uses. Each failed check names the one command that
fixes it; the exit code is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_mlpipe.cli.subcommand import Subcommand


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # the command that fixes it

    def lines(self) -> list[str]:
        out = [f"{'ok' if self.ok else 'MISSING':<8} {self.name}: {self.detail}"]
        if not self.ok and self.fix:
            out.append(f"{'':<8} fix: {self.fix}")
        return out


def execution_api_check(url: str, timeout_s: float = 5.0) -> Check:
    """The api-server's Execution API, which every task reports to (else ``Connection refused``)."""
    name = "api-server"
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as response:
            healthy = json.loads(response.read() or b"{}").get("status") == "healthy"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(name, False, f"tasks cannot reach the Execution API at {url} ({reason})", "airflow api-server")
    if not healthy:
        return Check(name, False, f"{url} answers, but not as a healthy Execution API", "airflow api-server")
    return Check(name, True, f"the Execution API answers at {url}")


def job_check(job_type: str, name: str, command: str, most_recent: Callable[[str], Any]) -> Check:
    job = most_recent(job_type)
    if job is None or not job.is_alive():
        return Check(name, False, f"no live {name} heartbeat in the metadata database", command)
    return Check(name, True, f"alive on {job.hostname}")


def dag_checks(dag_id: str, session: Any) -> list[Check]:
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from sqlalchemy import select

    model = session.scalars(select(DagModel).where(DagModel.dag_id == dag_id)).first()
    if model is None or SerializedDagModel.get(dag_id, session=session) is None:
        return [
            Check(
                dag_id,
                False,
                "Airflow does not know this DAG yet; its spec is not parsed or is invalid "
                "(see `airflow dags list-import-errors`)",
                "airflow dags reserialize",
            )
        ]
    checks = [Check(f"{dag_id} parsed", True, f"from {model.relative_fileloc or model.fileloc}")]
    if model.is_paused:
        checks.append(
            Check(
                f"{dag_id} unpaused",
                False,
                "the DAG is paused, so its runs (a backfill's too) stay queued",
                f"airflow dags unpause {dag_id}",
            )
        )
    else:
        checks.append(Check(f"{dag_id} unpaused", True, "the scheduler starts its runs"))
    if model.next_dagrun is not None:  # not a problem, but a newcomer does not expect it next to a backfill
        checks.append(
            Check(
                f"{dag_id} schedule",
                True,
                f"{model.timetable_summary}; unpaused, it also runs the interval of {model.next_dagrun:%Y-%m-%d} "
                "(a spec end_date stops that for a history-only pipeline)",
            )
        )
    return checks


def run_checks(dag_ids: list[str]) -> list[Check]:
    from airflow.executors.base_executor import get_execution_api_server_url
    from airflow.jobs.job import most_recent_job
    from airflow.utils.session import create_session

    checks = [execution_api_check(get_execution_api_server_url())]
    try:
        with create_session() as session:

            def latest(job_type: str) -> Any:
                return most_recent_job(job_type, session=session)

            checks.append(job_check("SchedulerJob", "scheduler", "airflow scheduler", latest))
            checks.append(job_check("DagProcessorJob", "dag-processor", "airflow dag-processor", latest))
            for dag_id in dag_ids:
                checks.extend(dag_checks(dag_id, session))
    except Exception as exc:  # e.g. no such table: the database was never migrated
        checks.append(Check("metadata database", False, f"cannot be read: {type(exc).__name__}", "airflow db migrate"))
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dag_ids", nargs="*", metavar="PIPELINE", help="pipelines (DAG ids) whose state to check")
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep checking for up to this long while services are still starting (default: check once)",
    )


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + max(0.0, args.wait)
    checks = run_checks(list(args.dag_ids))
    while any(not c.ok for c in checks) and time.monotonic() < deadline:
        time.sleep(2)
        checks = run_checks(list(args.dag_ids))
    for check in checks:
        print("\n".join(check.lines()))
    missing = [c for c in checks if not c.ok]
    print(f"\n{len(missing)} problem(s) found." if missing else "\nReady: runs of these pipelines will start.")
    return 1 if missing else 0


SUBCOMMAND = Subcommand(
    name="doctor",
    help="Check that Airflow can run a pipeline's runs (api-server, scheduler, parsed and unpaused DAG).",
    run=run,
    add_arguments=add_arguments,
)
