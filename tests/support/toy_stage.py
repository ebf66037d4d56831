"""A toy stage added the way docs/adding-a-stage.md says, from outside the package: its params model, its
description and its executor, all in this one test-only module. Nothing else in the project names it."""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import Field

from airflow_provider_mlpipe.stages.description import OutputSlot, StageDescription, StageParams

GREETING = "ToyGreeting"


class ToyParams(StageParams):
    greeting: str = Field(description="What to write.")
    repeat: int = Field(1, ge=1, le=10)


DESCRIPTION = StageDescription(
    name="toy",
    component="Toy",
    params=ToyParams,
    executor=__name__,
    outputs=(OutputSlot("greeting", GREETING),),
    ui_color="#abcdef",
    order=900,
    doc="writes its greeting; proves a stage can be added without touching the package",
)


def execute(ctx: Any) -> dict[str, Any]:
    """A pure function of the context: typed params in, one artifact out."""
    params: ToyParams = ctx.params
    text = " ".join([params.greeting] * params.repeat)
    out = ctx.output("greeting")
    with open(os.path.join(out.path, "greeting.json"), "w", encoding="utf-8") as fh:
        json.dump({"text": text}, fh)
    out.properties["length"] = len(text)
    return {"text": text}
