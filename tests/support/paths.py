"""Where the repository and its two environments are, for every test (importable from both venvs)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
AIRFLOW_PYTHON = str(REPO / ".venv" / "bin" / "python")
AIRFLOW = str(REPO / ".venv" / "bin" / "airflow")
RUNTIME_PYTHON = str(REPO / ".venv-runtime" / "bin" / "python")
