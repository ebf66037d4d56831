"""The notify block and deadline become Airflow callbacks, notifiers and a DeadlineAlert; messages say why.

Delivery itself (a real SMTP server, a Slack webhook receiver, the scheduler's deadline loop) is tested under
real Airflow in tests/integration/test_notifications_airflow.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlpipe.factory import build_dag
from airflow_provider_mlpipe.notifications.message import describe
from airflow_provider_mlpipe.notifications.notifier import (
    MlpipeNotifier,
    build_notifier,
    constructor_arguments,
    deadline_missed,
    notifier_class,
)
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.smtp_inbox import smtp_inbox as smtp_inbox_server
from tests.support.spec_fixtures import full_spec, make_dags_folder

SLACK = '{notifier: SlackWebhookNotifier, args: {slack_webhook_conn_id: slack, text: "v{{ mlpipe.details.version }}"}}'
SMTP = "{notifier: SmtpNotifier, args: {to: ml@example.com, from_email: mlpipe@example.com}}"
NOTIFY = f"""\
gates:
  data_validation: {{policy: fail}}
  blessing: {{policy: skip}}
deadline: 2h
notify:
  gate_failed: {SMTP}
  push_withheld: [{SMTP}]
  pushed: {SLACK}
  run_failed: {SMTP}
  deadline_missed: {SMTP}
"""


def build(tmp_path: Path, extra: str):
    dags = make_dags_folder(tmp_path, {"p": full_spec(extra=extra)}, dag_file=False)
    return build_dag(load_pipeline(dags / "pipelines" / "p.yaml"))


def events(callbacks: Any) -> list[str]:
    return [c.event for c in callbacks or [] if isinstance(c, MlpipeNotifier)]


def test_each_event_is_wired_to_the_task_or_dag_where_it_is_decided(tmp_path):
    dag = build(tmp_path, NOTIFY)
    assert events(dag.on_failure_callback) == ["run_failed"]
    for gate in ("data_validation_gate", "blessing_gate"):
        task = dag.get_task(gate)
        assert events(task.on_failure_callback) == ["gate_failed"]
        assert events(task.on_skipped_callback) == ["push_withheld"]
    assert events(dag.get_task("pusher").on_success_callback) == ["pushed", "push_withheld"]
    assert not dag.get_task("trainer").on_failure_callback


def test_the_deadline_is_a_serializable_deadline_alert_whose_callback_the_triggerer_runs(tmp_path):
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build(tmp_path, NOTIFY)
    (alert,) = dag.deadline
    assert alert.interval == timedelta(hours=2)
    assert alert.callback.path == "airflow_provider_mlpipe.notifications.notifier.deadline_missed"
    assert alert.callback.kwargs["notifiers"] == [
        {"notifier": "SmtpNotifier", "args": {"to": "ml@example.com", "from_email": "mlpipe@example.com"}}
    ]
    serialized = DagSerialization.to_dict(dag)["dag"]["deadline"][0]
    assert serialized["reference"]["reference_type"] == "DagRunQueuedAtDeadline"


def test_without_a_notify_block_nothing_is_added(tmp_path):
    dag = build(tmp_path, "gates:\n  data_validation: {policy: fail}\n")
    assert not dag.on_failure_callback and not dag.deadline
    assert not dag.get_task("data_validation_gate").on_failure_callback


def test_a_user_callback_and_run_failed_notifiers_both_run(tmp_path):
    extra = f"on_failure_callback: json.dumps\nnotify:\n  run_failed: {SMTP}\n"
    callbacks = build(tmp_path, extra).on_failure_callback
    assert callbacks[0].__name__ == "dumps" and events(callbacks) == ["run_failed"]


def test_message_arguments_default_to_mlpipes_message_and_spec_arguments_win():
    smtp = build_notifier({"notifier": "SmtpNotifier", "args": {"to": "a@example.com", "subject": "mine"}})
    assert smtp.subject == "mine" and smtp.html_content == "{{ mlpipe.html }}"
    slack = build_notifier({"notifier": "SlackWebhookNotifier", "args": {}})
    assert slack.text == "{{ mlpipe.text }}"


def test_constructor_arguments_follow_kwargs_up_to_base_notifier():
    accepted, required = constructor_arguments(notifier_class("SmtpNotifier"))
    assert {"to", "subject", "smtp_conn_id"} <= accepted and "context" not in accepted
    assert required == {"to"}


class _TaskInstance:
    """What a callback context's ``ti`` offers a describer: its task id, state and its XComs."""

    def __init__(self, task_id: str, xcoms: dict[str, Any], state: str = "failed") -> None:
        self.task_id, self.xcoms, self.state = task_id, xcoms, state

    def xcom_pull(self, *, task_ids: str, key: str = "return_value") -> Any:
        assert task_ids == self.task_id
        return self.xcoms.get(key)


class _DagRun:
    dag_id, run_id = "penguins", "manual__1"


def test_a_failed_gate_message_names_pipeline_run_decision_and_the_anomaly():
    decision = {"gate": "data_validation", "decision": "fail", "reason": "1 anomaly: body_mass_g [ERROR]"}
    ti = _TaskInstance("data_validation_gate", {"gate_decision": decision})
    message = describe("gate_failed", {"ti": ti, "dag_run": _DagRun()})
    assert message is not None
    assert (message.pipeline, message.run_id, message.decision) == ("penguins", "manual__1", "fail")
    assert "body_mass_g" in message.text and message.url.endswith("/dags/penguins/runs/manual__1/plugin/mlpipe-run")


def test_pushed_and_withheld_each_speak_only_for_what_the_pusher_did():
    pushed = {"summary": {"pushed": True, "version": 3, "destination": "/serving"}}
    ti = _TaskInstance("pusher", {"return_value": pushed}, state="success")
    assert describe("push_withheld", {"ti": ti, "dag_run": _DagRun()}) is None
    message = describe("pushed", {"ti": ti, "dag_run": _DagRun()})
    assert message is not None and "Version 3" in message.reason
    withheld = {"summary": {"pushed": False, "push_withheld": True, "reason": "older span"}}
    ti = _TaskInstance("pusher", {"return_value": withheld}, state="success")
    assert describe("pushed", {"ti": ti, "dag_run": _DagRun()}) is None
    assert describe("push_withheld", {"ti": ti, "dag_run": _DagRun()}).reason == "older span"


def test_a_rollback_message_names_the_served_version_and_the_one_it_copies():
    result = {"version": 4, "rollback_of": 2, "rolled_back_from": 3, "destination": "/serving"}
    message = describe("rolled_back", {"ti": _TaskInstance("rollback", {"return_value": result}), "dag_run": _DagRun()})
    assert message is not None and message.headline == "rolled back to version 2"
    assert message.reason == "Version 4 now serves a copy of version 2; version 3 served before."


def test_a_deadline_message_reads_the_schedulers_simple_context():
    context = {"dag_run": {"dag_id": "penguins", "dag_run_id": "r1", "state": "running"}, "deadline": {"id": "x"}}
    message = describe("deadline_missed", context)
    assert message is not None and message.run_id == "r1" and "still running" in message.reason
    context["dag_run"]["state"] = "failed"  # Airflow keeps a failed run's deadline
    assert describe("deadline_missed", context).reason.startswith("The run failed, so it was not done by")


@pytest.mark.parametrize("name", ["Nope", "collections.OrderedDict", "no_such_module.Notifier"])
def test_an_unusable_notifier_class_is_refused_with_a_reason(name):
    with pytest.raises((ImportError, TypeError), match=r"notifier|BaseNotifier"):
        notifier_class(name)


# ----- sending: a real SMTP server on loopback; a Slack webhook on a port where nothing listens ----------------------
@pytest.fixture
def smtp_inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    from tests.support.postgres import free_port

    nowhere = {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{free_port()}/hooks", "password": "T/B/X"}
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_NOWHERE", json.dumps(nowhere))
    with smtp_inbox_server() as inbox:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", inbox.connection())
        yield inbox.messages


CHANNELS = [
    {"notifier": "SlackWebhookNotifier", "args": {"slack_webhook_conn_id": "slack_nowhere", "timeout": 2}},
    {"notifier": "SmtpNotifier", "args": {"to": "ml@example.com", "from_email": "mlpipe@example.com"}},
]
DEADLINE_CONTEXT = {"dag_run": {"dag_id": "penguins", "dag_run_id": "r7", "state": "running"}, "deadline": {}}


def test_an_unreachable_channel_does_not_silence_the_others_and_is_reported(smtp_inbox: list[Any]) -> None:
    with pytest.raises(RuntimeError, match=r"Sending deadline_missed failed for 1 notifier.*SlackWebhookNotifier"):
        MlpipeNotifier(event="deadline_missed", notifiers=CHANNELS)(DEADLINE_CONTEXT)
    [message] = smtp_inbox
    assert message["Subject"] == "[mlpipe] penguins: the run missed its deadline (run r7)"


def test_the_deadline_callback_sends_from_an_event_loop_as_the_triggerer_runs_it(smtp_inbox: list[Any]) -> None:
    with pytest.raises(RuntimeError, match="SlackWebhookNotifier"):
        asyncio.run(deadline_missed(pipeline="penguins", notifiers=CHANNELS, context=DEADLINE_CONTEXT))
    [message] = smtp_inbox
    assert "The run was still running at its deadline" in message.get_body(("html",)).get_content()


def test_mlpipe_rollback_sends_rolled_back_with_both_versions_and_the_pipeline_view(
    tmp_path: Path, smtp_inbox: list[Any]
) -> None:
    from airflow_provider_mlpipe.cli.rollback import notify_rolled_back

    dags = make_dags_folder(tmp_path, {"p": full_spec(extra=f"notify:\n  rolled_back: {SMTP}\n")}, dag_file=False)
    item = load_pipeline(dags / "pipelines" / "p.yaml")
    notify_rolled_back(item, {"version": 5, "rollback_of": 3, "rolled_back_from": 4})
    [message] = smtp_inbox
    assert message["Subject"] == f"[mlpipe] {item.name}: rolled back to version 3"
    html = message.get_body(("html",)).get_content()
    assert "Version 5 now serves a copy of version 3; version 4 served before." in html
    assert f"/dags/{item.name}/plugin/mlpipe-pipeline" in html
