"""The mlpipe FastAPI app, mounted by the Airflow API server under ``/mlpipe``.

Authentication and authorization are Airflow's own: every route depends on ``requires_access_dag``, which
resolves the user from the ``Authorization: Bearer`` header or the ``_token`` cookie the Airflow UI sets (the
external views are same-origin iframes, so the browser sends that cookie) and asks the auth manager whether
the user may read the DAG's runs, or trigger them for a rollback or an override.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import SQLAlchemyError

from airflow_provider_mlpipe.operators.baseline_decisions import describe
from airflow_provider_mlpipe.operators.rollback import last_json_line
from airflow_provider_mlpipe.ui import drift, plots, served, svg
from airflow_provider_mlpipe.ui.backend import UiBackend
from airflow_provider_mlpipe.ui.compare import build_comparison
from airflow_provider_mlpipe.ui.data import (
    NotFoundError,
    artifact_in_run,
    build_pipeline_view,
    build_run_view,
    checked_split,
    is_deleted,
    list_files,
    pipeline_for_run,
    read_bytes,
    read_json,
)
from airflow_provider_mlpipe.ui.decisions import overridden_runs, override_of, pipeline_decisions, reset_of
from airflow_provider_mlpipe.ui.mlmd_reader import MlmdSchemaError

log = logging.getLogger(__name__)
URL_PREFIX = "/mlpipe"
JSON_FILES = ("summary.json", "anomalies.json", "schema_diff.json", "metrics.json", "blessing.json", "push.json")
# The pipeline view's run table shows this many runs per page (the trends above it cover every span).
RUNS_PER_PAGE = 50
# The stats page is TFDV's own HTML; it may run its scripts, but only inside an opaque-origin sandbox.
STATS_CSP = "sandbox allow-scripts; frame-ancestors 'self'"


def _access(method: str) -> Any:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag(method, DagAccessEntity.RUN)


def _user_dependency() -> Any:
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


# Module-level so tests can override them; the dag_id comes from the query string of every route. The actions
# (a rollback, an override) need Airflow's permission to trigger the DAG's runs.
read_access = _access("GET")
rollback_access = trigger_access = _access("POST")
current_user = _user_dependency()


def get_backend(request: Request) -> UiBackend:
    return request.app.state.backend


BackendDep = Annotated[UiBackend, Depends(get_backend)]
DagId = Annotated[str, Query(min_length=1, max_length=250)]
RunId = Annotated[str, Query(min_length=1, max_length=250)]
SliceName = Annotated[str | None, Query(alias="slice", max_length=1000)]

_templates = Environment(
    loader=FileSystemLoader(str(Path(__file__).with_name("templates"))),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _url(request: Request, route: str, **params: Any) -> str:
    """A URL inside this app that keeps working under the API server's base path."""
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{root}/{route}?{urlencode({k: v for k, v in params.items() if v is not None})}"


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status_code)


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(status_code=404, detail=str(exc) or "not found")


def create_app(backend: UiBackend | None = None) -> FastAPI:
    app = FastAPI(title="mlpipe", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend or UiBackend()

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(MlmdSchemaError)
    def store_unavailable(request: Request, exc: SQLAlchemyError | MlmdSchemaError) -> HTMLResponse:
        # Say which store and why, without the connection URL (it may carry a password): a schema error's own
        # sentence, else the driver's message.
        log.warning("The ML Metadata store cannot be read: %s", type(exc).__name__)
        reason = getattr(exc, "orig", None) or (exc if isinstance(exc, MlmdSchemaError) else type(exc).__name__)
        where = request.app.state.backend.describe()
        return _page("unavailable.html", status_code=503, reason=str(reason), where=where)

    def run_view(backend: UiBackend, dag_id: str, run_id: str) -> Any:
        reader = backend.reader()
        pipeline = pipeline_for_run(reader, dag_id, backend.xcoms(dag_id, run_id))
        return build_run_view(reader, dag_id, run_id, pipeline)

    @app.get("/run", response_class=HTMLResponse, dependencies=[Depends(read_access)])
    def run_page(
        request: Request, backend: BackendDep, dag_id: DagId, run_id: RunId, slice_name: SliceName = None
    ) -> HTMLResponse:
        view = run_view(backend, dag_id, run_id)
        shown = view.plots.pick(slice_name) if view.plots else None

        def artifact_href(artifact_id: int) -> str:
            return _url(request, "artifact", dag_id=dag_id, run_id=run_id, artifact_id=artifact_id)

        def stats_href(split: str) -> str:
            return _url(request, "stats", dag_id=dag_id, run_id=run_id, artifact_id=view.statistics.id, split=split)

        decisions = pipeline_decisions(backend.reader(), view.pipeline)
        return _page(
            "run.html",
            view=view,
            override=override_of(decisions, view.blessing.get("current_model_id")),
            baseline_reset=reset_of(backend.reader(), view.evaluation, view.graph.artifacts),
            bless_action=_url(request, "bless", dag_id=dag_id, run_id=run_id),
            lineage=svg.lineage_svg(view.graph, artifact_href),
            artifact_href=artifact_href,
            stats_href=stats_href,
            plot_slice=shown,
            plot_figures=plots.slice_figures(view.plots.slices[shown], shown) if view.plots and shown else [],
            top_drift=drift.top_drifting(view.anomalies_artifact, view.anomalies),
            run_action=_url(request, "run").rstrip("?"),
            pipeline_href=_url(request, "pipeline", dag_id=dag_id),
        )

    @app.get("/compare", response_class=HTMLResponse, dependencies=[Depends(read_access)])
    def compare_page(request: Request, backend: BackendDep, dag_id: DagId, a: RunId, b: RunId) -> HTMLResponse:
        """Two runs of the pipeline side by side, B against A."""
        views = [run_view(backend, dag_id, run_id) for run_id in (a, b)]
        for view in views:
            if not view.graph.executions:
                missing = f"Run {view.run_id} of {dag_id} recorded nothing in ML Metadata"
                raise HTTPException(status_code=404, detail=f"{missing}; pick one from the pipeline's run table.")
        return _page(
            "compare.html",
            comparison=build_comparison(*views),
            run_href=lambda run_id: _url(request, "run", dag_id=dag_id, run_id=run_id),
            pipeline_href=_url(request, "pipeline", dag_id=dag_id),
        )

    @app.get("/stats", dependencies=[Depends(read_access)])
    def stats_page(
        backend: BackendDep, dag_id: DagId, run_id: RunId, artifact_id: int, split: Annotated[str, Query(max_length=64)]
    ) -> Response:
        view = run_view(backend, dag_id, run_id)
        try:
            artifact = artifact_in_run(view, artifact_id)
            if artifact.type != "ExampleStatistics":
                raise NotFoundError(f"artifact {artifact_id} is not an ExampleStatistics artifact")
            if is_deleted(artifact):
                raise HTTPException(status_code=410, detail=f"statistics #{artifact_id} were deleted by retention")
            body = read_bytes(artifact.uri, f"Split-{checked_split(artifact, split)}", "stats.html")
        except NotFoundError as exc:
            raise _not_found(exc)
        if body is None:
            raise HTTPException(status_code=404, detail=f"no stats.html for split {split}")
        return Response(body, media_type="text/html", headers={"Content-Security-Policy": STATS_CSP})

    @app.get("/artifact", response_class=HTMLResponse, dependencies=[Depends(read_access)])
    def artifact_page(
        request: Request, backend: BackendDep, dag_id: DagId, run_id: RunId, artifact_id: int
    ) -> HTMLResponse:
        view = run_view(backend, dag_id, run_id)
        try:
            artifact = artifact_in_run(view, artifact_id)
        except NotFoundError as exc:
            raise _not_found(exc)
        documents = {name: doc for name in JSON_FILES if (doc := read_json(artifact, name)) is not None}
        return _page(
            "artifact.html",
            view=view,
            artifact=artifact,
            files=list_files(artifact),
            documents=documents,
            run_href=_url(request, "run", dag_id=dag_id, run_id=run_id),
            stats_href=lambda split: _url(
                request, "stats", dag_id=dag_id, run_id=run_id, artifact_id=artifact.id, split=split
            ),
        )

    @app.get("/task", response_class=HTMLResponse, dependencies=[Depends(read_access)])
    def task_page(request: Request, backend: BackendDep, dag_id: DagId, run_id: RunId, task_id: str) -> HTMLResponse:
        """The artifacts one stage task produced (the target of the operator's "artifacts" extra link)."""
        view = run_view(backend, dag_id, run_id)
        result = backend.xcoms(dag_id, run_id).get(task_id)
        execution_id = result.get("execution_id") if isinstance(result, dict) else None
        execution = next((e for e in view.graph.executions if e.id == execution_id), None)
        if execution is None:
            execution = next(
                (e for e in reversed(view.graph.executions) if e.properties.get("node_id") == task_id), None
            )
        if execution is None:
            raise HTTPException(status_code=404, detail=f"task {task_id} recorded no execution in this run")
        return _page(
            "task.html",
            view=view,
            task_id=task_id,
            execution=execution,
            outputs=view.graph.outputs(execution.id),
            artifact_href=lambda i: _url(request, "artifact", dag_id=dag_id, run_id=run_id, artifact_id=i),
            run_href=_url(request, "run", dag_id=dag_id, run_id=run_id),
        )

    @app.get("/pipeline", response_class=HTMLResponse, dependencies=[Depends(read_access)])
    def pipeline_page(
        request: Request, backend: BackendDep, dag_id: DagId, page: Annotated[int, Query(ge=1, le=100_000)] = 1
    ) -> HTMLResponse:
        reader = backend.reader()
        # One page of the run table, newest first; one run more tells whether an older page exists.
        runs = backend.dag_runs(dag_id, limit=RUNS_PER_PAGE + 1, offset=(page - 1) * RUNS_PER_PAGE)
        has_older = len(runs) > RUNS_PER_PAGE
        runs = runs[-RUNS_PER_PAGE:]
        pipeline = dag_id
        for run in reversed(runs):
            pipeline = pipeline_for_run(reader, dag_id, backend.xcoms(dag_id, run["run_id"]))
            if pipeline != dag_id:
                break
        view = build_pipeline_view(reader, dag_id, pipeline, runs)
        labels = [str(p.span) for p in view.metric_points]
        metric_charts = [
            svg.trend_svg(name, labels, {name: [p.values.get(name) for p in view.metric_points]})
            for name in view.metric_names
        ]
        kpi_labels = [str(p.span) for p in view.kpi_points]
        kpi_charts = [
            svg.trend_svg(f"KPI {name}", kpi_labels, {name: [p.values.get(name) for p in view.kpi_points]})
            for name in view.kpi_names
        ]
        anomaly_labels = [str(p.span) for p in view.anomaly_points]
        severities = [s for s in view.severities if s != "total"]
        # One line per severity, plus a dashed total when there is more than one severity.
        names = [*severities, "total"] if len(severities) != 1 else severities
        anomaly_chart = svg.trend_svg(
            "anomalies per span",
            anomaly_labels,
            {sev: [p.values.get(sev, 0.0) for p in view.anomaly_points] for sev in names},
            zero_based=True,
            dashed=("total",),
        )
        decisions = pipeline_decisions(reader, pipeline)
        return _page(
            "pipeline.html",
            view=view,
            decisions=decisions,
            overridden=overridden_runs(decisions),
            metric_charts=metric_charts,
            kpi_charts=kpi_charts,
            anomaly_chart=anomaly_chart,
            drift_trends=drift.drift_trends(view.anomaly_artifacts),
            served_trends=served.served_trends(reader, pipeline),
            run_href=lambda run_id: _url(request, "run", dag_id=dag_id, run_id=run_id),
            rollback_action=_url(request, "rollback", dag_id=dag_id),
            compare_action=_url(request, "compare").rstrip("?"),
            page=page,
            newer_href=_url(request, "pipeline", dag_id=dag_id, page=page - 1) if page > 1 else None,
            older_href=_url(request, "pipeline", dag_id=dag_id, page=page + 1) if has_older else None,
        )

    @app.post("/rollback", response_class=HTMLResponse, dependencies=[Depends(rollback_access)])
    def rollback(
        request: Request,
        backend: BackendDep,
        dag_id: DagId,
        version: Annotated[str, Form(max_length=32)],
        confirm: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        _confirmed(request, confirm, "rollback")
        reader = backend.reader()
        runs = backend.dag_runs(dag_id)
        pipeline = next(
            (
                p
                for r in reversed(runs)
                if (p := pipeline_for_run(reader, dag_id, backend.xcoms(dag_id, r["run_id"]))) != dag_id
            ),
            dag_id,
        )
        view = build_pipeline_view(reader, dag_id, pipeline, runs)
        destination = view.destination_of(version)
        if destination is None:
            raise HTTPException(status_code=404, detail=f"version {version} was never pushed by {pipeline}")
        outcome = backend.rollback(pipeline, version, destination)
        log.info("Rollback of %s to version %s: exit %s", pipeline, version, outcome.returncode)
        return _page(
            "rollback.html",
            summary=last_json_line(outcome.output),
            status_code=200 if outcome.returncode == 0 else 500,
            pipeline=pipeline,
            version=version,
            outcome=outcome,
            pipeline_href=_url(request, "pipeline", dag_id=dag_id),
        )

    @app.post("/bless", response_class=HTMLResponse, dependencies=[Depends(trigger_access)])
    def bless(
        request: Request,
        backend: BackendDep,
        dag_id: DagId,
        run_id: RunId,
        user: Annotated[Any, Depends(current_user)],
        reason: Annotated[str, Form(max_length=2000)] = "",
        confirm: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        """Bless this run's NOT_BLESSED model by override (``mlpipe bless``), recorded with the user and the reason."""
        _confirmed(request, confirm, "override")
        if not reason.strip():
            raise HTTPException(status_code=400, detail="an override needs a reason; it is recorded with it")
        view = run_view(backend, dag_id, run_id)
        model_id = view.blessing.get("current_model_id")  # from MLMD, never from the request
        if view.blessing_artifact is None or not isinstance(model_id, int):
            raise HTTPException(status_code=404, detail=f"run {run_id} of {dag_id} evaluated no model")
        name = user.get_name() if hasattr(user, "get_name") else str(user)
        outcome = backend.bless(view.pipeline, model_id, reason.strip(), name or "airflow-ui")
        log.info("Override of model %s of %s by %s: exit %s", model_id, view.pipeline, name, outcome.returncode)
        return _page(
            "decision.html",
            status_code=200 if outcome.ok else 409,
            pipeline=view.pipeline,
            model_id=model_id,
            outcome=outcome,
            message=describe("bless", view.pipeline, outcome.summary) if outcome.ok else outcome.error,
            run_href=_url(request, "run", dag_id=dag_id, run_id=run_id),
        )

    return app


def _confirmed(request: Request, confirm: str, action: str) -> None:
    """An action must come from this origin and be confirmed in its dialog."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise HTTPException(status_code=403, detail=f"cross-origin {action} refused")
    if confirm != "yes":
        raise HTTPException(status_code=400, detail=f"the {action} was not confirmed")
