"""The warm runtime for real: a server that imported the ML stack forks one child per stage, through the same
launcher the stage operator uses. Kills, a lost server, concurrency, changed user code, a changed runtime and a
foreign user are each tried against real processes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_mlpipe.operators import warm_runtime
from airflow_provider_mlpipe.operators.launch import kill_process_group, run_streaming
from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, StageResult, runtime_command
from airflow_provider_mlpipe.version_compat import AirflowException
from tests.support.mlmd import probe_request, sqlite_config
from tests.support.paths import RUNTIME_PYTHON

log = logging.getLogger("test.warm")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An Airflow home of its own, so each test gets its own server, which exits soon after the test."""
    home = Path("/tmp") / f"mlpipe-warm-test-{os.getpid()}-{tmp_path.name[-12:]}"
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.setenv("AIRFLOW__MLPIPE__WARM_IDLE_TIMEOUT", "30")
    yield home
    server_pids = subprocess.run(["pgrep", "-f", f"serve --socket {home}"], capture_output=True, text=True).stdout
    for pid in server_pids.split():
        os.kill(int(pid), signal.SIGKILL)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[MLMD_CONFIG_ENV] = json.dumps(sqlite_config(tmp_path))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _command(tmp_path: Path, name: str, spec_dir: str | None = None, **params: object) -> tuple[list[str], Path]:
    request = probe_request(tmp_path / "root", run_id=name, **params)
    request.stage_module = "tests.support.probe_stage"
    request.spec_dir = spec_dir
    request.enable_cache = False  # every run here must really execute
    request.write(tmp_path / f"{name}.json")
    result = tmp_path / f"{name}-result.json"
    return runtime_command(RUNTIME_PYTHON, "run", str(tmp_path / f"{name}.json"), "--result", str(result)), result


def _run(
    tmp_path: Path, name: str, processes: list | None = None, spec_dir: str | None = None, **params: object
) -> StageResult:
    command, result = _command(tmp_path, name, spec_dir, **params)
    seen = processes if processes is not None else []
    run_streaming(command, _env(tmp_path), log, f"The {name} stage", seen.append, warm=True)
    return StageResult.from_dict(json.loads(result.read_text()))


def _server_pids(home: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"serve --socket {home}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_stages_fork_from_one_server_and_a_kill_mid_stage_publishes_nothing(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.warm")
    processes: list = []
    first = _run(tmp_path, "first", processes)
    assert first.artifact("probe").properties["sum"] == 7.5
    assert isinstance(processes[0], warm_runtime.WarmChild)
    [server] = _server_pids(home)

    # A SIGKILLed child (on_kill's path) fails its stage and leaves no published output; the retry succeeds.
    command, _ = _command(tmp_path, "killed", sleep_s=60)
    started: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_streaming(command, _env(tmp_path), log, "The killed stage", started.append, warm=True)
        except AirflowException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    _wait_for(lambda: started and list((tmp_path / "root").rglob("partial.txt")))
    os.killpg(started[0].pid, signal.SIGKILL)
    worker.join(30)
    assert failure and "exited with code -9" in str(failure[0])
    published = [p for p in (tmp_path / "root" / "probe" / "probe").glob("*/probe") if ".staging" not in str(p)]
    assert len(published) == 1  # only the first stage's output
    retry = _run(tmp_path, "killed", sleep_s=0)
    assert retry.artifact("probe").properties["sum"] == 7.5
    assert _server_pids(home) == [server]  # one server served all of it
    assert "Running in a child of the warm runtime" in caplog.text


def test_on_kill_ends_the_warm_child(home: Path, tmp_path: Path) -> None:
    command, _ = _command(tmp_path, "slow", sleep_s=60)
    started: list = []

    def run() -> None:
        with pytest.raises(AirflowException):
            run_streaming(command, _env(tmp_path), log, "The slow stage", started.append, warm=True)

    worker = threading.Thread(target=run)
    worker.start()
    _wait_for(lambda: started)
    kill_process_group(started[0], log)
    worker.join(30)
    assert not worker.is_alive()
    with pytest.raises(ProcessLookupError):
        os.kill(started[0].pid, 0)


def test_a_killed_server_fails_its_stage_and_the_next_stage_starts_a_new_one(home: Path, tmp_path: Path) -> None:
    _run(tmp_path, "warmup")
    [server] = _server_pids(home)
    command, _ = _command(tmp_path, "orphaned", sleep_s=60)
    started: list = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_streaming(command, _env(tmp_path), log, "The orphaned stage", started.append, warm=True)
        except AirflowException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    _wait_for(lambda: started and list((tmp_path / "root").rglob("partial.txt")))
    child = started[0].pid
    os.kill(server, signal.SIGKILL)
    worker.join(30)
    assert errors and "the warm runtime went away mid-stage" in str(errors[0])
    _wait_for(lambda: not _alive(child))  # the child died with its server
    after = _run(tmp_path, "after")
    assert after.artifact("probe").properties["sum"] == 7.5
    assert _server_pids(home) and _server_pids(home) != [server]


def test_two_concurrent_stages_run_in_two_children(home: Path, tmp_path: Path) -> None:
    _run(tmp_path, "warmup")
    seen: dict[str, list] = {"a": [], "b": []}
    threads = [threading.Thread(target=_run, args=(tmp_path, name, seen[name]), kwargs={"sleep_s": 3}) for name in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    pids = {seen[name][0].pid for name in seen}
    assert len(pids) == 2
    assert all(StageResult.from_dict(json.loads((tmp_path / f"{n}-result.json").read_text())) for n in seen)


def test_a_changed_user_module_is_picked_up(home: Path, tmp_path: Path) -> None:
    """Each child loads user code fresh, so an edited module counts on the next stage without a restart."""
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    values = []
    for value in (3, 4):
        (spec_dir / "user_mod.py").write_text(f"VALUE = {value}\n")
        result = _run(tmp_path, f"module-{value}", module_file="user_mod.py", spec_dir=str(spec_dir))
        values.append(result.summary["module_value"])
    assert values == [3, 4]
    assert len(_server_pids(home)) == 1


def test_a_changed_runtime_gets_its_own_server(home: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "bin").mkdir()
    python = venv / "bin" / "python"
    python.symlink_to(RUNTIME_PYTHON)
    (site / "tensorflow-2.16.2.dist-info").mkdir()
    before = warm_runtime.socket_path(str(python))
    (site / "tensorflow-2.16.2.dist-info").rename(site / "tensorflow-2.16.3.dist-info")
    assert warm_runtime.socket_path(str(python)) != before  # a rebuilt venv never meets the old server
    assert warm_runtime.socket_path(RUNTIME_PYTHON) != before


def test_another_user_cannot_connect(home: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("running a process as another user needs root")
    _run(tmp_path, "warmup")
    path = warm_runtime.socket_path(RUNTIME_PYTHON)
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert (os.stat(os.path.dirname(path)).st_mode & 0o777) == 0o700
    probe = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({path!r}); print('connected')"
    # The system interpreter: the user "nobody" may run it, but not reach the socket.
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    proc = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, user=65534, group=65534, check=False, cwd="/"
    )
    assert proc.returncode != 0 and "PermissionError" in proc.stderr, proc.stdout + proc.stderr
    same_user = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False, cwd="/")
    assert same_user.stdout.strip() == "connected", same_user.stderr  # the check itself can succeed


def test_an_unreachable_server_means_a_cold_run_with_the_reason(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("AIRFLOW__MLPIPE__WARM_STARTUP_TIMEOUT", "1")
    path = warm_runtime.socket_path(RUNTIME_PYTHON)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text("not a socket")  # nothing listens here, and the server takes more than a second
    processes: list = []
    result = _run(tmp_path, "cold", processes)
    assert result.artifact("probe").properties["sum"] == 7.5
    assert isinstance(processes[0], subprocess.Popen)
    assert "Running cold instead of in the warm runtime" in caplog.text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status != "Z"


def _wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")
