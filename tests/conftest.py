"""Shared fixtures. Airflow-side tests run in .venv; tests/runtime runs in .venv-runtime."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Test-only stages (the runtime probe) are registered the way users add theirs, before the package is imported;
# the Airflow processes and runtimes the tests start inherit both variables.
TEST_STAGE_MODULES = "tests.support.probe_stage"
os.environ["MLPIPE_STAGE_MODULES"] = ",".join(
    dict.fromkeys(filter(None, [*os.environ.get("MLPIPE_STAGE_MODULES", "").split(","), TEST_STAGE_MODULES]))
)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))


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


@pytest.fixture(scope="session")
def mysql():
    """A real MySQL-protocol server (Debian's MariaDB, private data dir) with user mlpipe."""
    from tests.support.mysql import start_mysql

    server = start_mysql()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlmd_client(tmp_path: Path):
    """A client of a fresh MLMD SQLite store in the test's folder (runtime venv)."""
    from tests.support.mlmd import sqlite_client

    return sqlite_client(tmp_path)


_mlmd_databases = itertools.count()


@pytest.fixture(
    params=[pytest.param("postgres", marks=pytest.mark.postgres), pytest.param("mysql", marks=pytest.mark.mysql)]
)
def server_mlmd_config(request: pytest.FixtureRequest) -> dict[str, object]:
    """An empty database on the session's PostgreSQL, then MariaDB, server as an MLMD config: MLMD creates its
    schema anew. Tests using it run once per server backend the ``mlmd`` connection offers."""
    server = request.getfixturevalue(request.param)
    name = f"mlmd_rt_{next(_mlmd_databases)}"
    server.create_database(name)
    return server.mlmd_config(name)
