"""GCP credentials for the runtime come from the google_cloud_default connection or the environment."""

from __future__ import annotations

import json
import sys

import pytest

from airflow_provider_mlpipe.hooks.gcp_storage import GcpStorageHook, credentials_env_from_extra, gcp_credentials_env
from airflow_provider_mlpipe.operators.launch import runtime_env
from airflow_provider_mlpipe.storage import KEYFILE_JSON_ENV, gcs_options

KEY = {"type": "service_account", "client_email": "mlpipe@acme.iam.gserviceaccount.com", "private_key": "-----X"}


def gcp_conn(extra: dict) -> str:
    return json.dumps({"conn_type": "google_cloud_platform", "extra": extra})


def test_extra_forms() -> None:
    assert credentials_env_from_extra({}) == {}
    assert credentials_env_from_extra({"key_path": "/keys/sa.json", "project": "acme"}) == {
        "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json",
        "GOOGLE_CLOUD_PROJECT": "acme",
    }
    # The Google provider's prefixed names, and keyfile_dict as a JSON string or a dict.
    prefixed = credentials_env_from_extra({"extra__google_cloud_platform__keyfile_dict": json.dumps(KEY)})
    assert json.loads(prefixed[KEYFILE_JSON_ENV]) == KEY
    assert json.loads(credentials_env_from_extra({"keyfile_dict": KEY})[KEYFILE_JSON_ENV]) == KEY
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in prefixed  # the runtime makes the file, not the worker


def test_bad_extras_are_refused() -> None:
    with pytest.raises(ValueError, match="both key_path and keyfile_dict"):
        credentials_env_from_extra({"key_path": "/k.json", "keyfile_dict": KEY})
    with pytest.raises(ValueError, match="not a service account key"):
        credentials_env_from_extra({"keyfile_dict": json.dumps({"private_key": "x"})})


def test_connection_reaches_the_runtime_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", gcp_conn({"keyfile_dict": KEY, "project": "acme"}))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-the-environment")
    assert json.loads(gcp_credentials_env()[KEYFILE_JSON_ENV]) == KEY
    env = runtime_env(None)
    assert json.loads(env[KEYFILE_JSON_ENV]) == KEY
    assert env["GOOGLE_CLOUD_PROJECT"] == "acme"  # the connection wins over the worker's environment


def test_without_a_connection_the_environment_rules(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/var/run/adc.json")
    assert gcp_credentials_env() == {}
    assert gcp_credentials_env(None) == {}
    env = runtime_env(None)
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/run/adc.json" and KEYFILE_JSON_ENV not in env


def test_the_hook_storage_resolves_the_connection_key(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", gcp_conn({"keyfile_dict": KEY, "project": "acme"}))
    storage = GcpStorageHook().get_storage()
    # The same resolution the runtime applies to its own environment: the key itself, and its project.
    assert gcs_options(storage.credentials) == {"project": "acme", "token": KEY}


def test_credentials_resolve_in_order() -> None:
    key_json = json.dumps(KEY)
    everything = {
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        KEYFILE_JSON_ENV: key_json,
        "GOOGLE_CLOUD_PROJECT": "p",
    }
    assert gcs_options(everything) == {"project": "p", "token": "anon"}  # an emulator never sees a real key
    assert gcs_options({KEYFILE_JSON_ENV: key_json, "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"})["token"] == KEY
    assert gcs_options({"GOOGLE_APPLICATION_CREDENTIALS": "/k.json"})["token"] == "/k.json"
    assert gcs_options({}) == {"project": "mlpipe", "token": "google_default"}


def test_the_ui_rollback_hands_the_runtime_the_gcp_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The UI builds the operator's rollback argv and launches it with the same environment as every stage."""
    from airflow_provider_mlpipe.operators.rollback import last_json_line, rollback_command
    from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV
    from airflow_provider_mlpipe.ui.backend import UiBackend

    # Stands in for the runtime interpreter: records what it was started with, prints a rollback summary.
    dump = tmp_path / "launched.json"
    interpreter = tmp_path / "python"
    interpreter.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(dump)!r}, 'w'))\n"
        "print(json.dumps({'version': 4, 'rollback_of': 2}))\n",
        encoding="utf-8",
    )
    interpreter.chmod(0o755)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("MLPIPE_RUNTIME_PYTHON", str(interpreter))
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", gcp_conn({"keyfile_dict": KEY, "project": "acme"}))

    outcome = UiBackend("mlmd_default").rollback("penguins", "2", "gs://models/penguins")

    assert outcome.returncode == 0 and last_json_line(outcome.output) == {"version": 4, "rollback_of": 2}
    launched = json.loads(dump.read_text(encoding="utf-8"))
    assert launched["argv"] == rollback_command(str(interpreter), "penguins", "gs://models/penguins", 2)[1:]
    env = launched["env"]
    assert json.loads(env[KEYFILE_JSON_ENV]) == KEY and env["GOOGLE_CLOUD_PROJECT"] == "acme"
    assert json.loads(env[MLMD_CONFIG_ENV])["backend"] == "sqlite"
    assert env["MLPIPE_ROLLBACK_REQUESTED_BY"] == "airflow-ui"


def test_last_json_line_takes_the_summary_and_ignores_noise() -> None:
    from airflow_provider_mlpipe.operators.rollback import last_json_line

    assert last_json_line('log line\n{"version": 3}\nI1203 grpc noise\n') == {"version": 3}
    assert last_json_line("{not json\n") == {} and last_json_line("[1]\n") == {} and last_json_line("") == {}
