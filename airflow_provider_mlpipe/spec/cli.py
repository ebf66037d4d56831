"""The ``mlpipe`` command: ``lint`` specs, print the JSON ``schema``. Subcommands live in a registry.

Adding a subcommand is one decorated function::

    @command("rollback", "Point serving back at an earlier pushed model.", arguments=_rollback_arguments)
    def rollback(args: argparse.Namespace) -> int: ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.spec.loader import ENVIRONMENTS

SCHEMA_FILE = Path(__file__).with_name("mlpipe.schema.json")
SCHEMA_ID = "https://mlpipe.dev/schema/pipeline.schema.json"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, *, arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register ``func(args) -> exit code`` as ``mlpipe <name>``; ``arguments`` adds its options."""

    def register(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(name=name, help=help, run=func, arguments=arguments)
        return func

    return register


# ----- lint ---------------------------------------------------------------------------------------------------
def _lint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="spec files or folders (searched for *.yaml, *.yml)")
    parser.add_argument(
        "--environment",
        "-e",
        default="all",
        help="overlay to check: dev, staging, prod, none (no overlay) or all (default: the base and every overlay)",
    )
    parser.add_argument(
        "--base-dir",
        type=Path,
        help="the pipeline folder user modules must live in (default: the parent of the specs' folder)",
    )


def _environments(choice: str) -> list[str | None]:
    if choice == "all":
        return [None, *ENVIRONMENTS]
    if choice == "none":
        return [None]
    if choice not in ENVIRONMENTS:
        raise SystemExit(f"mlpipe lint: unknown environment {choice!r}; use {', '.join(ENVIRONMENTS)}, none or all.")
    return [choice]


def lint_paths(paths: Sequence[Path], *, environment: str = "all", base_dir: Path | None = None) -> list[str]:
    """Every problem as one ``file:line: field: message`` line (an overlay-only problem names its overlay)."""
    from airflow_provider_mlpipe.spec.validate import discover, load_all

    lines: list[str] = []
    seen: set[str] = set()
    for env in _environments(environment):
        groups: list[tuple[list[Path], Path]] = []
        for path in paths:
            if not path.exists():
                line = f"{path}: <file>: The path does not exist."
                if line not in seen:
                    seen.add(line)
                    lines.append(line)
                continue
            folder = path if path.is_dir() else path.resolve().parent
            groups.append((discover(path), base_dir or folder.resolve().parent))
        specs = [(spec, base) for files, base in groups for spec in files]
        # one load_all per base folder, all names shared, so duplicates across files are found
        for base in dict.fromkeys(b for _, b in specs):
            files = [s for s, b in specs if b == base]
            _, errors = load_all(files, base_dir=base, environment=env)
            for exc in errors:
                for error in exc.errors:
                    text = error.format()
                    if text in seen:  # the same problem in the base and in an overlay is reported once
                        continue
                    seen.add(text)
                    lines.append(text + (f" (environment {env})" if env else ""))
    return lines


@command(
    "lint", "Validate pipeline specs; prints file:line: field: message, exits 1 on errors.", arguments=_lint_arguments
)
def lint(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.spec.validate import discover

    lines = lint_paths(args.paths, environment=args.environment, base_dir=args.base_dir)
    for line in lines:
        print(line)
    count = sum(len(discover(p)) for p in args.paths if p.exists())
    bad = len({line.split(":", 1)[0] for line in lines})
    print(f"mlpipe lint: {count} spec(s) checked, {bad} with errors.", file=sys.stderr)
    return 1 if lines else 0


# ----- schema -------------------------------------------------------------------------------------------------
def json_schema() -> dict[str, Any]:
    """The spec's JSON Schema: standard stage names get their own params; other names must set ``kind``."""
    from airflow_provider_mlpipe.spec.model import STAGE_MODELS, PipelineSpec

    schema = PipelineSpec.model_json_schema()
    defs = schema["$defs"]
    added = []
    for model in STAGE_MODELS.values():
        ref = model.__name__
        defs[ref]["properties"]["kind"].pop("default", None)
        added.append({"allOf": [{"$ref": f"#/$defs/{ref}"}], "required": ["kind"]})
    stages = schema["properties"]["stages"]
    stages["properties"] = {kind: {"$ref": f"#/$defs/{m.__name__}"} for kind, m in STAGE_MODELS.items()}
    stages["additionalProperties"] = {"oneOf": added}
    # overlays are partial specs: known keys only, merged before validation (so no `required` inside)
    environments = {k: {"description": f"Overrides `{k}`."} for k in schema["properties"] if k != "name"}
    schema["properties"]["environments"] = {
        "type": "object",
        "description": "Overlays deep-merged over the spec when the environment is selected.",
        "properties": {
            env: {"type": "object", "properties": environments, "additionalProperties": False} for env in ENVIRONMENTS
        },
        "additionalProperties": False,
    }
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def _schema_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when {SCHEMA_FILE.name} is out of date")


@command("schema", "Print the JSON Schema of pipeline specs (for editor autocompletion).", arguments=_schema_arguments)
def schema(args: argparse.Namespace) -> int:
    text = render_schema()
    if args.check:
        current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
        if current != text:
            print(f"{SCHEMA_FILE} is out of date; run: mlpipe schema -o {SCHEMA_FILE}", file=sys.stderr)
            return 1
        return 0
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# ----- entry point --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    import airflow_provider_mlpipe.commands  # noqa: F401  (registers rollback and summary)

    parser = argparse.ArgumentParser(prog="mlpipe", description="mlpipe: TFX-style ML pipelines on Airflow.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        cmd.arguments(sub.add_parser(cmd.name, help=cmd.help, description=cmd.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
