"""``mlpipe init``: a pipeline spec from a data file, using the built-in tabular transform and trainer.

It reads a sample of the data, proposes the feature lists and the label's kind (``spec.proposal``), writes
``<dags>/pipelines/<name>.yaml`` with comments, and lints it first: a spec that does not lint clean is never
written. An existing spec is overwritten only with ``--force``.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_mlpipe.cli.subcommand import Subcommand

if TYPE_CHECKING:
    from airflow_provider_mlpipe.spec.proposal import Proposal

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class InitError(Exception):
    """A sentence for the user: why no spec was written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the pipeline and DAG id (letters, digits, _ . -)")
    parser.add_argument("--data", required=True, help="a CSV or Parquet file, or a glob of them (dates become spans)")
    parser.add_argument("--label", required=True, help="the column to predict")
    parser.add_argument(
        "--kind",
        choices=("binary", "multiclass", "regression"),
        help="the label's kind (default: inferred from its values)",
    )
    parser.add_argument("--dags", type=Path, default=Path("dags"), help="the DAGs folder (default: ./dags)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing spec of that name")


def _files(data: str) -> list[str]:
    if glob.has_magic(data):
        return sorted(p for p in glob.glob(data) if os.path.isfile(p))
    return [data] if os.path.isfile(data) else []


def _same_name(name: str, pipelines: Path, target: Path) -> Path | None:
    """Another spec in the folder that already names its pipeline ``name`` (a DAG id must be unique)."""
    import yaml

    for path in sorted(pipelines.glob("*.y*ml")):
        if path.resolve() == target.resolve():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("name") == name:
            return path
    return None


def propose(args: argparse.Namespace, spec_path: Path) -> Proposal:
    """The proposal for the arguments; raises InitError."""
    from airflow_provider_mlpipe.spec.data_sample import infer_kind, kind_problem, read_sample
    from airflow_provider_mlpipe.spec.errors import suggest
    from airflow_provider_mlpipe.spec.proposal import Proposal, propose_features, span_pattern
    from airflow_provider_mlpipe.stages.example_gen import input_format

    files = _files(args.data)
    if not files:
        raise InitError(f"No file matches --data {args.data}.")
    fmt = input_format(None, files[0])
    if fmt not in ("csv", "parquet"):
        raise InitError(f"{files[0]} looks like {fmt}; mlpipe init reads CSV or Parquet files.")
    try:
        sample = read_sample(files[0], fmt)
    except ValueError as exc:
        raise InitError(str(exc)) from None
    if args.label not in sample.columns:
        raise InitError(
            f"The label {args.label!r} is not a column of {files[0]}.{suggest(args.label, sample.columns)} "
            f"Its columns are {', '.join(sample.columns)}."
        )
    column = sample.columns[args.label]
    where = f"the first {sample.rows} rows of {files[0]}"
    try:
        kind, positive = infer_kind(column)
    except ValueError as exc:
        raise InitError(str(exc)) from None
    if args.kind and args.kind != kind:
        positive = positive if args.kind == "binary" else None
        kind = args.kind
        if problem := kind_problem(kind, positive, column, where):
            raise InitError(f"--kind {kind} does not fit the label: {problem[1]}")
    numeric, categorical, left_out, integers = propose_features(sample, args.label)
    if not numeric and not categorical:
        raise InitError(
            f"No column of {files[0]} besides the label can be a feature"
            + (f": {'; '.join(f'{k} {v}' for k, v in left_out.items())}." if left_out else ".")
        )
    pattern, dates = span_pattern(args.data, files)
    relative = os.path.relpath(os.path.abspath(pattern), spec_path.parent.resolve())
    return Proposal(
        name=args.name,
        pattern=Path(relative).as_posix(),
        span_dates=dates,
        fmt=fmt,
        sample=sample,
        label=args.label,
        kind=kind,
        positive=positive,
        numeric=numeric,
        categorical=categorical,
        left_out=left_out,
        categorical_integers=integers,
    )


def lint_text(text: str, spec_path: Path, dags: Path) -> list[str]:
    """The lint's lines for the spec as it would be written at ``spec_path``."""
    from airflow_provider_mlpipe.spec.errors import SpecErrors
    from airflow_provider_mlpipe.spec.loader import load_spec
    from airflow_provider_mlpipe.spec.validate import validate

    try:
        validate(load_spec(spec_path, text=text), dags, check_data=True)
    except SpecErrors as exc:
        return [error.format() for error in exc.errors]
    return []


def write_spec(args: argparse.Namespace) -> tuple[Path, str]:
    """Writes the spec; returns its path and a summary of what it proposes. Raises InitError."""
    from airflow_provider_mlpipe.spec.proposal import render

    if not _NAME.match(args.name):
        raise InitError(f"{args.name!r} is not a pipeline name; use letters, digits, '_', '.' and '-'.")
    pipelines = args.dags / "pipelines"
    spec_path = pipelines / f"{args.name}.yaml"
    if spec_path.exists() and not args.force:
        raise InitError(f"{spec_path} already exists; pass --force to overwrite it.")
    if other := _same_name(args.name, pipelines, spec_path):
        raise InitError(f"{other} already defines the pipeline {args.name!r}; choose another name.")
    proposal = propose(args, spec_path)
    text = render(proposal, datetime.now(UTC).date())
    if problems := lint_text(text, spec_path, args.dags):
        raise InitError(
            "The spec mlpipe init proposes does not lint clean, so it was not written:\n  " + "\n  ".join(problems)
        )
    pipelines.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(text, encoding="utf-8")
    return spec_path, _summary(proposal)


def _summary(proposal: Proposal) -> str:
    from airflow_provider_mlpipe.spec.data_sample import value_text

    p = proposal
    kind = p.kind + (f", positive {value_text(p.positive)}" if p.positive is not None else "")
    lines = [
        f"  label        {p.label} ({kind}), from {p.sample.rows} sampled rows",
        f"  numeric      {', '.join(p.numeric) or '-'}",
        f"  categorical  {', '.join(p.categorical) or '-'}",
        *(f"  left out     {column} {why}" for column, why in p.left_out.items()),
        f"  input        {p.pattern}"
        + (f" (spans {p.span_dates[0]} to {p.span_dates[-1]})" if p.span_dates else " (the same file every run)"),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        spec_path, summary = write_spec(args)
    except InitError as exc:
        print(f"mlpipe init: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {spec_path}:\n{summary}")
    print(f"Next: mlpipe lint {spec_path}, then airflow dags test {args.name}")
    return 0


SUBCOMMAND = Subcommand(
    name="init",
    help="Write a pipeline spec from a data file: built-in transform and trainer, linted clean.",
    run=run,
    add_arguments=add_arguments,
)
