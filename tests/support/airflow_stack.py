"""A real Airflow deployment on loopback for tests: api-server, scheduler, dag-processor and triggerer.

The scheduler runs the LocalExecutor; the metadata DB is the AirflowEnv's (SQLite by default, PostgreSQL when
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` points at one). Every process runs in its own session so the stack can
be ended completely, and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.airflow_env import AIRFLOW, AirflowEnv


def stack_env(port: int) -> dict[str, str]:
    """The settings every process of one stack must share."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # Every process must sign and check task tokens with the same secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": hashlib.sha256(os.urandom(16)).hexdigest(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }


class AirflowStack:
    """api-server (execution API only), scheduler (LocalExecutor), dag-processor and triggerer, all local."""

    COMMANDS = {
        "api-server": ["api-server", "--apps", "execution", "-H", "127.0.0.1", "-p", "{port}"],
        "scheduler": ["scheduler", "--skip-serve-logs"],  # no log server: it would listen on all interfaces
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }

    def __init__(self, env: AirflowEnv, port: int, apps: str = "execution") -> None:
        """``apps="all"`` also serves the REST API and the UI (as in production)."""
        self.env, self.port, self.apps = env, port, apps
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> str:
        return (self.env.home / f"{name}.out").read_text(errors="replace")

    def start(self) -> None:
        for name, args in self.COMMANDS.items():
            with open(self.env.home / f"{name}.out", "wb") as out:
                command = [AIRFLOW, *(a.format(port=self.port) for a in args)]
                if name == "api-server":
                    command[command.index("execution")] = self.apps
                self.processes[name] = subprocess.Popen(
                    command, env=self.env.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def query(env: AirflowEnv, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with env.db() as conn:
        return conn.execute(sql, args).fetchall()


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")


@contextmanager
def running_stack(env: AirflowEnv, port: int, apps: str = "execution") -> Iterator[AirflowStack]:
    """Migrate ``env``'s database, start the stack on ``port``, and always stop it."""
    env.migrate()
    stack = AirflowStack(env, port, apps=apps)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
