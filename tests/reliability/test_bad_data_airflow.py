"""Bad data end to end under real Airflow: a day whose file lost its label column never reaches serving.

Injects: the penguins pipeline (the bundled spec and modules) runs a good day, then a day whose CSV has no
`species` column. Must hold: the good day pushes version 1; the bad day fails at the data-validation gate with the
dropped column named in the task output, no later stage runs, the serving directory is byte-identical, and MLMD
records the gate's decision to withhold the push.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.support.airflow_env import REPO, mlmd_dump
from tests.support.trees import tree_digest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def drop_column(source: Path, target: Path, column: str) -> None:
    with source.open(newline="") as src, target.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        fields = [f for f in reader.fieldnames or [] if f != column]
        writer = csv.DictWriter(dst, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(reader)


@pytest.fixture
def airflow(make_airflow, tmp_path):
    dags = tmp_path / "dags"
    shutil.copytree(REPO / "dags", dags, ignore=shutil.ignore_patterns("__pycache__", "data"))
    spans = dags / "data" / "penguins"
    spans.mkdir(parents=True)
    shutil.copy(REPO / "dags" / "data" / "penguins" / "span-2024-01-01.csv", spans)
    drop_column(REPO / "dags" / "data" / "penguins" / "span-2024-01-02.csv", spans / "span-2024-01-02.csv", "species")
    return make_airflow(
        dags,
        MLPIPE_PIPELINE_ROOT=str(tmp_path / "pipelines"),
        MLPIPE_SERVING_DIR=str(tmp_path / "serving"),
        MLPIPE_ENVIRONMENT="dev",
    )


def test_a_day_without_its_label_column_is_stopped_before_the_push(airflow, tmp_path):
    airflow.dags_test("penguins", "2024-01-01")
    serving = tmp_path / "serving"
    assert sorted(p.name for p in serving.iterdir() if not p.name.startswith(".")) == ["1"]
    before = tree_digest(serving)

    proc = airflow.dags_test("penguins", "2024-01-02", check=False)

    output = proc.stdout + proc.stderr
    assert "Data validation gate fails the run" in output
    assert "species [ERROR]" in output and "Column dropped since the previous schema" in output
    states = airflow.task_states("penguins")
    assert states["example_validator"] == "success" and states["data_validation_gate"] == "failed"
    assert {states[t] for t in ("transform", "trainer", "evaluator", "pusher")} == {"upstream_failed"}
    assert tree_digest(serving) == before

    dump = mlmd_dump(airflow.mlmd_path)
    [gate] = [e for e in dump["executions"] if e["type"] == "mlpipe.Gate" and e["properties"]["decision"] == "fail"]
    assert gate["properties"]["push_withheld"] == 1 and "species" in gate["properties"]["reason"]
    pushed = [a for a in dump["artifacts"] if a["type"] == "PushedModel"]
    assert [a["properties"]["version"] for a in pushed] == [1]
