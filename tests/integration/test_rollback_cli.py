"""`mlpipe rollback` and the rollback operator: serving goes back to an earlier version, recorded in MLMD."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.airflow_env import REPO, mlmd_dump

pytestmark = pytest.mark.integration
MLPIPE = str(REPO / ".venv" / "bin" / "mlpipe")


def make_version(destination: Path, version: int, content: str) -> None:
    folder = destination / str(version)
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_text(content)
    (folder / "variables" / "variables.index").write_text(content * 2)


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def env(tmp_path):
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__MLPIPE__RUNTIME_PYTHON": str(REPO / ".venv-runtime" / "bin" / "python"),
    }


def test_rollback_serves_the_previous_version_again(tmp_path, env):
    serving = tmp_path / "serving"
    make_version(serving, 1, "good model")
    make_version(serving, 2, "regressed model")

    proc = subprocess.run(
        [MLPIPE, "rollback", "demo", "--destination", str(serving)], env=env, capture_output=True, text=True
    )

    assert proc.returncode == 0, proc.stderr
    assert "version 3 now serves a copy of version 1 (was 2)" in proc.stdout
    assert sorted(p.name for p in serving.iterdir()) == ["1", "2", "3"]
    assert tree(serving / "3") == tree(serving / "1")
    assert (serving / "2" / "saved_model.pb").read_text() == "regressed model"  # history stays intact

    dump = mlmd_dump(tmp_path / "airflow" / "mlpipe" / "mlmd.sqlite")
    [execution] = [e for e in dump["executions"] if e["type"] == "mlpipe.Rollback"]
    assert execution["state"] == "COMPLETE" and execution["properties"]["rollback_of"] == 1
    [output] = [a for a in dump["artifacts"] if a["type"] == "PushedModel"]
    assert output["uri"].endswith("/serving/3") and output["properties"]["rolled_back_from"] == 2


def test_rollback_to_a_missing_version_is_a_clear_error(tmp_path, env):
    serving = tmp_path / "serving"
    make_version(serving, 1, "only")
    proc = subprocess.run(
        [MLPIPE, "rollback", "demo", "--destination", str(serving), "--to", "7"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Version 7 does not exist" in proc.stderr
    assert sorted(p.name for p in serving.iterdir()) == ["1"]
