"""Span order across runs: which tasks wait for their previous run, and how dag_run.conf paths resolve."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from airflow_provider_mlpipe.factory import build_dag
from airflow_provider_mlpipe.operators.stages import operator_for
from airflow_provider_mlpipe.spec.conf_paths import resolve_conf_paths
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.paths import REPO
from tests.support.spec_fixtures import full_spec, make_dags_folder

ORDERED = {"schema_gen", "example_validator", "evaluator", "pusher"}


def test_only_the_stages_that_read_earlier_spans_wait_for_their_previous_run():
    dag = build_dag(load_pipeline(REPO / "dags" / "pipelines" / "penguins.yaml"))
    waiting = {t.task_id for t in dag.tasks if t.depends_on_past}
    assert waiting == ORDERED
    for task_id in ORDERED:
        assert dag.get_task(task_id).wait_for_past_depends_before_skipping is True
    # ExampleGen, StatisticsGen, Transform, Trainer and the gates overlap freely across runs.
    free = {t.task_id for t in dag.tasks} - ORDERED
    assert free == {"example_gen", "statistics_gen", "transform", "trainer", "data_validation_gate", "blessing_gate"}
    assert not any(dag.get_task(t).wait_for_past_depends_before_skipping for t in free)


def test_a_renamed_stage_keeps_its_order_because_the_stage_kind_decides(tmp_path):
    text = full_spec().replace("  evaluator:\n", "  evaluate_candidate:\n    kind: evaluator\n")
    dags = make_dags_folder(tmp_path, {"p": text}, dag_file=False)
    dag = build_dag(load_pipeline(dags / "pipelines" / "p.yaml"))
    assert dag.get_task("evaluate_candidate").depends_on_past is True


def conf_for(**stages: dict) -> dict:
    return {"span": 20240102, "stages": stages}


def test_conf_paths_resolve_against_the_spec_folder_like_the_spec(tmp_path):
    base = tmp_path / "dags"
    spec_folder = base / "pipelines"
    (base / "modules").mkdir(parents=True)
    conf = conf_for(
        example_gen={"input": {"pattern": "../data/day-{YYYY}.csv", "splits": None}},
        pusher={"destination": "../serving/p"},
        trainer={"module_file": "../modules/trainer.py", "train_steps": 5},
        schema_gen={"schema_file": "schema.pbtxt"},
        example_validator={"skew": {"serving_statistics": "gs://bucket/stats"}},
        evaluator={"kpi_module": "../modules/kpis.py"},
    )
    got = {
        kind: resolve_conf_paths(conf, kind, kind, spec_folder, base)["stages"][kind]
        for kind in ("example_gen", "pusher", "trainer", "schema_gen", "example_validator", "evaluator")
    }
    assert got["example_gen"]["input"]["pattern"] == str(base / "data" / "day-{YYYY}.csv")
    assert got["pusher"]["destination"] == str(base / "serving" / "p")
    # User files go to the runtime relative to the pipeline folder, exactly as the spec's own module_file does.
    assert got["trainer"] == {"module_file": "modules/trainer.py", "train_steps": 5}
    assert got["schema_gen"]["schema_file"] == "pipelines/schema.pbtxt"
    assert got["evaluator"] == {"kpi_module": "modules/kpis.py"}
    assert got["example_validator"]["skew"]["serving_statistics"] == "gs://bucket/stats"


def test_conf_paths_leave_absolute_paths_other_stages_and_the_original_conf_alone(tmp_path):
    conf = conf_for(pusher={"destination": "/srv/models"}, trainer={"module_file": "../x.py"})
    before = repr(conf)
    resolved = resolve_conf_paths(conf, "pusher", "pusher", tmp_path / "pipelines", tmp_path)
    assert resolved["stages"]["pusher"]["destination"] == "/srv/models"
    assert resolved["stages"]["trainer"] == {"module_file": "../x.py"}  # the trainer's own operator resolves it
    assert resolved["span"] == 20240102 and repr(conf) == before
    assert resolve_conf_paths({"stages": "nonsense"}, "pusher", "pusher", tmp_path, tmp_path) == {"stages": "nonsense"}


def test_a_node_specific_override_resolves_too_and_a_file_outside_the_pipeline_folder_stays_absolute(tmp_path):
    conf = conf_for(second_trainer={"module_file": "../../elsewhere/trainer.py"})
    resolved = resolve_conf_paths(conf, "trainer", "second_trainer", tmp_path / "dags" / "pipelines", tmp_path / "dags")
    assert resolved["stages"]["second_trainer"]["module_file"] == str(tmp_path / "elsewhere" / "trainer.py")


def test_the_operator_sends_the_resolved_conf_to_the_runtime(tmp_path):
    operator = operator_for("example_gen")(
        task_id="example_gen",
        pipeline="p",
        pipeline_root=str(tmp_path / "root"),
        stage_params={"input": {"pattern": "/data/{YYYY}.csv", "format": "csv"}},
        spec_dir=str(tmp_path),
        spec_folder=str(tmp_path / "pipelines"),
    )
    dag_run = SimpleNamespace(conf={"stages": {"example_gen": {"input": {"pattern": "../other/{YYYY}.csv"}}}})
    context = {"dag_run": dag_run, "ti": SimpleNamespace(try_number=1), "run_id": "manual__1"}
    request = operator.build_request(context)
    assert request.conf["stages"]["example_gen"]["input"]["pattern"] == str(Path(tmp_path, "other", "{YYYY}.csv"))
