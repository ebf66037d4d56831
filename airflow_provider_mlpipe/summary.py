"""A readable summary of one pipeline run, built from Airflow's task instances, the stages' XCom results and logs.

Used by `make demo` and `mlpipe summary`. Reads only small JSON files the stages wrote (no ML imports). Tasks are
listed in pipeline order (upstream first), run or not; a failed task shows its error line, a gate its decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.hooks.gcp_storage import storage_for
from airflow_provider_mlpipe.protocol import FAILURE_PREFIX, StageResult
from airflow_provider_mlpipe.storage import join

STATE_MARK = {"success": "ok", "failed": "FAILED", "skipped": "skipped", "upstream_failed": "not run"}
FAILED_STATES = ("failed", "upstream_failed")


@dataclass
class TaskRow:
    task_id: str
    state: str
    duration_s: float | None
    result: StageResult | None = None
    decision: dict[str, Any] | None = None  # a gate's decision (pass, fail, skip, warn) and its reason
    error: str | None = None  # the error line of a failed task, from its log

    @property
    def short_state(self) -> str:
        return self.state.split(".")[-1].lower()


@dataclass
class RunSummary:
    dag_id: str
    run_id: str
    state: str
    tasks: list[TaskRow] = field(default_factory=list)  # pipeline order

    def result(self, stage: str) -> StageResult | None:
        for row in self.tasks:
            if row.result is not None and row.result.stage == stage:
                return row.result
        return None

    def row(self, task_id: str) -> TaskRow | None:
        return next((row for row in self.tasks if row.task_id == task_id), None)


def _read_json(uri: str, name: str) -> dict[str, Any] | None:
    path = join(uri.rstrip("/"), name)
    try:
        return json.loads(storage_for(path).read_text(path))
    except (OSError, ValueError):  # a missing or unreadable file leaves its section empty
        return None


def pipeline_order(upstream: dict[str, set[str]]) -> list[str]:
    """Task ids upstream first; among tasks ready together, the order the DAG declared them (the factory's)."""
    remaining = {task: set(ups) & set(upstream) for task, ups in upstream.items()}
    order: list[str] = []
    while remaining:
        ready = [task for task, ups in remaining.items() if not ups] or list(remaining)[:1]  # a cycle: break it
        task = ready[0]
        order.append(task)
        del remaining[task]
        for ups in remaining.values():
            ups.discard(task)
    return order


def error_line(log_text: str) -> str | None:
    """The one line that says why a task failed: the runtime's failure line, else the last exception's message.

    Airflow 3 task logs are JSON lines (``event``, ``error_detail``); plain text lines are read as they are.
    """
    failure, exception = None, None
    for raw in log_text.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            record = {"event": raw}
        if not isinstance(record, dict):
            continue
        event = str(record.get("event") or "")
        if FAILURE_PREFIX in event:
            failure = event.split(FAILURE_PREFIX, 1)[1].splitlines()[0].strip()
        for detail in record.get("error_detail") or []:
            if isinstance(detail, dict) and detail.get("exc_value"):
                exception = f"{detail.get('exc_type', 'Error')}: {str(detail['exc_value']).splitlines()[0]}"
    return failure or exception


def mlmd_errors(pipeline: str, run_id: str) -> dict[str, str]:
    """node id -> the error its FAILED execution recorded in MLMD in this run (read-only SQL, no ML imports).

    The runtime records every failure there, also when no task log file exists (``airflow dags test``).
    """
    from airflow_provider_mlpipe.ui.backend import UiBackend

    try:
        reader = UiBackend().reader()
        reader.check_schema()
        executions = reader.executions(reader.run_execution_ids(pipeline, run_id))
    except Exception:  # no store yet, or one we cannot read: the task log is the other source
        return {}
    return {
        str(e.properties.get("node_id")): str(e.properties["error"]).strip().splitlines()[0]
        for e in executions
        if e.state == "FAILED" and str(e.properties.get("error") or "").strip()
    }


def _task_log(log_folder: Path, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    """The newest attempt's log from Airflow's default local log layout ('' when it is elsewhere)."""
    folder = log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    attempts = sorted(
        (p for p in folder.glob("attempt=*.log") if p.stem[len("attempt=") :].isdigit()),
        key=lambda p: int(p.stem[len("attempt=") :]),
    )
    wanted = folder / f"attempt={try_number}.log"
    path = wanted if wanted.is_file() else (attempts[-1] if attempts else None)
    return path.read_text(errors="replace") if path is not None else ""


def load_run(dag_id: str, run_id: str | None = None) -> RunSummary:
    """Collect task states, durations, stage results, gate decisions and errors of a DAG run (default: the newest)."""
    from airflow.configuration import conf
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_mlpipe.sensors.gates import DECISION_KEY

    log_folder = Path(conf.get("logging", "base_log_folder"))
    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag_id)
        if run_id:
            query = query.where(DagRun.run_id == run_id)
        dag_run = session.scalars(query.order_by(DagRun.id.desc()).limit(1)).first()
        if dag_run is None:
            raise LookupError(f"No run of the DAG {dag_id!r} was found{f' with run id {run_id!r}' if run_id else ''}.")
        tis = {
            ti.task_id: ti
            for ti in session.scalars(
                select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id)
            )
        }
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        declared = dag.task_dict if dag is not None else {}
        upstream = {task_id: set(getattr(declared.get(task_id), "upstream_task_ids", ())) for task_id in
                    [*declared, *sorted(set(tis) - set(declared))]}  # fmt: skip

        def xcom(task_id: str, key: str) -> Any:
            raw = session.scalars(
                select(XComModel.value).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == dag_run.run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == key,
                )
            ).first()
            return json.loads(raw) if isinstance(raw, str | bytes) else raw

        recorded = mlmd_errors(dag_id, dag_run.run_id)  # the factory names the pipeline after the DAG
        rows = []
        for task_id in pipeline_order(upstream):
            ti = tis.get(task_id)
            if ti is None:
                continue
            value = xcom(task_id, "return_value")
            result = StageResult.from_dict(value) if isinstance(value, dict) and "stage" in value else None
            decision = xcom(task_id, DECISION_KEY)
            row = TaskRow(task_id, str(ti.state or "none"), ti.duration, result, decision if decision else None)
            if row.short_state == "failed" and row.decision is None:  # a gate states its reason itself
                row.error = recorded.get(task_id) or error_line(
                    _task_log(log_folder, dag_id, dag_run.run_id, task_id, ti.try_number or 1)
                )
            rows.append(row)
        return RunSummary(dag_id, dag_run.run_id, str(dag_run.state), rows)


def _number(name: str, value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if name.endswith("count") and value.is_integer() else f"{value:.4f}"
    return str(value)


def _stage_lines(summary: RunSummary) -> list[str]:
    lines = ["Stages"]
    for row in summary.tasks:
        mark = STATE_MARK.get(row.short_state, row.short_state)
        took = f"{row.duration_s:6.1f}s" if row.duration_s else "      -"
        extra = ""
        if row.result is not None:
            extra = f"  execution {row.result.execution_id}" + ("  (cache hit)" if row.result.cached else "")
        if row.decision is not None:
            extra = f"  decision: {row.decision.get('decision')} (policy {row.decision.get('policy')})"
        lines.append(f"  {row.task_id:<22} {mark:<9} {took}{extra}")
        if row.error:
            lines.append(f"  {'':<22} error: {row.error}")
    return lines


def _validation_lines(validator: StageResult) -> list[str]:
    anomalies = _read_json(validator.artifact("anomalies").uri, "anomalies.json") or {}
    counts = anomalies.get("counts") or {}
    lines = ["", f"Data validation: {'passed' if anomalies.get('blessed') else 'anomalies found'}"]
    lines.append("  " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no anomalies"))
    for item in (anomalies.get("anomalies") or [])[:10]:
        where = f"{item.get('feature')} ({item['split']} split)" if item.get("split") else item.get("feature")
        lines.append(f"  - [{item.get('severity')}] {where}: {item.get('short_description')}")
    # Every feature is measured on every run: the most drifting first.
    drift = [m for m in anomalies.get("measurements") or [] if m.get("kind") == "drift"]
    drift.sort(key=lambda m: -(m.get("value") or 0))
    if drift:
        lines.append("  Drift against the previous span (most drifting first):")
    for m in drift[:10]:
        threshold = m.get("threshold")
        lines.append(
            f"    {m.get('feature')} ({m.get('split')} split): {m.get('measure')} {m.get('value')}"
            f" ({'no threshold' if threshold is None else f'threshold {threshold}'})"
        )
    return lines


def _slice_lines(document: dict[str, Any]) -> list[str]:
    """One line per slice of a metrics.json document (or its ``kpis``): every value by name."""
    lines = []
    for item in document.get("slices") or []:
        values = ", ".join(f"{k}={_number(k, v)}" for k, v in sorted(item["metrics"].items()))
        lines.append(f"  {item['slice']:<28} {values}")
    return lines


def _evaluation_lines(evaluator: StageResult) -> list[str]:
    metrics = _read_json(evaluator.artifact("evaluation").uri, "metrics.json") or {}
    engine = metrics.get("engine") or "unknown"
    lines = ["", f"Metrics by slice (engine: {engine})", *_slice_lines(metrics)]
    if isinstance(metrics.get("kpis"), dict):
        lines += ["", "Business KPIs by slice", *_slice_lines(metrics["kpis"])]
    blessing = _read_json(evaluator.artifact("blessing").uri, "blessing.json") or {}
    verdict = "BLESSED" if blessing.get("blessed") else "NOT_BLESSED"
    return [*lines, "", f"Blessing: {verdict}", f"  {blessing.get('reason', '')}"]


def _push_lines(summary: RunSummary) -> list[str]:
    """What happened to serving, and why nothing was pushed when nothing was."""
    pusher = summary.result("pusher")
    if pusher is not None:
        pushed = pusher.artifact("pushed_model").properties
        if pushed.get("pushed", 1) in (0, False):
            return ["", f"Pushed: nothing ({pushed.get('reason') or 'the pusher refused the model'})"]
        return ["", f"Pushed: version {pushed.get('version')} to {pushed.get('destination')}"]
    row = summary.row("pusher")
    if row is None:
        return []
    withheld = [r for r in summary.tasks if r.decision and r.decision.get("push_withheld")]
    failed = [r for r in summary.tasks if r.short_state == "failed" and r.decision is None]
    if failed:
        return ["", f"Pushed: nothing (the run failed at {failed[0].task_id})"]
    if withheld:
        return ["", f"Pushed: nothing (the {withheld[0].task_id} withheld the push)"]
    if row.short_state in ("none", "scheduled", "queued", "running", "deferred", "up_for_retry"):
        return ["", "Pushed: nothing yet (the pusher has not run)"]
    return ["", f"Pushed: nothing (the pusher is {STATE_MARK.get(row.short_state, row.short_state)})"]


def render(summary: RunSummary) -> str:
    lines = [f"Pipeline {summary.dag_id}, run {summary.run_id}: {summary.state}", "", *_stage_lines(summary)]
    gates = [row for row in summary.tasks if row.decision]
    if gates:
        lines += ["", "Gates"]
        for row in gates:
            reason = str(row.decision.get("reason") or "").splitlines()
            lines.append(f"  {row.task_id}: {row.decision.get('decision')}" + (f" - {reason[0]}" if reason else ""))
    validator = summary.result("example_validator")
    if validator is not None:
        lines += _validation_lines(validator)
    evaluator = summary.result("evaluator")
    if evaluator is not None:
        lines += _evaluation_lines(evaluator)
    return "\n".join(lines + _push_lines(summary))
