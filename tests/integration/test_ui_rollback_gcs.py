"""A rollback started from the UI serves an earlier version again on gs:// (the GCS emulator), recorded in MLMD.

The UI backend launches the runtime as the operator and the CLI do, with the ``google_cloud_default``
connection's key in the environment; the emulator answers gs:// in place of Google.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV
from airflow_provider_mlpipe.storage import KEYFILE_JSON_ENV
from airflow_provider_mlpipe.ui.backend import UiBackend
from tests.runtime.test_gcp_keyfile import service_account_key
from tests.support.airflow_env import REPO, mlmd_dump
from tests.support.gcs_emulator import GcsEmulator, running_emulator

pytestmark = pytest.mark.integration
BUCKET = "ui-rollback"
SERVING = f"gs://{BUCKET}/serving/penguins"
FILES = ("saved_model.pb", "variables/variables.index")


@pytest.fixture
def emulator() -> GcsEmulator:
    with running_emulator(default_bucket=BUCKET) as emu:
        yield emu


def upload_version(emulator: GcsEmulator, version: int, content: str) -> None:
    bucket = emulator.client().bucket(BUCKET)
    for name in FILES:
        bucket.blob(f"serving/penguins/{version}/{name}").upload_from_string(f"{content} {name}")


def version_files(emulator: GcsEmulator, version: int) -> dict[str, bytes]:
    bucket = emulator.client().bucket(BUCKET)
    prefix = f"serving/penguins/{version}/"
    return {n[len(prefix) :]: bucket.blob(n).download_as_bytes() for n in emulator.objects(BUCKET, prefix)}


def test_a_ui_rollback_serves_an_earlier_version_on_gcs(
    emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_version(emulator, 1, "good model")
    upload_version(emulator, 2, "regressed model")
    key = service_account_key()
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("MLPIPE_RUNTIME_PYTHON", str(REPO / ".venv-runtime" / "bin" / "python"))
    connection = {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": key, "project": "acme-ml"}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(connection))
    backend = UiBackend("mlmd_default")
    _, env = backend.rollback_launch("penguins", "1", SERVING)
    assert json.loads(env[KEYFILE_JSON_ENV]) == key  # the connection's key goes to the runtime

    outcome = backend.rollback("penguins", "1", SERVING)

    assert outcome.returncode == 0, outcome.output
    summary = json.loads(outcome.output.strip().splitlines()[-1])
    assert summary["version"] == 3 and summary["rollback_of"] == 1 and summary["rolled_back_from"] == 2
    assert summary["uri"] == f"{SERVING}/3"
    copied = {name: body for name, body in version_files(emulator, 3).items() if not name.startswith(".mlpipe")}
    assert copied == version_files(emulator, 1) and copied["saved_model.pb"] == b"good model saved_model.pb"
    assert version_files(emulator, 2)["saved_model.pb"] == b"regressed model saved_model.pb"  # history intact

    dump = mlmd_dump(Path(json.loads(env[MLMD_CONFIG_ENV])["path"]))
    [execution] = [e for e in dump["executions"] if e["type"] == "mlpipe.Rollback"]
    assert execution["state"] == "COMPLETE" and execution["properties"]["rollback_of"] == 1
    [pushed] = [a for a in dump["artifacts"] if a["type"] == "PushedModel"]
    assert pushed["uri"] == f"{SERVING}/3" and pushed["properties"]["destination"] == SERVING
