"""A real Airflow deployment on loopback for tests: api-server, scheduler, dag-processor and triggerer.

``AirflowStack``'s scheduler runs the LocalExecutor; the metadata DB is the AirflowEnv's (SQLite by default,
PostgreSQL when ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` points at one). ``CeleryStack`` runs the CeleryExecutor
instead, with ``airflow celery worker`` processes that each behave like a separate host (see ``CeleryWorker``).
Every process runs in its own session so the stack can be ended completely, and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
        return self.log_path(name).read_text(errors="replace")

    def log_path(self, name: str) -> Path:
        return self.env.home / f"{name}.out"

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


StackT = TypeVar("StackT", bound=AirflowStack)


def rest_api(
    stack: AirflowStack, password: str, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A call of the stack's REST API (``apps="all"``) as the simple auth manager's ``admin`` with ``password``."""
    base = f"http://127.0.0.1:{stack.port}"
    login = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=60) as resp:
        token = json.loads(resp.read())["access_token"]
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def rest_api_env(home: Path, port: int, password: str) -> dict[str, str]:
    """The settings that let ``rest_api`` log in as ``admin`` with ``password`` (a passwords file in ``home``)."""
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }


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
    with _running(AirflowStack(env, port, apps=apps)) as stack:
        yield stack


@contextmanager
def _running(stack: StackT) -> Iterator[StackT]:
    stack.env.migrate()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# ----- the CeleryExecutor variant --------------------------------------------------------------------------------
WORKER_HOSTNAME_ENV = "MLPIPE_TEST_WORKER_HOSTNAME"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the test workers: each reports its own host name, as separate hosts would."""
    return os.environ[WORKER_HOSTNAME_ENV]


def celery_stack_env(port: int, broker_url: str, result_backend: str) -> dict[str, str]:
    """``stack_env`` for the CeleryExecutor: a broker (Redis) and a result backend (``db+postgresql://...``)."""
    return {
        **stack_env(port),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        # Sending a task to the broker times out after 1 s by default; two busy cores can take longer.
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
    }


@dataclass
class CeleryWorker:
    """One ``airflow celery worker`` as if on its own host: everything it may write lives under ``root``.

    It has its own AIRFLOW_HOME (config, task logs, the warm runtime's socket), TMPDIR, HOME and working
    directory, and its own copy of the dags folder, as a host built from the same image would.
    """

    name: str
    queues: tuple[str, ...]
    root: Path
    concurrency: int = 2

    @property
    def home(self) -> Path:
        return self.root / "airflow"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def user_home(self) -> Path:
        return self.root / "home"

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    @property
    def dags(self) -> Path:
        return self.root / "image" / "dags"

    @property
    def disk(self) -> tuple[Path, ...]:
        """The folders a task on this worker may write to."""
        return (self.home, self.tmp, self.user_home, self.workdir)

    @property
    def process_name(self) -> str:
        return f"celery-worker-{self.name}"


class CeleryStack(AirflowStack):
    """``AirflowStack`` on the CeleryExecutor, plus one ``airflow celery worker`` per ``CeleryWorker``.

    The env must carry ``celery_stack_env``'s settings. Workers serve no logs (the log server would listen on all
    interfaces and has no bind setting), so a task's log stays in its worker's AIRFLOW_HOME.
    """

    def __init__(self, env: AirflowEnv, port: int, workers: list[CeleryWorker], apps: str = "execution") -> None:
        super().__init__(env, port, apps=apps)
        self.workers = {worker.name: worker for worker in workers}

    def log_path(self, name: str) -> Path:
        for worker in self.workers.values():
            if name == worker.process_name:
                return worker.root / "worker.out"
        return super().log_path(name)

    def worker_env(self, worker: CeleryWorker) -> dict[str, str]:
        # AF_UNIX socket paths are short; the warm runtime falls back to a folder under /tmp for a long home,
        # which two workers on this machine would share.
        if len(str(worker.home)) > 60:
            raise ValueError(f"Worker {worker.name}'s home {worker.home} is too long; use a shorter root.")
        return {
            **self.env.env,
            "AIRFLOW_HOME": str(worker.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(worker.dags),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            WORKER_HOSTNAME_ENV: worker.name,
            "TMPDIR": str(worker.tmp),
            "HOME": str(worker.user_home),
        }

    def start(self) -> None:
        super().start()
        for worker in self.workers.values():
            for folder in worker.disk:
                folder.mkdir(parents=True, exist_ok=True)
            shutil.copytree(self.env.dags_folder, worker.dags, ignore=shutil.ignore_patterns("__pycache__"))
            command = [
                AIRFLOW, "celery", "worker",
                "--queues", ",".join(worker.queues),
                "--concurrency", str(worker.concurrency),
                "--celery-hostname", f"{worker.name}@%h",
                "--skip-serve-logs",
            ]  # fmt: skip
            with open(self.log_path(worker.process_name), "wb") as out:
                self.processes[worker.process_name] = subprocess.Popen(
                    command,
                    env=self.worker_env(worker),
                    cwd=worker.workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )


@contextmanager
def running_celery_stack(
    env: AirflowEnv, port: int, workers: list[CeleryWorker], apps: str = "execution"
) -> Iterator[CeleryStack]:
    """``running_stack`` on the CeleryExecutor with ``workers``; always stopped."""
    with _running(CeleryStack(env, port, workers, apps=apps)) as stack:
        yield stack
