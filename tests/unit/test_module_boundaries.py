"""No module of the package reaches into another's private names: what is shared is public and named so."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO

PACKAGE = REPO / "airflow_provider_mlpipe"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path) -> list[str]:
    """``from <our module> import _x`` and ``<our module alias>._x`` in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    modules: set[str] = set()  # local names bound to modules of the package
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_provider_mlpipe"):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("airflow_provider_mlpipe"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
        if named and _private(node.attr):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    offenders = [use for path in sorted(PACKAGE.rglob("*.py")) for use in private_uses(path)]
    assert offenders == []


def test_the_check_sees_both_forms(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from airflow_provider_mlpipe.runtime.io import artifact_store\n"
        "from airflow_provider_mlpipe.storage import _client\n"
        "artifact_store._gcs_client()\n"
    )
    assert private_uses(sample) == [
        "sample.py:2 imports airflow_provider_mlpipe.storage._client",
        "sample.py:3 uses artifact_store._gcs_client",
    ]
