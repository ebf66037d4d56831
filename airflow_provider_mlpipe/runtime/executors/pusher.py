"""Pusher: publishes a blessed model as the next numbered version under ``params.destination``.

It refuses a model whose blessing is not BLESSED (or belongs to another model), with or without a sensor in
front of it. The push is atomic (see ``model_push``); the PushedModel artifact's URI is the version directory,
and ``push.json`` in the artifact records the push. ``keep_versions`` prunes older versions afterwards.
A relative local ``destination`` is resolved against the pipeline's folder.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.io.artifact_store import is_gcs
from airflow_provider_mlpipe.runtime.serving import model_versions

SERVING_DIR = "Format-Serving"


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
    destination = ctx.params.get("destination")
    if not destination:
        raise ValueError("The pusher stage needs params.destination (a local path or gs:// URI).")
    destination = str(destination)
    if is_gcs(destination) or os.path.isabs(destination):
        return destination.rstrip("/") if is_gcs(destination) else destination
    if not ctx.spec_dir:
        raise ValueError(f"The relative destination {destination!r} needs the pipeline's folder to resolve against.")
    return os.path.normpath(os.path.join(ctx.spec_dir, destination))


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    model = ctx.input("model")
    blessing = ctx.input("blessing")
    check_blessing(blessing, model)
    source = os.path.join(model.uri, SERVING_DIR)
    destination = _destination(ctx)
    version, uri = model_versions.push_version(source, destination)
    keep = ctx.params.get("keep_versions")
    pruned = model_versions.prune(destination, int(keep), protect=(version,)) if keep else []
    properties: dict[str, Any] = {"pushed": 1, "version": version, "destination": destination}
    if model.id is not None:
        properties["source_model_id"] = model.id
    if blessing.id is not None:
        properties["blessing_id"] = blessing.id
    span = model.properties.get("span")
    if span is not None:
        properties["span"] = span
    out = ctx.output("pushed_model")
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
    return {"version": version, "uri": uri, "destination": destination, "pruned": pruned}
