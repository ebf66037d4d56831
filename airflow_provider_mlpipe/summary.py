"""A readable summary of one pipeline run, built from Airflow's task instances and the stages' XCom results.

Used by `make demo` and `mlpipe summary`. Reads only small JSON files the stages wrote (no ML imports).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlpipe.protocol import StageResult

# Where tasks that never started go in the table: the pipeline's own order.
TASK_ORDER = (
    "example_gen",
    "statistics_gen",
    "schema_gen",
    "example_validator",
    "data_validation_gate",
    "transform",
    "trainer",
    "evaluator",
    "blessing_gate",
    "pusher",
)
STATE_MARK = {"success": "ok", "failed": "FAILED", "skipped": "skipped", "upstream_failed": "not run"}


@dataclass
class TaskRow:
    task_id: str
    state: str
    duration_s: float | None
    result: StageResult | None = None


@dataclass
class RunSummary:
    dag_id: str
    run_id: str
    state: str
    tasks: list[TaskRow] = field(default_factory=list)

    def result(self, stage: str) -> StageResult | None:
        for row in self.tasks:
            if row.result is not None and row.result.stage == stage:
                return row.result
        return None


def _read_json(uri: str, name: str) -> dict[str, Any] | None:
    if uri.startswith("gs://"):
        try:
            from google.cloud import storage

            bucket, _, prefix = uri[len("gs://") :].partition("/")
            blob = storage.Client().bucket(bucket).blob(f"{prefix.rstrip('/')}/{name}")
            return json.loads(blob.download_as_text())
        except Exception:
            return None
    try:
        with open(f"{uri.rstrip('/')}/{name}", encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def load_run(dag_id: str, run_id: str | None = None) -> RunSummary:
    """Collect task states, durations and stage results of a DAG run (the newest when run_id is None)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(DagRun).where(DagRun.dag_id == dag_id)
        if run_id:
            query = query.where(DagRun.run_id == run_id)
        dag_run = session.scalars(query.order_by(DagRun.id.desc()).limit(1)).first()
        if dag_run is None:
            raise LookupError(f"No run of the DAG {dag_id!r} was found{f' with run id {run_id!r}' if run_id else ''}.")
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
        rows = []

        def order(ti: TaskInstance) -> tuple[Any, ...]:
            rank = TASK_ORDER.index(ti.task_id) if ti.task_id in TASK_ORDER else len(TASK_ORDER)
            return (ti.start_date is None, ti.start_date or 0, rank, ti.task_id)

        for ti in sorted(tis, key=order):
            raw = session.scalars(
                select(XComModel.value).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == dag_run.run_id,
                    XComModel.task_id == ti.task_id,
                    XComModel.key == "return_value",
                )
            ).first()
            value = json.loads(raw) if isinstance(raw, str | bytes) else raw
            result = StageResult.from_dict(value) if isinstance(value, dict) and "stage" in value else None
            rows.append(TaskRow(ti.task_id, str(ti.state or "none"), ti.duration, result))
        return RunSummary(dag_id, dag_run.run_id, str(dag_run.state), rows)


def _number(name: str, value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if name.endswith("count") and value.is_integer() else f"{value:.4f}"
    return str(value)


def render(summary: RunSummary) -> str:
    lines = [f"Pipeline {summary.dag_id}, run {summary.run_id}: {summary.state}", "", "Stages"]
    for row in summary.tasks:
        mark = STATE_MARK.get(row.state.split(".")[-1].lower(), row.state)
        took = f"{row.duration_s:6.1f}s" if row.duration_s else "      -"
        extra = ""
        if row.result is not None:
            extra = f"  execution {row.result.execution_id}" + ("  (cache hit)" if row.result.cached else "")
        lines.append(f"  {row.task_id:<22} {mark:<9} {took}{extra}")

    validator = summary.result("example_validator")
    if validator is not None:
        anomalies = _read_json(validator.artifact("anomalies").uri, "anomalies.json") or {}
        counts = anomalies.get("counts") or {}
        lines += ["", f"Data validation: {'passed' if anomalies.get('blessed') else 'anomalies found'}"]
        lines.append("  " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no anomalies"))
        for item in (anomalies.get("anomalies") or [])[:10]:
            lines.append(f"  - [{item.get('severity')}] {item.get('feature')}: {item.get('short_description')}")

    evaluator = summary.result("evaluator")
    if evaluator is not None:
        metrics = _read_json(evaluator.artifact("evaluation").uri, "metrics.json") or {}
        lines += ["", "Metrics by slice"]
        for item in metrics.get("slices") or []:
            values = ", ".join(f"{k}={_number(k, v)}" for k, v in sorted(item["metrics"].items()))
            lines.append(f"  {item['slice']:<28} {values}")
        blessing = _read_json(evaluator.artifact("blessing").uri, "blessing.json") or {}
        verdict = "BLESSED" if blessing.get("blessed") else "NOT_BLESSED"
        lines += ["", f"Blessing: {verdict}", f"  {blessing.get('reason', '')}"]

    pusher = summary.result("pusher")
    if pusher is not None:
        pushed = pusher.artifact("pushed_model")
        lines += ["", f"Pushed: version {pushed.properties.get('version')} to {pushed.properties.get('destination')}"]
    elif any(row.task_id == "pusher" for row in summary.tasks):
        lines += ["", "Pushed: nothing (the push was withheld)"]
    return "\n".join(lines)
