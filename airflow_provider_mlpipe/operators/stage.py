"""The base operator of every stage: writes a StageRequest, runs the runtime, streams its log, returns the result."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.hooks.mlmd import MlmdHook, check_backend_fits_executor
from airflow_provider_mlpipe.links.stage import MlpipeArtifactsLink, MlpipeRunViewLink
from airflow_provider_mlpipe.operators.launch import kill_process_group, run_streaming, runtime_env
from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python
from airflow_provider_mlpipe.protocol import (
    FAILURE_PREFIX,
    MLMD_CONFIG_ENV,
    ArtifactRef,
    StageRequest,
    StageResult,
    runtime_command,
)
from airflow_provider_mlpipe.spec.conf_paths import resolve_conf_paths
from airflow_provider_mlpipe.stages import get_stage, stage_module
from airflow_provider_mlpipe.version_compat import AirflowException, AirflowFailException, BaseOperator, Context, conf

__all__ = ["FAILURE_PREFIX", "MlpipeStageOperator"]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class MlpipeStageOperator(BaseOperator):
    """Runs one mlpipe stage in the isolated ML runtime.

    :param stage: the stage kind, the name of a stage description (``airflow_provider_mlpipe.stages``).
    :param pipeline: the pipeline name; MLMD contexts and artifact paths are keyed on it.
    :param pipeline_root: where artifacts live, a local path or ``gs://bucket/prefix``.
    :param stage_params: the stage's parameters from the spec (templated).
    :param inputs: input slot -> ``"<upstream task id>.<output slot>"``; the upstream result comes from XCom.
    :param beam_args: Beam pipeline options passed unchanged to Beam stages (templated).
    :param runtime_python: interpreter of the ML runtime; see ``resolve_runtime_python`` for the fallbacks.
    :param mlmd_conn_id: the ``mlmd`` connection; the embedded SQLite store when it does not exist.
    :param spec_dir: the pipeline's folder, the only place user modules are loaded from.
    :param spec_folder: the folder of the spec file; ``dag_run.conf`` paths are relative to it, as the spec's are.
    :param enable_cache: reuse outputs of an identical earlier execution.
    """

    template_fields: Sequence[str] = ("pipeline_root", "stage_params", "beam_args", "runtime_python")
    template_fields_renderers = {"stage_params": "json"}
    ui_color = "#e8f1fb"
    operator_extra_links = (MlpipeRunViewLink(), MlpipeArtifactsLink())
    stage_kind: str = ""

    def __init__(
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        self._process: subprocess.Popen[str] | None = None

    # ----- request ---------------------------------------------------------------------------------------
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

    def runtime_env(self) -> dict[str, str]:
        env = runtime_env(self.mlmd_conn_id)
        executor = conf.get("core", "executor", fallback="") or ""
        try:
            check_backend_fits_executor(json.loads(env[MLMD_CONFIG_ENV]), executor)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        return env

    # ----- execution -------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        request = self.build_request(context)
        python = resolve_runtime_python(self.runtime_python)
        with tempfile.TemporaryDirectory(prefix=f"mlpipe-{self.task_id}-") as workdir:
            request_path = Path(workdir, "request.json")
            result_path = Path(workdir, "result.json")
            request.write(request_path)
            command = runtime_command(python, "run", str(request_path), "--result", str(result_path))
            self.log.info("Running stage %s in the runtime: %s", self.stage, " ".join(command))
            self.run_runtime(command, self.runtime_env())
            result = StageResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
        self.log.info(
            "Stage %s %s execution %s in %.1fs.",
            self.stage,
            "reused (cache hit) as" if result.cached else "finished as",
            result.execution_id,
            result.duration_s,
        )
        return result.to_dict()

    def run_runtime(self, command: list[str], env: dict[str, str]) -> None:
        run_streaming(command, env, self.log, f"The {self.stage} stage", self._set_process)

    def _set_process(self, process: subprocess.Popen[str] | None) -> None:
        self._process = process

    def on_kill(self) -> None:
        kill_process_group(self._process, self.log)
