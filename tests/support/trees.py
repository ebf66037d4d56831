"""Checksums of directory trees: equal results mean the same files with the same bytes under the same paths.

Importable from both venvs (standard library only).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path, PurePath

# Decides from a file's path relative to the root whether to leave it out.
Skip = Callable[[PurePath], bool]


def in_staging(relative: PurePath) -> bool:
    """A file of an unpublished attempt, under the artifact store's ``.staging`` folder."""
    return ".staging" in relative.parts


def hidden_at_top(relative: PurePath) -> bool:
    """A file inside a hidden top-level folder: a Pusher's ``.tmp-*`` copy or its claims."""
    return len(relative.parts) > 1 and relative.parts[0].startswith(".")


def tree_checksums(root: str | os.PathLike[str], skip: Skip | None = None) -> dict[str, str]:
    """The sha256 of every file under ``root``, by relative path."""
    base = Path(root)
    checksums = {}
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base)
        if path.is_file() and not (skip and skip(relative)):
            checksums[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return checksums


def tree_digest(root: str | os.PathLike[str], skip: Skip | None = None) -> str:
    """One sha256 over the whole tree: every file's relative path and bytes."""
    return hashlib.sha256(json.dumps(tree_checksums(root, skip), sort_keys=True).encode()).hexdigest()
