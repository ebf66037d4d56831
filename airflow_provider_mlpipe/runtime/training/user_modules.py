"""Fingerprints of the user modules Transform and Trainer load, or of their built-in code, for the execution cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


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


BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin"


def builtin_digest(params: dict[str, Any]) -> str:
    """sha256 of the built-in tabular code and the stage's params, so a change to either is a new execution."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for path in sorted(BUILTIN_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return "builtin:" + digest.hexdigest()
