"""Helpers the model-stage executors share: user-module fingerprints and ``dag_run.conf`` overrides."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.protocol import StageRequest


def module_digest(module_file: str | None, spec_dir: str | None) -> str:
    """sha256 of a user module's bytes (resolved against the spec folder), or a marker when it is missing.

    A missing file is not an error here: the executor reports it with a clear message when it loads the module.
    """
    if not module_file:
        return "no-module"
    path = Path(module_file) if Path(module_file).is_absolute() or not spec_dir else Path(spec_dir) / module_file
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return f"missing:{module_file}"


def stage_overrides(conf: dict[str, Any] | None, node_id: str, stage: str) -> dict[str, Any]:
    """``conf["stages"][<node id or stage name>]``: per-run overrides from ``dag_run.conf``."""
    stages = (conf or {}).get("stages") or {}
    return dict(stages.get(node_id) or stages.get(stage) or {})


def user_module_fingerprint(request: StageRequest) -> str:
    """Cache fingerprint: the user module's content plus this run's overrides (which params do not carry)."""
    payload = {
        "module": module_digest(request.params.get("module_file"), request.spec_dir),
        "overrides": stage_overrides(request.conf, request.node_id, request.stage),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def merged_hyperparameters(
    params: dict[str, Any], conf: dict[str, Any] | None, node_id: str, stage: str
) -> dict[str, Any]:
    """Spec ``hyperparameters`` updated by ``conf["stages"][stage]["hyperparameters"]``."""
    merged = dict(params.get("hyperparameters") or {})
    merged.update(stage_overrides(conf, node_id, stage).get("hyperparameters") or {})
    return merged
