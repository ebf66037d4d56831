"""Where the views get their inputs: Airflow's metadata DB (runs, XComs), the MLMD store, the rollback and override
commands.

Kept behind one small class so the views can be tested without an Airflow database and a fake runtime.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_mlpipe.ui.mlmd_reader import MlmdReader

if TYPE_CHECKING:  # the launch modules are imported when an action runs, not when the plugin loads
    from airflow_provider_mlpipe.operators.baseline_decisions import DecisionOutcome

log = logging.getLogger(__name__)
ROLLBACK_TIMEOUT_S = 300


@dataclass
class CommandOutcome:
    command: list[str]
    returncode: int
    output: str


def _decode(value: Any) -> Any:
    # XCom values are stored as JSON; older rows may hold a JSON string of the JSON.
    for _ in range(2):
        if isinstance(value, (bytes, str)):
            try:
                value = json.loads(value)
            except ValueError:
                break
    return value


class UiBackend:
    """The production backend, used inside the Airflow API server."""

    def __init__(self, mlmd_conn_id: str | None = None) -> None:
        self._mlmd_conn_id = mlmd_conn_id
        self._reader: MlmdReader | None = None
        self._reader_key: str | None = None

    @property
    def mlmd_conn_id(self) -> str:
        if self._mlmd_conn_id:
            return self._mlmd_conn_id
        from airflow.configuration import conf

        return conf.get("mlpipe", "ui_mlmd_conn_id", fallback="mlmd_default") or "mlmd_default"

    def mlmd_config(self) -> dict[str, Any]:
        from airflow_provider_mlpipe.hooks.mlmd import MlmdHook

        return MlmdHook(self.mlmd_conn_id).get_config()

    def describe(self) -> str:
        """Where the store is, without credentials."""
        try:
            config = self.mlmd_config()
        except Exception as exc:  # a broken connection definition is itself the answer
            return f"mlmd connection {self.mlmd_conn_id!r}: {exc}"
        if config.get("backend", "sqlite") == "sqlite":
            return f"SQLite file {config.get('path')}"
        user, host, port, db = (config.get(k, "") for k in ("user", "host", "port", "database"))
        return f"{config['backend']}://{user}@{host}:{port}/{db}"

    def reader(self) -> MlmdReader:
        config = self.mlmd_config()
        key = json.dumps(config, sort_keys=True, default=str)
        if self._reader is None or key != self._reader_key:  # rebuild when the connection changes
            self._reader, self._reader_key = MlmdReader.from_config(config), key
        return self._reader

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """task_id -> the task's ``return_value`` (a StageResult dict for stage tasks)."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        query = select(XComModel.task_id, XComModel.value).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.key == "return_value",
            XComModel.map_index == -1,
        )
        with create_session() as session:
            return {task_id: _decode(value) for task_id, value in session.execute(query)}

    def dag_runs(self, dag_id: str, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        """The DAG's newest runs after skipping ``offset`` newer ones, oldest first."""
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        query = (
            select(DagRun.run_id, DagRun.state, DagRun.logical_date, DagRun.run_after, DagRun.start_date)
            .where(DagRun.dag_id == dag_id)
            .order_by(DagRun.id.desc())
            .offset(offset)
            .limit(limit)
        )
        with create_session() as session:
            rows = list(session.execute(query))
        return [
            {
                "run_id": r.run_id,
                "state": str(r.state.value if hasattr(r.state, "value") else r.state),
                "logical_date": (r.logical_date or r.run_after).isoformat() if (r.logical_date or r.run_after) else "",
                "start_date": r.start_date.isoformat() if r.start_date else "",
            }
            for r in reversed(rows)
        ]

    def rollback_launch(self, pipeline: str, version: str, destination: str) -> tuple[list[str], dict[str, str]]:
        """The operator's and the CLI's launch (argv, MLMD config, the GCP connection's credentials), for this UI.

        Only two things are the UI's own: MLMD is the store these views read, and the rollback says who asked.
        """
        from airflow_provider_mlpipe.operators.rollback import rollback_launch

        command, env = rollback_launch(pipeline, destination, int(version), mlmd_conn_id=self.mlmd_conn_id)
        env.setdefault("MLPIPE_ROLLBACK_REQUESTED_BY", "airflow-ui")
        return command, self._on_this_store(env)

    def _on_this_store(self, env: dict[str, str]) -> dict[str, str]:
        """A runtime launched from the UI writes to the MLMD store these views read."""
        from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV

        env[MLMD_CONFIG_ENV] = json.dumps(self.mlmd_config())
        return env

    def rollback(self, pipeline: str, version: str, destination: str) -> CommandOutcome:
        """Run the rollback command in the runtime venv; it re-points serving and records the rollback in MLMD."""
        from airflow_provider_mlpipe.operators.baseline_decisions import airflow_home_cwd

        # Secrets travel in the environment, never on a command line.
        command, env = self.rollback_launch(pipeline, version, destination)
        try:
            proc = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=ROLLBACK_TIMEOUT_S, cwd=airflow_home_cwd()
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return CommandOutcome(command, 1, f"{type(exc).__name__}: {exc}")
        return CommandOutcome(command, proc.returncode, (proc.stdout + proc.stderr)[-8000:])

    def bless(self, pipeline: str, model_id: int, reason: str, user: str) -> DecisionOutcome:
        """Bless a NOT_BLESSED model by override: the CLI's launch and run (``mlpipe bless``), as this user."""
        from airflow_provider_mlpipe.operators.baseline_decisions import airflow_home_cwd, decision_launch, run_decision

        command, env = decision_launch(
            "bless", pipeline, reason=reason, user=user, model=str(model_id), mlmd_conn_id=self.mlmd_conn_id
        )
        return run_decision(command, self._on_this_store(env), cwd=airflow_home_cwd())
