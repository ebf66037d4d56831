"""The Airflow side never loads the ML stack, and the runtime never loads Airflow.

Checked twice: dynamically (import everything in a fresh interpreter and look at sys.modules) and statically
(every import statement in the source tree, including the ones inside functions).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "airflow_provider_mlpipe"
RUNTIME = PACKAGE / "runtime"
ML_STACK = (
    "tensorflow",
    "tfx_bsl",
    "tensorflow_data_validation",
    "tensorflow_model_analysis",
    "tensorflow_transform",
    "ml_metadata",
    "apache_beam",
)

AIRFLOW_SIDE_PROBE = """
import importlib, json, pkgutil, sys
import airflow_provider_mlpipe as pkg
loaded = []
for info in pkgutil.walk_packages(pkg.__path__, "airflow_provider_mlpipe."):
    if info.name.startswith("airflow_provider_mlpipe.runtime"):
        continue
    importlib.import_module(info.name)
    loaded.append(info.name)
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
forbidden = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"loaded": loaded, "forbidden": forbidden, "dags": sorted(bag.dag_ids),
                  "errors": {k: str(v)[:500] for k, v in bag.import_errors.items()}}))
"""

RUNTIME_SIDE_PROBE = """
import importlib, json, pkgutil, sys
import airflow_provider_mlpipe.runtime as rt
loaded = []
for info in pkgutil.walk_packages(rt.__path__, "airflow_provider_mlpipe.runtime."):
    importlib.import_module(info.name)
    loaded.append(info.name)
print(json.dumps({"loaded": loaded, "airflow": sorted(m for m in sys.modules if m.split(".")[0] == "airflow")}))
"""


def _run(python: str, code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_provider_and_dag_parsing_load_no_ml_stack(tmp_path):
    env_python = str(REPO / ".venv" / "bin" / "python")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    report = _run(env_python, AIRFLOW_SIDE_PROBE, str(REPO / "dags"), json.dumps(ML_STACK), env=env)
    assert "airflow_provider_mlpipe.operators.stage" in report["loaded"]
    assert "airflow_provider_mlpipe.hooks.mlmd" in report["loaded"]
    assert report["forbidden"] == []


def test_runtime_never_imports_airflow():
    report = _run(str(REPO / ".venv-runtime" / "bin" / "python"), RUNTIME_SIDE_PROBE)
    assert "airflow_provider_mlpipe.runtime.runner" in report["loaded"]
    assert "airflow_provider_mlpipe.runtime.metadata.client" in report["loaded"]
    assert report["airflow"] == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_source_tree_respects_the_boundary():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        imported = _imports(path)
        if RUNTIME in path.parents:
            if "airflow" in imported:
                offenders.append(f"{path.relative_to(REPO)} imports airflow")
        else:
            bad = imported & set(ML_STACK)
            if bad:
                offenders.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    for path in sorted((REPO / "dags").glob("*.py")):
        bad = _imports(path) & set(ML_STACK)
        if bad:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert offenders == []


def test_the_guard_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import tensorflow as tf\n    from apache_beam import io\n")
    assert _imports(bad) & set(ML_STACK) == {"tensorflow", "apache_beam"}
    assert sys.executable
