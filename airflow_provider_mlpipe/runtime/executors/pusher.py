"""Pusher: publishes a blessed model as the next numbered version under ``params.destination``.

It refuses a model whose blessing is not BLESSED (or belongs to another model), with or without a sensor in
front of it. It withholds a model trained on an older span than the served version's, unless the run's
``push_policy`` is ``allow_older_span``: the task succeeds and the PushedModel records ``pushed=0`` and why.
The push is atomic (see ``model_versions``); the PushedModel artifact's URI is the version directory, and
``push.json`` in the artifact records the push. ``keep_versions`` prunes older versions afterwards.
A relative local ``destination`` is resolved against the pipeline's folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.stages.pusher import PusherParams
from airflow_provider_mlpipe.storage import is_gcs

SERVING_DIR = "Format-Serving"
ALLOW_OLDER_SPAN = "allow_older_span"
log = logging.getLogger("mlpipe.runtime")


class NotBlessedError(RuntimeError):
    """The Pusher was handed a model that the Evaluator did not bless."""


def check_blessing(blessing: ArtifactRef, model: ArtifactRef) -> None:
    """Raise unless the blessing says BLESSED, by property and by marker file, for this very model."""
    reason_file = os.path.join(blessing.uri, "NOT_BLESSED")
    if os.path.exists(reason_file):
        with open(reason_file, encoding="utf-8") as fh:
            reason = fh.read().strip()
        raise NotBlessedError(f"The model is NOT_BLESSED, so it is not pushed: {reason}")
    if blessing.properties.get("blessed") != 1 or not os.path.exists(os.path.join(blessing.uri, "BLESSED")):
        raise NotBlessedError(
            f"The blessing {blessing.uri} is not marked blessed (property blessed="
            f"{blessing.properties.get('blessed')!r}, BLESSED file present: "
            f"{os.path.exists(os.path.join(blessing.uri, 'BLESSED'))}); the model is not pushed."
        )
    blessed_id = blessing.properties.get("current_model_id")
    if blessed_id is not None and model.id is not None and blessed_id != model.id:
        raise NotBlessedError(f"The blessing is for model {blessed_id}, not for the model {model.id} being pushed.")


def _destination(ctx: ExecutorContext) -> str:
    params: PusherParams = ctx.params
    destination = params.destination
    if is_gcs(destination) or os.path.isabs(destination):
        return destination.rstrip("/") if is_gcs(destination) else destination
    if not ctx.spec_dir:
        raise ValueError(f"The relative destination {destination!r} needs the pipeline's folder to resolve against.")
    return os.path.normpath(os.path.join(ctx.spec_dir, destination))


def older_span_refusal(model: ArtifactRef, destination: str, policy: str) -> dict[str, Any] | None:
    """Why this model must not replace the served one, or None when it may be pushed.

    Serving never moves to a model trained on an older span than the one it serves, unless the run's
    ``push_policy`` is ``allow_older_span``; ``mlpipe rollback`` is the way back on purpose.
    """
    served = model_versions.served_version(destination)
    span = model.properties.get("span")
    if policy == ALLOW_OLDER_SPAN or served is None or not isinstance(span, int):
        return None
    version, record = served
    served_span = (record or {}).get("span")
    if not isinstance(served_span, int) or span >= served_span:
        return None
    return {
        "served_version": version,
        "served_span": served_span,
        "reason": (
            f"The model was trained on span {span}, older than span {served_span} of version {version} being "
            f"served from {destination}, so it is not pushed (push_policy: {policy}). Set push_policy: "
            f"{ALLOW_OLDER_SPAN} for this run to push it anyway, or use mlpipe rollback to serve an older version."
        ),
    }


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    params: PusherParams = ctx.params
    model = ctx.input("model")
    blessing = ctx.input("blessing")
    check_blessing(blessing, model)
    source = os.path.join(model.uri, SERVING_DIR)
    destination = _destination(ctx)
    properties: dict[str, Any] = {"destination": destination, "push_policy": params.push_policy}
    if model.id is not None:
        properties["source_model_id"] = model.id
    if blessing.id is not None:
        properties["blessing_id"] = blessing.id
    span = model.properties.get("span")
    if span is not None:
        properties["span"] = span
    out = ctx.output("pushed_model")
    refusal = older_span_refusal(model, destination, params.push_policy)
    if refusal is not None:
        # A decision, not a failure: the task succeeds, and the PushedModel says pushed=0 and why (as in TFX).
        log.warning("%s", refusal["reason"])
        properties.update({"pushed": 0, "push_withheld": 1, **refusal})
        out.properties.update(properties)
        model_versions.write_record(os.path.join(out.path, "push.json"), {**properties, "source_uri": source})
        return {**properties, "pushed": False, "push_withheld": True, "decision": "withheld"}

    record = {key: properties[key] for key in ("span", "source_model_id", "blessing_id") if key in properties}
    version, uri = model_versions.push_version(source, destination, {**record, "pipeline": ctx.pipeline})
    keep = params.keep_versions
    pruned = model_versions.prune(destination, keep, protect=(version,)) if keep else []
    properties.update({"pushed": 1, "version": version})
    out.external_uri = uri
    out.properties.update(properties)
    record = {
        **properties,
        "uri": uri,
        "pruned": pruned,
        "pushed_at": dt.datetime.now(dt.UTC).isoformat(),
        "source_uri": source,
    }
    model_versions.write_record(os.path.join(out.path, "push.json"), record)
    return {"version": version, "uri": uri, "destination": destination, "pruned": pruned, "pushed": True}
