"""Which interpreter runs the ML runtime: the spec, then Airflow config, then the environment, then .venv-runtime."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MLPIPE_RUNTIME_PYTHON"


def _config_value() -> str:
    try:
        from airflow_provider_mlpipe.version_compat import conf

        return conf.get("mlpipe", "runtime_python", fallback="") or ""
    except Exception:  # no Airflow config available, e.g. in the mlpipe CLI
        return ""


def default_runtime_candidates() -> list[Path]:
    package_root = Path(__file__).resolve().parents[2]
    return [Path.cwd() / ".venv-runtime", package_root / ".venv-runtime"]


def resolve_runtime_python(spec_value: str | None = None) -> str:
    for value in (spec_value, _config_value(), os.environ.get(ENV_VAR)):
        if value:
            return value
    for venv in default_runtime_candidates():
        python = venv / "bin" / "python"
        if python.exists():
            return str(python)
    raise FileNotFoundError(
        "No ML runtime interpreter found. Set runtime.python in the spec, [mlpipe] runtime_python in the Airflow "
        f"config or {ENV_VAR}, or build .venv-runtime with `make runtime`."
    )
