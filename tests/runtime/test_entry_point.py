"""The runtime's one entry point: its subcommands, their arguments, and the messages of bad command lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_mlpipe.protocol import RUNTIME_MODULE, RUNTIME_SUBCOMMANDS, runtime_command
from airflow_provider_mlpipe.runtime.__main__ import build_parser

pytestmark = pytest.mark.runtime


def entry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", RUNTIME_MODULE, *args], capture_output=True, text=True, timeout=120)


def test_each_subcommand_parses_the_argv_the_airflow_side_builds() -> None:
    parser = build_parser()
    run = parser.parse_args(runtime_command("py", "run", "req.json", "--result", "out.json")[3:])
    assert (run.command, run.request, run.request_env, run.result) == ("run", "req.json", None, "out.json")
    pod = parser.parse_args(runtime_command("py", "run", "--request-env", "MLPIPE_REQUEST", "--result", "r")[3:])
    assert (pod.request, pod.request_env) == (None, "MLPIPE_REQUEST")
    back = parser.parse_args(runtime_command("py", "rollback", "penguins", "--destination", "/srv", "--to", "2")[3:])
    assert (back.command, back.pipeline, back.destination, back.to) == ("rollback", "penguins", "/srv", 2)
    gate = parser.parse_args(runtime_command("py", "gate-record", '{"gate": "model_blessing"}')[3:])
    assert (gate.command, gate.decision) == ("gate-record", '{"gate": "model_blessing"}')
    with pytest.raises(ValueError, match="no subcommand 'gate_record'"):
        runtime_command("py", "gate_record")


def test_a_bad_or_missing_subcommand_names_the_choices() -> None:
    bad = entry("gate_record", "{}")
    assert bad.returncode == 2
    assert (
        "error: argument COMMAND: invalid choice: 'gate_record' "
        "(choose from 'run', 'rollback', 'gc', 'bless', 'baseline-reset', 'gate-record', 'serve')" in bad.stderr
    )
    # the Airflow side builds its argv from RUNTIME_SUBCOMMANDS, so the parser must offer exactly those
    assert f"(choose from {', '.join(map(repr, RUNTIME_SUBCOMMANDS))})" in bad.stderr
    missing = entry()
    assert missing.returncode == 2 and "the following arguments are required: COMMAND" in missing.stderr
    listed = entry("--help")
    assert listed.returncode == 0
    assert all(name in listed.stdout for name in RUNTIME_SUBCOMMANDS)


def test_subcommand_argument_errors_name_the_subcommand() -> None:
    no_destination = entry("rollback", "penguins")
    assert no_destination.returncode == 2
    assert "runtime rollback: error: the following arguments are required: --destination" in no_destination.stderr
    no_decision = entry("gate-record")
    assert no_decision.returncode == 2 and "gate-record: error:" in no_decision.stderr
    no_request = entry("run", "--result", "r.json")
    assert no_request.returncode == 2
    assert "runtime run: error: give either a request file (or -) or --request-env VAR" in no_request.stderr
