"""Fingerprints of the user modules Transform and Trainer load, for the execution cache."""

from __future__ import annotations

import hashlib
from pathlib import Path


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
