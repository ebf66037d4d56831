"""Runs one stage request: resolve, check the cache, execute, publish, record lineage.

The order matters for "nothing half-written looks finished": outputs are written to staging, published
(atomic rename or marker-last upload), and only then recorded LIVE together with the COMPLETE execution.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import time
import traceback
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from airflow_provider_mlpipe.overrides import with_stage_overrides
from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest, StageResult
from airflow_provider_mlpipe.runtime.context import ExecutorContext, OutputArtifact
from airflow_provider_mlpipe.runtime.io.artifact_store import ArtifactStore, UnsafePathError
from airflow_provider_mlpipe.runtime.metadata import cache, resolvers
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, State, value_of
from airflow_provider_mlpipe.stages import StageDescription, StageParams, get_stage
from airflow_provider_mlpipe.storage import is_gcs

log = logging.getLogger("mlpipe.runtime")


def load_executor(stage: StageDescription) -> ModuleType:
    module = importlib.import_module(stage.executor)
    if not callable(getattr(module, "execute", None)):
        raise TypeError(f"The executor module {stage.executor} has no execute(context) function.")
    return module


def _localize(store: ArtifactStore, refs: list[ArtifactRef]) -> list[ArtifactRef]:
    local = []
    for ref in refs:
        key = f"{ref.type}-{ref.id or abs(hash(ref.uri))}"
        local.append(ArtifactRef(ref.type, store.localize(ref.uri, key), ref.id, ref.name, dict(ref.properties)))
    return local


def validated_params(stage: StageDescription, request: StageRequest) -> StageParams:
    """The stage's params with ``dag_run.conf["stages"]`` overrides merged in, validated by its params model.

    Done once here, before the cache key, so every executor gets typed params with the spec's defaults, and a
    changed override is never a cache hit.
    """
    merged = with_stage_overrides(request.params, request.conf, request.stage, request.node_id)
    try:
        return stage.params.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        raise ValueError(
            f"The {request.node_id} stage's params are invalid (spec plus dag_run.conf): {problems}."
        ) from None


def check_names(request: StageRequest) -> None:
    """Refuse a pipeline name or node id that is not one plain path segment.

    Both become folders under ``pipeline_root``; ``../x`` would write into another pipeline's artifacts (or, with
    enough ``..``, outside the root), and MLMD context names built from them would collide.
    """
    for field, value in (("pipeline", request.pipeline), ("node_id", request.node_id)):
        if not value or value in (".", "..") or "/" in value or "\\" in value or ".." in value or "\0" in value:
            raise UnsafePathError(
                f"The stage request's {field} {value!r} is not a plain name; it must not be empty or contain "
                "'/', '\\' or '..', since it becomes a folder under the pipeline root."
            )


def run_stage(request: StageRequest, client: MetadataClient, store: ArtifactStore | None = None) -> StageResult:
    started = time.monotonic()
    check_names(request)
    stage = get_stage(request.stage, request.stage_module)
    params = validated_params(stage, request)
    executor = load_executor(stage)
    if store is None:
        # This run's own store: its download cache must not outlive the stage on a shared worker.
        store = ArtifactStore(request.pipeline_root)
        try:
            return _run(request, client, store, stage, params, executor, started)
        finally:
            shutil.rmtree(store.scratch_dir, ignore_errors=True)
    return _run(request, client, store, stage, params, executor, started)


def _run(
    request: StageRequest,
    client: MetadataClient,
    store: ArtifactStore,
    stage: StageDescription,
    params: StageParams,
    executor: ModuleType,
    started: float,
) -> StageResult:
    client.register_types()
    contexts = client.lineage_contexts(request.pipeline, request.run_id, request.node_id)
    _, run_ctx, node_ctx = contexts
    abandoned = client.fail_abandoned_executions(node_ctx, run_ctx)
    if abandoned:
        log.warning("Marked %d execution(s) of an earlier killed attempt as FAILED.", abandoned)

    for slot, refs in request.inputs.items():
        for ref in refs:
            ref.name = ref.name or slot
    input_ids = [ref.id for refs in request.inputs.values() for ref in refs if ref.id is not None]
    resolved: dict[str, ArtifactRef | None] = {}
    for item in stage.resolved_inputs:
        strategy = resolvers.STRATEGIES[item.strategy]
        resolved[item.name] = strategy(client, request, item.artifact_type, input_ids)
        if resolved[item.name] is not None:
            resolved[item.name].name = item.name

    fingerprint = executor.fingerprint(request, params) if hasattr(executor, "fingerprint") else ""
    resolved_ids = {k: [v] for k, v in resolved.items() if v is not None}
    key = cache.cache_key(
        request.stage, request.node_id, params.model_dump(mode="json"), {**request.inputs, **resolved_ids}, fingerprint
    )
    all_inputs = [ref for refs in request.inputs.values() for ref in refs] + list(
        r for r in resolved.values() if r is not None
    )
    base_props: dict[str, Any] = {
        "pipeline": request.pipeline,
        "node_id": request.node_id,
        "run_id": request.run_id,
        "cache_key": key,
        "try_number": request.try_number,
    }
    if request.logical_date:
        base_props["logical_date"] = request.logical_date

    if request.enable_cache:
        hit = cache.find_cached(client, node_ctx, key)
        if hit is not None:
            source_id, outputs = hit
            execution_id = client.start_execution(stage.execution_type, contexts, all_inputs, base_props)
            client.finish_execution(execution_id, contexts, outputs, {"cached_from": source_id}, state=State.CACHED)
            log.info("Cache hit: reusing the outputs of execution %d.", source_id)
            summary = client.store.get_executions_by_id([source_id])[0].custom_properties.get("summary")
            return StageResult(
                stage=request.stage,
                execution_id=execution_id,
                cached=True,
                outputs=outputs,
                summary={**(value_of(summary) if summary is not None else {}), "cached_from": source_id},
                duration_s=round(time.monotonic() - started, 3),
            )

    execution_id = client.start_execution(stage.execution_type, contexts, all_inputs, base_props)
    tmp_dir = tempfile.mkdtemp(prefix=f"mlpipe-{request.node_id}-")
    # Beam stages are URI-native: inputs stay where they are and outputs are staged next to their final place,
    # so Beam workers on other hosts can reach both (docs/storage.md).
    uri_native = stage.uses_beam
    temp_uri = store.scratch_uri(request.node_id) if uri_native and is_gcs(store.pipeline_root) else tmp_dir
    outputs: dict[str, OutputArtifact] = {}
    published: list[str] = []

    def inputs_for(refs: list[ArtifactRef]) -> list[ArtifactRef]:
        return list(refs) if uri_native else _localize(store, refs)

    try:
        for slot in stage.outputs:
            final = store.final_uri(request.pipeline, request.node_id, execution_id, slot.name)
            staging = store.staging_uri(final) if uri_native else store.staging_dir(final)
            outputs[slot.name] = OutputArtifact(type=slot.artifact_type, path=staging, uri=final)
        ctx = ExecutorContext(
            pipeline=request.pipeline,
            node_id=request.node_id,
            run_id=request.run_id,
            params=params,
            inputs={slot: inputs_for(refs) for slot, refs in request.inputs.items()},
            resolved={k: (inputs_for([v])[0] if v is not None else None) for k, v in resolved.items()},
            outputs=outputs,
            beam_args=list(request.beam_args),
            logical_date=request.logical_date,
            data_interval_start=request.data_interval_start,
            data_interval_end=request.data_interval_end,
            conf=request.conf,
            spec_dir=request.spec_dir,
            pipeline_root=request.pipeline_root,
            tmp_dir=tmp_dir,
            temp_uri=temp_uri,
        )
        summary = executor.execute(ctx) or {}
        # Every output carries the span of what it was made from, so "previous span" and the baseline can be
        # looked up by span in MLMD; an executor that knows better (ExampleGen, which reads a span) sets its own.
        span = resolvers.newest_span(ref for refs in request.inputs.values() for ref in refs)
        refs: dict[str, list[ArtifactRef]] = {}
        for slot, out in outputs.items():
            if span is not None:
                out.properties.setdefault("span", span)
            store.publish(out.path, out.uri)
            published.append(out.uri)
            uri = out.external_uri or out.uri
            refs[slot] = [ArtifactRef(type=out.type, uri=uri, name=slot, properties=out.properties)]
        client.finish_execution(execution_id, contexts, refs, {"summary": summary})
    except BaseException as exc:
        for out in outputs.values():
            store.discard(out.path)
        # An output without its LIVE record in MLMD must not look finished: take published ones back.
        for uri in published:
            store.unpublish(uri)
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        try:
            client.fail_execution(execution_id, message)
        except Exception:  # the original error matters more than a failed bookkeeping write
            log.exception("Could not mark execution %d as FAILED.", execution_id)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if temp_uri != tmp_dir:
            store.storage.delete_prefix(temp_uri)
    return StageResult(
        stage=request.stage,
        execution_id=execution_id,
        cached=False,
        outputs=refs,
        summary=summary,
        duration_s=round(time.monotonic() - started, 3),
    )
