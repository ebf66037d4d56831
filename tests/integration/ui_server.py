"""A real ``airflow api-server`` with the SimpleAuthManager for the UI tests, on a free local port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.airflow_env import AIRFLOW, ARTIFACTS, AirflowEnv
from tests.support.postgres import free_port

USERS = {"admin": ("admin", "admin-pw-ui"), "viewer": ("viewer", "viewer-pw-ui")}


def auth_env(home: Path) -> dict[str, str]:
    """Settings shared by `dags test` and the server: users, their passwords, one JWT secret."""
    passwords = home / "ui_passwords.json"
    passwords.write_text(json.dumps({name: pw for name, (_, pw) in USERS.items()}))
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{role}" for n, (role, _) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "mlpipe-ui-test-secret-0123456789abcdef",
    }


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def token(self, user: str = "admin") -> str:
        _, password = USERS[user]
        body = json.dumps({"username": user, "password": password}).encode()
        req = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["access_token"]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_api_server(env: AirflowEnv, extra_env: dict[str, str], timeout: float = 240) -> ApiServer:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = ARTIFACTS / "ui" / f"api-server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**env.env, **extra_env, "AIRFLOW__API__BASE_URL": url}
    log = open(log_path, "w")  # noqa: SIM115 - closed when the process ends
    process = subprocess.Popen(
        [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = ApiServer(url, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"api-server exited early:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    server.stop()
    raise AssertionError(f"api-server did not come up in {timeout}s:\n{log_path.read_text()[-4000:]}")
