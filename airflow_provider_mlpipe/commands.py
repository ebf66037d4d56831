"""Operational ``mlpipe`` subcommands that need Airflow: ``rollback`` and ``summary``.

They register into the CLI's command registry (spec/cli.py); imported lazily so ``mlpipe lint`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_mlpipe.spec.cli import command


def _dags_folder() -> Path:
    folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if not folder:
        try:
            from airflow_provider_mlpipe.version_compat import conf

            folder = conf.get("core", "dags_folder")
        except Exception:
            folder = "dags"
    return Path(folder)


def pusher_destination(pipeline: str, specs: Path) -> tuple[str, str]:
    """The serving directory and MLMD connection of a pipeline, read from its spec."""
    from airflow_provider_mlpipe.spec.loader import selected_environment
    from airflow_provider_mlpipe.spec.validate import discover, load_all

    pipelines, _ = load_all(discover(specs), base_dir=specs.resolve().parent, environment=selected_environment())
    for item in pipelines:
        if item.name == pipeline:
            params = item.stage_params.get("pusher") or {}
            if not params.get("destination"):
                raise SystemExit(f"The pipeline {pipeline!r} has no pusher destination in its spec.")
            return str(params["destination"]), item.spec.mlmd_conn_id
    raise SystemExit(f"No valid spec under {specs} defines the pipeline {pipeline!r}.")


def _rollback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="the pipeline (DAG id)")
    parser.add_argument("--to", type=int, default=None, help="the version to serve (default: the previous one)")
    parser.add_argument("--destination", help="the serving directory (default: the pusher's, from the spec)")
    parser.add_argument("--specs", type=Path, help="the spec folder (default: <dags folder>/pipelines)")
    parser.add_argument("--mlmd-conn-id", help="the mlmd connection (default: the spec's)")


@command("rollback", "Serve an earlier pushed model again (recorded in MLMD).", arguments=_rollback_arguments)
def rollback(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.operators.launch import runtime_env
    from airflow_provider_mlpipe.operators.rollback import last_json_line, rollback_command
    from airflow_provider_mlpipe.operators.runtime_python import resolve_runtime_python

    destination, conn_id = args.destination, args.mlmd_conn_id
    if destination is None:
        destination, spec_conn = pusher_destination(args.pipeline, args.specs or _dags_folder() / "pipelines")
        conn_id = conn_id or spec_conn
    cmd = rollback_command(resolve_runtime_python(), args.pipeline, destination, args.to)
    proc = subprocess.run(cmd, env=runtime_env(conn_id or "mlmd_default"), capture_output=True, text=True)
    summary = last_json_line(proc.stdout) if proc.returncode == 0 else {}
    if proc.returncode != 0 or not summary:
        sys.stderr.write(proc.stderr[-4000:] or proc.stdout[-4000:])
        return proc.returncode or 1
    print(
        f"Rolled back {args.pipeline}: version {summary['version']} now serves a copy of version "
        f"{summary['rollback_of']} (was {summary['rolled_back_from']}) under {destination}."
    )
    return 0


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="the pipeline (DAG id)")
    parser.add_argument("--run-id", help="the DAG run (default: the newest)")


@command("summary", "Print a readable summary of a pipeline run.", arguments=_summary_arguments)
def summary(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.summary import load_run, render

    try:
        print(render(load_run(args.pipeline, args.run_id)))
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
