"""The spec's ``queue`` keys reach the operators' ``queue``: where a CeleryExecutor sends each task.

Gates take the pipeline-wide queue: a gate checks its verdict on a worker (through the runtime there) before it
defers to the triggerer, and resumes on a worker after, so it needs a worker that serves its queue like any stage.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_mlpipe.factory import build_dag
from airflow_provider_mlpipe.spec.errors import SpecErrors
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.spec_fixtures import full_spec, make_dags_folder

GATES = """\
gates:
  data_validation: {policy: fail}
  blessing: {policy: fail, deferrable: true}
"""


def build(tmp_path: Path, text: str, environment: str | None = None):
    dags = make_dags_folder(tmp_path, {"p": text}, dag_file=False)
    return build_dag(load_pipeline(dags / "pipelines" / "p.yaml", environment=environment))


def with_trainer_queue(text: str, queue: str) -> str:
    old = "    params: {module_file: ../modules/trainer.py, train_steps: 10}\n"
    assert old in text
    return text.replace(old, f"{old}    queue: {queue}\n")


def queues(dag) -> dict[str, str]:
    return {task.task_id: task.queue for task in dag.tasks}


def test_without_queue_keys_every_task_keeps_airflows_default_queue(tmp_path):
    from airflow.configuration import conf

    dag = build(tmp_path, full_spec(extra=GATES))
    assert set(queues(dag).values()) == {conf.get("operators", "default_queue")}


def test_pipeline_queue_reaches_every_stage_and_gate_and_a_stage_queue_overrides_it(tmp_path):
    text = with_trainer_queue(full_spec(extra="queue: general\n" + GATES), "highmem")
    found = queues(build(tmp_path, text))
    assert found.pop("trainer") == "highmem"
    assert {"data_validation_gate", "blessing_gate", "example_gen", "pusher"} <= set(found)
    assert set(found.values()) == {"general"}


def test_a_stage_queue_alone_moves_only_that_stage(tmp_path):
    from airflow.configuration import conf

    found = queues(build(tmp_path, with_trainer_queue(full_spec(extra=GATES), "highmem")))
    assert found.pop("trainer") == "highmem"
    assert set(found.values()) == {conf.get("operators", "default_queue")}


def test_an_environment_overlay_can_route_a_stage(tmp_path):
    overlay = "environments:\n  prod:\n    queue: prod-pool\n    stages:\n      trainer: {queue: prod-highmem}\n"
    text = full_spec(extra=overlay)
    prod = queues(build(tmp_path, text, environment="prod"))
    assert prod.pop("trainer") == "prod-highmem" and set(prod.values()) == {"prod-pool"}
    assert build(tmp_path, text, environment="dev").get_task("trainer").queue != "prod-highmem"


@pytest.mark.parametrize("bad", ["'general,highmem'", "'big memory'", "''"])
def test_a_queue_list_or_blank_is_a_spec_error_that_says_what_to_write(tmp_path, bad):
    with pytest.raises(SpecErrors, match=r"queue: Invalid value .*Give one queue name without commas or spaces"):
        build(tmp_path, with_trainer_queue(full_spec(), bad))
