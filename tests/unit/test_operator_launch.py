"""The base operator's process handling: live streaming, error text, and killing the whole process group."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from airflow_provider_mlpipe.operators.stages import operator_for
from airflow_provider_mlpipe.version_compat import AirflowException

RuntimeProbeOperator = operator_for("probe")  # the test-only stage of tests/support/probe_stage.py


def make_operator() -> RuntimeProbeOperator:
    return RuntimeProbeOperator(task_id="probe", pipeline="p", pipeline_root="/tmp/unused")


def is_running(pid: int) -> bool:
    """True unless the process is gone or a zombie (an orphan's parent may not reap it in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_streams_output_and_raises_with_runtime_error_text(capsys):
    op = make_operator()
    script = (
        "import sys; print('working', flush=True); "
        "print('mlpipe stage failed: ValueError: the file data.csv is empty', file=sys.stderr); sys.exit(1)"
    )
    with pytest.raises(AirflowException) as err:
        op.run_runtime([sys.executable, "-c", script], dict(os.environ))
    assert "ValueError: the file data.csv is empty" in str(err.value)
    assert "working" in capsys.readouterr().out


def test_on_kill_ends_the_child_process_group(tmp_path):
    op = make_operator()
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(600)"
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.run_runtime([sys.executable, "-c", script], dict(os.environ))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not pidfile.exists() or op._process is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    grandchild = int(pidfile.read_text())
    op.on_kill()
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert errors and "exited with code" in str(errors[0])
    deadline = time.monotonic() + 10
    while is_running(grandchild):
        assert time.monotonic() < deadline, "the grandchild survived on_kill"
        time.sleep(0.1)


def test_operator_constructor_is_keyword_only_and_validates_stage():
    with pytest.raises(TypeError):
        RuntimeProbeOperator("probe", "p", "/tmp")  # type: ignore[misc]
    from airflow_provider_mlpipe.operators.stage import MlpipeStageOperator

    with pytest.raises(KeyError, match="Unknown stage 'nope'"):
        MlpipeStageOperator(task_id="x", stage="nope", pipeline="p", pipeline_root="/tmp")
