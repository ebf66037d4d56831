"""A tiny stage that proves the runtime works: TensorFlow computes, MLMD records, an artifact lands."""

from __future__ import annotations

import json
import os
from typing import Any

from airflow_provider_mlpipe.runtime.context import ExecutorContext


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    import ml_metadata
    import tensorflow as tf

    if ctx.params.get("fail"):
        raise RuntimeError(str(ctx.params["fail"]))
    if ctx.params.get("sleep_s"):
        import time

        # Write part of the output first, so a kill mid-stage leaves a half-written staging directory.
        out = ctx.output("probe")
        with open(os.path.join(out.path, "partial.txt"), "w", encoding="utf-8") as fh:
            fh.write("half")
        time.sleep(float(ctx.params["sleep_s"]))
    values = [float(v) for v in ctx.params.get("values", [1.0, 2.0, 3.0])]
    total = float(tf.reduce_sum(tf.constant(values)).numpy())
    out = ctx.output("probe")
    payload = {"sum": total, "tensorflow": tf.__version__, "ml_metadata": ml_metadata.__version__}
    with open(os.path.join(out.path, "probe.json"), "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    out.properties.update({"sum": total, "tensorflow_version": tf.__version__})
    return payload
