"""The data stages through real Airflow (`airflow dags test`), the real runtime and a real MLMD store.

Days 1 and 2 of the penguin spans run first; then a re-run of day 2 must be served from the cache, and a
corrupted day 3 (dropped column, changed type, shifted distributions) must give the right anomalies and drift
while every artifact of the earlier spans stays byte-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.airflow_env import AirflowEnv, mlmd_dump
from tests.support.paths import REPO
from tests.support.trees import in_staging, tree_checksums

pytestmark = pytest.mark.integration

DAGS = REPO / "tests" / "dags"
SPANS = REPO / "dags" / "data" / "penguins"
DAG_ID = "mlpipe_data_stages"
TASKS = ("example_gen", "statistics_gen", "schema_gen", "example_validator")
TYPES = {
    "example_gen": "mlpipe.ExampleGen",
    "statistics_gen": "mlpipe.StatisticsGen",
    "schema_gen": "mlpipe.SchemaGen",
    "example_validator": "mlpipe.ExampleValidator",
}


def results(airflow: AirflowEnv, run_id: str) -> dict[str, dict]:
    return {task: airflow.xcom(DAG_ID, task, run_id=run_id) for task in TASKS}


def corrupt(src: Path, dst: Path) -> None:
    """Drop bill_depth_mm, turn body_mass_g into text, add 60 mm to flippers, put every bird on Biscoe."""
    lines = src.read_text().splitlines()
    header = lines[0].split(",")
    out = [",".join(c for c in header if c != "bill_depth_mm")]
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=True))
        del row["bill_depth_mm"]
        row["island"] = "Biscoe"
        if row["body_mass_g"] != "NA":
            row["body_mass_g"] += " g"
        if row["flipper_length_mm"] != "NA":
            row["flipper_length_mm"] = str(int(row["flipper_length_mm"]) + 60)
        out.append(",".join(row.values()))
    dst.write_text("\n".join(out) + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An Airflow home, a pipeline folder with three spans, and days 1 and 2 run once."""
    tmp = tmp_path_factory.mktemp("data-stages")
    data = tmp / "spec" / "data" / "penguins"
    data.mkdir(parents=True)
    for day in ("01", "02", "03"):
        shutil.copy(SPANS / f"span-2024-01-{day}.csv", data)
    airflow = AirflowEnv(
        tmp / "airflow",
        DAGS,
        {"MLPIPE_TEST_PIPELINE_ROOT": str(tmp / "root"), "MLPIPE_TEST_DATA_ROOT": str(tmp / "spec")},
    )
    airflow.migrate()
    for day in ("2024-01-01", "2024-01-02"):
        airflow.dags_test(DAG_ID, day)
    return {"airflow": airflow, "tmp": tmp, "runs": airflow.run_ids(DAG_ID)}


def test_two_spans_artifacts_lineage_and_cache(world: dict) -> None:
    airflow: AirflowEnv = world["airflow"]
    root: Path = world["tmp"] / "root"
    run1, run2 = world["runs"]
    assert airflow.task_states(DAG_ID, run2) == dict.fromkeys(TASKS, "success")
    day1, day2 = results(airflow, run1), results(airflow, run2)

    examples = day2["example_gen"]["outputs"]["examples"][0]
    assert examples["properties"]["span"] == 20240102 and examples["properties"]["format"] == "parquet"
    assert sum(examples["properties"]["row_counts"].values()) == 69
    assert Path(examples["uri"], "Split-train", "data-00000.parquet").is_file()
    statistics = day2["statistics_gen"]["outputs"]["statistics"][0]
    assert statistics["properties"]["path"] == "arrow" and statistics["properties"]["span"] == 20240102
    for split in ("train", "eval"):
        assert Path(statistics["uri"], f"Split-{split}", "FeatureStats.pb").stat().st_size > 0
        assert "<" in Path(statistics["uri"], f"Split-{split}", "stats.html").read_text()[:200]
    summary = json.loads(Path(statistics["uri"], "summary.json").read_text())
    assert summary["splits"]["train"]["num_examples"] == examples["properties"]["row_counts"]["train"]
    schema = day2["schema_gen"]["outputs"]["schema"][0]
    assert schema["properties"]["source"] == "inferred" and schema["properties"]["diff"] == []
    assert 'name: "island"' in Path(schema["uri"], "schema.pbtxt").read_text()
    anomalies = day2["example_validator"]["outputs"]["anomalies"][0]
    report = json.loads(Path(anomalies["uri"], "anomalies.json").read_text())
    assert report["blessed"] is True and report["span"] == 20240102 and report["counts"] == {}
    assert anomalies["properties"]["blessed"] == 1 and anomalies["properties"]["anomaly_count"] == 0
    assert (
        day2["example_validator"]["summary"]["previous_statistics_id"]
        == (day1["statistics_gen"]["outputs"]["statistics"][0]["id"])
    )

    dump = mlmd_dump(airflow.mlmd_path)
    executions = {e["id"]: e for e in dump["executions"]}
    assert len(executions) == 8 and {e["state"] for e in executions.values()} == {"COMPLETE"}
    contexts = {c["id"]: c for c in dump["contexts"]}
    for task in TASKS:
        execution = executions[day2[task]["execution_id"]]
        assert execution["type"] == TYPES[task]
        names = sorted(contexts[c]["name"] for c in execution["contexts"])
        assert names == sorted(["penguins_data", f"penguins_data.{run2}", f"penguins_data.{task}"])
    events = {(e["execution_id"], e["type"], e["slot"]): e["artifact_id"] for e in dump["events"]}
    validator = day2["example_validator"]["execution_id"]
    assert events[(validator, "INPUT", "statistics")] == statistics["id"]
    assert events[(validator, "INPUT", "schema")] == schema["id"]
    assert (
        events[(validator, "INPUT", "previous_statistics")] == day1["statistics_gen"]["outputs"]["statistics"][0]["id"]
    )
    assert events[(validator, "OUTPUT", "anomalies")] == anomalies["id"]
    assert events[(day2["statistics_gen"]["execution_id"], "INPUT", "examples")] == examples["id"]

    # Re-running day 2 reuses every output: nothing is written, four CACHED executions are recorded.
    before = tree_checksums(root, in_staging)
    airflow.dags_test(DAG_ID, "2024-01-02")
    rerun = results(airflow, airflow.run_ids(DAG_ID)[-1])
    for task in TASKS:
        assert rerun[task]["cached"] is True, task
        assert rerun[task]["summary"]["cached_from"] == day2[task]["execution_id"]
    assert rerun["example_validator"]["outputs"]["anomalies"][0]["id"] == anomalies["id"]
    assert tree_checksums(root, in_staging) == before
    states = [e["state"] for e in mlmd_dump(airflow.mlmd_path)["executions"]]
    assert states.count("CACHED") == 4 and states.count("COMPLETE") == 8


def test_corrupt_span_gives_anomalies_and_drift_and_leaves_earlier_spans_alone(world: dict) -> None:
    airflow: AirflowEnv = world["airflow"]
    tmp: Path = world["tmp"]
    # The newest run is day 2 (its re-run, if the cache test ran: `dags test` replaces a run of the same date).
    day2 = results(airflow, airflow.run_ids(DAG_ID)[-1])
    # A data engineer curates the schema: day 2's inferred schema, committed beside the pipeline.
    shutil.copy(Path(day2["schema_gen"]["outputs"]["schema"][0]["uri"], "schema.pbtxt"), tmp / "spec" / "schema.pbtxt")
    corrupt(SPANS / "span-2024-01-03.csv", tmp / "spec" / "data" / "penguins" / "span-2024-01-03.csv")
    before = tree_checksums(tmp / "root", in_staging)

    airflow.dags_test(DAG_ID, "2024-01-03", env={"MLPIPE_TEST_SCHEMA_FILE": "schema.pbtxt"})

    run3 = airflow.run_ids(DAG_ID)[-1]
    assert airflow.task_states(DAG_ID, run3) == dict.fromkeys(TASKS, "success")  # anomalies do not fail the task
    day3 = results(airflow, run3)
    schema = day3["schema_gen"]["outputs"]["schema"][0]["properties"]
    assert schema["source"] == "imported" and schema["diff"] == []
    anomalies = day3["example_validator"]["outputs"]["anomalies"][0]
    report = json.loads(Path(anomalies["uri"], "anomalies.json").read_text())
    found = {(a["feature"], a["kind"], a["type"]) for a in report["anomalies"] if a["split"] == "train"}
    assert found == {
        ("bill_depth_mm", "schema", "SCHEMA_MISSING_COLUMN"),
        ("body_mass_g", "schema", "UNEXPECTED_DATA_TYPE"),
        ("flipper_length_mm", "drift", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"),
        ("island", "drift", "COMPARATOR_L_INFTY_HIGH"),
    }
    assert report["blessed"] is False and report["span"] == 20240103
    assert report["features"] == ["bill_depth_mm", "body_mass_g", "flipper_length_mm", "island"]
    props = anomalies["properties"]
    assert props["blessed"] == 0 and props["span"] == 20240103
    assert props["anomaly_count"] == len(report["anomalies"]) and props["severity_counts"] == report["counts"]
    assert (
        day3["example_validator"]["summary"]["previous_statistics_id"]
        == (day2["statistics_gen"]["outputs"]["statistics"][0]["id"])
    )
    drift = {(m["feature"], m["split"]): m["value"] for m in report["measurements"] if m["kind"] == "drift"}
    assert drift[("flipper_length_mm", "train")] > 0.5 and drift[("island", "train")] > 0.4
    # MLMD holds every feature's train score, configured or not, so the UI trends drift without opening files.
    [recorded] = [a for a in mlmd_dump(airflow.mlmd_path)["artifacts"] if a["id"] == anomalies["id"]]
    scores = recorded["properties"]["drift_scores"]
    assert scores["flipper_length_mm"] == {
        "comparator": "jsd",
        "score": drift[("flipper_length_mm", "train")],
        "threshold": 0.5,
    }
    assert scores["species"] == {"comparator": "linf", "score": drift[("species", "train")], "threshold": None}

    after = tree_checksums(tmp / "root", in_staging)
    assert {k: after.get(k) for k in before} == before  # every earlier artifact file is byte-identical
    assert len(after) > len(before)
