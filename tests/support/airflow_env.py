"""A throwaway Airflow installation for integration tests: its own AIRFLOW_HOME, SQLite DB and MLMD store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.paths import AIRFLOW, REPO, RUNTIME_PYTHON

SQLITE_LOCKED = "database is locked"

ARTIFACTS = REPO / ".test-artifacts"


@dataclass
class AirflowEnv:
    home: Path
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__MLPIPE__RUNTIME_PYTHON": RUNTIME_PYTHON,
                # Each test home gets its own warm runtime; let it go soon after its test.
                "AIRFLOW__MLPIPE__WARM_IDLE_TIMEOUT": "60",
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "TF_CPP_MIN_LOG_LEVEL": "3",
            }
        )
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in self.extra_env:
            # SQLite under a running scheduler: a CLI write waits for the lock instead of failing at once.
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "airflow_provider_mlpipe.sqlite_settings.CONNECT_ARGS"
        env.update(self.extra_env)
        return env

    @property
    def mlmd_path(self) -> Path:
        return self.home / "mlpipe" / "mlmd.sqlite"

    def run(self, *args: str, check: bool = True, timeout: float = 900, env: dict[str, str] | None = None):
        proc = self._run_once(args, timeout, env)
        # SQLite lets one connection write at a time; a CLI write next to a busy scheduler can be refused with
        # "database is locked" (the README says: run it again). PostgreSQL stacks never take this branch.
        # The refusal can come at once, without waiting on the lock (a read that must become a write while the
        # scheduler writes), so retry a few times, backing off, rather than wait longer in one attempt.
        for attempt in range(5):
            if proc.returncode == 0 or not self.uses_sqlite or SQLITE_LOCKED not in proc.stdout + proc.stderr:
                break
            time.sleep(2 + 2 * attempt)
            proc = self._run_once(args, timeout, env)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
            )
        return proc

    @property
    def uses_sqlite(self) -> bool:
        return "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in self.extra_env

    def _run_once(self, args: tuple[str, ...], timeout: float, env: dict[str, str] | None) -> Any:
        proc = subprocess.run(
            [AIRFLOW, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        log = ARTIFACTS / "airflow-logs"
        log.mkdir(parents=True, exist_ok=True)
        (log / f"{self.home.name}-{args[0]}-{args[1] if len(args) > 1 else ''}.log").write_text(
            proc.stdout + "\n--- stderr ---\n" + proc.stderr
        )
        return proc

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.run("db", "migrate")

    def dags_test(
        self,
        dag_id: str,
        logical_date: str | None = None,
        conf: dict[str, Any] | None = None,
        dagfile: Path | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ):
        args = ["dags", "test", dag_id]
        if logical_date:
            args.append(logical_date)
        if conf:
            args += ["-c", json.dumps(conf)]
        if dagfile:
            args += ["-f", str(dagfile)]
        return self.run(*args, check=check, env=env)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "airflow.db")

    def xcom(self, dag_id: str, task_id: str, run_id: str | None = None, key: str = "return_value") -> Any:
        query = "select value, run_id from xcom where dag_id=? and task_id=? and key=? order by timestamp desc"
        with self.db() as conn:
            rows = conn.execute(query, (dag_id, task_id, key)).fetchall()
        for value, row_run_id in rows:
            if run_id is None or row_run_id == run_id:
                return json.loads(value) if isinstance(value, (str, bytes)) else value
        return None

    def task_states(self, dag_id: str, run_id: str | None = None) -> dict[str, str]:
        query = "select task_id, state, run_id from task_instance where dag_id=?"
        with self.db() as conn:
            rows = conn.execute(query, (dag_id,)).fetchall()
        if run_id is None and rows:
            run_id = sorted({r[2] for r in rows})[-1]
        return {task: state for task, state, rid in rows if rid == run_id}

    def run_ids(self, dag_id: str) -> list[str]:
        with self.db() as conn:
            rows = conn.execute("select run_id from dag_run where dag_id=? order by id", (dag_id,)).fetchall()
        return [r[0] for r in rows]


def mlmd_dump(mlmd_path: Path | str | None = None, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything in an MLMD store as plain JSON, read through the runtime venv (the test venv has no MLMD)."""
    cfg = config or {"backend": "sqlite", "path": str(mlmd_path)}
    proc = subprocess.run(
        [RUNTIME_PYTHON, str(Path(__file__).with_name("mlmd_dump.py")), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"mlmd_dump failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # pragma: no cover - manual debugging aid
    print(json.dumps(mlmd_dump(sys.argv[1]), indent=2))
