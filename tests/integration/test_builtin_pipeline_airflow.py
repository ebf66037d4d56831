"""A pipeline from YAML alone: ``mlpipe init`` on a generated CSV (numeric, categorical and missing values, a
binary label), then ``airflow dags test`` on the spec it wrote, unedited. The run is BLESSED and pushed, its AUC
on the eval split is above 0.8, and the served model answers raw tf.Examples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO, RUNTIME_PYTHON
from tests.support.tabular_data import write_churn_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "churn"
# Loads the pushed SavedModel in the runtime venv and scores raw tf.Examples (JSON rows; ints, floats, strings).
SERVE = """
import json, sys
import tensorflow as tf

def feature(value):
    if isinstance(value, str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    if isinstance(value, int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))

model = tf.saved_model.load(sys.argv[1])
rows = json.loads(sys.argv[2])
examples = [tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in row.items()}))
            for row in rows]
outputs = model.signatures["serving_default"](examples=tf.constant([e.SerializeToString() for e in examples]))
print(json.dumps({name: value.numpy().tolist() for name, value in outputs.items()}))
"""
# A customer who calls support often on a basic plan after a month, and a loyal one: raw columns, label aside.
LIKELY = {"customer_id": "C99998", "age": 35, "income": 30000.0, "tenure_months": 1, "plan": "basic",
          "region": "north", "support_calls": 6, "signup": "2023-05-01"}  # fmt: skip
LOYAL = {**LIKELY, "customer_id": "C99999", "tenure_months": 70, "plan": "pro", "support_calls": 0, "income": 60000.0}


def mlpipe_init(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "mlpipe"), "init", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def serve(model_dir: Path, rows: list[dict]) -> list[float]:
    proc = subprocess.run(
        [RUNTIME_PYTHON, "-c", SERVE, str(model_dir), json.dumps(rows)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    [scores] = json.loads(proc.stdout.strip().splitlines()[-1]).values()  # the model's one output
    return [row[0] if isinstance(row, list) else row for row in scores]


def test_init_then_dags_test_blesses_pushes_and_serves(tmp_path, make_airflow):
    write_churn_csv(tmp_path / "data" / "churn.csv", rows=800)
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "mlpipe_dags.py", dags / "mlpipe_dags.py")
    mlpipe_init(tmp_path, DAG_ID, "--data", "data/churn.csv", "--label", "churned")
    spec = (dags / "pipelines" / f"{DAG_ID}.yaml").read_text()
    assert "module_file" not in spec and 'positive: "yes"' in spec

    serving = tmp_path / "serving"
    env = make_airflow(dags, MLPIPE_PIPELINE_ROOT=str(tmp_path / "root"), MLPIPE_SERVING_ROOT=str(serving))
    proc = env.dags_test(DAG_ID, check=False)
    states = env.task_states(DAG_ID)
    assert set(states.values()) == {"success"} and len(states) == 10, (states, proc.stdout[-6000:])
    assert (dags / "pipelines" / f"{DAG_ID}.yaml").read_text() == spec  # run as written

    evaluator = env.xcom(DAG_ID, "evaluator")["outputs"]
    blessing = Path(evaluator["blessing"][0]["uri"])
    assert (blessing / "BLESSED").exists(), (blessing / "NOT_BLESSED").read_text()
    metrics = json.loads(Path(evaluator["evaluation"][0]["uri"], "metrics.json").read_text())
    assert metrics["label_key"] == "churned_xf"
    overall = next(s["metrics"] for s in metrics["slices"] if s["slice"] == "Overall")
    assert overall["auc"] > 0.8, overall
    assert {"auc_precision_recall", "precision", "recall", "binary_accuracy", "calibration"} <= set(overall)

    versions = [p.name for p in (serving / DAG_ID).iterdir() if not p.name.startswith(".")]
    assert versions == ["1"]
    likely, loyal = serve(serving / DAG_ID / "1", [LIKELY, LOYAL])
    assert 0.0 <= loyal < likely <= 1.0 and likely > 0.5 > loyal, (likely, loyal)
