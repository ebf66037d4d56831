"""Pipeline specs -> Airflow DAGs: one DAG per valid spec, one import error per invalid spec.

``dags/mlpipe_dags.py`` calls ``load_pipelines(folder, globals())`` once. Valid specs become DAGs in that module's
globals. Invalid specs are written into the import errors of the DagBag that is parsing the file, keyed by the
spec file itself, so ``airflow dags list-import-errors`` and the UI name the spec, its line and the field, while
every good DAG of the same file is still serialized and scheduled (raising would lose them all).

Parsing never imports the ML stack; under a task's parsing context only that task's DAG is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.notifications.notifier import deadline_alert, event_notifiers
from airflow_provider_mlpipe.operators.stages import operator_for
from airflow_provider_mlpipe.spec.errors import SpecError, SpecErrors
from airflow_provider_mlpipe.spec.graph import APPROVAL_GATE, Gate
from airflow_provider_mlpipe.spec.loader import selected_environment
from airflow_provider_mlpipe.spec.model import AssetSchedule
from airflow_provider_mlpipe.spec.validate import Pipeline, discover, load_all
from airflow_provider_mlpipe.stages import get_stage
from airflow_provider_mlpipe.version_compat import (
    AIRFLOW_V_3_3_PLUS,
    AIRFLOW_V_3_4_PLUS,
    Asset,
    BaseOperator,
    get_base_airflow_version_tuple,
    get_parsing_context,
)

log = logging.getLogger(__name__)
SPEC_ERROR_MARKER = "mlpipe spec error"
# Spec errors reach the UI through DagBag internals: the parsing DagBag found by a stack walk, its import_errors
# dict and its private _get_relative_fileloc. None of that is public API, so it is used only on the Airflow
# releases it is tested on (setup.cfg's range); on any other, spec errors are logged and a warning says why.
DAGBAG_HOOK_RELEASES = "3.3"
DAGBAG_HOOK_SUPPORTED = AIRFLOW_V_3_3_PLUS and not AIRFLOW_V_3_4_PLUS
# Stages that read what earlier spans left (spec.graph.reads_earlier_spans) take the spans in order across runs:
# each waits until its own task of the previous run (by logical date) succeeded or was skipped. A failure there
# holds it until that run is cleared; a skip (a gate with policy skip) does not. Everything else overlaps freely.
# See docs/ordering.md.
SPAN_ORDER: dict[str, Any] = {"depends_on_past": True, "wait_for_past_depends_before_skipping": True}


def load_pipelines(
    folder: str | Path,
    globals_dict: dict[str, Any],
    *,
    base_dir: str | Path | None = None,
    environment: str | None = None,
) -> dict[str, Any]:
    """Build a DAG for every valid spec under ``folder`` and report the invalid ones as import errors.

    :param folder: where the ``*.yaml`` specs live (searched recursively).
    :param globals_dict: the calling DAG file's ``globals()``; DAGs are placed there for the DagBag to find.
    :param base_dir: the pipeline folder handed to the runtime (user modules must live under it); defaults to
        the parent of ``folder``, e.g. ``dags/`` for ``dags/pipelines``.
    :param environment: the overlay (dev, staging, prod); by default the Airflow Variable ``mlpipe_environment``,
        then ``$MLPIPE_ENVIRONMENT``, then ``[mlpipe] environment``.
    """
    folder = Path(folder)
    base = Path(base_dir) if base_dir else folder.resolve().parent
    only = get_parsing_context().dag_id  # a task's own parse needs only its own DAG
    pipelines, errors = load_all(
        discover(folder), base_dir=base, environment=selected_environment(environment), only=only
    )
    dags: dict[str, Any] = {}
    for pipeline in pipelines:
        try:
            dag = build_dag(pipeline)
        except SpecErrors as exc:
            exc.path = pipeline.loaded.path
            errors.append(exc)
            continue
        except Exception as exc:  # e.g. an operator refusing an argument: only this spec's DAG is lost
            error = pipeline.loaded.error(("name",), f"Building the DAG failed: {type(exc).__name__}: {exc}.")
            errors.append(SpecErrors([error], pipeline.loaded.path))
            continue
        dags[pipeline.name] = globals_dict[f"mlpipe__{pipeline.name}"] = dag
    bag = parsing_dagbag(warn=bool(errors))
    if bag is not None and isinstance(getattr(bag, "file_last_changed", None), dict):
        # `airflow dags reserialize` clears import errors of the files it parsed: count the good specs in
        for pipeline in pipelines:
            bag.file_last_changed.setdefault(str(pipeline.loaded.path.resolve()), datetime.now())
    if errors:
        report_spec_errors(errors, bag)
    return dags


# ----- DAG building ------------------------------------------------------------------------------------------------
def _aware(value: date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _schedule(value: Any) -> Any:
    if not isinstance(value, AssetSchedule):
        return value
    # a URI names an outside asset; a bare name (mlpipe/<pipeline>/pushed_model) refers to one Airflow knows
    assets = [Asset(uri) if "://" in uri else Asset.ref(name=uri) for uri in value.assets]
    combined = assets[0]
    for asset in assets[1:]:
        combined = combined | asset if value.logic == "any" else combined & asset
    return combined


def _import(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _params(pipeline: Pipeline) -> dict[str, Any]:
    from airflow.sdk import Param

    out = {}
    for name, param in pipeline.spec.params.items():
        schema = param.model_dump(exclude_none=True, exclude={"default"})
        out[name] = Param(param.default, **schema)
    return out


def _asset_uri(destination: str) -> str:
    return destination if "://" in destination else Path(destination).resolve().as_uri()


def _operator_class(pipeline: Pipeline, kind: str) -> type[BaseOperator]:
    """The subprocess operator of a stage, or its pod operator when the spec sets ``runtime.image``."""
    runtime = pipeline.spec.runtime
    if not runtime.image:
        return operator_for(kind)
    from airflow_provider_mlpipe.operators.operator_choice import stage_operator_for  # needs cncf-kubernetes

    try:
        return stage_operator_for(runtime.model_dump(mode="json", exclude_none=True), kind)
    except ImportError as exc:
        message = f"runtime.image needs the Kubernetes provider (apache-airflow-providers-cncf-kubernetes): {exc}."
        raise SpecErrors([pipeline.loaded.error(("runtime", "image"), message)]) from None


def build_dag(pipeline: Pipeline) -> Any:
    """One validated pipeline -> one DAG (stages, gates, schedule, pushed-model asset)."""
    from airflow.sdk import DAG

    spec = pipeline.spec
    default_args: dict[str, Any] = {"owner": spec.owner, "retries": spec.retries, "retry_delay": spec.retry_delay}
    if spec.execution_timeout is not None:
        default_args["execution_timeout"] = spec.execution_timeout
    callbacks = {
        key: [_import(getattr(spec, key))]
        for key in ("on_failure_callback", "on_success_callback")
        if getattr(spec, key)
    }
    if run_failed := event_notifiers(spec.notify, "run_failed"):
        callbacks["on_failure_callback"] = [*callbacks.get("on_failure_callback", []), *run_failed]
    dag = DAG(
        dag_id=spec.name,
        description=spec.description or None,
        doc_md=f"{spec.description}\n\nSpec: `{pipeline.loaded.display}`"
        + (f" (environment `{pipeline.loaded.environment}`)" if pipeline.loaded.environment else ""),
        schedule=_schedule(spec.schedule),
        start_date=_aware(spec.start_date),
        end_date=_aware(spec.end_date),
        catchup=spec.catchup,
        max_active_runs=spec.max_active_runs,
        tags=sorted({*spec.tags, "mlpipe"}),
        params=_params(pipeline),
        default_args=default_args,
        deadline=deadline_alert(spec.name, spec.deadline, spec.notify) if spec.deadline is not None else None,
        **callbacks,
    )
    tasks: dict[str, BaseOperator] = {}
    for node_id in pipeline.graph.order():
        node = pipeline.graph.nodes[node_id]
        stage = spec.stages[node_id]
        kwargs: dict[str, Any] = {
            "task_id": node_id,
            "pipeline": spec.name,
            "pipeline_root": pipeline.pipeline_root,
            "stage_params": pipeline.stage_params[node_id],
            "inputs": dict(node.inputs),
            "beam_args": pipeline.beam_args if get_stage(node.kind).uses_beam else [],
            "mlmd_conn_id": spec.mlmd_conn_id,
            "spec_dir": str(pipeline.base_dir),
            "spec_folder": str(pipeline.loaded.path.resolve().parent),
            "enable_cache": spec.enable_cache if stage.enable_cache is None else stage.enable_cache,
            "dag": dag,
        }
        if not spec.runtime.image:  # a pod operator takes the interpreter from its runtime mapping
            kwargs["runtime_python"] = spec.runtime.python
            kwargs["warm_runtime"] = spec.runtime.warm
        if node.span_ordered:
            kwargs.update(SPAN_ORDER)
        if stage.retries is not None:
            kwargs["retries"] = stage.retries
        if stage.execution_timeout is not None:
            kwargs["execution_timeout"] = stage.execution_timeout
        if stage.queue or spec.queue:
            kwargs["queue"] = stage.queue or spec.queue
        if node.kind == "pusher":
            # pushed, or withheld by the span order: each notifier sends only when its event happened
            if outcome := [*event_notifiers(spec.notify, "pushed"), *event_notifiers(spec.notify, "push_withheld")]:
                kwargs["on_success_callback"] = outcome
            name = f"mlpipe/{spec.name}/pushed_model" if node_id == "pusher" else f"mlpipe/{spec.name}/{node_id}"
            uri = _asset_uri(pipeline.stage_params[node_id]["destination"])
            kwargs["outlets"] = [Asset(uri=uri, name=name)]
        tasks[node_id] = _operator_class(pipeline, node.kind)(**kwargs)
    for gate in pipeline.graph.gates:
        tasks[gate.task_id] = _gate_sensor(pipeline, gate, dag)
    for node_id, node in pipeline.graph.nodes.items():
        for upstream in sorted(node.upstream):
            tasks[upstream] >> tasks[node_id]
    for gate in pipeline.graph.gates:
        tasks[gate.upstream] >> tasks[gate.task_id]
    if spec.retention is not None and spec.retention.cleanup_task:
        # A rejected approval skips every task right after it; the Pusher, after the approval, keeps the order.
        _gc_task(pipeline, dag) << [task for task_id, task in tasks.items() if task_id != APPROVAL_GATE]
    return dag


def _gc_task(pipeline: Pipeline, dag: Any) -> BaseOperator:
    """The run's last task: after every stage and gate, whatever their outcome, so it never overlaps them."""
    from airflow_provider_mlpipe.operators.gc import GC_TASK_ID, GcTarget, MlpipeGcOperator

    return MlpipeGcOperator(
        task_id=GC_TASK_ID,
        **dataclasses.asdict(GcTarget.of(pipeline)),
        runtime_python=pipeline.spec.runtime.python,
        mlmd_conn_id=pipeline.spec.mlmd_conn_id,
        queue=pipeline.spec.queue,
        trigger_rule="all_done",
        dag=dag,
    )


def _approval_gate(pipeline: Pipeline, gate: Gate, dag: Any) -> BaseOperator:
    """Airflow's human-in-the-loop ApprovalOperator between the blessing gate and the Pusher."""
    from airflow_provider_mlpipe.operators.approval import MlpipeApprovalOperator

    spec, config = pipeline.spec, pipeline.spec.gates.approval
    assert config is not None  # the graph has an approval gate only when the spec sets one
    kwargs: dict[str, Any] = {"queue": spec.queue} if spec.queue else {}
    # Airflow's HITL operators send their notifiers when the request is made; the outcome is known at the end.
    timed_out = event_notifiers(spec.notify, "approval_timed_out")
    if done := [*timed_out, *event_notifiers(spec.notify, "push_withheld")]:
        kwargs["on_success_callback"] = done
    if failed := [*timed_out, *event_notifiers(spec.notify, "gate_failed")]:  # on_reject: fail
        kwargs["on_failure_callback"] = failed
    return MlpipeApprovalOperator(
        notifiers=event_notifiers(spec.notify, "approval_pending"),
        task_id=gate.task_id,
        evaluator_task_id=gate.reads["evaluator"],
        validator_task_id=gate.reads.get("example_validator"),
        approvers=list(config.approvers),
        response_timeout=config.timeout,
        default=config.default,
        on_reject=config.on_reject,
        pipeline=spec.name,
        mlmd_conn_id=spec.mlmd_conn_id,
        runtime_python=None if spec.runtime.image else spec.runtime.python,
        # A retry would ask again after a rejection, and the spec's execution_timeout would become the response
        # timeout (Airflow's fallback for HITL): the approval takes neither.
        retries=0,
        execution_timeout=None,
        dag=dag,
        **kwargs,
    )


def _gate_sensor(pipeline: Pipeline, gate: Gate, dag: Any) -> BaseOperator:
    # Imported here: the gates module may evolve separately, and pipelines without gates never need it.
    from airflow_provider_mlpipe.sensors.gates import DataValidationSensor, ModelBlessingSensor

    if gate.gate == "approval":
        return _approval_gate(pipeline, gate, dag)
    spec = pipeline.spec
    config = getattr(spec.gates, gate.gate)
    kwargs: dict[str, Any] = {
        "task_id": gate.task_id,
        "upstream_task_id": gate.upstream,
        "policy": config.policy,
        "mode": config.mode,
        "poke_interval": config.poke_interval.total_seconds(),
        "timeout": config.timeout.total_seconds(),
        "pipeline": spec.name,
        "mlmd_conn_id": spec.mlmd_conn_id,
        # the gate reads MLMD through a local runtime; an image's interpreter path means nothing here
        "runtime_python": None if spec.runtime.image else spec.runtime.python,
        "dag": dag,
    }
    # A gate's check runs on a worker before (and unless) it defers to the triggerer, so it takes the spec's queue.
    if spec.queue:
        kwargs["queue"] = spec.queue
    # Unset, the sensor follows Airflow's [operators] default_deferrable; asking to reschedule means not deferring.
    if config.deferrable is not None or config.mode == "reschedule":
        kwargs["deferrable"] = bool(config.deferrable)
    if gate_failed := event_notifiers(spec.notify, "gate_failed"):
        kwargs["on_failure_callback"] = gate_failed
    if withheld := event_notifiers(spec.notify, "push_withheld"):
        kwargs["on_skipped_callback"] = withheld
    if gate.gate == "data_validation":
        kwargs.update(ignore_features=list(config.ignore_features), min_severity=config.min_severity)
        return DataValidationSensor(**kwargs)
    return ModelBlessingSensor(**kwargs)


# ----- import errors ---------------------------------------------------------------------------------------------
def parsing_dagbag(*, warn: bool = True) -> Any:
    """The DagBag whose ``process_file`` is importing the calling DAG file, if any and if it can take our errors.

    On an Airflow release outside ``DAGBAG_HOOK_SUPPORTED``, or when the DagBag lacks the ``import_errors`` dict,
    this returns ``None``: spec errors are then only logged, and every valid spec's DAG is still built.

    :param warn: log a warning when that happens (there are spec errors that the UI will not show).
    """
    module = sys.modules.get("airflow.dag_processing.dagbag")
    if module is None:  # nothing imported it, so no DagBag is parsing us (e.g. a plain `python dags/x.py`)
        return None
    if not DAGBAG_HOOK_SUPPORTED:
        if warn:
            log.warning(
                "mlpipe records spec errors as DagBag import errors only on Airflow %s; this is Airflow %s, so "
                "invalid specs are logged here but not listed in the UI or `airflow dags list-import-errors`.",
                DAGBAG_HOOK_RELEASES,
                ".".join(map(str, get_base_airflow_version_tuple())),
            )
        return None
    frame: Any = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, module.DagBag):
            if isinstance(getattr(candidate, "import_errors", None), dict):
                return candidate
            if warn:
                log.warning(
                    "The parsing DagBag has no import_errors dict, so invalid mlpipe specs are logged here but "
                    "not listed in the UI or `airflow dags list-import-errors`."
                )
            return None
        frame = frame.f_back
    return None


def _bag_key(bag: Any, path: Path) -> str:
    try:
        return str(bag._get_relative_fileloc(str(path.resolve())))
    except (AttributeError, ValueError):  # no bundle, or a spec outside the bundle
        return str(path.resolve())


def report_spec_errors(errors: list[SpecErrors], bag: Any = None) -> None:
    """Log every spec error, and record each spec's errors as that spec file's import error in the DagBag."""
    for exc in errors:
        path = getattr(exc, "path", None)
        key = _bag_key(bag, path) if bag is not None and path is not None else exc.file
        lines = [SpecError(key, e.line, e.field, e.message).format() for e in exc.errors]
        for line in lines:
            log.error("%s: %s", SPEC_ERROR_MARKER, line)
        if bag is not None:
            bag.import_errors[key] = f"{SPEC_ERROR_MARKER} ({len(lines)}):\n" + "\n".join(lines)
