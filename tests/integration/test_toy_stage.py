"""A stage added from a test-only module (tests/support/toy_stage.py), touching nothing else: the spec accepts
and checks it with file:line:field errors, the factory builds its operator, and the real runtime runs it and
records it in MLMD, finding the stage from the module the request names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

TOY = "tests.support.toy_stage"
RUNTIME_PYTHON = str(REPO / ".venv-runtime" / "bin" / "python")

SPEC = """\
name: toy_pipeline
schedule: null
pipeline_root: {root}
stages:
  hello:
    kind: toy
    params:
      greeting: {greeting}
      repeat: {repeat}
"""

BUILD_DAG = """
import json, sys
from pathlib import Path
from airflow_provider_mlpipe.factory import load_pipelines
dags = {}
load_pipelines(Path(sys.argv[1]), dags)
dag = next(d for d in dags.values() if d.dag_id == "toy_pipeline")
task = dag.get_task("hello")
print(json.dumps({"class": type(task).__name__, "color": task.ui_color, "params": task.stage_params}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLPIPE_STAGE_MODULES"}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _spec_folder(tmp_path: Path, greeting: str = "hi", repeat: int = 2) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.yaml").write_text(SPEC.format(root=tmp_path / "root", greeting=greeting, repeat=repeat))
    return folder


def test_the_spec_and_the_factory_know_the_added_stage(tmp_path: Path) -> None:
    folder = _spec_folder(tmp_path)
    lint = [sys.executable, "-m", "airflow_provider_mlpipe.cli", "lint", str(folder)]
    unknown = subprocess.run(lint, env=_env(), capture_output=True, text=True, check=False)
    assert unknown.returncode == 1 and "Unknown stage 'toy'" in unknown.stdout + unknown.stderr

    ok = subprocess.run(lint, env=_env(MLPIPE_STAGE_MODULES=TOY), capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    bad = _spec_folder(tmp_path / "bad", repeat=11)
    out = subprocess.run(
        [*lint[:-1], str(bad)], env=_env(MLPIPE_STAGE_MODULES=TOY), capture_output=True, text=True, check=False
    )
    assert out.returncode == 1
    assert "toy.yaml:9:" in out.stdout and "stages.hello.params.repeat" in out.stdout, out.stdout

    built = subprocess.run(
        [sys.executable, "-c", BUILD_DAG, str(folder)],
        env=_env(MLPIPE_STAGE_MODULES=TOY, AIRFLOW_HOME=str(tmp_path / "airflow")),
        capture_output=True,
        text=True,
        check=True,
    )
    task = json.loads(built.stdout.strip().splitlines()[-1])
    assert task == {"class": "ToyOperator", "color": "#abcdef", "params": {"greeting": "hi", "repeat": 2}}


def test_the_runtime_runs_the_added_stage_from_the_module_the_request_names(tmp_path: Path) -> None:
    from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, StageRequest, StageResult

    request = StageRequest(
        pipeline="toy_pipeline", pipeline_root=str(tmp_path / "root"), stage="toy", node_id="hello",
        run_id="run-1", params={"greeting": "hi", "repeat": 3}, stage_module=TOY,
    )  # fmt: skip
    request.write(tmp_path / "request.json")
    mlmd = tmp_path / "mlmd.sqlite"
    mlmd_env = {MLMD_CONFIG_ENV: json.dumps({"backend": "sqlite", "path": str(mlmd)}), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [RUNTIME_PYTHON, "-m", "airflow_provider_mlpipe.runtime", "run", str(tmp_path / "request.json"),
         "--result", str(tmp_path / "result.json")],
        env=_env(**mlmd_env),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = StageResult.from_dict(json.loads((tmp_path / "result.json").read_text()))
    artifact = result.artifact("greeting")
    assert result.summary == {"text": "hi hi hi"}
    assert json.loads(Path(artifact.uri, "greeting.json").read_text()) == {"text": "hi hi hi"}

    check = subprocess.run(
        [RUNTIME_PYTHON, "-c", MLMD_READ, str(mlmd)], env=_env(), capture_output=True, text=True, check=True
    )
    recorded = json.loads(check.stdout.strip().splitlines()[-1])
    assert recorded == {"type": "ToyGreeting", "length": 8, "execution": "mlpipe.Toy", "state": "COMPLETE"}


MLMD_READ = """
import json, sys
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
config = pb.ConnectionConfig()
config.sqlite.filename_uri = sys.argv[1]
store = metadata_store.MetadataStore(config)
[artifact] = store.get_artifacts_by_type("ToyGreeting")
[execution] = store.get_executions_by_type("mlpipe.Toy")
print(json.dumps({
    "type": store.get_artifact_types_by_id([artifact.type_id])[0].name,
    "length": artifact.custom_properties["length"].int_value,
    "execution": store.get_execution_types_by_id([execution.type_id])[0].name,
    "state": pb.Execution.State.Name(execution.last_known_state),
}))
"""
