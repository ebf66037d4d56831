"""The mlpipe CLI: lint output format and exit codes, the committed JSON Schema, subcommand parsing."""

from __future__ import annotations

import argparse
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_mlpipe import cli
from airflow_provider_mlpipe.cli.main import SUBCOMMANDS, main
from airflow_provider_mlpipe.cli.schema import json_schema, render_schema
from airflow_provider_mlpipe.cli.subcommand import Subcommand
from tests.support.paths import REPO
from tests.support.spec_fixtures import full_spec, make_dags_folder

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[^:]+): (?P<message>.+)$")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_mlpipe.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_lint_clean_folder_exits_zero(tmp_path):
    make_dags_folder(tmp_path, {"a": full_spec("a"), "b": full_spec("b")}, dag_file=False)
    proc = run_cli("lint", "dags/pipelines", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert "2 spec(s) checked, 0 with errors" in proc.stderr


def test_lint_prints_file_line_field_message_and_exits_one(tmp_path):
    make_dags_folder(
        tmp_path,
        {
            "good": full_spec("good"),
            "typo": full_spec("typo").replace("catchup:", "catchupp:"),
            "dup": full_spec("good"),
        },
        dag_file=False,
    )
    proc = run_cli("lint", "dags/pipelines", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stdout
    parsed = [LINE.match(line).groupdict() for line in lines]
    by_file = {p["file"]: p for p in parsed}
    assert by_file["dags/pipelines/typo.yaml"]["line"] == "7"
    assert by_file["dags/pipelines/typo.yaml"]["field"] == "catchupp"
    assert "Did you mean 'catchup'?" in by_file["dags/pipelines/typo.yaml"]["message"]
    # files are read in sorted order: dup.yaml comes first, so good.yaml is the second use of the name
    assert by_file["dags/pipelines/good.yaml"]["field"] == "name"
    assert "already used by dags/pipelines/dup.yaml" in by_file["dags/pipelines/good.yaml"]["message"]


def test_lint_checks_every_overlay_and_names_it(tmp_path):
    text = full_spec("o", extra="environments:\n  prod:\n    schedule: '61 * * * *'\n")
    make_dags_folder(tmp_path, {"o": text}, dag_file=False)
    proc = run_cli("lint", "dags/pipelines/o.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stdout.strip().splitlines()
    assert line.startswith("dags/pipelines/o.yaml:32: schedule: Invalid cron expression")
    assert line.endswith("(environment prod)")
    assert run_cli("lint", "-e", "dev", "dags/pipelines/o.yaml", cwd=tmp_path).returncode == 0


def test_lint_usage_errors(tmp_path):
    assert run_cli("lint", cwd=tmp_path).returncode == 2
    proc = run_cli("lint", "missing.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "missing.yaml: <file>: The path does not exist." in proc.stdout


def test_lint_function_matches_main(tmp_path, capsys):
    dags = make_dags_folder(
        tmp_path, {"x": full_spec("x").replace("train_steps: 10", "train_steps: 0")}, dag_file=False
    )
    assert main(["lint", str(dags / "pipelines")]) == 1
    out = capsys.readouterr().out
    assert ": stages.trainer.params.train_steps: Must be at least 1, got 0." in out


def test_committed_schema_is_up_to_date():
    """The committed schema holds the built-in stages only: checked in a process without test-only stages."""
    env = {k: v for k, v in os.environ.items() if k != "MLPIPE_STAGE_MODULES"}
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_provider_mlpipe.cli", "schema", "--check"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + "\nrun: mlpipe schema -o airflow_provider_mlpipe/spec/mlpipe.schema.json"
    committed = (REPO / "airflow_provider_mlpipe" / "spec" / "mlpipe.schema.json").read_text()
    assert '"probe"' not in committed
    # A stage added through MLPIPE_STAGE_MODULES (here the test-only probe) appears in the schema users generate.
    assert '"probe"' in render_schema()


def test_schema_command_prints_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]["stages"]["properties"]) >= {"example_gen", "trainer", "pusher"}
    assert "environments" in schema["properties"]


def test_schema_validates_the_example_spec():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    data = yaml.safe_load((REPO / "dags" / "pipelines" / "penguins.yaml").read_text())
    data["start_date"] = str(data["start_date"])  # YAML dates are strings in JSON
    jsonschema.validate(data, json_schema())
    data["shedule"] = "@daily"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema())


def test_a_subcommand_is_a_module_with_one_registration():
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("pipeline")

    def run(args: argparse.Namespace) -> int:
        print(f"collected {args.pipeline}")
        return 3

    toy = Subcommand(name="collect", help="Collect garbage.", run=run, add_arguments=add_arguments)
    with pytest.raises(SystemExit):
        main(["collect", "penguins"])  # not registered: unknown to the default parser
    assert main(["collect", "penguins"], subcommands=[*SUBCOMMANDS, toy]) == 3


def test_every_subcommand_module_is_registered(capsys):
    helpers = {"main", "subcommand", "__main__"}
    modules = {m.name for m in pkgutil.iter_modules(cli.__path__)} - helpers
    # a module that is not listed in SUBCOMMANDS would be a subcommand nobody can run
    assert {command.name for command in SUBCOMMANDS} == modules >= {"lint", "schema", "summary", "rollback"}
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listed = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    for command in SUBCOMMANDS:
        assert f"{command.name} {command.help}" in listed


def test_unknown_or_missing_subcommand_is_a_usage_error(tmp_path):
    bad = run_cli("lnt", "dags", cwd=tmp_path)
    assert bad.returncode == 2
    assert "mlpipe: error: argument COMMAND: invalid choice: 'lnt'" in bad.stderr
    assert f"(choose from {', '.join(repr(command.name) for command in SUBCOMMANDS)})" in bad.stderr
    missing = run_cli(cwd=tmp_path)
    assert missing.returncode == 2 and "the following arguments are required: COMMAND" in missing.stderr
