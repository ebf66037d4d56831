"""The ``retention:`` spec block: the Pusher's keep_versions, the cleanup task, and the runtime gc command."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_mlpipe.cli.gc import report_lines
from airflow_provider_mlpipe.factory import build_dag
from airflow_provider_mlpipe.operators.gc import GC_TASK_ID, GcTarget, gc_command
from airflow_provider_mlpipe.spec.errors import SpecErrors
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.spec_fixtures import full_spec, make_dags_folder

RETENTION = """
retention:
  keep_spans: 30
  keep_versions: 3
  cleanup_task: true
execution_timeout: {hours: 2}
"""


def pipeline(tmp_path: Path, extra: str):
    dags = make_dags_folder(tmp_path, {"p": full_spec(extra=extra)}, dag_file=False)
    return load_pipeline(dags / "pipelines" / "p.yaml")


def test_retention_keep_versions_is_the_pushers_and_the_gc_task_ends_every_run(tmp_path: Path) -> None:
    item = pipeline(tmp_path, RETENTION)
    assert item.stage_params["pusher"]["keep_versions"] == 3
    dag = build_dag(item)
    gc = dag.get_task(GC_TASK_ID)
    assert gc.trigger_rule == "all_done"
    assert set(gc.upstream_task_ids) == {t.task_id for t in dag.tasks} - {GC_TASK_ID}
    assert (gc.keep_spans, gc.keep_days, gc.keep_versions) == (30, None, 3)
    assert gc.min_age == timedelta(hours=2)  # the longest stage timeout: every stage has the pipeline's two hours
    assert gc.destinations == [str((tmp_path / "dags" / "serving" / "full").resolve())]


def test_without_the_switch_there_is_no_gc_task_and_an_untimed_stage_means_a_day(tmp_path: Path) -> None:
    item = pipeline(tmp_path, "retention: {keep_days: 7}\n")
    assert GC_TASK_ID not in build_dag(item).task_ids
    assert item.longest_stage_timeout == timedelta(days=1)
    assert "keep_versions" not in item.stage_params["pusher"]


def test_two_different_keep_versions_are_one_clear_error(tmp_path: Path) -> None:
    dags = make_dags_folder(tmp_path, {"p": full_spec(extra="retention: {keep_versions: 2}\n")}, dag_file=False)
    path = dags / "pipelines" / "p.yaml"
    path.write_text(
        path.read_text().replace("destination: ../serving/full}", "destination: ../serving/full, keep_versions: 5}")
    )
    with pytest.raises(SpecErrors) as refused:
        load_pipeline(path)
    assert "keep_versions is 5 here but retention.keep_versions is 2" in str(refused.value)
    assert "stages.pusher.params.keep_versions" in str(refused.value)


def test_the_gc_command_carries_the_policy_and_the_cli_prints_only_the_report(tmp_path: Path) -> None:
    target = GcTarget.of(pipeline(tmp_path, RETENTION))
    command = gc_command("/runtime/python", target, dry_run=True)
    assert command[:3] == ["/runtime/python", "-m", "airflow_provider_mlpipe.runtime"]
    assert command[3:5] == ["gc", "full"]
    joined = " ".join(command)
    assert "--keep-spans 30" in joined and "--keep-versions 3" in joined and "--keep-days" not in joined
    assert "--min-age 7200" in joined and command[-1] == "--dry-run"
    out = (
        '2026-01-01 INFO mlpipe.runtime.gc: a log line\nmlpipe gc full (dry run): 0 artifacts\nKept:\n{"delete": []}\n'
    )
    assert report_lines(out) == ["mlpipe gc full (dry run): 0 artifacts", "Kept:"]
