"""The spec model and its checks: value shapes, stage params per the contract, files, callbacks, sentences."""

from __future__ import annotations

import sys
import textwrap
from datetime import timedelta

import pytest
from pydantic import ValidationError

from airflow_provider_mlpipe.spec.errors import SpecErrors
from airflow_provider_mlpipe.spec.loader import load_spec
from airflow_provider_mlpipe.spec.model import STAGE_MODELS, AssetSchedule, PipelineSpec, parse_duration
from airflow_provider_mlpipe.spec.validate import check_callback, load_pipeline, validate
from tests.support.spec_fixtures import full_spec, make_dags_folder


def spec_errors(tmp_path, text: str, environment: str | None = None):
    dags = make_dags_folder(tmp_path, {"p": text}, dag_file=False)
    with pytest.raises(SpecErrors) as exc_info:
        validate(load_spec(dags / "pipelines" / "p.yaml", environment=environment), dags)
    return exc_info.value.errors


def one_error(tmp_path, text: str, environment: str | None = None):
    errors = spec_errors(tmp_path, text, environment)
    assert len(errors) == 1, errors
    return errors[0]


def minimal(**fields) -> dict:
    return {"name": "x", "stages": {"probe": {"kind": "probe"}}, **fields}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ({"days": 1, "hours": 2}, timedelta(days=1, hours=2)),
        (30, timedelta(seconds=30)),
    ],
)
def test_durations(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["1 day", "-1d", {"dayz": 1}, {"days": -1}, True, "", -5])
def test_bad_durations(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0 3 * * *", "0 3 * * *"),
        ("@daily", "@daily"),
        ("6h", timedelta(hours=6)),
        ({"days": 1}, timedelta(days=1)),
        (None, None),
    ],
)
def test_schedules(value, expected):
    assert PipelineSpec.model_validate(minimal(schedule=value, start_date="2024-01-01")).schedule == expected


def test_asset_schedules():
    spec = PipelineSpec.model_validate(minimal(schedule=["s3://b/t", "mlpipe/p/pushed_model"]))
    assert spec.schedule == AssetSchedule(assets=["s3://b/t", "mlpipe/p/pushed_model"], logic="all")
    spec = PipelineSpec.model_validate(minimal(schedule={"assets": ["s3://b/t"], "logic": "any"}))
    assert spec.schedule.logic == "any"


@pytest.mark.parametrize("value", ["61 * * * *", "* * * *", "0 0 * * * *", "@dayly", "daily"])
def test_bad_schedules_are_one_error(value):
    with pytest.raises(ValidationError) as exc_info:
        PipelineSpec.model_validate(minimal(schedule=value))
    assert len(exc_info.value.errors()) == 1


# Every parameter of docs/artifacts-and-params.md, per stage.
DOCUMENTED_PARAMS = {
    "example_gen": {
        "input": {"pattern": "d/{SPAN}-{YYYY}{MM}{DD}-{VERSION}.csv", "format": "csv"},
        "splits": {"train": 2, "eval": 1},
        "partition_feature": "id",
        "version": 1,
        "csv": {"delimiter": ";"},
    },
    "statistics_gen": {"mode": "arrow", "arrow_max_bytes": 1024},
    "schema_gen": {"schema_file": "s.pbtxt", "infer_feature_shape": False, "allow_missing": ["sex"]},
    "example_validator": {
        "drift": {"f": {"comparator": "jsd", "threshold": 0.1}},
        "skew": {
            "serving_statistics": "gs://b/stats",
            "serving_split": "serving",
            "f": {"comparator": "linf", "threshold": 0.2},
        },
    },
    "transform": {"module_file": "t.py", "analyze_splits": ["train", "eval"]},
    "trainer": {
        "module_file": "m.py",
        "train_steps": 5,
        "eval_steps": 2,
        "hyperparameters": {"lr": 0.1},
        "train_split": "train",
        "eval_split": "eval",
    },
    "evaluator": {
        "label_key": "y",
        "slices": [[], ["island"]],
        "metrics": [
            {
                "name": "accuracy",
                "class_name": "SparseCategoricalAccuracy",
                "threshold": {
                    "lower_bound": 0.5,
                    "upper_bound": 1.0,
                    "change": {"direction": "higher_is_better", "absolute": -0.1, "relative": -0.2},
                },
            }
        ],
    },
    "pusher": {"destination": "gs://b/serving", "keep_versions": 3, "push_policy": "allow_older_span"},
}
DOCUMENTED_PARAMS["evaluator"] |= {"engine": "fast", "eval_split": "eval", "prediction_key": "probabilities"}


@pytest.mark.parametrize("kind", sorted(DOCUMENTED_PARAMS))
def test_stage_params_accept_every_documented_key(kind):
    stage = STAGE_MODELS[kind].model_validate({"kind": kind, "params": DOCUMENTED_PARAMS[kind]})
    dumped = stage.params.model_dump(exclude_none=True)
    for key in DOCUMENTED_PARAMS[kind]:
        assert key in dumped


@pytest.mark.parametrize("kind", sorted(DOCUMENTED_PARAMS))
def test_stage_params_refuse_undocumented_keys(kind):
    with pytest.raises(ValidationError) as exc_info:
        STAGE_MODELS[kind].model_validate({"kind": kind, "params": {**DOCUMENTED_PARAMS[kind], "bogus": 1}})
    assert [e["type"] for e in exc_info.value.errors()] == ["extra_forbidden"]


def test_example_gen_takes_a_pattern_or_splits(tmp_path):
    split = full_spec(extra="").replace(
        'input: {pattern: "../data/span-{YYYY}-{MM}-{DD}.csv", format: csv}',
        "input: {pattern: a.csv, splits: {train: t.csv}}",
    )
    error = one_error(tmp_path, split)
    assert error.field == "stages.example_gen.params.input" and "exactly one" in error.message


def test_full_spec_validates_and_resolves_paths(tmp_path):
    dags = make_dags_folder(tmp_path, {"full": full_spec()}, dag_file=False)
    pipeline = load_pipeline(dags / "pipelines" / "full.yaml")
    assert pipeline.base_dir == dags.resolve()
    params = pipeline.stage_params
    assert params["transform"]["module_file"] == "modules/transform.py"  # relative to spec_dir for the runtime
    assert params["example_gen"]["input"]["pattern"] == str(dags.resolve() / "data" / "span-{YYYY}-{MM}-{DD}.csv")
    assert params["pusher"]["destination"] == str(dags.resolve() / "serving" / "full")
    assert pipeline.pipeline_root == str(dags.resolve() / "artifacts")
    assert pipeline.beam_args == ["--runner=DirectRunner", "--direct_num_workers=1"]


def test_unknown_top_level_key_suggests(tmp_path):
    error = one_error(tmp_path, full_spec().replace("schedule:", "shedule:"))
    assert (error.field, error.line) == ("shedule", 5)
    assert "Unknown key 'shedule'. Did you mean 'schedule'?" in error.message


def test_wrong_type_is_a_sentence(tmp_path):
    error = one_error(tmp_path, full_spec().replace("train_steps: 10", "train_steps: ten"))
    assert error.field == "stages.trainer.params.train_steps"
    assert error.message == "Expected an integer, got 'ten'."
    assert error.line == 22


def test_unknown_stage_suggests_and_explains_kind(tmp_path):
    error = one_error(tmp_path, full_spec().replace("  statistics_gen: {}", "  statistcs_gen: {}"))
    assert error.field == "stages.statistcs_gen"
    assert "Did you mean 'statistics_gen'?" in error.message and "set its `kind`" in error.message


def test_missing_module_and_missing_function(tmp_path):
    error = one_error(tmp_path, full_spec().replace("../modules/trainer.py", "../modules/nope.py"))
    assert error.field == "stages.trainer.params.module_file" and "does not exist" in error.message
    (tmp_path / "dags" / "modules" / "empty.py").write_text("def other():\n    pass\n")
    error = one_error(tmp_path, full_spec().replace("../modules/trainer.py", "../modules/empty.py"))
    assert "defines no top-level function 'run_fn'" in error.message


def test_user_modules_cannot_escape_the_pipeline_folder(tmp_path):
    (tmp_path / "outside.py").write_text("def run_fn(a):\n    pass\n")
    error = one_error(tmp_path, full_spec().replace("../modules/trainer.py", "../../outside.py"))
    assert "outside the pipeline folder" in error.message


def test_warn_policy_only_in_dev(tmp_path):
    text = full_spec(extra="gates:\n  blessing: {policy: warn}\n")
    error = one_error(tmp_path, text)
    assert error.field == "gates.blessing.policy" and "only allowed in the dev environment" in error.message
    dags = tmp_path / "dags"
    assert validate(load_spec(dags / "pipelines" / "p.yaml", environment="dev"), dags).spec.gates.blessing


def test_scheduled_pipeline_needs_start_date(tmp_path):
    error = one_error(tmp_path, full_spec().replace("start_date: 2024-01-01\n", ""))
    assert error.field == "start_date"


def test_callbacks_are_located_without_importing(tmp_path, monkeypatch):
    package = tmp_path / "cbpkg_mlpipe_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "alerts.py").write_text("raise RuntimeError('imported!')\n\ndef notify(context):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert check_callback("cbpkg_mlpipe_test.alerts.notify") is None
    assert "cbpkg_mlpipe_test.alerts" not in sys.modules
    assert "defines no 'missing'" in check_callback("cbpkg_mlpipe_test.alerts.missing")
    assert "cannot be found" in check_callback("no_such_pkg_mlpipe.alerts.notify")
    error = one_error(tmp_path, full_spec(extra="on_failure_callback: no_such_pkg_mlpipe.notify\n"))
    assert error.field == "on_failure_callback"


def test_pydantic_reports_each_problem(tmp_path):
    text = full_spec(extra="retries: -1\nmax_active_runs: 0\n")
    errors = spec_errors(tmp_path, text)
    assert {e.field for e in errors} == {"retries", "max_active_runs"}
    assert all(e.line for e in errors)


def test_params_shorthand_and_full_form():
    spec = PipelineSpec.model_validate(minimal(params={"span": 3, "mode": {"default": "a", "enum": ["a", "b"]}}))
    assert spec.params["span"].default == 3 and spec.params["mode"].enum == ["a", "b"]


def test_error_line_points_into_the_overlay(tmp_path):
    text = full_spec(
        extra=textwrap.dedent(
            """\
            environments:
              prod:
                max_active_runs: many
            """
        )
    )
    error = one_error(tmp_path, text, environment="prod")
    assert (error.field, error.line) == ("max_active_runs", 32)
