"""How a gate waits: ``deferrable`` defaults to Airflow's config, ``mode`` applies when not deferring, and asking
for both a deferral and a reschedule is refused, in Python and at lint time.

The waiting itself runs for real in tests/integration/test_gates_airflow.py (a deferred gate on a real triggerer
next to a reschedule-mode gate); here the task instance is a stand-in.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowRescheduleException

from airflow_provider_mlpipe.cli.lint import lint_paths
from airflow_provider_mlpipe.factory import build_dag
from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
from airflow_provider_mlpipe.sensors import DataValidationSensor, ModelBlessingSensor
from airflow_provider_mlpipe.spec.validate import load_pipeline
from airflow_provider_mlpipe.version_compat import conf
from tests.support.paths import AIRFLOW_PYTHON, REPO
from tests.support.spec_fixtures import full_spec, make_dags_folder

SENSOR_DEFAULTS = """
import json
from airflow_provider_mlpipe.sensors import DataValidationSensor, ModelBlessingSensor
print(json.dumps([DataValidationSensor(task_id="d").deferrable, ModelBlessingSensor(task_id="b").deferrable]))
"""


@pytest.mark.parametrize("setting", ["True", "False"])
def test_deferrable_defaults_to_airflows_operators_default_deferrable(setting: str, tmp_path: Path) -> None:
    # Read at import, like official providers, so each setting needs its own interpreter.
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
    proc = subprocess.run(
        [AIRFLOW_PYTHON, "-c", SENSOR_DEFAULTS], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [setting == "True"] * 2


def test_this_process_follows_its_own_airflow_config() -> None:
    expected = conf.getboolean("operators", "default_deferrable", fallback=False)
    assert DataValidationSensor(task_id="d").deferrable is expected
    assert DataValidationSensor(task_id="d", deferrable=not expected).deferrable is (not expected)


@pytest.mark.parametrize("sensor", [DataValidationSensor, ModelBlessingSensor])
def test_deferring_and_rescheduling_at_once_is_refused(sensor: type) -> None:
    with pytest.raises(ValueError, match=r"cannot both defer and reschedule.*Pass deferrable=False to reschedule"):
        sensor(task_id="g", deferrable=True, mode="reschedule")
    assert sensor(task_id="g", deferrable=False, mode="reschedule").mode == "reschedule"


def test_reschedule_mode_is_honoured_when_not_deferring(tmp_path: Path) -> None:
    # No verdict yet: a reschedule-mode sensor gives its worker slot back instead of sleeping or deferring.
    ref = ArtifactRef("ModelBlessing", str(tmp_path), 41, "blessing", {})
    result = StageResult(stage="evaluator", execution_id=40, cached=False, outputs={"blessing": [ref]}).to_dict()
    ti = mock.Mock()
    ti.xcom_pull.return_value = result
    ti.get_first_reschedule_date.return_value = None
    sensor = ModelBlessingSensor(task_id="b", deferrable=False, mode="reschedule", poke_interval=30, timeout=600)
    with pytest.raises(AirflowRescheduleException):
        sensor.execute({"ti": ti, "run_id": "manual__1"})


def _gates(tmp_path: Path, gates: str) -> Path:
    dags = make_dags_folder(tmp_path, {"gated": full_spec("gated", gates)}, dag_file=False)
    return dags / "pipelines" / "gated.yaml"


def test_a_spec_asking_to_defer_and_reschedule_fails_lint_with_file_line_and_field(tmp_path: Path) -> None:
    spec = _gates(
        tmp_path,
        """\
        gates:
          data_validation: {policy: fail}
          blessing:
            deferrable: true
            mode: reschedule
        """,
    )
    line = spec.read_text().splitlines().index("    mode: reschedule") + 1
    lines = lint_paths([spec])
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        f"gated.yaml:{line}: gates.blessing.mode: mode: reschedule cannot be combined with deferrable: true "
        "(a deferred gate waits on the triggerer and never reschedules). Set deferrable: false to reschedule, or "
        "drop mode to defer."
    ), lines


def test_spec_gates_default_to_airflows_config_and_reschedule_means_no_deferral(tmp_path: Path) -> None:
    spec = _gates(
        tmp_path,
        """\
        gates:
          data_validation: {mode: reschedule}
          blessing: {}
        """,
    )
    dag = build_dag(load_pipeline(spec))
    data_gate, blessing_gate = dag.get_task("data_validation_gate"), dag.get_task("blessing_gate")
    assert (data_gate.deferrable, data_gate.mode) == (False, "reschedule")
    airflow_default = conf.getboolean("operators", "default_deferrable", fallback=False)
    assert (blessing_gate.deferrable, blessing_gate.mode) == (airflow_default, "poke")

    explicit = _gates(tmp_path / "explicit", "gates:\n  blessing: {deferrable: true}\n")
    assert build_dag(load_pipeline(explicit)).get_task("blessing_gate").deferrable is True
