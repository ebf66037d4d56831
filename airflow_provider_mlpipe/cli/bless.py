"""``mlpipe bless``: bless a NOT_BLESSED model by override, with a reason; it becomes the next run's baseline."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.cli.rollback import dags_folder, pipeline_spec
from airflow_provider_mlpipe.cli.subcommand import Subcommand


def add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    """What an override and a reset both take: the pipeline, the reason, who decides, and where MLMD is."""
    parser.add_argument("pipeline", help="the pipeline (DAG id)")
    parser.add_argument("--reason", required=True, help="why; recorded in ML Metadata with the decision")
    parser.add_argument("--user", help="who decides (default: the login name)")
    parser.add_argument("--specs", type=Path, help="the spec folder (default: <dags folder>/pipelines)")
    parser.add_argument("--mlmd-conn-id", help="the mlmd connection (default: the spec's, else mlmd_default)")


def checked_reason(parser_name: str, reason: str) -> str | None:
    if reason.strip():
        return reason.strip()
    print(f"mlpipe {parser_name}: --reason must say why; it is recorded with the decision.", file=sys.stderr)
    return None


def decide(args: argparse.Namespace, name: str, action: Any, **what: Any) -> int:
    """Run the runtime's decision for ``args`` and print what it recorded, or its one-sentence error."""
    from airflow_provider_mlpipe.operators.baseline_decisions import (
        airflow_home_cwd,
        decision_launch,
        describe,
        run_decision,
    )

    reason = checked_reason(name, args.reason)
    if reason is None:
        return 2
    conn_id = args.mlmd_conn_id
    if conn_id is None:
        item = pipeline_spec(args.pipeline, args.specs or dags_folder() / "pipelines")
        conn_id = item.spec.mlmd_conn_id if item is not None else None
    user = args.user or getpass.getuser()
    command, env = decision_launch(
        action, args.pipeline, reason=reason, user=user, mlmd_conn_id=conn_id or "mlmd_default", **what
    )
    outcome = run_decision(command, env, cwd=airflow_home_cwd())
    if not outcome.ok:
        print(f"mlpipe {name}: {outcome.error}", file=sys.stderr)
        return outcome.returncode or 1
    print(describe(action, args.pipeline, outcome.summary))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_decision_arguments(parser)
    parser.add_argument(
        "--model",
        required=True,
        help="the NOT_BLESSED model: its MLMD artifact id (the run view shows it), or the run id that evaluated it",
    )


def run(args: argparse.Namespace) -> int:
    return decide(args, "bless", "bless", model=args.model)


SUBCOMMAND = Subcommand(
    name="bless",
    help="Bless a NOT_BLESSED model by override, with a reason (recorded in MLMD); it becomes the next baseline.",
    run=run,
    add_arguments=add_arguments,
)
