"""``mlpipe summary``: a readable summary of one pipeline run, from Airflow's metadata database."""

from __future__ import annotations

import argparse
import sys

from airflow_provider_mlpipe.cli.subcommand import Subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="the pipeline (DAG id)")
    parser.add_argument("--run-id", help="the DAG run (default: the newest)")


def run(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.summary import load_run, render  # imports Airflow

    try:
        print(render(load_run(args.pipeline, args.run_id)))
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


SUBCOMMAND = Subcommand(
    name="summary", help="Print a readable summary of a pipeline run.", run=run, add_arguments=add_arguments
)
