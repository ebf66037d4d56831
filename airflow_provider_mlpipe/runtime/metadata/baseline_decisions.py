"""People's decisions about the Evaluator's baseline, recorded in MLMD: an override and a baseline reset.

- **Override** (``mlpipe bless``, the run view's "Bless by override"): an ``mlpipe.Override`` execution reads a
  NOT_BLESSED model and its verdict and writes a new ModelBlessing with ``blessed=1``, the signal every gate and
  the baseline lookup read (TFX's), plus ``overridden=1``, ``override_reason`` and ``override_user``. The
  Evaluator's own verdict is never changed. As any blessed model, the overridden one is the baseline of later
  spans (``resolvers.blessed_baseline``).
- **Baseline reset** (``mlpipe baseline reset``): an ``mlpipe.BaselineReset`` execution writes a ``BaselineReset``
  artifact with a ``span`` (by default the newest span a model was trained on) and ``blessings_before`` (the
  newest ModelBlessing id at that moment). A candidate of that span or later then takes as baseline only a model
  of that span or later blessed after the reset; until one is, it is judged on value thresholds alone. Earlier
  spans (a backfill, a re-run) keep comparing with their own predecessors, so the span order still holds.

Both are recorded in their own run context (``<pipeline>.override-<UTC time>``, ``<pipeline>.baseline-reset-<UTC
time>``) as a rollback is, and their files (``blessing.json`` and ``BLESSED``, or ``reset.json``) are published
beside the pipeline's other artifacts before MLMD records them LIVE.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.io.artifact_store import ArtifactStore, pipeline_root_of
from airflow_provider_mlpipe.runtime.metadata.client import PIPELINE_CONTEXT, RUN_CONTEXT, MetadataClient
from airflow_provider_mlpipe.runtime.metadata.resolvers import MODEL_BLESSING, newest_span, span_of
from airflow_provider_mlpipe.stages.description import BASELINE_RESET, MODEL

OVERRIDE_EXECUTION = "mlpipe.Override"
RESET_EXECUTION = "mlpipe.BaselineReset"


class DecisionError(ValueError):
    """An override or reset that cannot be done; the message is one sentence for the person who asked."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _checked_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DecisionError("A reason is required: it is recorded in ML Metadata with the decision.")
    return reason


# ----- finding the model -----------------------------------------------------------------------------------
def _run_verdicts(client: MetadataClient, pipeline: str, run_id: str) -> list[ArtifactRef] | None:
    """The ModelBlessings a run's executions wrote, oldest first; None when the pipeline has no such run."""
    context = client.store.get_context_by_type_and_name(RUN_CONTEXT, f"{pipeline}.{run_id}")
    if context is None:
        return None
    verdicts = []
    for execution in client.executions_in_context(context):
        outputs = client.outputs_of(execution.id).values()
        verdicts += [ref for refs in outputs for ref in refs if ref.type == MODEL_BLESSING]
    return sorted(verdicts, key=lambda ref: ref.id or 0)


def _pipelines_of(client: MetadataClient, artifact_id: int) -> list[str]:
    type_id = client.store.get_context_type(PIPELINE_CONTEXT).id
    return sorted(c.name for c in client.store.get_contexts_by_artifact(artifact_id) if c.type_id == type_id)


def find_model(client: MetadataClient, pipeline: str, model: str) -> ArtifactRef:
    """The Model ``model`` names: an MLMD artifact id, or a run id of ``pipeline`` (the model its Evaluator judged)."""
    model = model.strip()
    if model.isdigit():
        found = client.store.get_artifacts_by_id([int(model)])
        if not found:
            raise DecisionError(f"There is no artifact {model} in ML Metadata.")
        ref = client.artifact_ref(found[0])
        if ref.type != MODEL:
            raise DecisionError(f"Artifact {model} is a {ref.type}, not a Model; give a Model's id or a run id.")
        owners = _pipelines_of(client, int(model))
        if pipeline not in owners:
            where = f"the pipeline {', '.join(owners)}" if owners else "no pipeline"
            raise DecisionError(f"Model {model} belongs to {where}, not to {pipeline}.")
        return ref
    verdicts = _run_verdicts(client, pipeline, model)
    if verdicts is None:
        raise DecisionError(f"{model!r} is neither a Model artifact id nor a run id of the pipeline {pipeline}.")
    model_ids = [v.properties.get("current_model_id") for v in verdicts]
    model_ids = [i for i in model_ids if isinstance(i, int)]
    if not model_ids:
        raise DecisionError(f"The run {model} of {pipeline} evaluated no model, so there is nothing to bless.")
    return find_model(client, pipeline, str(model_ids[-1]))


def _verdicts_for(client: MetadataClient, pipeline: str, model_id: int) -> list[ArtifactRef]:
    """Every LIVE ModelBlessing of the pipeline about this model, oldest first."""
    refs = [client.artifact_ref(a) for a in client.live_artifacts(pipeline, MODEL_BLESSING)]
    return [ref for ref in refs if ref.properties.get("current_model_id") == model_id]


def _producer_run(client: MetadataClient, artifact_id: int) -> str:
    events = client.store.get_events_by_artifact_ids([artifact_id])
    producers = sorted(e.execution_id for e in events if e.type == pb.Event.OUTPUT)
    if not producers:
        return ""
    [execution] = client.store.get_executions_by_id(producers[:1])
    run = execution.custom_properties.get("run_id")
    return run.string_value if run is not None else ""


# ----- recording ---------------------------------------------------------------------------------------------
def _record(
    client: MetadataClient,
    pipeline: str,
    kind: str,
    execution_type: str,
    inputs: list[ArtifactRef],
    near_uri: str,
    output: tuple[str, str, dict[str, Any]],
    files: dict[str, str],
    properties: dict[str, Any],
) -> dict[str, Any]:
    """One decision: its execution, its files published beside the pipeline's artifacts, its output LIVE."""
    slot, artifact_type, artifact_properties = output
    client.register_types()
    run_id = f"{kind}-{_now().strftime('%Y%m%dT%H%M%S%fZ')}"
    node_id = kind.replace("-", "_")
    contexts = client.lineage_contexts(pipeline, run_id, node_id)
    props = {"pipeline": pipeline, "run_id": run_id, "node_id": node_id, **properties}
    execution_id = client.start_execution(execution_type, contexts, inputs, props)
    store = ArtifactStore(pipeline_root_of(near_uri, pipeline))
    final = store.final_uri(pipeline, node_id, execution_id, slot)
    staging, published = store.staging_dir(final), False
    try:
        for name, text in files.items():
            Path(staging, name).write_text(text, encoding="utf-8")
        store.publish(staging, final)
        published = True
        ref = ArtifactRef(artifact_type, final, None, slot, artifact_properties)
        summary = {**props, "execution_id": execution_id, "uri": final}
        client.finish_execution(execution_id, contexts, {slot: [ref]}, {"summary": summary})
    except BaseException as exc:
        store.discard(staging)
        if published:  # an artifact without its LIVE record must not look finished
            store.unpublish(final)
        client.fail_execution(execution_id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(store.scratch_dir, ignore_errors=True)
    return {**summary, "artifact_id": ref.id, **artifact_properties}


def bless_by_override(client: MetadataClient, pipeline: str, model: str, reason: str, user: str) -> dict[str, Any]:
    """Bless a NOT_BLESSED model by override; returns a summary (``model_id``, ``artifact_id``, ``span``, ...)."""
    reason = _checked_reason(reason)
    ref = find_model(client, pipeline, model)
    verdicts = _verdicts_for(client, pipeline, ref.id or 0)
    if not verdicts:
        raise DecisionError(
            f"Model {ref.id} has no verdict from an Evaluator, so there is nothing to override; evaluate it first."
        )
    blessed = [v for v in verdicts if v.properties.get("blessed") == 1]
    if blessed:
        how = "by override" if blessed[-1].properties.get("overridden") else "by the Evaluator"
        raise DecisionError(f"Model {ref.id} is already blessed ({how}, ModelBlessing {blessed[-1].id}).")
    verdict = verdicts[-1]
    span = span_of(ref.properties)
    blessing = {
        "blessed": 1,
        "overridden": 1,
        "reason": f"Blessed by override ({user}): {reason}",
        "override_reason": reason,
        "override_user": user,
        "current_model_id": ref.id,
        "overridden_blessing_id": verdict.id,
        **({"span": span} if span is not None else {}),
    }
    document = {
        **blessing,
        "blessed": True,
        "overridden": True,
        "failed": [],
        "overridden_reason": verdict.properties.get("reason", ""),
        "baseline_model_id": verdict.properties.get("baseline_model_id"),
        "recorded_at": _now().isoformat(),
    }
    files = {"blessing.json": json.dumps(document, indent=2, sort_keys=True), "BLESSED": blessing["reason"] + "\n"}
    inputs = [
        ArtifactRef(MODEL, ref.uri, ref.id, "model", ref.properties),
        ArtifactRef(MODEL_BLESSING, verdict.uri, verdict.id, "overridden_blessing", verdict.properties),
    ]
    properties = {
        "model_id": ref.id,
        "reason": reason,
        "user": user,
        "overridden_blessing_id": verdict.id,
        "model_run_id": _producer_run(client, verdict.id or 0),
    }
    output = ("blessing", MODEL_BLESSING, blessing)
    summary = _record(client, pipeline, "override", OVERRIDE_EXECUTION, inputs, ref.uri, output, files, properties)
    summary["superseded_by"] = _newer_blessed_model(client, pipeline, span)
    return summary


def _newer_blessed_model(client: MetadataClient, pipeline: str, span: int | None) -> int | None:
    """A blessed model of a later span, which stays the baseline of later spans (the override is told so)."""
    if span is None:
        return None
    blessed = {
        b.properties.get("current_model_id")
        for b in (client.artifact_ref(a) for a in client.live_artifacts(pipeline, MODEL_BLESSING))
        if b.properties.get("blessed") == 1
    }
    for artifact in client.store.get_artifacts_by_id(sorted(i for i in blessed if isinstance(i, int))):
        later = span_of(client.artifact_ref(artifact).properties)
        if later is not None and later > span:
            return artifact.id
    return None


def reset_baseline(
    client: MetadataClient, pipeline: str, reason: str, user: str, from_span: int | None = None
) -> dict[str, Any]:
    """Record a baseline reset from ``from_span`` (default: the newest model's span); returns a summary."""
    reason = _checked_reason(reason)
    models = [client.artifact_ref(a) for a in client.live_artifacts(pipeline, MODEL)]
    if not models:
        raise DecisionError(f"The pipeline {pipeline} has no model in ML Metadata yet, so it has no baseline to reset.")
    span = from_span if from_span is not None else newest_span(models)
    blessings = client.live_artifacts(pipeline, MODEL_BLESSING)
    reset = {
        "reason": reason,
        "user": user,
        "blessings_before": max((b.id for b in blessings), default=0),
        "recorded_at": _now().isoformat(),
        **({"span": span} if span is not None else {}),
    }
    files = {"reset.json": json.dumps(reset, indent=2, sort_keys=True)}
    properties = {"reason": reason, "user": user, **({"span": span} if span is not None else {})}
    output = ("reset", BASELINE_RESET, reset)
    return _record(client, pipeline, "baseline-reset", RESET_EXECUTION, [], models[-1].uri, output, files, properties)
