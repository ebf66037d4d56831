"""``dag_run.conf`` stage overrides name files the way the spec does: relative to the spec's own folder.

The spec's relative paths are made absolute (data, destinations) or relative to the pipeline folder (user modules,
schema files) when the spec is loaded. An override arrives only when a run starts, so the operator resolves it
here with the same rules before the runtime merges it; otherwise ``../data/x.csv`` in a run's conf would be read
against whatever folder the runtime happens to use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.spec.validate import resolve_local
from airflow_provider_mlpipe.stages import get_stage

# Stage kind -> params naming data or a destination, as key paths; "*" stands for every key of a mapping.
DATA_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "example_gen": (("input", "pattern"), ("input", "splits", "*")),
    "example_validator": (("skew", "serving_statistics"),),
    "pusher": (("destination",),),
}


def pipeline_file(value: str, spec_folder: str | Path, pipeline_folder: str | Path) -> str:
    """A user file as the runtime expects it: relative to the pipeline folder, as the spec's own are.

    A file outside that folder stays absolute, so the runtime refuses it by name.
    """
    path = Path(resolve_local(value, Path(spec_folder))).resolve()
    base = Path(pipeline_folder).resolve()
    return path.relative_to(base).as_posix() if path == base or base in path.parents else str(path)


def _resolve_at(params: dict[str, Any], keys: tuple[str, ...], folder: str | Path) -> None:
    head, rest = keys[0], keys[1:]
    names = list(params) if head == "*" else [head]
    for name in names:
        value = params.get(name)
        if not rest and isinstance(value, str):
            params[name] = resolve_local(value, Path(folder))
        elif rest and isinstance(value, dict):
            params[name] = dict(value)
            _resolve_at(params[name], rest, folder)


def resolve_override_paths(
    kind: str, override: dict[str, Any], spec_folder: str | Path, pipeline_folder: str | Path | None
) -> dict[str, Any]:
    """One stage's override with its file params resolved against the spec's folder (a copy)."""
    resolved = dict(override)
    for keys in DATA_PATHS.get(kind, ()):
        _resolve_at(resolved, keys, spec_folder)
    file_params = ["module_file"] if get_stage(kind).user_function else []
    if kind == "schema_gen":
        file_params.append("schema_file")
    if kind == "evaluator":
        file_params.append("kpi_module")
    for name in file_params:
        value = resolved.get(name)
        if isinstance(value, str) and pipeline_folder:
            resolved[name] = pipeline_file(value, spec_folder, pipeline_folder)
    return resolved


def resolve_conf_paths(
    conf: dict[str, Any],
    kind: str,
    node_id: str,
    spec_folder: str | Path | None,
    pipeline_folder: str | Path | None = None,
) -> dict[str, Any]:
    """``dag_run.conf`` with the overrides for this stage (by kind and by node id) resolved like the spec's paths.

    Overrides for other stages are left alone: their own operators resolve them.
    """
    stages = conf.get("stages")
    if not spec_folder or not isinstance(stages, dict):
        return conf
    resolved_stages = dict(stages)
    for key in dict.fromkeys((kind, node_id)):
        if isinstance(stages.get(key), dict):
            resolved_stages[key] = resolve_override_paths(kind, stages[key], spec_folder, pipeline_folder)
    return {**conf, "stages": resolved_stages}
