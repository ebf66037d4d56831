"""``mlpipe baseline reset``: the next run is judged on value thresholds only, until a model is blessed again."""

from __future__ import annotations

import argparse

from airflow_provider_mlpipe.cli.bless import add_decision_arguments, decide
from airflow_provider_mlpipe.cli.subcommand import Subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="baseline_command", required=True, metavar="ACTION")
    reset_help = (
        "From the newest trained span on, judge candidates on value thresholds only, until a model is blessed after "
        "the reset (recorded in MLMD)."
    )
    reset = sub.add_parser("reset", help=reset_help, description=reset_help)
    add_decision_arguments(reset)
    reset.add_argument(
        "--from-span",
        type=int,
        help="the first span the reset applies to (default: the newest span a model was trained on)",
    )


def run(args: argparse.Namespace) -> int:
    return decide(args, "baseline reset", "baseline-reset", from_span=args.from_span)


SUBCOMMAND = Subcommand(
    name="baseline",
    help="Reset the Evaluator's baseline (baseline reset), recorded in MLMD.",
    run=run,
    add_arguments=add_arguments,
)
