"""A spec written by ``mlpipe init`` for a multi-class and for a regression label, every stage in the runtime.

The same generated customer CSV as the Airflow test of the binary case (``tests/support/tabular_data.py``):
``mlpipe init --kind multiclass`` on the ``plan`` column and ``--kind regression`` on ``income``, the spec loaded
as Airflow loads it, then ExampleGen to Pusher through the runner with MLMD, as ``test_model_e2e.py`` runs the
penguins spec (``tests/support/spec_runs.py``). The Evaluator gets its label key and metrics from the built-in
transform's label.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.spec.validate import load_pipeline
from airflow_provider_mlpipe.stages.tabular import DEFAULT_METRICS
from tests.support.mlmd import sqlite_client
from tests.support.paths import REPO
from tests.support.spec_runs import day_runner, run_every_stage
from tests.support.tabular_data import write_churn_csv

pytestmark = pytest.mark.runtime


def _init(folder: Path, name: str, label: str, kind: str) -> Path:
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "mlpipe"), "init", name, "--data", "data/churn.csv", "--label", label,
         "--kind", kind],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / "dags" / "pipelines" / f"{name}.yaml"


@pytest.mark.parametrize(("label", "kind"), [("plan", "multiclass"), ("income", "regression")])
def test_an_init_spec_runs_every_stage(tmp_path: Path, label: str, kind: str) -> None:
    write_churn_csv(tmp_path / "data" / "churn.csv", rows=600)
    (tmp_path / "dags").mkdir()
    shutil.copy(REPO / "dags" / "mlpipe_dags.py", tmp_path / "dags" / "mlpipe_dags.py")
    name = f"customers_{kind}"
    spec_path = _init(tmp_path, name, label, kind)
    assert f"kind: {kind}" in spec_path.read_text() and "module_file" not in spec_path.read_text()
    pipeline = load_pipeline(spec_path)
    params = {stage: dict(values) for stage, values in pipeline.stage_params.items()}
    params["pusher"]["destination"] = str(tmp_path / "serving")
    assert params["evaluator"]["label_key"] == f"{label}_xf"
    client = sqlite_client(tmp_path)

    stage = day_runner(client, name, params, root=tmp_path / "root", spec_dir=str(pipeline.base_dir), day=1)
    results = run_every_stage(stage)  # asserts the model blessed before its push
    assert results["pusher"].artifact("pushed_model").properties["version"] == 1
    assert model_versions.list_versions(str(tmp_path / "serving")) == [1]

    evaluation = results["evaluator"]
    metrics = json.loads(Path(evaluation.artifact("evaluation").uri, "metrics.json").read_text())
    overall = next(s["metrics"] for s in metrics["slices"] if s["slice"] == "Overall")
    expected = {m.get("name") or m["class_name"] for m in DEFAULT_METRICS[kind]}
    assert len(overall) == len(expected), overall
    if kind == "multiclass":
        assert overall["sparse_categorical_accuracy"] > 0.4  # three plans, the label depends on the features
    else:
        assert overall["root_mean_squared_error"] ** 2 == pytest.approx(overall["mean_squared_error"], rel=1e-4)
