"""Pusher: a blessed model becomes the next numbered version of a serving directory."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airflow_provider_mlpipe.stages.description import (
    MODEL,
    MODEL_BLESSING,
    PUSHED_MODEL,
    InputSlot,
    OutputSlot,
    StageDescription,
    StageParams,
)


class PusherParams(StageParams):
    destination: str = Field(description="Serving directory: a local path (relative to the spec) or gs://.")
    keep_versions: int | None = Field(None, ge=1)
    push_policy: Literal["newest_span_only", "allow_older_span"] = Field(
        "newest_span_only",
        description=(
            "newest_span_only withholds a model trained on an older span than the served version's (the task "
            "succeeds, the PushedModel records pushed=0 and why); allow_older_span pushes it anyway, for a "
            "deliberate re-push (usually set for one run in dag_run.conf)."
        ),
    )


DESCRIPTION = StageDescription(
    name="pusher",
    component="Pusher",
    params=PusherParams,
    executor="airflow_provider_mlpipe.runtime.executors.pusher",
    inputs=(InputSlot("model", MODEL), InputSlot("blessing", MODEL_BLESSING)),
    outputs=(OutputSlot("pushed_model", PUSHED_MODEL),),
    ui_color="#f4cccc",
    order=80,
    doc=(
        "pushes a blessed model as the next numbered version directory (TF Serving's layout), atomically; "
        "refuses an unblessed model even without a gate; withholds a model of an older span than the served "
        "one unless `push_policy: allow_older_span`; `mlpipe rollback <pipeline> [--to VERSION]` and "
        "`MlpipeRollbackOperator` serve an earlier version again, recorded in MLMD"
    ),
)
