"""What every stage launcher shares, as a mixin: the stage's fields, its inputs from XCom and its StageRequest.

The subprocess operator and the Kubernetes pod operator both inherit it, so both build identical requests and
downstream stages never know which launcher ran their inputs.
"""

from __future__ import annotations

import inspect
from typing import Any

from airflow_provider_mlpipe.hooks.mlmd import MlmdHook
from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest, StageResult
from airflow_provider_mlpipe.spec.conf_paths import resolve_conf_paths
from airflow_provider_mlpipe.stages import get_stage, stage_module
from airflow_provider_mlpipe.version_compat import AirflowException, Context

STAGE_TEMPLATE_FIELDS = ("pipeline_root", "stage_params", "beam_args", "runtime_python")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class StageRequestMixin:
    """Stage fields, set by ``set_stage_fields``; its signature is the one declaration of them.

    :param pipeline: the pipeline name; MLMD contexts and artifact paths are keyed on it.
    :param pipeline_root: where artifacts live, a local path or ``gs://bucket/prefix``.
    :param stage: the stage kind, the name of a stage description (``airflow_provider_mlpipe.stages``).
    :param stage_params: the stage's parameters from the spec (templated).
    :param inputs: input slot -> ``"<upstream task id>.<output slot>"``; the upstream result comes from XCom.
    :param beam_args: Beam pipeline options passed unchanged to Beam stages (templated).
    :param runtime_python: interpreter of the ML runtime; see ``resolve_runtime_python`` for the fallbacks.
    :param mlmd_conn_id: the ``mlmd`` connection; the embedded SQLite store when it does not exist.
    :param spec_dir: the pipeline's folder, the only place user modules are loaded from.
    :param spec_folder: the folder of the spec file; ``dag_run.conf`` paths are relative to it, as the spec's are.
    :param enable_cache: reuse outputs of an identical earlier execution.
    :param warm_runtime: fork the stage from the host's warm runtime; None follows ``[mlpipe] warm_runtime``.
    """

    stage_kind: str = ""
    task_id: str
    log: Any  # the operator's logger

    def set_stage_fields(
        self,
        *,
        pipeline: str,
        pipeline_root: str,
        stage: str | None = None,
        stage_params: dict[str, Any] | None = None,
        inputs: dict[str, str] | None = None,
        beam_args: list[str] | None = None,
        runtime_python: str | None = None,
        mlmd_conn_id: str | None = MlmdHook.default_conn_name,
        spec_dir: str | None = None,
        spec_folder: str | None = None,
        enable_cache: bool = True,
        warm_runtime: bool | None = None,
    ) -> None:
        self.stage = stage or self.stage_kind
        get_stage(self.stage)  # fail at parse time on an unknown stage
        self.pipeline = pipeline
        self.pipeline_root = pipeline_root
        self.stage_params = stage_params or {}
        self.inputs = inputs or {}
        self.beam_args = beam_args or []
        self.runtime_python = runtime_python
        self.mlmd_conn_id = mlmd_conn_id
        self.spec_dir = spec_dir
        self.spec_folder = spec_folder
        self.enable_cache = enable_cache
        self.warm_runtime = warm_runtime

    @classmethod
    def split_stage_kwargs(cls, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the stage fields, everything else for the operator base class)."""
        names = set(inspect.signature(cls.set_stage_fields).parameters) - {"self"}
        return {k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names}

    def resolve_inputs(self, context: Context) -> dict[str, list[ArtifactRef]]:
        resolved: dict[str, list[ArtifactRef]] = {}
        for slot, source in self.inputs.items():
            task_id, _, out_slot = source.partition(".")
            raw = context["ti"].xcom_pull(task_ids=task_id, key="return_value")
            if not raw:
                raise AirflowException(f"The {self.task_id} task needs {source}, but {task_id} left no result.")
            result = StageResult.from_dict(raw)
            refs = result.outputs.get(out_slot or slot) or []
            resolved[slot] = [ArtifactRef(r.type, r.uri, r.id, slot, r.properties) for r in refs]
        return resolved

    def build_request(self, context: Context) -> StageRequest:
        dag_run = context.get("dag_run")
        ti = context["ti"]
        return StageRequest(
            pipeline=self.pipeline,
            pipeline_root=self.pipeline_root,
            stage=self.stage,
            stage_module=stage_module(self.stage),
            node_id=self.task_id,
            run_id=context["run_id"],
            params=self.stage_params,
            inputs=self.resolve_inputs(context),
            beam_args=list(self.beam_args),
            logical_date=_iso(context.get("logical_date")),
            data_interval_start=_iso(context.get("data_interval_start")),
            data_interval_end=_iso(context.get("data_interval_end")),
            conf=resolve_conf_paths(
                dict(getattr(dag_run, "conf", None) or {}), self.stage, self.task_id, self.spec_folder, self.spec_dir
            ),
            spec_dir=self.spec_dir,
            enable_cache=self.enable_cache,
            try_number=int(getattr(ti, "try_number", 1) or 1),
        )

    def stage_result_xcom(self, result: StageResult) -> dict[str, Any]:
        """Log how the stage ended and return its result as the task's XCom."""
        self.log.info(
            "Stage %s %s execution %s in %.1fs.",
            self.stage,
            "reused (cache hit) as" if result.cached else "finished as",
            result.execution_id,
            result.duration_s,
        )
        return result.to_dict()
