"""Where the runtime reads its stage request: a file, stdin (``-``) or a variable (``--request-env``, for pods)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, StageRequest, StageResult
from airflow_provider_mlpipe.stages.registry import STAGE_MODULES_ENV


def request_json(root: Path) -> str:
    request = StageRequest(
        pipeline="cli", pipeline_root=str(root), stage="probe", node_id="probe", run_id="run-1",
        params={"values": [2.0, 3.0]},
    )  # fmt: skip
    return request.to_json()


def run(tmp_path: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    base = {
        "PATH": os.environ.get("PATH", ""),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        STAGE_MODULES_ENV: os.environ[STAGE_MODULES_ENV],  # the test-only probe stage (tests/conftest.py)
        MLMD_CONFIG_ENV: json.dumps({"backend": "sqlite", "path": str(tmp_path / "mlmd.sqlite")}),
    }
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_mlpipe.runtime", "run", *args],
        input=stdin,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("source", ["stdin", "env"])
def test_request_from_stdin_or_a_variable(tmp_path: Path, source: str) -> None:
    result_path = tmp_path / "result.json"
    payload = request_json(tmp_path / "root")
    if source == "stdin":
        proc = run(tmp_path, "-", "--result", str(result_path), stdin=payload)
    else:
        proc = run(tmp_path, "--request-env", "STAGE_REQ", "--result", str(result_path), env={"STAGE_REQ": payload})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = StageResult.from_dict(json.loads(result_path.read_text()))
    assert result.stage == "probe" and result.artifact("probe").properties["sum"] == 5.0


def test_request_source_errors(tmp_path: Path) -> None:
    both = run(tmp_path, "req.json", "--request-env", "X", "--result", str(tmp_path / "r.json"))
    neither = run(tmp_path, "--result", str(tmp_path / "r.json"))
    for proc in (both, neither):
        assert proc.returncode == 2 and "either a request file" in proc.stderr
    unset = run(tmp_path, "--request-env", "NOT_SET_ANYWHERE", "--result", str(tmp_path / "r.json"))
    assert unset.returncode == 1
    assert "mlpipe stage failed: ValueError: The stage request variable NOT_SET_ANYWHERE is not set" in unset.stderr
    assert not (tmp_path / "r.json").exists()
