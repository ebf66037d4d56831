"""Shared fixtures. Airflow-side tests run in .venv; tests/runtime runs in .venv-runtime."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def make_airflow(tmp_path_factory: pytest.TempPathFactory):
    """Factory of migrated Airflow homes: ``make_airflow(dags_folder, **extra_env)``."""
    from tests.support.airflow_env import AirflowEnv

    def _make(dags_folder: Path, **extra_env: str) -> AirflowEnv:
        env = AirflowEnv(tmp_path_factory.mktemp("airflow"), Path(dags_folder), dict(extra_env))
        env.migrate()
        return env

    return _make


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian package) with role mlpipe and databases airflow and mlmd."""
    from tests.support.postgres import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
