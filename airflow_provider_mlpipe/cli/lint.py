"""``mlpipe lint``: validate pipeline specs; one ``file:line: field: message`` line per problem, exit 1 on any."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_mlpipe.cli.subcommand import Subcommand
from airflow_provider_mlpipe.spec.loader import ENVIRONMENTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def environments(choice: str) -> list[str | None]:
    """The overlays ``--environment`` selects; ``None`` is the base spec without an overlay."""
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
    for env in environments(environment):
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
            _, errors = load_all(files, base_dir=base, environment=env, check_data=True)
            for exc in errors:
                for error in exc.errors:
                    text = error.format()
                    if text in seen:  # the same problem in the base and in an overlay is reported once
                        continue
                    seen.add(text)
                    lines.append(text + (f" (environment {env})" if env else ""))
    return lines


def run(args: argparse.Namespace) -> int:
    from airflow_provider_mlpipe.spec.validate import discover

    lines = lint_paths(args.paths, environment=args.environment, base_dir=args.base_dir)
    for line in lines:
        print(line)
    count = sum(len(discover(p)) for p in args.paths if p.exists())
    bad = len({line.split(":", 1)[0] for line in lines})
    print(f"mlpipe lint: {count} spec(s) checked, {bad} with errors.", file=sys.stderr)
    return 1 if lines else 0


SUBCOMMAND = Subcommand(
    name="lint",
    help="Validate pipeline specs; prints file:line: field: message, exits 1 on errors.",
    run=run,
    add_arguments=add_arguments,
)
