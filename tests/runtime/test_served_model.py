"""The served model judged on every new span, through the real stages, a real MLMD and the real UI code.

Spans 1 and 2 of the penguins spec run and are pushed (versions 1 and 2); then serving is rolled back to version 1
(a copy becomes version 3), and span 3 arrives with its labels drifted (each species named as the next one), so the
model in production gets most of it wrong. Span 1 has nothing served; span 2 is scored with version 1, which holds
its baseline; span 3 with version 3, the rolled-back span-1 model, which is not its baseline (span 2's model is).
The pipeline view's served trend must show the drop, and a served model that cannot score a span must be recorded
as failed without failing the run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
from airflow_provider_mlpipe.runtime.executors import evaluator
from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient, properties_of
from airflow_provider_mlpipe.runtime.serving import model_versions
from airflow_provider_mlpipe.spec.validate import load_pipeline
from airflow_provider_mlpipe.stages import SERVED_MODEL_EVALUATION
from tests.runtime.model_fixtures import REPO, make_context
from tests.support.spec_runs import day_runner, run_every_stage

pytestmark = pytest.mark.runtime
DATA = REPO / "dags" / "data" / "penguins"
NEXT_SPECIES = {"Adelie": "Chinstrap", "Chinstrap": "Gentoo", "Gentoo": "Adelie"}
AIRFLOW_PYTHON = REPO / ".venv" / "bin" / "python"


def span(day: int) -> int:
    return 20240100 + day


def write_spans(folder: Path) -> None:
    """Spans 1 and 2 as shipped; span 3 with every label moved to the next species (the features are unchanged)."""
    folder.mkdir()
    for day in (1, 2):
        shutil.copy(DATA / f"span-2024-01-0{day}.csv", folder / f"span-2024-01-0{day}.csv")
    with open(DATA / "span-2024-01-03.csv", newline="") as src, open(folder / "span-2024-01-03.csv", "w") as dst:
        rows = list(csv.DictReader(src))
        writer = csv.DictWriter(dst, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "species": NEXT_SPECIES.get(row["species"], row["species"])} for row in rows)


class ServedRuns:
    def __init__(self, root: Path) -> None:
        spec = load_pipeline(REPO / "dags" / "pipelines" / "penguins.yaml")
        self.spec_dir = str(spec.base_dir)
        self.params = {name: dict(values) for name, values in spec.stage_params.items()}
        self.root = root
        write_spans(root / "data")
        self.params["example_gen"]["input"] = {
            **self.params["example_gen"]["input"],
            "pattern": str(root / "data" / "span-{YYYY}-{MM}-{DD}.csv"),
        }
        self.destination = str(root / "serving")
        self.params["pusher"]["destination"] = self.destination
        self.params["trainer"]["train_steps"] = 100
        for metric in self.params["evaluator"]["metrics"]:  # every model is blessed and pushed: this is about serving
            metric["threshold"] = {"lower_bound": 0.0, "change": {"direction": "higher_is_better", "absolute": -1.0}}
        self.mlmd = root / "mlmd.sqlite"
        self.client = MetadataClient({"backend": "sqlite", "path": str(self.mlmd)})
        self.runs: dict[int, dict[str, StageResult]] = {}

    def run(self, day: int) -> None:
        stage = day_runner(
            self.client, "penguins", self.params, root=self.root / "root", spec_dir=self.spec_dir, day=day
        )
        self.runs[day] = run_every_stage(stage)

    def artifact(self, day: int, stage: str, slot: str) -> ArtifactRef:
        return self.runs[day][stage].artifact(slot)

    def served_metrics(self, day: int) -> dict:
        return json.loads(Path(self.artifact(day, "evaluator", "served_evaluation").uri, "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> ServedRuns:
    served = ServedRuns(tmp_path_factory.mktemp("served-model"))
    for day in (1, 2):
        served.run(day)
    rollback = model_versions.rollback(served.destination, "penguins", to_version=1, client=served.client)
    assert rollback["version"] == 3
    served.run(3)
    return served


def overall(document: dict) -> dict:
    return next(s["metrics"] for s in document["slices"] if s["slice"] == "Overall")


def test_mlmd_holds_a_served_evaluation_per_span_tied_to_the_served_version(runs: ServedRuns) -> None:
    recorded = runs.client.live_artifacts("penguins", SERVED_MODEL_EVALUATION)
    assert len(recorded) == 3
    by_span = {properties_of(a)["span"]: a for a in recorded}
    assert sorted(by_span) == [span(d) for d in (1, 2, 3)]
    first = properties_of(by_span[span(1)])
    assert first["status"] == "no_served_model" and "served_version" not in first
    assert "nothing is scored" in runs.served_metrics(1)["reason"]
    model = {day: runs.artifact(day, "trainer", "model").id for day in (1, 2)}
    pushed = runs.artifact(1, "pusher", "pushed_model")
    rolled_back = [
        runs.client.artifact_ref(a)
        for a in runs.client.live_artifacts("penguins", "PushedModel")
        if properties_of(a).get("rollback_of") == 1
    ]
    # span -> (served version, the model it holds, its PushedModel, scored as the baseline)
    expected = {
        2: (1, model[1], pushed.id, "baseline"),
        3: (3, model[1], rolled_back[0].id, "served model"),
    }
    for day, (version, model_id, pushed_id, scored_with) in expected.items():
        props = properties_of(by_span[span(day)])
        assert props["status"] == "scored", props
        assert (props["served_version"], props["served_model_id"], props["pushed_model_id"]) == (
            version,
            model_id,
            pushed_id,
        )
        assert runs.served_metrics(day)["scored_with"] == scored_with
        # Tied in the lineage: the Evaluator read the PushedModel (an INPUT event) and wrote this artifact.
        execution_id = runs.runs[day]["evaluator"].execution_id
        events = runs.client.store.get_events_by_execution_ids([execution_id])
        inputs = {e.artifact_id for e in events if e.type == pb.Event.INPUT}
        outputs = {e.artifact_id for e in events if e.type == pb.Event.OUTPUT}
        assert pushed_id in inputs and by_span[span(day)].id in outputs
        assert props["overall"] == overall(runs.served_metrics(day))
    # Span 3's baseline is span 2's model, not the served one: the served model was scored on its own.
    assert runs.artifact(3, "evaluator", "blessing").properties["baseline_model_id"] == model[2]


def test_the_served_model_scores_worse_on_the_drifted_span(runs: ServedRuns) -> None:
    accuracy = {day: overall(runs.served_metrics(day))["accuracy"] for day in (2, 3)}
    print(f"served model accuracy by day: {accuracy}")
    assert accuracy[2] > 0.7 and accuracy[3] < 0.3, accuracy
    # The same figures through the summary the task returns.
    assert runs.runs[3]["evaluator"].summary["served"]["overall"]["accuracy"] == accuracy[3]
    # The candidate, trained on span 3 itself, learnt the new names: the decay is the served model's alone.
    candidate = json.loads(Path(runs.artifact(3, "evaluator", "evaluation").uri, "metrics.json").read_text())
    print(f"candidate accuracy on the drifted span: {overall(candidate)['accuracy']}")
    assert overall(candidate)["accuracy"] > accuracy[3] + 0.4


def test_an_unchanged_rerun_reuses_the_served_evaluation(runs: ServedRuns) -> None:
    stage = day_runner(
        runs.client, "penguins", runs.params, root=runs.root / "root", spec_dir=runs.spec_dir, day=3,
        run_id="manual__rerun-3",
    )  # fmt: skip
    # Span 3's own push (version 4) is not of an earlier span: version 3 still served span 3, a cache hit.
    examples, model = runs.artifact(3, "example_gen", "examples"), runs.artifact(3, "trainer", "model")
    rerun = stage("evaluator", examples=examples, model=model)
    assert rerun.cached
    assert rerun.artifact("served_evaluation").id == runs.artifact(3, "evaluator", "served_evaluation").id


def test_a_served_model_that_cannot_score_is_recorded_without_failing(runs: ServedRuns, tmp_path: Path) -> None:
    broken = tmp_path / "serving" / "7"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    gone = ArtifactRef("PushedModel", str(tmp_path / "serving" / "6"), 99, "served_model", {"version": 6})
    outputs = {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"}
    outputs["served_evaluation"] = SERVED_MODEL_EVALUATION
    examples, model = runs.artifact(3, "example_gen", "examples"), runs.artifact(3, "trainer", "model")
    inputs = {"examples": [examples], "model": [model]}
    for served, expected in (
        (ArtifactRef("PushedModel", str(broken), 98, "served_model", {"version": 7}), "could not score"),
        (gone, "pruned or deleted"),
    ):
        ctx = make_context(
            tmp_path / str(served.id),
            "evaluator",
            outputs,
            params=runs.params["evaluator"],
            inputs=inputs,
            resolved={"baseline_model": None, "served_model": served},
        )  # fmt: skip
        ctx.spec_dir = runs.spec_dir
        summary = evaluator.execute(ctx)
        assert summary["blessed"] is True and summary["served"]["status"] == "failed"
        out = ctx.output("served_evaluation")
        document = json.loads(Path(out.path, "metrics.json").read_text())
        assert expected in document["reason"] and document["slices"] == []
        assert out.properties["status"] == "failed" and out.properties["served_version"] == served.properties["version"]


def test_the_pipeline_view_plots_the_served_model_drop(runs: ServedRuns, tmp_path: Path) -> None:
    run_ids = [f"scheduled__2024-01-0{day}" for day in (1, 2, 3)]
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    proc = subprocess.run(
        [str(AIRFLOW_PYTHON), str(REPO / "tests/support/render_ui_pages.py"), str(runs.mlmd), "penguins", *run_ids],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = json.loads(proc.stdout.strip().splitlines()[-1])
    html = pages["pipeline"]
    start = html.index('id="served-trend-accuracy-Overall"')
    card = html[start : html.index("</div>", start)]
    accuracy = {day: overall(runs.served_metrics(day))["accuracy"] for day in (2, 3)}
    values = [float(v) for v in re.findall(r'fill="[^"]+" data-value="([0-9.e-]+)"><title>served', card)]
    assert values == [accuracy[2], accuracy[3]] and values[1] < values[0]
    assert f"served model = {accuracy[3]:.4g} (span {span(3)})" in card
    assert f"served version per span: {span(1)}: none, {span(2)}: 1, {span(3)}: 3" in card
    run3 = pages["runs"][run_ids[2]]
    assert '<b id="served-version">3</b>' in run3
    assert f'data-metric="accuracy" data-slice="Overall">{accuracy[3]:.4g}' in run3
    assert "No model of an earlier span has been pushed yet" in pages["runs"][run_ids[0]]
