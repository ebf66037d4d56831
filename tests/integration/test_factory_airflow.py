"""The factory under real Airflow parsing: good specs become DAGs, each bad spec is its own import error.

Both parsing paths are exercised: ``airflow dags reserialize`` (an in-process DagBag synced to the DB) and the real
``airflow dag-processor`` (the manager, a parse subprocess per file, results persisted by the manager).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.support.airflow_env import AirflowEnv
from tests.support.spec_fixtures import full_spec, make_dags_folder

pytestmark = [pytest.mark.integration]

GOOD_PROBE = """\
name: probe_spec
description: One probe stage through the real runtime.
schedule: null
pipeline_root: {root}
stages:
  probe:
    params: {{values: [1.5, 2.5]}}
"""
BAD = {
    "bad_cron": (full_spec("bad_cron").replace('"@daily"', '"61 * * * *"'), 5, "schedule", "Invalid cron"),
    "bad_stage": (full_spec("bad_stage").replace("  schema_gen: {}", "  schema_gn: {}"), 17, "stages.schema_gn",
                  "Did you mean 'schema_gen'?"),
    "bad_module": (full_spec("bad_module").replace("modules/trainer.py", "modules/missing.py"), 22,
                   "stages.trainer.params.module_file", "does not exist"),
}  # fmt: skip


def mixed_folder(tmp_path: Path) -> Path:
    specs = {"good_a": full_spec("good_a"), "good_b": full_spec("good_b")}
    specs["probe_spec"] = GOOD_PROBE.format(root=tmp_path / "root")
    specs.update({name: text for name, (text, *_rest) in BAD.items()})
    return make_dags_folder(tmp_path, specs)


def listed(env: AirflowEnv) -> tuple[set[str], dict[str, str]]:
    dags = json.loads(env.run("dags", "list", "-o", "json").stdout.strip().splitlines()[-1])
    # list-import-errors exits 1 when there are import errors (made for CI), so it is not checked
    proc = env.run("dags", "list-import-errors", "-o", "json", check=False)
    errors = json.loads(proc.stdout.strip().splitlines()[-1] or "[]")
    return {d["dag_id"] for d in dags}, {e["filepath"]: e["error"] for e in errors}


def dag_flags(env: AirflowEnv) -> dict[str, tuple[int, int]]:
    with env.db() as conn:
        rows = conn.execute("select dag_id, is_stale, has_import_errors from dag").fetchall()
    return {dag_id: (stale, errors) for dag_id, stale, errors in rows}


def assert_good_and_bad(env: AirflowEnv) -> None:
    dag_ids, errors = listed(env)
    assert dag_ids == {"good_a", "good_b", "probe_spec"}
    assert set(errors) == {f"pipelines/{name}.yaml" for name in BAD}
    for name, (_text, line, field, fragment) in BAD.items():
        message = errors[f"pipelines/{name}.yaml"]
        assert f"pipelines/{name}.yaml:{line}: {field}: " in message
        assert fragment in message
    # the good DAGs of the same DAG file are neither stale nor flagged with import errors, so they get scheduled
    assert all(flags == (0, 0) for flags in dag_flags(env).values()), dag_flags(env)


def test_reserialize_lists_good_dags_and_one_import_error_per_bad_spec(tmp_path, make_airflow):
    env = make_airflow(mixed_folder(tmp_path))
    env.run("dags", "reserialize")
    assert_good_and_bad(env)
    # fixing a spec clears its error on the next reserialize
    (env.dags_folder / "pipelines" / "bad_cron.yaml").write_text(full_spec("bad_cron"))
    env.run("dags", "reserialize")
    dag_ids, errors = listed(env)
    assert "bad_cron" in dag_ids and "pipelines/bad_cron.yaml" not in errors


@pytest.mark.slow
def test_dag_processor_records_per_spec_import_errors(tmp_path, make_airflow):
    env = make_airflow(mixed_folder(tmp_path))
    env.run("dag-processor", "--num-runs", "1", timeout=600)
    assert_good_and_bad(env)
    # A fixed spec: its DAG appears and its error is cleared when the processor refreshes the bundle
    (env.dags_folder / "pipelines" / "bad_stage.yaml").write_text(full_spec("bad_stage"))
    env.run("dag-processor", "--num-runs", "1", timeout=600)
    dag_ids, errors = listed(env)
    assert "bad_stage" in dag_ids
    assert set(errors) == {"pipelines/bad_cron.yaml", "pipelines/bad_module.yaml"}


@pytest.mark.slow
def test_dags_test_runs_a_small_spec_through_the_runtime(tmp_path, make_airflow):
    dags = make_dags_folder(tmp_path, {"probe_spec": GOOD_PROBE.format(root=tmp_path / "root")})
    env = make_airflow(dags)
    proc = env.dags_test("probe_spec", "2024-01-02")
    assert env.task_states("probe_spec") == {"probe": "success"}, proc.stdout[-3000:]
    result = env.xcom("probe_spec", "probe")
    assert result["outputs"]["probe"][0]["uri"].startswith(str(tmp_path / "root" / "probe_spec"))
    assert textwrap.dedent(str(result["outputs"]["probe"][0]["properties"]["sum"])) == "4.0"


@pytest.mark.slow
def test_penguins_spec_runs_green_with_dags_test(tmp_path, make_airflow, repo_root):
    """The example spec as shipped (dev overlay): every stage and both gates succeed, a model version is pushed."""
    serving = tmp_path / "serving"
    env = make_airflow(
        repo_root / "dags",
        MLPIPE_ENVIRONMENT="dev",
        MLPIPE_PIPELINE_ROOT=str(tmp_path / "root"),
        MLPIPE_SERVING_DIR=str(serving),
    )
    proc = env.dags_test("penguins", "2024-01-02", check=False)
    states = env.task_states("penguins")
    assert set(states.values()) == {"success"} and len(states) == 10, (states, proc.stdout[-4000:])
    assert [p.name for p in serving.iterdir() if not p.name.startswith(".")] == ["1"]  # beside the version records
    with env.db() as conn:
        events = conn.execute("select a.name, a.uri from asset_event e join asset a on a.id = e.asset_id").fetchall()
    assert events == [("mlpipe/penguins/pushed_model", serving.resolve().as_uri())]
