"""The plugin's registration (FastAPI app, external views, extra links) and the links' URLs."""

from __future__ import annotations

import subprocess
import sys

from airflow.sdk.types import TaskInstanceKey

from airflow_provider_mlpipe.get_provider_info import get_provider_info
from airflow_provider_mlpipe.links.stage import MlpipeArtifactsLink, MlpipeRunViewLink
from airflow_provider_mlpipe.operators.stage import MlpipeStageOperator
from airflow_provider_mlpipe.ui.plugin import LazyApp, MlpipePlugin
from tests.support.paths import REPO


def test_plugin_mounts_the_app_and_adds_a_run_tab_and_a_dag_tab() -> None:
    [app] = MlpipePlugin.fastapi_apps
    assert app["url_prefix"] == "/mlpipe" and isinstance(app["app"], LazyApp)
    views = {v["destination"]: v for v in MlpipePlugin.external_views}
    assert views["dag_run"]["href"].endswith("/mlpipe/run?dag_id={DAG_ID}&run_id={RUN_ID}")
    assert views["dag"]["href"].endswith("/mlpipe/pipeline?dag_id={DAG_ID}")
    assert len({v["url_route"] for v in views.values()}) == 2
    plugin_classes = [p["plugin-class"] for p in get_provider_info()["plugins"]]
    assert f"{MlpipePlugin.__module__}.{MlpipePlugin.__name__}" in plugin_classes


def test_plugins_folder_entry_exposes_the_same_plugin() -> None:
    code = "import sys; sys.path.insert(0, 'plugins'); import mlpipe_plugin as m; print(m.MlpipePlugin.__module__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "airflow_provider_mlpipe.ui.plugin", out.stderr[-2000:]


def test_loading_the_plugin_does_not_build_the_app_or_import_the_ml_stack() -> None:
    heavy = "('airflow_provider_mlpipe.ui.app', 'fastapi', 'tensorflow', 'ml_metadata')"
    ml = "('tensorflow', 'ml_metadata', 'tensorflow_data_validation', 'apache_beam', 'tfx_bsl')"
    code = (
        "import sys, airflow_provider_mlpipe.ui.plugin as p\n"
        f"heavy = [m for m in {heavy} if m in sys.modules]\n"
        "app = p.MlpipePlugin.fastapi_apps[0]['app'].app\n"
        f"ml = [m for m in {ml} if m in sys.modules]\n"
        "print(heavy, type(app).__name__, ml)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[] FastAPI []", out.stderr[-2000:]


def test_stage_operator_links_to_its_run_view_and_its_artifacts() -> None:
    names = {link.name for link in MlpipeStageOperator.operator_extra_links}
    assert names == {MlpipeRunViewLink.name, MlpipeArtifactsLink.name}
    key = TaskInstanceKey(dag_id="pen guins", task_id="trainer", run_id="manual__2024-01-01T00:00:00+00:00")
    run_link = MlpipeRunViewLink().get_link(None, ti_key=key)
    assert run_link.endswith("/dags/pen%20guins/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00/plugin/mlpipe-run")
    artifacts = MlpipeArtifactsLink().get_link(None, ti_key=key)
    assert artifacts.endswith(
        "/mlpipe/task?dag_id=pen+guins&run_id=manual__2024-01-01T00%3A00%3A00%2B00%3A00&task_id=trainer"
    )
