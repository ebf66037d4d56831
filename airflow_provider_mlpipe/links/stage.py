"""Extra links from a stage task to its run view and to the artifacts it produced.

Airflow 3 computes a link on the worker when the task ends and keeps the URL in XCom, so ``get_link`` only
formats a URL from the task instance key; the pages themselves check the viewer's permissions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow_provider_mlpipe.version_compat import BaseOperatorLink, conf

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

RUN_VIEW_ROUTE = "mlpipe-run"
PIPELINE_VIEW_ROUTE = "mlpipe-pipeline"
APP_PREFIX = "mlpipe"


def base_url() -> str:
    """The API server's base URL ([api] base_url), ending in a slash; "/" when unset."""
    base = conf.get("api", "base_url", fallback="") or "/"
    return base if base.endswith("/") else base + "/"


def run_view_url(dag_id: str, run_id: str) -> str:
    """The run view as a tab of the Airflow UI's DAG run page."""
    return f"{base_url()}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/plugin/{RUN_VIEW_ROUTE}"


def pipeline_view_url(dag_id: str) -> str:
    """The pipeline view as a tab of the Airflow UI's DAG page."""
    return f"{base_url()}dags/{quote(dag_id, safe='')}/plugin/{PIPELINE_VIEW_ROUTE}"


def task_artifacts_url(dag_id: str, run_id: str, task_id: str) -> str:
    return f"{base_url()}{APP_PREFIX}/task?{urlencode({'dag_id': dag_id, 'run_id': run_id, 'task_id': task_id})}"


class MlpipeRunViewLink(BaseOperatorLink):
    """Opens the mlpipe run view (statistics, anomalies, metrics, blessing, lineage) of the task's run."""

    name = "mlpipe run view"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return run_view_url(ti_key.dag_id, ti_key.run_id)


class MlpipeArtifactsLink(BaseOperatorLink):
    """Opens the artifacts the stage task produced (or reused from the cache) in this run."""

    name = "mlpipe artifacts"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return task_artifacts_url(ti_key.dag_id, ti_key.run_id, ti_key.task_id)
