"""The ``mlpipe`` console script: builds one parser from ``SUBCOMMANDS`` and runs the chosen subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from airflow_provider_mlpipe.cli import baseline, bless, doctor, gc, init, lint, rollback, schema, summary
from airflow_provider_mlpipe.cli.subcommand import Subcommand

# The subcommands in the order ``mlpipe --help`` lists them; a new subcommand is its module plus one line here.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    init.SUBCOMMAND,
    lint.SUBCOMMAND,
    schema.SUBCOMMAND,
    summary.SUBCOMMAND,
    rollback.SUBCOMMAND,
    gc.SUBCOMMAND,
    bless.SUBCOMMAND,
    baseline.SUBCOMMAND,
    doctor.SUBCOMMAND,
)


def build_parser(subcommands: Sequence[Subcommand] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description="mlpipe: TFX-style ML pipelines on Airflow.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in subcommands:
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None, subcommands: Sequence[Subcommand] = SUBCOMMANDS) -> int:
    args = build_parser(subcommands).parse_args(argv)
    by_name = {command.name: command for command in subcommands}
    return by_name[args.command].run(args)
