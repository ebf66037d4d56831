"""The base operator of every stage: writes a StageRequest, runs the runtime, streams its log, returns the result."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.hooks.mlmd import check_backend_fits_executor
from airflow_provider_mlpipe.links.stage import MlpipeArtifactsLink, MlpipeRunViewLink
from airflow_provider_mlpipe.operators.launch import RuntimeProcessMixin, run_streaming, runtime_env
from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python
from airflow_provider_mlpipe.operators.stage_request import STAGE_TEMPLATE_FIELDS, StageRequestMixin
from airflow_provider_mlpipe.operators.warm_runtime import warm_enabled
from airflow_provider_mlpipe.protocol import FAILURE_PREFIX, MLMD_CONFIG_ENV, StageResult, runtime_command
from airflow_provider_mlpipe.version_compat import AirflowFailException, BaseOperator, Context, conf

__all__ = ["FAILURE_PREFIX", "MlpipeStageOperator"]


class MlpipeStageOperator(RuntimeProcessMixin, StageRequestMixin, BaseOperator):
    """Runs one mlpipe stage in the isolated ML runtime, as a child process of the task.

    Takes the stage fields of ``StageRequestMixin.set_stage_fields`` (keyword-only) and any BaseOperator argument.
    """

    template_fields: Sequence[str] = STAGE_TEMPLATE_FIELDS
    template_fields_renderers = {"stage_params": "json"}
    ui_color = "#e8f1fb"
    operator_extra_links = (MlpipeRunViewLink(), MlpipeArtifactsLink())

    def __init__(self, **kwargs: Any) -> None:
        stage_fields, operator_kwargs = self.split_stage_kwargs(kwargs)
        super().__init__(**operator_kwargs)
        self.set_stage_fields(**stage_fields)

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
        return self.stage_result_xcom(result)

    def run_runtime(self, command: list[str], env: dict[str, str]) -> None:
        warm = warm_enabled(self.warm_runtime)
        run_streaming(command, env, self.log, f"The {self.stage} stage", self._set_process, warm=warm)
