"""Garbage collection by retention policy: the runtime's ``gc`` command, for ``mlpipe gc`` and a DAG's last task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_mlpipe.hooks.mlmd import MlmdHook
from airflow_provider_mlpipe.operators.launch import RuntimeProcessMixin, run_streaming, runtime_env
from airflow_provider_mlpipe.operators.rollback import last_json_line
from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python
from airflow_provider_mlpipe.protocol import runtime_command
from airflow_provider_mlpipe.version_compat import BaseOperator, Context

if TYPE_CHECKING:
    from airflow_provider_mlpipe.spec.validate import Pipeline

GC_TASK_ID = "retention_gc"


@dataclass(frozen=True)
class GcTarget:
    """What a gc of one pipeline reads from its spec: where it writes and its retention policy."""

    pipeline: str
    pipeline_root: str
    destinations: tuple[str, ...]
    keep_spans: int | None
    keep_days: int | None
    keep_versions: int | None
    min_age: timedelta

    @classmethod
    def of(cls, pipeline: Pipeline) -> GcTarget:
        """From a validated spec."""
        retention = pipeline.spec.retention
        pushers = [n for n, s in pipeline.spec.stages.items() if s.kind == "pusher" and s.enabled]
        return cls(
            pipeline=pipeline.name,
            pipeline_root=pipeline.pipeline_root,
            destinations=tuple(str(pipeline.stage_params[n]["destination"]) for n in pushers),
            keep_spans=retention.keep_spans if retention else None,
            keep_days=retention.keep_days if retention else None,
            keep_versions=retention.keep_versions if retention else None,
            min_age=pipeline.longest_stage_timeout,
        )


def gc_command(python: str, target: GcTarget, dry_run: bool) -> list[str]:
    """The runtime's gc argv; the operator and the CLI both build it here."""
    command = runtime_command(python, "gc", target.pipeline, "--pipeline-root", target.pipeline_root)
    for destination in target.destinations:
        command += ["--destination", destination]
    for flag, value in (
        ("--keep-spans", target.keep_spans),
        ("--keep-days", target.keep_days),
        ("--keep-versions", target.keep_versions),
    ):
        if value is not None:
            command += [flag, str(value)]
    command += ["--min-age", str(int(target.min_age.total_seconds()))]
    return [*command, "--dry-run"] if dry_run else command


class MlpipeGcOperator(RuntimeProcessMixin, BaseOperator):
    """Applies a pipeline's retention policy through the runtime's ``gc`` (see ``runtime/retention/``).

    The factory adds it as the last task of a run (``retention.cleanup_task``), downstream of every stage and
    gate with ``trigger_rule="all_done"``, so it never overlaps a stage of its own run, and runs after a failed
    one too; stages of other runs are protected by the runtime's rules (RUNNING executions, ``min_age``).
    """

    template_fields: Sequence[str] = ("pipeline", "pipeline_root", "destinations", "dry_run")
    ui_color = "#eeeeee"

    def __init__(
        self,
        *,
        pipeline: str,
        pipeline_root: str,
        destinations: Sequence[str] = (),
        keep_spans: int | None = None,
        keep_days: int | None = None,
        keep_versions: int | None = None,
        min_age: timedelta = timedelta(days=1),
        dry_run: bool = False,
        runtime_python: str | None = None,
        mlmd_conn_id: str | None = MlmdHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline, self.pipeline_root, self.destinations = pipeline, pipeline_root, list(destinations)
        self.keep_spans, self.keep_days, self.keep_versions = keep_spans, keep_days, keep_versions
        self.min_age, self.dry_run = min_age, dry_run
        self.runtime_python = runtime_python
        self.mlmd_conn_id = mlmd_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        target = GcTarget(
            self.pipeline,
            self.pipeline_root,
            tuple(self.destinations),
            self.keep_spans,
            self.keep_days,
            self.keep_versions,
            self.min_age,
        )
        command = gc_command(resolve_runtime_python(self.runtime_python), target, bool(self.dry_run))
        self.log.info("Garbage collection of %s: %s", self.pipeline, " ".join(command))
        tail = run_streaming(
            command, runtime_env(self.mlmd_conn_id), self.log, "The garbage collection", self._set_process
        )
        plan = last_json_line("\n".join(tail))
        # XCom gets the counts; the full lists are in the task log.
        return {key: len(plan.get(key, [])) for key in ("delete", "keep", "prune", "leftovers")} | {
            "bytes": plan.get("bytes", 0)
        }
