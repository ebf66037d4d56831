"""Inputs looked up in MLMD instead of wired from upstream, like TFX resolver nodes.

Each strategy returns at most one artifact, or None when nothing qualifies (e.g. the first run has no
baseline model, so change thresholds are skipped).
"""

from __future__ import annotations

from collections.abc import Callable

from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient

Strategy = Callable[[MetadataClient, StageRequest, str, list[int]], ArtifactRef | None]


def _exclude(refs: list[ArtifactRef], exclude_ids: list[int]) -> list[ArtifactRef]:
    return [ref for ref in refs if ref.id not in exclude_ids]


def previous_output(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """The newest LIVE artifact of this type produced by this pipeline before now.

    Artifacts produced from the very same inputs are skipped: they are an earlier run of this same step (a
    re-run of the day), not its predecessor, and resolving them would change the cache key on every re-run.
    """
    refs = [client.artifact_ref(a) for a in client.live_artifacts(request.pipeline, type_name)]
    refs = _exclude(refs, exclude_ids)
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


def previous_span_statistics(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """Statistics of the newest span strictly before the span being validated."""
    current = [ref for refs in request.inputs.values() for ref in refs if ref.type == type_name]
    span = current[0].properties.get("span") if current else None
    refs = _exclude([client.artifact_ref(a) for a in client.live_artifacts(request.pipeline, type_name)], exclude_ids)
    if span is None:
        return refs[-1] if refs else None
    earlier = [r for r in refs if isinstance(r.properties.get("span"), int) and r.properties["span"] < span]
    if not earlier:
        return None
    best = max(r.properties["span"] for r in earlier)
    return [r for r in earlier if r.properties["span"] == best][-1]


def latest_blessed_model(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """The model of the newest blessing marked blessed=1 in this pipeline (the TFX baseline rule)."""
    blessings = [client.artifact_ref(a) for a in client.live_artifacts(request.pipeline, "ModelBlessing")]
    for blessing in reversed(blessings):
        if blessing.properties.get("blessed") != 1:
            continue
        model_id = blessing.properties.get("current_model_id")
        if model_id is None or model_id in exclude_ids:
            continue
        [model] = client.store.get_artifacts_by_id([int(model_id)])
        return client.artifact_ref(model)
    return None


STRATEGIES: dict[str, Strategy] = {
    "previous_output": previous_output,
    "previous_span_statistics": previous_span_statistics,
    "latest_blessed_model": latest_blessed_model,
}
