"""``mlpipe rollback``: serve an earlier pushed model again, through the runtime, recorded in MLMD."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.cli.subcommand import Subcommand, report_runtime_failure


def dags_folder() -> Path:
    """Airflow's DAGs folder: the environment, then Airflow's config, then ``dags`` in the working directory."""
    folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if not folder:
        try:
            from airflow_provider_mlpipe.version_compat import conf

            folder = conf.get("core", "dags_folder")
        except Exception:  # no Airflow config here; the working directory's dags/ is the usual layout
            folder = "dags"
    return Path(folder)


def pipeline_spec(pipeline: str, specs: Path) -> Any:
    """The validated ``spec.validate.Pipeline`` called ``pipeline`` under the spec folder ``specs``, or None."""
    from airflow_provider_mlpipe.spec.loader import selected_environment
    from airflow_provider_mlpipe.spec.validate import discover, load_all

    if not specs.exists():
        return None
    pipelines, _ = load_all(discover(specs), base_dir=specs.resolve().parent, environment=selected_environment())
    return next((item for item in pipelines if item.name == pipeline), None)


def named_pipeline(pipeline: str, specs: Path) -> Any:
    """The validated ``spec.validate.Pipeline`` called ``pipeline`` under the spec folder ``specs``."""
    item = pipeline_spec(pipeline, specs)
    if item is None:
        raise SystemExit(f"No valid spec under {specs} defines the pipeline {pipeline!r}.")
    return item


def pusher_destination(item: Any) -> tuple[str, str, int | None]:
    """The serving directory, MLMD connection and ``keep_versions`` of a pipeline, read from its spec."""
    params = item.stage_params.get("pusher") or {}
    if not params.get("destination"):
        raise SystemExit(f"The pipeline {item.name!r} has no pusher destination in its spec.")
    return str(params["destination"]), item.spec.mlmd_conn_id, params.get("keep_versions")


def notify_rolled_back(item: Any, summary: dict[str, Any]) -> None:
    """Send the spec's ``rolled_back`` notifiers; a rollback outside a DAG run has no run, so none is named."""
    from airflow_provider_mlpipe.notifications.notifier import event_notifiers

    for notifier in event_notifiers(item.spec.notify, "rolled_back"):
        try:
            notifier({"dag_run": {"dag_id": item.name, "dag_run_id": ""}, "rollback": summary})
        except Exception as exc:  # the model is rolled back already; a lost message must not hide that
            print(f"mlpipe rollback: the rolled_back notification was not sent: {exc}", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="the pipeline (DAG id)")
    parser.add_argument("--to", type=int, default=None, help="the version to serve (default: the previous one)")
    parser.add_argument("--destination", help="the serving directory (default: the pusher's, from the spec)")
    parser.add_argument("--specs", type=Path, help="the spec folder (default: <dags folder>/pipelines)")
    parser.add_argument("--mlmd-conn-id", help="the mlmd connection (default: the spec's)")
    parser.add_argument(
        "--keep-versions",
        type=int,
        help="prune to this many versions, never the served one nor the target (default: the pusher's, from the spec)",
    )


def run(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.operators.rollback import last_json_line, rollback_launch

    destination, conn_id, keep = args.destination, args.mlmd_conn_id, args.keep_versions
    item = None
    if destination is None:
        item = named_pipeline(args.pipeline, args.specs or dags_folder() / "pipelines")
        destination, spec_conn, spec_keep = pusher_destination(item)
        conn_id = conn_id or spec_conn
        keep = keep if keep is not None else spec_keep
    command, env = rollback_launch(args.pipeline, destination, args.to, keep, mlmd_conn_id=conn_id or "mlmd_default")
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    summary = last_json_line(proc.stdout) if proc.returncode == 0 else {}
    if proc.returncode != 0 or not summary:
        return report_runtime_failure("rollback", proc)
    pruned = f"; pruned versions {', '.join(map(str, summary['pruned']))}" if summary.get("pruned") else ""
    print(
        f"Rolled back {args.pipeline}: version {summary['version']} now serves a copy of version "
        f"{summary['rollback_of']} (was {summary['rolled_back_from']}) under {destination}{pruned}."
    )
    if item is not None:
        notify_rolled_back(item, summary)
    return 0


SUBCOMMAND = Subcommand(
    name="rollback",
    help="Serve an earlier pushed model again (recorded in MLMD).",
    run=run,
    add_arguments=add_arguments,
)
