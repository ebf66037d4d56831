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


def versions(serving: Path) -> list[str]:
    """The version folders (hidden ones hold the versions' records, not versions)."""
    return sorted(p.name for p in serving.iterdir() if not p.name.startswith("."))


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
    assert versions(serving) == ["1", "2", "3"]
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
    assert proc.stderr == (
        f"mlpipe rollback: Cannot roll back to version 7: it does not exist under {serving} "
        "(the versions there are 1).\n"
    )
    assert versions(serving) == ["1"]


def test_rollback_applies_keep_versions_but_keeps_the_served_and_target_versions(tmp_path, env):
    serving = tmp_path / "serving"
    for version in (1, 2, 3, 4):
        make_version(serving, version, f"model {version}")
    proc = subprocess.run(
        [MLPIPE, "rollback", "demo", "--destination", str(serving), "--to", "1", "--keep-versions", "2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "version 5 now serves a copy of version 1 (was 4)" in proc.stdout and "pruned versions 2, 3" in proc.stdout
    assert versions(serving) == ["1", "4", "5"]
    assert tree(serving / "5") == tree(serving / "1")


def test_a_rollback_by_spec_sends_the_specs_rolled_back_notification(tmp_path, env):
    from tests.support.smtp_inbox import smtp_inbox
    from tests.support.spec_fixtures import full_spec, make_dags_folder

    smtp = "{notifier: SmtpNotifier, args: {to: ml@example.com, from_email: mlpipe@example.com}}"
    dags = make_dags_folder(tmp_path, {"full": full_spec(extra=f"notify:\n  rolled_back: {smtp}\n")}, dag_file=False)
    serving = dags / "serving" / "full"  # the spec's pusher destination, beside its pipelines folder
    make_version(serving, 1, "good model")
    make_version(serving, 2, "regressed model")

    with smtp_inbox() as inbox:
        proc = subprocess.run(
            [MLPIPE, "rollback", "full", "--specs", str(dags / "pipelines")],
            env={**env, "AIRFLOW_CONN_SMTP_DEFAULT": inbox.connection()},
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 0, proc.stderr
    assert versions(serving) == ["1", "2", "3"]
    [message] = inbox.messages
    assert message["Subject"] == "[mlpipe] full: rolled back to version 1"
    assert (
        "Version 3 now serves a copy of version 1; version 2 served before."
        in message.get_body(("html",)).get_content()
    )
