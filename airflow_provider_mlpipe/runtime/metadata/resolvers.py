"""Inputs looked up in MLMD instead of wired from upstream, like TFX resolver nodes.

Each strategy returns at most one artifact, or None when nothing qualifies (e.g. the first run has no
baseline model, so change thresholds are skipped).

Time has one order, the span: "previous" and "baseline" are chosen by the ``span`` property artifacts carry,
never by when they were written, so a backfill, a re-run or runs finishing out of order resolve the same
inputs as runs one after another, and a re-run of a span whose earlier spans did not change is a cache hit.
Artifacts recorded without a span (before spans were tracked) count as older than every span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.metadata.client import PIPELINE_CONTEXT, MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.metadata.gate_record import APPROVAL_EXECUTION_TYPE
from airflow_provider_mlpipe.stages.description import BASELINE_RESET, MODEL

Strategy = Callable[[MetadataClient, StageRequest, str, list[int]], ArtifactRef | None]
MODEL_BLESSING = "ModelBlessing"


def span_of(properties: dict[str, Any]) -> int | None:
    span = properties.get("span")
    return span if isinstance(span, int) and not isinstance(span, bool) else None


def newest_span(refs: Iterable[ArtifactRef]) -> int | None:
    """The newest span among ``refs``: the span of what a stage reads, and so of what it writes."""
    return max((s for s in (span_of(ref.properties) for ref in refs) if s is not None), default=None)


def request_span(request: StageRequest, type_name: str) -> int | None:
    """This run's span: that of the wired inputs of ``type_name`` if there are any, else of all wired inputs."""
    wired = [ref for refs in request.inputs.values() for ref in refs]
    same_type = [ref for ref in wired if ref.type == type_name]
    return newest_span(same_type) if newest_span(same_type) is not None else newest_span(wired)


def _by_span_then_id(ref: ArtifactRef) -> tuple[int, int]:
    span = span_of(ref.properties)
    return (span if span is not None else -1, ref.id or 0)


def previous_span_output(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """The LIVE artifact of this type from the newest span strictly before this run's span.

    LIVE artifacts come only from completed (or cached) executions. Among several of that span (a span re-run
    with other params), the newest recorded one wins. Without a span on this run's inputs, the newest artifact
    not produced from these very inputs is used, as before spans were tracked.
    """
    refs = [client.artifact_ref(a) for a in client.live_artifacts(request.pipeline, type_name)]
    refs = [ref for ref in refs if ref.id not in exclude_ids]
    span = request_span(request, type_name)
    if span is None:
        return _newest_from_other_inputs(client, refs, exclude_ids)
    earlier = [ref for ref in refs if (s := span_of(ref.properties)) is not None and s < span]
    return max(earlier, key=_by_span_then_id, default=None)


def _newest_from_other_inputs(
    client: MetadataClient, refs: list[ArtifactRef], exclude_ids: list[int]
) -> ArtifactRef | None:
    """Skip artifacts produced from the very same inputs: they are this step's own earlier run, not a predecessor."""
    current = set(exclude_ids)
    for ref in reversed(refs):
        if not current or not any(current <= inputs for inputs in _producer_inputs(client, ref.id)):
            return ref
    return None


def _producer_inputs(client: MetadataClient, artifact_id: int | None) -> list[set[int]]:
    """The input artifact ids of each execution that output this artifact (cached executions included)."""
    if artifact_id is None:
        return []
    events = client.store.get_events_by_artifact_ids([artifact_id])
    producers = [e.execution_id for e in events if e.type == pb.Event.OUTPUT]
    if not producers:
        return []
    inputs: dict[int, set[int]] = {p: set() for p in producers}
    for event in client.store.get_events_by_execution_ids(producers):
        if event.type == pb.Event.INPUT:
            inputs[event.execution_id].add(event.artifact_id)
    return list(inputs.values())


def baseline_resets(client: MetadataClient, pipeline: str, span: int | None) -> list[ArtifactRef]:
    """The baseline resets that apply to a candidate of ``span``: those of its span or earlier, oldest first.

    A reset without a span, or a candidate without one (before spans were tracked), applies everywhere.
    """
    resets = [client.artifact_ref(a) for a in client.live_artifacts(pipeline, BASELINE_RESET)]
    return [r for r in resets if span is None or (s := span_of(r.properties)) is None or s <= span]


def _survives(blessing_id: int, model_span: int | None, resets: list[ArtifactRef]) -> bool:
    """A blessing counts after a reset only if it came later and its model is of the reset's span or later."""
    for reset in resets:
        if blessing_id <= (reset.properties.get("blessings_before") or 0):
            return False
        cut = span_of(reset.properties)
        if cut is not None and (model_span is None or model_span < cut):
            return False
    return True


def rejected_models(client: MetadataClient, pipeline: str) -> set[int]:
    """Models a reviewer rejected at the approval gate (a timeout's default reject counts: nobody approved them).

    The Evaluator blessed them, but people decided they must not serve, so they must not become the bar the next
    candidate has to clear either (else every later candidate is judged against a refused model).
    """
    context = client.store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline)
    if context is None:
        return set()
    query = f"type = '{APPROVAL_EXECUTION_TYPE}' AND contexts_a.id = {context.id}"
    options = metadata_store.ListOptions(filter_query=query)
    rejections = [
        e.id for e in client.store.get_executions(list_options=options) if properties_of(e).get("decision") == "reject"
    ]
    if not rejections:
        return set()
    inputs = [e.artifact_id for e in client.store.get_events_by_execution_ids(rejections) if e.type == pb.Event.INPUT]
    model_type = client.store.get_artifact_type(MODEL).id
    return {a.id for a in client.store.get_artifacts_by_id(inputs) if a.type_id == model_type}


def blessed_baseline(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """The newest blessed model whose training span is not later than the candidate's (never the candidate).

    "Blessed" is any ModelBlessing of this pipeline with ``blessed=1`` for the model (the TFX rule), the
    Evaluator's or an override's (``mlpipe bless``), unless a reviewer rejected the model at the approval gate
    (``rejected_models``). Newest means the latest span, then the latest recorded model
    of that span. So span 3 evaluated after span 4 still compares with span 2's model, and a re-run of span 3
    picks the same baseline whatever happened to later spans. A baseline reset of the candidate's span or earlier
    leaves only models of the reset's span or later blessed after it (``baseline_resets``). Without a span on the
    candidate, the model of the newest blessing is used, as before spans were tracked.
    """
    span = request_span(request, type_name)
    resets = baseline_resets(client, request.pipeline, span)
    blessings = [client.artifact_ref(a) for a in client.live_artifacts(request.pipeline, MODEL_BLESSING)]
    excluded = {*exclude_ids, *rejected_models(client, request.pipeline)}
    blessed_by: dict[int, list[int]] = {}  # model id -> its blessings' ids; newest blessing first
    for blessing in reversed(blessings):
        model_id = blessing.properties.get("current_model_id")
        if blessing.properties.get("blessed") == 1 and isinstance(model_id, int) and model_id not in excluded:
            blessed_by.setdefault(model_id, []).append(blessing.id or 0)
    if not blessed_by:
        return None
    # A model whose files retention deleted (state DELETED) cannot be a baseline, whatever its blessing's state.
    found = client.store.get_artifacts_by_id(sorted(blessed_by))
    models = {a.id: client.artifact_ref(a) for a in found if a.state == pb.Artifact.LIVE}
    usable = [
        model_id
        for model_id, blessing_ids in blessed_by.items()
        if model_id in models and any(_survives(b, span_of(models[model_id].properties), resets) for b in blessing_ids)
    ]
    if span is None:
        return models[usable[0]] if usable else None
    eligible = [models[i] for i in usable if _by_span_then_id(models[i])[0] <= span]
    return max(eligible, key=_by_span_then_id, default=None)


def reset_in_effect(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """The newest baseline reset that leaves the candidate without a baseline, else None.

    The Evaluator names it in its verdict (value thresholds only, and why); once a model is blessed after the
    reset, later candidates have a baseline again and the reset is no longer an input.
    """
    span = request_span(request, MODEL)
    resets = baseline_resets(client, request.pipeline, span)
    if not resets or blessed_baseline(client, request, MODEL, exclude_ids) is not None:
        return None
    return resets[-1]


def served_model(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """The PushedModel that served this run's span: the highest version holding a model of an earlier span.

    TF Serving serves a destination's highest version, and a rollback pushes its target as a new highest version
    (carrying the target's span), so in daily runs this is simply what is being served. Earlier span, as for the
    baseline: a re-run or backfill of a span resolves the version that served it then, not one pushed later
    (so an unchanged re-run stays a cache hit). The destination is that of the newest such push. Withheld pushes
    (``pushed=0``) serve nothing. None on the first run, or when nothing of an earlier span was ever pushed.
    """
    span = request_span(request, type_name)
    pushed = []
    for artifact in client.live_artifacts(request.pipeline, type_name):
        ref = client.artifact_ref(artifact)
        if ref.properties.get("pushed") != 1 or not isinstance(ref.properties.get("version"), int):
            continue
        if span is None or _by_span_then_id(ref)[0] < span:
            pushed.append(ref)
    if not pushed:
        return None
    destination = max(pushed, key=lambda ref: ref.id or 0).properties.get("destination")
    at_destination = [ref for ref in pushed if ref.properties.get("destination") == destination]
    return max(at_destination, key=lambda ref: (ref.properties["version"], ref.id or 0))


# The keys are what stage descriptions name; they stay stable while the rules behind them evolve.
STRATEGIES: dict[str, Strategy] = {
    "previous_output": previous_span_output,
    "previous_span_statistics": previous_span_output,
    "latest_blessed_model": blessed_baseline,
    "baseline_reset": reset_in_effect,
    "served_model": served_model,
}
