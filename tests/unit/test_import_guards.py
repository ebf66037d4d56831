"""The two sides stay apart: the Airflow side loads neither the ML stack nor ``airflow_provider_mlpipe.runtime``,
and the runtime never loads Airflow.

Checked twice: dynamically (import every module in a fresh interpreter and look at sys.modules) and statically
(every import statement in the source tree, including the ones inside functions and relative ones).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import AIRFLOW_PYTHON, REPO, RUNTIME_PYTHON

PACKAGE = REPO / "airflow_provider_mlpipe"
RUNTIME = PACKAGE / "runtime"
RUNTIME_PACKAGE = "airflow_provider_mlpipe.runtime"
ML_STACK = frozenset(
    {
        "tensorflow",
        "tfx_bsl",
        "tensorflow_data_validation",
        "tensorflow_model_analysis",
        "tensorflow_transform",
        "ml_metadata",
        "apache_beam",
    }
)

# Imports the named modules, optionally parses a DAG folder, and reports every module then loaded.
PROBE = """
import importlib, json, sys
modules, dag_folder = json.loads(sys.argv[1]), sys.argv[2]
for name in modules:
    importlib.import_module(name)
dags, errors = [], {}
if dag_folder:
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=dag_folder)
    dags, errors = sorted(bag.dag_ids), {k: str(v)[:500] for k, v in bag.import_errors.items()}
print(json.dumps({"modules": sorted(sys.modules), "dags": dags, "errors": errors}))
"""


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str) -> set[str]:
    """Every module an import statement or a literal ``import_module("...")`` in ``path`` names, absolute.

    ``from a import b`` yields ``a`` and ``a.b`` (``b`` may be a submodule); relative imports are resolved
    against ``name``, the dotted name of the module in ``path``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (target := literal_import_target(node)) is not None:
            names.add(target)
    return names


def literal_import_target(node: ast.AST) -> str | None:
    """The module named by ``import_module("x")`` or ``__import__("x")`` with a literal string."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func, first = node.func, node.args[0]
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if called in ("import_module", "__import__") and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def is_runtime(module: str) -> bool:
    return module == RUNTIME_PACKAGE or module.startswith(RUNTIME_PACKAGE + ".")


def top_level(modules: set[str] | list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def airflow_side_files() -> list[Path]:
    """Every module of the package outside ``runtime/``, and the shipped DAG files."""
    package = [p for p in sorted(PACKAGE.rglob("*.py")) if RUNTIME not in p.parents]
    return package + sorted((REPO / "dags").glob("*.py"))


def boundary_offenders(files: list[Path], root: Path) -> list[str]:
    """Airflow-side files that import the ML stack or the runtime package."""
    offenders = []
    for path in files:
        imported = imported_modules(path, module_name(path, root))
        if bad := sorted(top_level(imported) & ML_STACK):
            offenders.append(f"{path.relative_to(root)} imports {bad}")
        if bad := sorted(m for m in imported if is_runtime(m)):
            offenders.append(f"{path.relative_to(root)} imports {bad}")
    return offenders


def probe(python: str, modules: list[str], dag_folder: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [python, "-c", PROBE, json.dumps(modules), dag_folder],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def airflow_env(home: Path) -> dict[str, str]:
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}


# A ``__main__`` module runs its program when imported; the static scan covers it.
AIRFLOW_SIDE_MODULES = [
    module_name(p) for p in airflow_side_files() if p.is_relative_to(PACKAGE) and p.stem != "__main__"
]


@pytest.fixture(scope="module")
def airflow_side(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every Airflow-side module imported, and the shipped DAG folder parsed, in one fresh ``.venv`` interpreter."""
    env = airflow_env(tmp_path_factory.mktemp("airflow-home"))
    return probe(AIRFLOW_PYTHON, AIRFLOW_SIDE_MODULES, str(REPO / "dags"), env)


def test_every_airflow_side_module_is_imported_and_the_dags_parse(airflow_side: dict) -> None:
    assert len(AIRFLOW_SIDE_MODULES) > 30
    assert set(AIRFLOW_SIDE_MODULES) <= set(airflow_side["modules"])
    assert "airflow_provider_mlpipe.operators.stage" in AIRFLOW_SIDE_MODULES
    assert "airflow_provider_mlpipe.hooks.mlmd" in AIRFLOW_SIDE_MODULES
    assert airflow_side["errors"] == {}
    assert "penguins" in airflow_side["dags"]


def test_airflow_side_loads_no_ml_stack(airflow_side: dict) -> None:
    assert sorted(top_level(airflow_side["modules"]) & ML_STACK) == []


def test_airflow_side_loads_nothing_from_the_runtime(airflow_side: dict) -> None:
    assert [m for m in airflow_side["modules"] if is_runtime(m)] == []


def test_the_dynamic_check_sees_a_runtime_import(tmp_path: Path) -> None:
    report = probe(AIRFLOW_PYTHON, [RUNTIME_PACKAGE], "", airflow_env(tmp_path))
    assert [m for m in report["modules"] if is_runtime(m)] == [RUNTIME_PACKAGE]


def test_runtime_never_imports_airflow() -> None:
    runtime_modules = [module_name(p) for p in sorted(RUNTIME.rglob("*.py")) if p.stem != "__main__"]
    report = probe(RUNTIME_PYTHON, runtime_modules, "", dict(os.environ))
    assert "airflow_provider_mlpipe.runtime.runner" in runtime_modules
    assert set(runtime_modules) <= set(report["modules"])
    assert sorted(m for m in report["modules"] if m.split(".")[0] == "airflow") == []


def test_airflow_side_source_imports_neither_the_ml_stack_nor_the_runtime() -> None:
    assert boundary_offenders(airflow_side_files(), REPO) == []


def test_runtime_source_never_imports_airflow() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted(RUNTIME.rglob("*.py"))
        if "airflow" in top_level(imported_modules(path, module_name(path)))
    ]
    assert offenders == []


def test_the_static_scan_finds_each_kind_of_import(tmp_path: Path) -> None:
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "__init__.py").write_text("from ..runtime import runner\n")
    (ui / "clean.py").write_text("import json\nfrom . import svg\nfrom airflow_provider_mlpipe.runtimes import x\n")
    (ui / "deferred.py").write_text(
        "import importlib\n"
        "def f():\n"
        "    import tensorflow as tf\n"
        "    from apache_beam import io\n"
        "    from airflow_provider_mlpipe import runtime\n"
        "    return importlib.import_module('airflow_provider_mlpipe.runtime.io.example_io')\n"
    )
    assert imported_modules(ui / "__init__.py", "airflow_provider_mlpipe.ui") == {
        "airflow_provider_mlpipe.runtime",
        "airflow_provider_mlpipe.runtime.runner",
    }
    assert imported_modules(ui / "clean.py", "airflow_provider_mlpipe.ui.clean") == {
        "json",
        "airflow_provider_mlpipe.ui",
        "airflow_provider_mlpipe.ui.svg",
        "airflow_provider_mlpipe.runtimes",
        "airflow_provider_mlpipe.runtimes.x",
    }
    found = boundary_offenders([ui / "deferred.py"], tmp_path)
    assert found == [
        "ui/deferred.py imports ['apache_beam', 'tensorflow']",
        "ui/deferred.py imports ['airflow_provider_mlpipe.runtime', 'airflow_provider_mlpipe.runtime.io.example_io']",
    ]
