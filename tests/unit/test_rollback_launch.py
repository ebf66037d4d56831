"""One rollback launch for the UI, the CLI and the operator: the same argv and the same credentials environment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlpipe.cli import rollback as cli_rollback
from airflow_provider_mlpipe.operators.rollback import MlpipeRollbackOperator
from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV
from airflow_provider_mlpipe.storage import KEYFILE_JSON_ENV
from airflow_provider_mlpipe.ui.backend import UiBackend
from tests.unit.test_gcp_storage_hook import KEY, gcp_conn

DESTINATION = "gs://models/penguins"
# What the GCP connection and the MLMD connection put into the runtime's environment.
LAUNCH_KEYS = (KEYFILE_JSON_ENV, "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", MLMD_CONFIG_ENV)


@pytest.fixture
def recording_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stands in for the runtime's python: appends its argv and environment to launches.jsonl, prints a summary."""
    interpreter = tmp_path / "python"
    interpreter.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"open({str(tmp_path / 'launches.jsonl')!r}, 'a').write("
        "json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}) + '\\n')\n"
        "print(json.dumps({'version': 4, 'rollback_of': 2, 'rolled_back_from': 3}))\n",
        encoding="utf-8",
    )
    interpreter.chmod(0o755)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("MLPIPE_RUNTIME_PYTHON", str(interpreter))
    return tmp_path / "launches.jsonl"


def launches(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    "extra",
    [{"keyfile_dict": KEY, "project": "acme"}, {"key_path": "/keys/sa.json", "project": "acme"}],
    ids=["keyfile_dict", "key_path"],
)
def test_ui_cli_and_operator_launch_the_rollback_alike(
    recording_interpreter: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", gcp_conn(extra))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)

    assert UiBackend("mlmd_default").rollback("penguins", "2", DESTINATION).returncode == 0
    args = argparse.Namespace(
        pipeline="penguins", to=2, destination=DESTINATION, specs=None, mlmd_conn_id=None, keep_versions=None
    )
    assert cli_rollback.run(args) == 0
    operator = MlpipeRollbackOperator(task_id="rollback", pipeline="penguins", destination=DESTINATION, to_version=2)
    assert operator.execute({}) == {"version": 4, "rollback_of": 2, "rolled_back_from": 3}

    ui, cli, op = launches(recording_interpreter)
    assert ui["argv"] == cli["argv"] == op["argv"]
    assert ui["argv"][-4:] == ["--destination", DESTINATION, "--to", "2"]
    for key in LAUNCH_KEYS:
        assert ui["env"].get(key) == cli["env"].get(key) == op["env"].get(key), key
    if "keyfile_dict" in extra:
        assert json.loads(ui["env"][KEYFILE_JSON_ENV]) == KEY
    else:
        assert ui["env"]["GOOGLE_APPLICATION_CREDENTIALS"] == "/keys/sa.json" and KEYFILE_JSON_ENV not in ui["env"]
    assert ui["env"]["GOOGLE_CLOUD_PROJECT"] == "acme"
    assert (
        ui["env"]["MLPIPE_ROLLBACK_REQUESTED_BY"] == "airflow-ui" and "MLPIPE_ROLLBACK_REQUESTED_BY" not in cli["env"]
    )
