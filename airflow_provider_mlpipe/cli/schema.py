"""``mlpipe schema``: the JSON Schema of pipeline specs, for editor autocompletion and validation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.cli.subcommand import Subcommand
from airflow_provider_mlpipe.spec.loader import ENVIRONMENTS

# The committed copy lives beside the spec model it describes; a unit test keeps it current.
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "spec" / "mlpipe.schema.json"
SCHEMA_ID = "https://mlpipe.dev/schema/pipeline.schema.json"


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when {SCHEMA_FILE.name} is out of date")


def run(args: argparse.Namespace) -> int:
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


SUBCOMMAND = Subcommand(
    name="schema",
    help="Print the JSON Schema of pipeline specs (for editor autocompletion).",
    run=run,
    add_arguments=add_arguments,
)
