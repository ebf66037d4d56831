"""Rollback: serve an earlier pushed model again, through the runtime's rollback command (recorded in MLMD)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow_provider_mlpipe.hooks.mlmd import MlmdHook
from airflow_provider_mlpipe.operators.launch import RuntimeProcessMixin, run_streaming, runtime_env
from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python
from airflow_provider_mlpipe.protocol import runtime_command
from airflow_provider_mlpipe.version_compat import BaseOperator, Context


def rollback_command(
    python: str, pipeline: str, destination: str, to_version: int | None, keep_versions: int | None = None
) -> list[str]:
    """The runtime's rollback argv; the operator, the CLI and the UI all build it here."""
    command = runtime_command(python, "rollback", pipeline, "--destination", destination)
    if to_version is not None:
        command += ["--to", str(to_version)]
    if keep_versions is not None:
        command += ["--keep-versions", str(keep_versions)]
    return command


def rollback_launch(
    pipeline: str,
    destination: str,
    to_version: int | None,
    keep_versions: int | None = None,
    *,
    mlmd_conn_id: str | None,
    runtime_python: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The rollback's argv and environment, for the operator, the CLI and the UI alike.

    The environment is every runtime launch's: the MLMD connection's config and the ``google_cloud_default``
    connection's credentials, so a ``gs://`` destination is reached the same way from all three.
    """
    python = resolve_runtime_python(runtime_python)
    return rollback_command(python, pipeline, destination, to_version, keep_versions), runtime_env(mlmd_conn_id)


def last_json_line(output: str) -> dict[str, Any]:
    """The rollback command prints its summary (new version, rollback_of, ...) as its last JSON line; {} if none."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


class MlpipeRollbackOperator(RuntimeProcessMixin, BaseOperator):
    """Makes ``to_version`` (default: the version before the served one) the served model again.

    The runtime copies it to a new highest version directory, the one TF Serving serves, and records a
    ``mlpipe.Rollback`` execution in MLMD; pushed versions themselves are never modified. ``keep_versions`` (the
    Pusher's) prunes afterwards, never the served version nor the rollback target.
    """

    template_fields: Sequence[str] = ("pipeline", "destination", "to_version", "keep_versions")
    ui_color = "#f4cccc"

    def __init__(
        self,
        *,
        pipeline: str,
        destination: str,
        to_version: int | str | None = None,
        keep_versions: int | str | None = None,
        runtime_python: str | None = None,
        mlmd_conn_id: str | None = MlmdHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.destination = destination
        self.to_version = to_version
        self.keep_versions = keep_versions
        self.runtime_python = runtime_python
        self.mlmd_conn_id = mlmd_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        to_version = int(self.to_version) if self.to_version not in (None, "", "None") else None
        keep = int(self.keep_versions) if self.keep_versions not in (None, "", "None") else None
        command, env = rollback_launch(
            self.pipeline,
            self.destination,
            to_version,
            keep,
            mlmd_conn_id=self.mlmd_conn_id,
            runtime_python=self.runtime_python,
        )
        self.log.info("Rolling back %s: %s", self.pipeline, " ".join(command))
        tail = run_streaming(command, env, self.log, "The rollback", self._set_process)
        return last_json_line("\n".join(tail))
