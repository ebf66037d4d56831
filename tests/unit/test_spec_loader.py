"""The YAML loader: line numbers, unsafe tags, ${ENV} expansion, overlays, environment selection."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_mlpipe.spec.errors import SpecErrors
from airflow_provider_mlpipe.spec.loader import deep_merge, expand_env, load_spec, selected_environment


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def only_error(exc_info: pytest.ExceptionInfo[SpecErrors]):
    assert len(exc_info.value.errors) == 1, exc_info.value
    return exc_info.value.errors[0]


def test_every_key_and_list_item_keeps_its_line(tmp_path):
    path = write(
        tmp_path,
        """\
        name: x
        stages:
          trainer:
            params:
              train_steps: 3
        tags:
          - a
          - b
        """,
    )
    spec = load_spec(path)
    assert spec.lines[("name",)] == 1
    assert spec.lines[("stages", "trainer")] == 3
    assert spec.lines[("stages", "trainer", "params", "train_steps")] == 5
    assert spec.lines[("tags", 1)] == 8
    # a path below the deepest known key falls back to that key's line
    assert spec.line_of(("stages", "trainer", "params", "train_steps", "deeper")) == 5


@pytest.mark.parametrize(
    "value",
    ["!!python/object:os.system ls", "!!python/object/apply:os.system [ls]", "!!python/name:os.system ''", "!custom x"],
)
def test_non_standard_tags_are_refused_with_their_line(tmp_path, value):
    path = write(tmp_path, f"name: x\nschedule: {value}\n")
    with pytest.raises(SpecErrors) as exc_info:
        load_spec(path)
    error = only_error(exc_info)
    assert (error.line, error.field) == (2, "schedule")
    assert "is not allowed" in error.message


def test_constructing_python_objects_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SpecErrors):
        load_spec(path)
    assert not marker.exists()


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "name: x\nstages:\n  trainer: [1, 2\n")
    with pytest.raises(SpecErrors) as exc_info:
        load_spec(path)
    error = only_error(exc_info)
    assert error.field == "yaml" and "Invalid YAML syntax" in error.message and error.line >= 3


def test_duplicate_keys_are_an_error(tmp_path):
    path = write(tmp_path, "name: x\nretries: 1\nretries: 2\n")
    with pytest.raises(SpecErrors) as exc_info:
        load_spec(path)
    error = only_error(exc_info)
    assert (error.line, error.field) == (3, "retries") and "first on line 2" in error.message


def test_anchors_and_merge_keys(tmp_path):
    path = write(tmp_path, "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert load_spec(path).data["other"] == {"x": 1, "y": 3}


def test_env_expansion_defaults_nesting_and_escape():
    env = {"A": "a", "AIRFLOW_HOME": "/home/af"}
    assert expand_env("${A}/x", env) == "a/x"
    assert expand_env("${B:-fallback}", env) == "fallback"
    assert expand_env("${B:-${AIRFLOW_HOME}/p}", env) == "/home/af/p"
    assert expand_env("$${A} costs $$5", env) == "${A} costs $5"
    with pytest.raises(KeyError):
        expand_env("${B}", env)


def test_unset_env_var_names_variable_line_and_field(tmp_path, monkeypatch):
    monkeypatch.delenv("MLPIPE_TEST_UNSET", raising=False)
    path = write(tmp_path, "name: x\npipeline_root: ${MLPIPE_TEST_UNSET}/root\n")
    with pytest.raises(SpecErrors) as exc_info:
        load_spec(path)
    error = only_error(exc_info)
    assert (error.line, error.field) == (2, "pipeline_root")
    assert "MLPIPE_TEST_UNSET is not set" in error.message


def test_env_var_in_an_unselected_overlay_is_not_needed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLPIPE_TEST_UNSET", raising=False)
    path = write(tmp_path, "name: x\nenvironments:\n  prod:\n    pipeline_root: ${MLPIPE_TEST_UNSET}\n")
    assert load_spec(path, environment="dev").data == {"name": "x"}
    with pytest.raises(SpecErrors) as exc_info:
        load_spec(path, environment="prod")
    assert only_error(exc_info).line == 4


def test_overlay_deep_merges_and_takes_over_lines(tmp_path):
    path = write(
        tmp_path,
        """\
        name: x
        retries: 1
        stages:
          trainer:
            params: {module_file: m.py, train_steps: 100}
        environments:
          dev:
            retries: 0
            stages:
              trainer:
                params:
                  train_steps: 5
        """,
    )
    base = load_spec(path)
    assert base.data["retries"] == 1 and "environments" not in base.data
    assert base.overlays == ("dev",)
    dev = load_spec(path, environment="dev")
    assert dev.data["retries"] == 0
    assert dev.data["stages"]["trainer"]["params"] == {"module_file": "m.py", "train_steps": 5}
    assert dev.lines[("stages", "trainer", "params", "train_steps")] == 12
    assert load_spec(path, environment="prod").data == base.data


def test_unknown_environment_name_gets_a_suggestion(tmp_path):
    path = write(tmp_path, "name: x\nenvironments:\n  prd: {retries: 1}\n")
    with pytest.raises(SpecErrors) as exc_info:
        load_spec(path)
    error = only_error(exc_info)
    assert error.field == "environments.prd" and "Did you mean 'prod'?" in error.message


def test_deep_merge_replaces_lists_and_scalars():
    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "d": None}) == {
        "a": {"b": 1, "c": [2]},
        "d": None,
    }


def test_environment_selection_order(monkeypatch):
    for name in ("AIRFLOW_VAR_MLPIPE_ENVIRONMENT", "MLPIPE_ENVIRONMENT", "AIRFLOW__MLPIPE__ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    assert selected_environment() is None
    monkeypatch.setenv("AIRFLOW__MLPIPE__ENVIRONMENT", "staging")
    assert selected_environment() == "staging"
    monkeypatch.setenv("MLPIPE_ENVIRONMENT", "prod")
    assert selected_environment() == "prod"
    monkeypatch.setenv("AIRFLOW_VAR_MLPIPE_ENVIRONMENT", "dev")  # the Airflow Variable, from the env backend
    assert selected_environment() == "dev"
    assert selected_environment("staging") == "staging"


def test_empty_and_non_mapping_specs(tmp_path):
    for text in ("", "- a\n- b\n"):
        with pytest.raises(SpecErrors) as exc_info:
            load_spec(write(tmp_path, text))
        assert only_error(exc_info).line == 1


def test_a_selected_environment_outside_the_three_is_an_error(tmp_path):
    path = write(tmp_path, "name: x\nenvironments:\n  prod: {retries: 1}\n")
    with pytest.raises(SpecErrors) as exc_info:
        load_spec(path, environment="production")
    error = only_error(exc_info)
    assert "not one of dev, staging, prod" in error.message and "Did you mean 'prod'?" in error.message
