"""What every ``mlpipe`` subcommand module exports: its name, its help, its options and what it runs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_mlpipe.protocol import FAILURE_PREFIX


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For a subcommand without options."""


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]  # returns the exit code
    add_arguments: Callable[[argparse.ArgumentParser], None] = no_arguments


def report_runtime_failure(command: str, proc: subprocess.CompletedProcess[str]) -> int:
    """Print why a runtime command failed: its own sentence without the stage-protocol prefix, else its output."""
    failures = [line for line in proc.stderr.splitlines() if line.startswith(FAILURE_PREFIX)]
    if failures:
        print(f"mlpipe {command}: {failures[-1][len(FAILURE_PREFIX) :]}", file=sys.stderr)
    else:
        sys.stderr.write(proc.stderr[-4000:] or proc.stdout[-4000:])
    return proc.returncode or 1
