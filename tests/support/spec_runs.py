"""A pipeline spec's stages run through the runner, as one scheduled day's run would run them (no Airflow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest, StageResult
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
from airflow_provider_mlpipe.runtime.runner import run_stage

StageCall = Callable[..., StageResult]


def day_runner(
    client: MetadataClient,
    pipeline: str,
    params: dict[str, dict[str, Any]],
    *,
    root: Path,
    spec_dir: str,
    day: int,
    run_id: str | None = None,
    conf: dict[str, Any] | None = None,
    results: dict[str, StageResult] | None = None,
) -> StageCall:
    """``stage(name, **inputs)`` runs one stage of the run of 2024-01-0<day>; ``results`` collects the results."""
    collected = results if results is not None else {}

    def stage(name: str, **inputs: ArtifactRef) -> StageResult:
        request = StageRequest(
            pipeline=pipeline,
            pipeline_root=str(root),
            stage=name,
            node_id=name,
            run_id=run_id or f"scheduled__2024-01-0{day}",
            params=params[name],
            inputs={slot: [ref] for slot, ref in inputs.items()},
            conf=conf or {},
            spec_dir=spec_dir,
            data_interval_start=f"2024-01-0{day}T00:00:00+00:00",
            logical_date=f"2024-01-0{day}T00:00:00+00:00",
        )
        collected[name] = run_stage(request, client)
        return collected[name]

    return stage


def run_every_stage(stage: StageCall) -> dict[str, StageResult]:
    """ExampleGen to Pusher with the standard wiring; the Pusher runs only after a blessing, which is asserted."""
    results: dict[str, StageResult] = {}

    def call(name: str, **inputs: ArtifactRef) -> StageResult:
        results[name] = stage(name, **inputs)
        return results[name]

    examples = call("example_gen").artifact("examples")
    statistics = call("statistics_gen", examples=examples).artifact("statistics")
    schema = call("schema_gen", statistics=statistics).artifact("schema")
    call("example_validator", statistics=statistics, schema=schema)
    transform = call("transform", examples=examples, schema=schema)
    model = call(
        "trainer",
        examples=transform.artifact("transformed_examples"),
        schema=schema,
        transform_graph=transform.artifact("transform_graph"),
    ).artifact("model")
    blessing = call("evaluator", examples=examples, model=model).artifact("blessing")
    assert blessing.properties["blessed"] == 1, blessing.properties["reason"]
    call("pusher", model=model, blessing=blessing)
    return results
