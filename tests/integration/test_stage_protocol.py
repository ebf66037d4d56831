"""The stage protocol end to end: real `airflow dags test`, real runtime in .venv-runtime, real MLMD."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.airflow_env import AIRFLOW, mlmd_dump

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[1] / "dags"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


@pytest.fixture
def airflow(make_airflow, tmp_path):
    return make_airflow(DAGS, MLPIPE_TEST_PIPELINE_ROOT=str(tmp_path / "root"))


def test_probe_task_runs_tensorflow_and_records_mlmd(airflow, tmp_path):
    airflow.dags_test("mlpipe_probe")

    result = airflow.xcom("mlpipe_probe", "probe")
    assert result["stage"] == "probe" and result["cached"] is False
    [artifact] = result["outputs"]["probe"]
    payload = json.loads(Path(artifact["uri"], "probe.json").read_text())
    assert payload["sum"] == 8.0 and payload["tensorflow"].startswith("2.16")
    assert Path(artifact["uri"]).is_relative_to(tmp_path / "root" / "probe" / "probe")

    dump = mlmd_dump(airflow.mlmd_path)
    [execution] = dump["executions"]
    assert execution["type"] == "mlpipe.RuntimeProbe" and execution["state"] == "COMPLETE"
    assert execution["id"] == result["execution_id"]
    [stored] = dump["artifacts"]
    assert stored["id"] == artifact["id"] and stored["state"] == "LIVE" and stored["uri"] == artifact["uri"]
    assert {c["type"] for c in dump["contexts"]} == {"pipeline", "pipeline_run", "node"}
    assert dump["events"] == [
        {"execution_id": execution["id"], "artifact_id": stored["id"], "type": "OUTPUT", "slot": "probe"}
    ]


def test_failing_runtime_fails_the_task_with_its_error_text(airflow):
    proc = airflow.dags_test("mlpipe_probe", check=False, env={"MLPIPE_TEST_PROBE_FAIL": "deliberate failure 42"})

    output = proc.stdout + proc.stderr
    assert "The probe stage failed: RuntimeError: deliberate failure 42" in output
    assert airflow.task_states("mlpipe_probe") == {"probe": "failed"}
    dump = mlmd_dump(airflow.mlmd_path)
    assert [e["state"] for e in dump["executions"]] == ["FAILED"]
    assert dump["artifacts"] == []


def stage_processes(airflow_pid: int, home: Path) -> list[int]:
    """The runtime processes of a run: cold children of Airflow's task, or children forked by the warm runtime."""
    cold = [pid for pid in descendants(airflow_pid) if "airflow_provider_mlpipe.runtime" in cmdline(pid)]
    servers = [pid for pid in descendants(1) if f"serve --socket {home}" in cmdline(pid)]
    warm = [child for server in servers for child in descendants(server)]
    return [pid for pid in cold if pid not in servers] + warm


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_killed_runtime_leaves_no_published_artifact(airflow, tmp_path, warm):
    proc = subprocess.Popen(
        [AIRFLOW, "dags", "test", "mlpipe_probe"],
        env={**airflow.env, "MLPIPE_TEST_PROBE_SLEEP": "300", "AIRFLOW__MLPIPE__WARM_RUNTIME": str(warm)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        staging = tmp_path / "root" / "probe" / "probe" / ".staging"
        deadline = time.monotonic() + 180
        while not list(staging.glob("*/partial.txt")):
            assert time.monotonic() < deadline, "the runtime never started writing its output"
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        runtime = stage_processes(proc.pid, airflow.home)
        assert runtime, "no runtime process found"
        for pid in runtime:
            os.kill(pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    assert "exited with code -9" in output
    assert airflow.task_states("mlpipe_probe") == {"probe": "failed"}
    # The half-written output stays in the hidden staging area; nothing is under a final URI.
    node_dir = tmp_path / "root" / "probe" / "probe"
    assert [p.name for p in node_dir.iterdir()] == [".staging"]
    dump = mlmd_dump(airflow.mlmd_path)
    assert dump["artifacts"] == []
    assert [e["state"] for e in dump["executions"]] == ["RUNNING"]  # marked FAILED by the next attempt
