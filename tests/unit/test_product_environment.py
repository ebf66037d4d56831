"""The product's Airflow environment (.venv) holds no benchmark-only package.

dag-factory registers an Airflow plugin through the ``airflow.plugins`` entry point, which every Airflow process
(scheduler, dag-processor, api-server, workers) loads. It belongs to the parse benchmark's .venv-bench only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tests_run_in_the_product_venv():
    # The checks below are only about .venv if this is .venv's interpreter.
    assert Path(sys.prefix).resolve() == (REPO / ".venv").resolve()


def test_no_dagfactory_distribution_or_plugin_entry_point():
    plugins = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="airflow.plugins")}
    assert not [value for value in plugins.values() if value.startswith("dagfactory")], plugins
    assert "mlpipe" in plugins  # the query itself works: our own plugin is found
    assert importlib.util.find_spec("dagfactory") is None
    names = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    assert "dag-factory" not in names


def test_airflow_loads_only_the_mlpipe_plugin(tmp_path):
    proc = subprocess.run(
        [str(REPO / ".venv/bin/airflow"), "plugins", "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRFLOW_HOME": str(tmp_path)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout[proc.stdout.index("[") :])
    # Installed packages register plugins by entry point; the rest are Airflow's example plugins from a folder.
    installed = {plugin["name"]: plugin["source"] for plugin in loaded if "EntryPoint(" in str(plugin.get("source"))}
    assert list(installed) == ["mlpipe"], installed
