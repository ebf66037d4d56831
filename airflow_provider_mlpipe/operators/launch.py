"""Launching the ML runtime as a child process: its environment, its streamed log, and killing it.

Shared by the stage operator and the gate sensors, which both hand work to ``.venv-runtime``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from collections import deque
from collections.abc import Callable
from typing import Any

from airflow_provider_mlpipe.hooks.gcp_storage import gcp_credentials_env
from airflow_provider_mlpipe.hooks.mlmd import MlmdHook
from airflow_provider_mlpipe.operators.warm_runtime import WarmRuntimeUnavailable, start_warm
from airflow_provider_mlpipe.protocol import FAILURE_PREFIX, MLMD_CONFIG_ENV
from airflow_provider_mlpipe.version_compat import AirflowException

TAIL_LINES = 40


def runtime_env(mlmd_conn_id: str | None) -> dict[str, str]:
    """The child's environment: ours plus the MLMD config, so passwords never touch disk."""
    env = dict(os.environ)
    env[MLMD_CONFIG_ENV] = json.dumps(MlmdHook(mlmd_conn_id).get_config())
    env.update(gcp_credentials_env())  # the google_cloud_default connection, if any, over the environment's
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_streaming(
    command: list[str],
    env: dict[str, str],
    log: logging.Logger,
    what: str,
    on_process: Callable[[Any], None] | None = None,
    warm: bool = False,
) -> list[str]:
    """Run ``command``, stream its output into ``log`` line by line, raise with its own error text on failure.

    Returns the last lines of output (a command's JSON summary is its last line).

    ``what`` names the work in the error (e.g. "The trainer stage"); ``on_process`` is told about the child
    when it starts and with ``None`` when it ends, so the caller can kill it from ``on_kill``. With ``warm``, the
    host's warm runtime forks the child (operators/warm_runtime.py); if it cannot, the child starts cold.
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    failure = ""
    process = _start(command, env, log, warm)
    if on_process is not None:
        on_process(process)
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        log.info("%s", line)
        tail.append(line)
        if line.startswith(FAILURE_PREFIX):
            failure = line[len(FAILURE_PREFIX) :]
    code = process.wait()
    process.stdout.close()
    if on_process is not None:
        on_process(None)
    if code != 0:
        lost = getattr(process, "server_lost", False)
        detail = failure or ("the warm runtime went away mid-stage" if lost else f"the runtime exited with code {code}")
        raise AirflowException(f"{what} failed: {detail}\n--- last runtime output ---\n" + "\n".join(tail))
    return list(tail)


def _start(command: list[str], env: dict[str, str], log: logging.Logger, warm: bool) -> Any:
    if warm:
        try:
            child = start_warm(command, env, log)
            log.info("Running in a child of the warm runtime (pid %d).", child.pid)
            return child
        except WarmRuntimeUnavailable as exc:
            log.warning("Running cold instead of in the warm runtime: %s.", exc)
    # A new session makes the child the leader of its own process group, so on_kill can end Beam workers too.
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )


def kill_process_group(process: Any, log: logging.Logger) -> None:
    """End a running child and everything it started (SIGTERM, then SIGKILL after 10 s)."""
    if process is None or process.poll() is not None:
        return
    log.warning("Killing the runtime process group %d.", process.pid)
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RuntimeProcessMixin:
    """Keeps the runtime child an operator is streaming (``run_streaming``'s ``on_process``), so that Airflow's
    ``on_kill`` ends the child's whole process group."""

    _process: Any = None
    log: Any

    def _set_process(self, process: subprocess.Popen[str] | None) -> None:
        self._process = process

    def on_kill(self) -> None:
        kill_process_group(self._process, self.log)
