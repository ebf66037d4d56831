"""Merging nested settings: spec overlays (``environments``) and per-run ``dag_run.conf`` stage overrides.

Both sides use it, so it needs only the standard library.
"""

from __future__ import annotations

from typing import Any


def deep_merge(base: Any, overlay: Any) -> Any:
    """Mappings merge key by key; anything else in the overlay replaces the base value."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return overlay


def with_stage_overrides(
    params: dict[str, Any], conf: dict[str, Any] | None, stage: str, node_id: str
) -> dict[str, Any]:
    """``params`` with ``conf["stages"][<stage>]`` and then ``conf["stages"][<node id>]`` merged in.

    A node-specific override wins over one for every node of the stage's kind.
    """
    overrides = (conf or {}).get("stages") or {}
    merged = dict(params)
    for key in dict.fromkeys((stage, node_id)):
        override = overrides.get(key)
        if isinstance(override, dict):
            merged = deep_merge(merged, override)
    return merged
