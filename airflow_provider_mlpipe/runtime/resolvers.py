"""Inputs looked up in MLMD instead of wired from upstream, like TFX resolver nodes.

Each strategy returns at most one artifact, or None when nothing qualifies (e.g. the first run has no
baseline model, so change thresholds are skipped).
"""

from __future__ import annotations

from collections.abc import Callable

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.metadata import MetadataClient

Strategy = Callable[[MetadataClient, StageRequest, str, list[int]], ArtifactRef | None]


def _exclude(refs: list[ArtifactRef], exclude_ids: list[int]) -> list[ArtifactRef]:
    return [ref for ref in refs if ref.id not in exclude_ids]


def previous_output(
    client: MetadataClient, request: StageRequest, type_name: str, exclude_ids: list[int]
) -> ArtifactRef | None:
    """The newest LIVE artifact of this type produced by this pipeline before now."""
    refs = [client.artifact_ref(a) for a in client.live_artifacts(request.pipeline, type_name)]
    refs = _exclude(refs, exclude_ids)
    return refs[-1] if refs else None


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
