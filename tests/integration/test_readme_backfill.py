"""The README's backfill section, followed literally: its commands, run as written, backfill two days.

The commands come from the section's ``bash`` block and run in one shell from the repository root, in a fresh
AIRFLOW_HOME. Only the api-server's port is moved off 8080 (through Airflow's own settings, not the commands), so
the test cannot collide with another Airflow on this machine. Also: ``mlpipe doctor`` names each missing piece.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_env import AIRFLOW, REPO, SQLITE_LOCKED, AirflowEnv
from tests.support.airflow_stack import query, wait_for
from tests.support.postgres import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MLPIPE = str(Path(AIRFLOW).with_name("mlpipe"))


def readme_backfill_commands() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Backfills\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's backfill section lost its commands"
    return block.group(1)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any Airflow setting, as a new user's shell would be."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "MLPIPE_PIPELINE", "MLPIPE_SERVING"))}
    return {**env, "AIRFLOW_HOME": str(home), **extra}


def test_the_readme_lists_every_prerequisite_with_its_command() -> None:
    commands = readme_backfill_commands()
    for needed in (
        "source scripts/airflow-env.sh",
        "airflow db migrate",
        "airflow api-server &",
        "airflow scheduler &",
        "airflow dag-processor &",
        "airflow dags unpause penguins",
        "mlpipe doctor penguins",
        "airflow backfill create --dag-id penguins",
        "--reprocess-behavior failed",
    ):
        assert needed in commands, needed


@pytest.fixture
def readme_run(tmp_path: Path) -> Iterator[tuple[AirflowEnv, subprocess.CompletedProcess[str]]]:
    home = tmp_path / "airflow-home"
    port = free_port()
    # Airflow's own settings, read by every command the README runs; the commands themselves are unchanged.
    env = clean_env(
        home,
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{port}/execution/",
    )
    script = "set -e\n" + readme_backfill_commands()
    # Output to a file, not a pipe: the services the commands start in the background keep their output open.
    output = tmp_path / "readme-commands.out"
    with output.open("w") as out:
        shell = subprocess.Popen(
            ["bash", "-c", script],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the background services share its process group, so all can be ended
        )
    try:
        code = shell.wait(timeout=600)
        text = output.read_text()
        if code != 0 and SQLITE_LOCKED in text:
            # What the README tells users: SQLite refused the backfill's write while the scheduler wrote; run the
            # backfill again (the services the script started are still running).
            backfill = next(line for line in script.splitlines() if line.startswith("airflow backfill create"))
            again = subprocess.run(
                ["bash", "-c", f"set -e\nsource scripts/airflow-env.sh\n{backfill}"],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            code, text = again.returncode, text + again.stdout + again.stderr
        yield AirflowEnv(home, REPO / "dags"), subprocess.CompletedProcess(shell.args, code, text, "")
    finally:
        end_process_group(shell.pid)


def end_process_group(pgid: int) -> None:
    """SIGTERM the shell's group (the services it left running), SIGKILL what is still there after 30 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def test_the_readme_commands_backfill_two_days(readme_run: tuple[AirflowEnv, subprocess.CompletedProcess[str]]):
    env, shell = readme_run
    assert shell.returncode == 0, shell.stdout[-6000:]
    assert "Ready: runs of these pipelines will start." in shell.stdout

    def done() -> list[tuple[str, str]] | None:
        rows = query(env, "select run_id, state from dag_run where dag_id='penguins' and run_type='backfill'")
        if any(state == "failed" for _, state in rows):
            failed = query(env, "select run_id, task_id from task_instance where dag_id='penguins' and state='failed'")
            raise AssertionError(f"a backfill run failed: {rows} {failed}")
        return rows if len(rows) == 2 and all(state == "success" for _, state in rows) else None

    rows = wait_for("the README's two-day backfill", done, timeout=1200, interval=5)
    assert sorted(run_id[len("backfill__") :][:10] for run_id, _ in rows) == ["2024-01-03", "2024-01-04"]
    summary = subprocess.run(
        [MLPIPE, "summary", "penguins", "--run-id", max(run_id for run_id, _ in rows)],
        env=clean_env(env.home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert summary.returncode == 0 and "Pushed: version 2 to " in summary.stdout, summary.stdout + summary.stderr


def test_doctor_names_each_missing_piece_with_its_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = clean_env(
        home,
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://localhost:{port}/execution/",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=600, check=False)

    unmigrated = run(MLPIPE, "doctor", "penguins")
    assert unmigrated.returncode == 1 and "fix: airflow db migrate" in unmigrated.stdout, unmigrated.stdout
    assert run(AIRFLOW, "db", "migrate").returncode == 0
    nothing = run(MLPIPE, "doctor", "penguins")
    assert nothing.returncode == 1
    for fix in ("airflow api-server", "airflow scheduler", "airflow dag-processor", "airflow dags reserialize"):
        assert f"fix: {fix}\n" in nothing.stdout, (fix, nothing.stdout)
    assert f"localhost:{port}/execution/" in nothing.stdout
    assert run(AIRFLOW, "dags", "reserialize").returncode == 0
    paused = run(MLPIPE, "doctor", "penguins")
    assert "MISSING  penguins unpaused: the DAG is paused" in paused.stdout, paused.stdout
    assert "fix: airflow dags unpause penguins" in paused.stdout
    assert "ok       penguins parsed" in paused.stdout
