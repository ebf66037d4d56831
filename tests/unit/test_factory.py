"""The DAG factory: structure, wiring, gates, overlays, assets, parsing context, import errors, parse cost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_mlpipe.factory import build_dag, load_pipelines
from airflow_provider_mlpipe.spec.errors import SpecErrors
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.paths import REPO
from tests.support.spec_fixtures import full_spec, make_dags_folder


def build(tmp_path: Path, text: str, environment: str | None = None):
    dags = make_dags_folder(tmp_path, {"p": text}, dag_file=False)
    return build_dag(load_pipeline(dags / "pipelines" / "p.yaml", environment=environment))


def upstream(dag, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).upstream_task_ids)


def test_full_pipeline_structure_and_wiring(tmp_path):
    dag = build(tmp_path, full_spec())
    assert dag.dag_id == "full"
    assert dag.schedule == "@daily" and dag.catchup is False
    assert dag.start_date.isoformat() == "2024-01-01T00:00:00+00:00"
    assert sorted(dag.tags) == ["mlpipe", "test"]
    assert {t.task_id for t in dag.tasks} == {
        "example_gen",
        "statistics_gen",
        "schema_gen",
        "example_validator",
        "transform",
        "trainer",
        "evaluator",
        "pusher",
    }
    trainer = dag.get_task("trainer")
    assert trainer.inputs == {
        "examples": "transform.transformed_examples",
        "schema": "schema_gen.schema",
        "transform_graph": "transform.transform_graph",
    }
    assert dag.get_task("evaluator").inputs == {"examples": "example_gen.examples", "model": "trainer.model"}
    assert dag.get_task("pusher").inputs == {"model": "trainer.model", "blessing": "evaluator.blessing"}
    assert upstream(dag, "pusher") == {"trainer", "evaluator"}
    assert upstream(dag, "example_validator") == {"statistics_gen", "schema_gen"}
    assert type(trainer).__name__ == "TrainerOperator"
    assert trainer.spec_dir == str((tmp_path / "dags").resolve())
    assert trainer.stage_params["module_file"] == "modules/trainer.py"


def test_beam_args_reach_only_beam_stages(tmp_path):
    dag = build(tmp_path, full_spec())
    args = ["--runner=DirectRunner", "--direct_num_workers=1"]
    for task in dag.tasks:
        beam = task.task_id in ("statistics_gen", "transform", "evaluator")
        assert task.beam_args == (args if beam else []), task.task_id


def test_pushed_model_is_an_asset(tmp_path):
    dag = build(tmp_path, full_spec())
    (asset,) = dag.get_task("pusher").outlets
    assert asset.name == "mlpipe/full/pushed_model"
    assert asset.uri == (tmp_path / "dags" / "serving" / "full").resolve().as_uri()


def test_trainer_reads_raw_examples_without_transform(tmp_path):
    dag = build(
        tmp_path,
        full_spec(extra="").replace(
            "    params: {module_file: ../modules/transform.py}",
            "    enabled: false\n    params: {module_file: ../modules/transform.py}",
        ),
    )
    assert "transform" not in dag.task_ids
    assert dag.get_task("trainer").inputs == {"examples": "example_gen.examples", "schema": "schema_gen.schema"}


def test_added_stage_and_explicit_inputs(tmp_path):
    extra = """\
    gates: {}
    """
    text = full_spec(extra=extra).replace(
        "  pusher:\n",
        "  trainer_wide:\n    kind: trainer\n    params: {module_file: ../modules/trainer.py, train_steps: 50}\n"
        "    inputs: {examples: example_gen.examples}\n  pusher:\n    inputs: {model: trainer_wide.model}\n",
    )
    dag = build(tmp_path, text)
    assert dag.get_task("trainer_wide").inputs["examples"] == "example_gen.examples"
    assert type(dag.get_task("trainer_wide")).__name__ == "TrainerOperator"
    assert dag.get_task("pusher").inputs["model"] == "trainer_wide.model"
    # the evaluator's model is ambiguous only if no canonical `trainer` exists: here `trainer` wins
    assert dag.get_task("evaluator").inputs["model"] == "trainer.model"


def test_ambiguous_implicit_input_asks_for_explicit_inputs(tmp_path):
    text = full_spec().replace(
        "  trainer:\n",
        "  trainer_b:\n    kind: trainer\n    params: {module_file: ../modules/trainer.py, train_steps: 5}\n"
        "  trainer_a:\n    kind: trainer\n",
    )
    with pytest.raises(SpecErrors, match=r"could come from trainer_b\.model, trainer_a\.model"):
        build(tmp_path, text)


def test_cycle_is_a_clear_error(tmp_path):
    text = full_spec().replace(
        "  statistics_gen: {}", "  statistics_gen:\n    inputs: {examples: transform.transformed_examples}"
    )
    with pytest.raises(SpecErrors) as exc_info:
        build(tmp_path, text)
    (error,) = exc_info.value.errors
    assert "form a cycle" in error.message and error.field.startswith("stages.")
    assert "transform" in error.message and "statistics_gen" in error.message


def test_wrong_artifact_type_in_explicit_input(tmp_path):
    text = full_spec().replace("  statistics_gen: {}", "  statistics_gen:\n    inputs: {examples: schema_gen.schema}")
    with pytest.raises(SpecErrors, match="is a Schema, but the 'examples' input takes a Examples"):
        build(tmp_path, text)


def test_gates_sit_between_their_stages(tmp_path):
    extra = """\
    gates:
      data_validation: {policy: skip, ignore_features: [sex], min_severity: ERROR, mode: reschedule}
      blessing: {policy: fail, deferrable: false, poke_interval: 30s, timeout: 2h}
    """
    dag = build(tmp_path, full_spec(extra=extra))
    data_gate, blessing_gate = dag.get_task("data_validation_gate"), dag.get_task("blessing_gate")
    assert type(data_gate).__name__ == "DataValidationSensor"
    assert upstream(dag, "data_validation_gate") == {"example_validator"}
    assert "data_validation_gate" in upstream(dag, "transform") and "data_validation_gate" in upstream(dag, "trainer")
    assert upstream(dag, "blessing_gate") == {"evaluator"}
    assert "blessing_gate" in upstream(dag, "pusher")
    assert data_gate.policy == "skip" and list(data_gate.ignore_features) == ["sex"] and data_gate.mode == "reschedule"
    assert blessing_gate.poke_interval == 30 and blessing_gate.timeout == 7200 and blessing_gate.deferrable is False
    assert data_gate.upstream_task_id == "example_validator" and blessing_gate.upstream_task_id == "evaluator"


def test_overlay_changes_the_dag(tmp_path):
    extra = """\
    environments:
      dev:
        schedule: null
        max_active_runs: 2
        stages:
          trainer: {params: {train_steps: 1}}
      prod:
        pipeline_root: gs://bucket/root
    """
    text = full_spec(extra=extra)
    dev = build(tmp_path, text, environment="dev")
    assert dev.schedule is None and dev.max_active_runs == 2
    assert dev.get_task("trainer").stage_params["train_steps"] == 1
    prod = build(tmp_path, text, environment="prod")
    assert prod.get_task("trainer").pipeline_root == "gs://bucket/root"
    assert prod.get_task("trainer").stage_params["train_steps"] == 10


def test_schedule_shapes_params_retries_and_callbacks(tmp_path):
    extra = """\
    retries: 3
    retry_delay: 90s
    execution_timeout: {hours: 2}
    on_failure_callback: json.dumps
    params:
      span: {default: null, type: [integer, "null"]}
      note: hello
    """
    dag = build(tmp_path, full_spec(extra=extra).replace('"@daily"', "6h"))
    assert dag.schedule == timedelta(hours=6)
    assert dag.default_args["retries"] == 3 and dag.default_args["retry_delay"] == timedelta(seconds=90)
    assert dag.get_task("trainer").execution_timeout == timedelta(hours=2)
    assert dag.params["note"] == "hello" and dag.params["span"] is None
    assert dag.on_failure_callback is json.dumps or json.dumps in (dag.on_failure_callback or [])


def test_asset_schedule(tmp_path):
    dag = build(tmp_path, full_spec().replace('"@daily"', "[s3://bucket/table, mlpipe/other/pushed_model]"))
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"


def test_load_pipelines_fills_globals_and_keeps_good_dags_next_to_bad_ones(tmp_path):
    dags = make_dags_folder(
        tmp_path,
        {"good": full_spec("good"), "bad": full_spec("bad").replace("train_steps: 10", "train_steps: -3")},
        dag_file=False,
    )
    namespace: dict = {}
    built = load_pipelines(dags / "pipelines", namespace)
    assert list(built) == ["good"]
    assert [d.dag_id for d in namespace.values()] == ["good"]


def test_parsing_context_builds_only_the_tasks_dag(tmp_path, monkeypatch):
    dags = make_dags_folder(tmp_path, {"a": full_spec("a"), "b": full_spec("b")}, dag_file=False)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "b")
    assert list(load_pipelines(dags / "pipelines", {})) == ["b"]
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID")
    assert sorted(load_pipelines(dags / "pipelines", {})) == ["a", "b"]


def test_dagbag_keeps_good_dags_and_records_each_bad_spec(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    dags = make_dags_folder(
        tmp_path,
        {
            "good": full_spec("good"),
            "bad_cron": full_spec("bad_cron").replace('"@daily"', '"61 * * * *"'),
            "bad_key": full_spec("bad_key").replace("catchup:", "catchupp:"),
        },
    )
    bag = DagBag(dag_folder=str(dags), bundle_path=dags, bundle_name="test")
    assert bag.dag_ids == ["good"]
    assert set(bag.import_errors) == {"pipelines/bad_cron.yaml", "pipelines/bad_key.yaml"}
    assert (
        "pipelines/bad_cron.yaml:5: schedule: Invalid cron expression" in bag.import_errors["pipelines/bad_cron.yaml"]
    )
    assert (
        "pipelines/bad_key.yaml:7: catchupp: Unknown key 'catchupp'. Did you mean 'catchup'?"
        in (bag.import_errors["pipelines/bad_key.yaml"])
    )


def test_parsing_imports_no_ml_stack():
    code = textwrap.dedent(
        f"""
        import runpy, sys, json
        runpy.run_path({str(REPO / "dags" / "mlpipe_dags.py")!r})
        banned = ("tensorflow", "tfx_bsl", "tensorflow_data_validation", "tensorflow_model_analysis",
                  "tensorflow_transform", "ml_metadata", "apache_beam", "pyarrow", "keras")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in banned)))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_repository_penguins_spec_builds_all_stages_and_gates():
    dag = build_dag(load_pipeline(REPO / "dags" / "pipelines" / "penguins.yaml"))
    assert dag.dag_id == "penguins" and dag.schedule == "@daily"
    assert len([t for t in dag.tasks if type(t).__module__.endswith("operators.stages")]) == 8
    assert {"data_validation_gate", "blessing_gate"} <= set(dag.task_ids)
    assert dag.get_task("evaluator").stage_params["label_key"] == "species_xf"


def test_runtime_image_gives_pod_operators(tmp_path):
    pytest.importorskip("airflow.providers.cncf.kubernetes")
    extra = """\
    runtime:
      image: registry.example/mlpipe-runtime:1
      namespace: ml
      resources: {requests: {cpu: "1", memory: 2Gi}}
      spec_dir: /opt/pipelines
    """
    dag = build(tmp_path, full_spec(extra=extra))
    trainer = dag.get_task("trainer")
    assert type(trainer).__name__ == "TrainerPodOperator"
    assert trainer.image == "registry.example/mlpipe-runtime:1" and trainer.namespace == "ml"
    assert trainer.spec_dir == "/opt/pipelines"


def test_pod_keys_need_an_image(tmp_path):
    with pytest.raises(SpecErrors, match=r"runtime\.namespace applies to pods only"):
        build(tmp_path, full_spec(extra="runtime: {python: /usr/bin/python3, namespace: ml}\n"))


def test_an_operator_refusing_its_arguments_loses_only_that_dag(tmp_path):
    pytest.importorskip("airflow.providers.cncf.kubernetes")
    bad = full_spec("bad") + "runtime: {image: img:1, env: {MLPIPE_REQUEST: x}}\n"
    dags = make_dags_folder(tmp_path, {"good": full_spec("good"), "bad": bad}, dag_file=False)
    assert list(load_pipelines(dags / "pipelines", {})) == ["good"]


def test_dag_discovery_skips_user_modules_and_data_helpers():
    from airflow.utils.file import list_py_file_paths

    for safe_mode in (True, False):
        found = [Path(p).relative_to(REPO / "dags").as_posix() for p in list_py_file_paths(REPO / "dags", safe_mode)]
        assert found == ["mlpipe_dags.py"], found
