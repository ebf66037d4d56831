"""A test-only stage that proves the runtime works: TensorFlow computes, MLMD records, an artifact lands.

It is registered through ``MLPIPE_STAGE_MODULES`` (tests/conftest.py), the same way a team adds its own stage,
so users never see it. Its executor lives here too and imports the ML stack only inside ``execute``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import Field

from airflow_provider_mlpipe.stages.description import OutputSlot, StageDescription, StageParams

PROBE = "RuntimeProbe"


class ProbeParams(StageParams):
    values: list[float] = Field(default_factory=lambda: [1.0, 2.0, 3.0])
    fail: str = ""
    sleep_s: float = Field(0.0, ge=0)
    module_file: str | None = Field(None, description="A user module whose VALUE lands in the summary.")


DESCRIPTION = StageDescription(
    name="probe",
    component="RuntimeProbe",
    params=ProbeParams,
    executor=__name__,
    outputs=(OutputSlot("probe", PROBE),),
    order=1000,
    doc="checks the runtime: imports TensorFlow and MLMD and writes a small artifact",
)


def execute(ctx: Any) -> dict[str, Any]:
    import ml_metadata
    import tensorflow as tf

    params: ProbeParams = ctx.params
    if params.fail:
        raise RuntimeError(params.fail)
    if params.sleep_s:
        import time

        # Write part of the output first, so a kill mid-stage leaves a half-written staging directory.
        out = ctx.output("probe")
        with open(os.path.join(out.path, "partial.txt"), "w", encoding="utf-8") as fh:
            fh.write("half")
        time.sleep(params.sleep_s)
    total = float(tf.reduce_sum(tf.constant(params.values)).numpy())
    out = ctx.output("probe")
    payload = {"sum": total, "tensorflow": tf.__version__, "ml_metadata": ml_metadata.__version__}
    if params.module_file:  # loaded per stage, as Transform and Trainer load theirs
        payload["module_value"] = ctx.load_user_module(params.module_file).VALUE
    with open(os.path.join(out.path, "probe.json"), "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    out.properties.update({"sum": total, "tensorflow_version": tf.__version__})
    return payload
