"""``mlpipe gc``: apply a pipeline's retention policy through the runtime, or with ``--dry-run`` only list it."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from airflow_provider_mlpipe.cli.rollback import dags_folder, named_pipeline
from airflow_provider_mlpipe.cli.subcommand import Subcommand, report_runtime_failure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="the pipeline (DAG id)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted and what is kept, and why")
    parser.add_argument("--specs", type=Path, help="the spec folder (default: <dags folder>/pipelines)")
    parser.add_argument("--mlmd-conn-id", help="the mlmd connection (default: the spec's)")


def report_lines(stdout: str) -> list[str]:
    """The runtime's report: from its heading to before its last line, the plan as JSON (log lines left out)."""
    lines = stdout.rstrip("\n").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("mlpipe gc ")), len(lines))
    return lines[start:-1]


def run(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.operators.gc import GcTarget, gc_command
    from airflow_provider_mlpipe.operators.launch import runtime_env
    from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python

    pipeline = named_pipeline(args.pipeline, args.specs or dags_folder() / "pipelines")
    target = GcTarget.of(pipeline)
    command = gc_command(resolve_runtime_python(pipeline.spec.runtime.python), target, args.dry_run)
    env = runtime_env(args.mlmd_conn_id or pipeline.spec.mlmd_conn_id)
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return report_runtime_failure("gc", proc)
    print("\n".join(report_lines(proc.stdout)))
    return 0


SUBCOMMAND = Subcommand(
    name="gc",
    help="Delete what the retention policy no longer keeps (--dry-run lists it, with what is kept and why).",
    run=run,
    add_arguments=add_arguments,
)
