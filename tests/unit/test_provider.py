"""Packaging: the provider entry point, the mlmd connection type, and how the runtime interpreter is chosen."""

from __future__ import annotations

import os
import subprocess

import pytest

from airflow_provider_mlpipe.get_provider_info import get_provider_info
from airflow_provider_mlpipe.hooks.mlmd import MlmdHook, config_from_connection
from airflow_provider_mlpipe.operators import runtime_interpreter
from tests.support.paths import REPO


def test_airflow_lists_the_provider(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(REPO / ".venv/bin/airflow"), "providers", "list", "-o", "plain"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "airflow-provider-mlpipe" in proc.stdout


def test_provider_info_registers_the_mlmd_connection_type():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-mlpipe"
    [conn] = info["connection-types"]
    assert conn["connection-type"] == "mlmd"
    assert conn["hook-class-name"].endswith("MlmdHook")
    behaviour = MlmdHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["schema"] == "Backend"


def test_mlmd_connection_configs():
    assert config_from_connection("sqlite", "/data/mlmd.db", None, None, None, {}) == {
        "backend": "sqlite",
        "path": "/data/mlmd.db",
    }
    pg = config_from_connection("postgres", "db", None, "u", "secret", {"database": "mlmd"})
    assert pg == {"backend": "postgresql", "host": "db", "port": 5432, "user": "u", "password": "secret",
                  "database": "mlmd"}  # fmt: skip
    with pytest.raises(ValueError, match="needs a 'database'"):
        config_from_connection("mysql", "db", None, "u", None, {})
    with pytest.raises(ValueError, match="not one of"):
        config_from_connection("oracle", "db", None, None, None, {})


def test_runtime_python_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime_interpreter, "_config_value", lambda: "/from/config")
    monkeypatch.setenv(runtime_interpreter.ENV_VAR, "/from/env")
    assert runtime_interpreter.resolve_runtime_python("/from/spec") == "/from/spec"
    assert runtime_interpreter.resolve_runtime_python(None) == "/from/config"
    monkeypatch.setattr(runtime_interpreter, "_config_value", lambda: "")
    assert runtime_interpreter.resolve_runtime_python(None) == "/from/env"
    monkeypatch.delenv(runtime_interpreter.ENV_VAR)
    venv = tmp_path / ".venv-runtime" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").touch()
    monkeypatch.chdir(tmp_path)
    assert runtime_interpreter.resolve_runtime_python(None) == str(venv / "python")
    monkeypatch.setattr(runtime_interpreter, "default_runtime_candidates", lambda: [tmp_path / "missing"])
    with pytest.raises(FileNotFoundError, match="No ML runtime interpreter"):
        runtime_interpreter.resolve_runtime_python(None)


def test_sqlite_mlmd_refuses_multi_host_executors():
    from airflow_provider_mlpipe.hooks.mlmd import check_backend_fits_executor

    sqlite = {"backend": "sqlite", "path": "/x/mlmd.sqlite"}
    check_backend_fits_executor(sqlite, "LocalExecutor")
    check_backend_fits_executor({"backend": "postgresql"}, "CeleryExecutor")
    with pytest.raises(ValueError, match="CeleryExecutor runs tasks on several hosts"):
        check_backend_fits_executor(sqlite, "airflow.providers.celery.executors.celery_executor.CeleryExecutor")
    with pytest.raises(ValueError, match="PostgreSQL or MySQL"):
        check_backend_fits_executor(sqlite, "LocalExecutor,KubernetesExecutor")
