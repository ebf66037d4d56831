"""Notifications under real Airflow: a scheduler, dag-processor, triggerer and execution API, one stack for all.

Injects three penguins pipelines whose ``notify:`` block sends every event to a real SMTP server on loopback
(aiosmtpd) and the gate and deadline events also to a Slack incoming webhook (a local HTTP receiver behind an
Airflow ``slackwebhook`` connection). Their runs go at once:

- ``pushed``: a good day pushes version 1 -> one ``pushed`` message with the version (the spec's own subject
  template) and nothing else;
- ``gate_fail``: a day without its label column, against a curated schema, fails at the data gate -> one
  ``gate_failed`` (email and Slack) naming the anomaly, one ``run_failed`` from the DAG callback;
- ``withheld``: the same day with the gate's policy ``skip`` and ``deadline: 5s`` -> one ``push_withheld`` and,
  from the scheduler's deadline loop through the triggerer, one ``deadline_missed`` (email and Slack).

Every message names the pipeline, the run, the decision and the reason, and links to the run view.
"""

from __future__ import annotations

import email
import json
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_env import REPO, AirflowEnv
from tests.support.airflow_stack import AirflowStack, query, running_stack, stack_env, wait_for
from tests.support.penguins_variants import PENGUINS_DATA, copy_penguins_modules, penguins_variant
from tests.support.postgres import free_port
from tests.support.smtp_inbox import Inbox, smtp_inbox
from tests.support.spec_fixtures import make_dags_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = "2024-01-01"
SMTP = "{notifier: SmtpNotifier, args: {to: ml-team@example.com, from_email: mlpipe@example.com}}"
SLACK = "{notifier: SlackWebhookNotifier, args: {slack_webhook_conn_id: slack_ml}}"
PUSHED_SUBJECT = "Pushed {{ mlpipe.pipeline }} version {{ mlpipe.details.version }}"
NOTIFY = f"""
notify:
  gate_failed: [{SMTP}, {SLACK}]
  push_withheld: {SMTP}
  pushed:
    notifier: SmtpNotifier
    args: {{to: ml-team@example.com, from_email: mlpipe@example.com, subject: "{PUSHED_SUBJECT}"}}
  run_failed: {SMTP}
"""
# A deadline every run misses: a penguins run takes far longer than five seconds.
DEADLINE = f"\ndeadline: 5s{NOTIFY}  deadline_missed: [{SMTP}, {SLACK}]\n"
PIPELINES = ("notify_pushed", "notify_gate_fail", "notify_withheld")


# ----- the receivers ------------------------------------------------------------------------------------------
class _SlackReceiver(BaseHTTPRequestHandler):
    posts: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts.append({"path": self.path, **json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Delivered:
    stack: AirflowStack
    emails: list[email.message.EmailMessage]
    slack: list[dict[str, Any]]
    run_url: str

    def email_events(self, pipeline: str) -> list[str]:
        return sorted(field(m, "Event") for m in self.emails if field(m, "Pipeline") == pipeline)

    def email(self, pipeline: str, event: str) -> email.message.EmailMessage:
        [message] = [m for m in self.emails if field(m, "Pipeline") == pipeline and field(m, "Event") == event]
        return message


def body(message: email.message.EmailMessage) -> str:
    return message.get_body(preferencelist=("html", "plain")).get_content()


def field(message: email.message.EmailMessage, name: str) -> str:
    found = re.search(rf"<th align='left'>{name}</th><td><pre>(.*?)</pre>", body(message), flags=re.DOTALL)
    return found.group(1) if found else ""


def slack_line(post: dict[str, Any], name: str) -> str:
    found = re.search(rf"^{name}: (.*)$", post["text"], flags=re.MULTILINE)
    return found.group(1) if found else ""


# ----- the pipelines and the stack ----------------------------------------------------------------------------
def notification_dags(tmp: Path) -> Path:
    bad = tmp / "bad-data"
    bad.mkdir()
    rows = [line.split(",") for line in (PENGUINS_DATA / f"span-{DAY}.csv").read_text().strip().splitlines()]
    label = rows[0].index("species")
    bad.joinpath(f"span-{DAY}.csv").write_text("".join(",".join(r[:label] + r[label + 1 :]) + "\n" for r in rows))
    no_label = {
        "../data/penguins/": f"{bad}/",
        "      allow_missing: true\n": "      allow_missing: true\n      schema_file: ../schemas/penguins.pbtxt\n",
        "retries: 1\n": "retries: 0\n",
    }
    specs = {
        "notify_pushed": penguins_variant("notify_pushed", tmp / "root", tmp / "serving-pushed") + NOTIFY,
        "notify_gate_fail": penguins_variant("notify_gate_fail", tmp / "root", tmp / "serving-fail", **no_label)
        + NOTIFY,
        "notify_withheld": penguins_variant(
            "notify_withheld",
            tmp / "root",
            tmp / "serving-withheld",
            **no_label,
            **{"  data_validation:\n    policy: fail": "  data_validation:\n    policy: skip"},
        )
        + DEADLINE,
    }
    specs = {name: text.replace('schedule: "@daily"', "schedule: null") for name, text in specs.items()}
    dags = make_dags_folder(tmp, specs)
    copy_penguins_modules(dags)
    (dags / "schemas").mkdir()
    shutil.copy(REPO / "tests" / "reliability" / "specs" / "schemas" / "penguins.pbtxt", dags / "schemas")
    return dags


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivered]:
    tmp = tmp_path_factory.mktemp("notify")
    _SlackReceiver.posts = []
    slack = ThreadingHTTPServer(("127.0.0.1", free_port()), _SlackReceiver)
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    port = free_port()
    slack_conn = {
        "conn_type": "slackwebhook",
        "host": f"http://127.0.0.1:{slack.server_port}/hooks",
        "password": "T000/B000/secret",
    }
    try:
        with smtp_inbox() as inbox:
            env = AirflowEnv(
                tmp / "home",
                notification_dags(tmp),
                {
                    "AIRFLOW__CORE__PARALLELISM": "2",
                    "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                    "AIRFLOW_CONN_SMTP_DEFAULT": inbox.connection(),
                    "AIRFLOW_CONN_SLACK_ML": json.dumps(slack_conn),
                    **stack_env(port),
                },
            )
            with running_stack(env, port) as stack:
                yield run_all(stack, inbox, f"http://127.0.0.1:{port}")
    finally:
        slack.shutdown()


def run_all(stack: AirflowStack, inbox: Inbox, base_url: str) -> Delivered:
    env = stack.env

    def parsed() -> bool:
        stack.check_alive()
        marks = ",".join("?" * len(PIPELINES))
        return query(env, f"select count(*) from serialized_dag where dag_id in ({marks})", *PIPELINES)[0][0] == 3

    wait_for("the dag-processor to parse the three specs", parsed, timeout=300, interval=2)
    for dag_id in PIPELINES:
        conf = json.dumps({"span": int(DAY.replace("-", ""))})  # an unscheduled run's own dates are today's
        env.run("dags", "trigger", dag_id, "-r", f"{dag_id}_run", "-c", conf, timeout=120)

    def finished() -> dict[str, str] | None:
        stack.check_alive()
        states = dict(query(env, "select dag_id, state from dag_run"))
        return states if len(states) == 3 and all(s in ("success", "failed") for s in states.values()) else None

    states = wait_for("the three runs to finish", finished, timeout=1200, interval=5)
    assert states == {"notify_pushed": "success", "notify_gate_fail": "failed", "notify_withheld": "success"}

    # run_failed comes from the dag-processor and deadline_missed from the triggerer, both after the run ends
    def all_sent() -> bool:
        stack.check_alive()
        return len(inbox.messages) >= 5 and len(_SlackReceiver.posts) >= 2

    wait_for("five emails and two Slack posts", all_sent, timeout=240, interval=2)
    return Delivered(stack, inbox.messages, _SlackReceiver.posts, base_url)


# ----- the tests ------------------------------------------------------------------------------------------------
def test_each_run_sends_one_email_per_event_that_happened_and_nothing_else(delivered: Delivered) -> None:
    assert delivered.email_events("notify_pushed") == ["pushed"]
    assert delivered.email_events("notify_gate_fail") == ["gate_failed", "run_failed"]
    assert delivered.email_events("notify_withheld") == ["deadline_missed", "push_withheld"]
    assert len(delivered.emails) == 5
    assert {m["To"] for m in delivered.emails} == {"ml-team@example.com"}


def test_a_failed_gate_names_the_run_the_decision_and_the_dropped_column(delivered: Delivered) -> None:
    message = delivered.email("notify_gate_fail", "gate_failed")
    assert field(message, "Run") == "notify_gate_fail_run" and field(message, "Decision") == "fail"
    assert "Data validation gate fails the run" in field(message, "Reason")
    assert "species [ERROR]" in field(message, "Reason")
    assert message["Subject"] == (
        "[mlpipe] notify_gate_fail: the data_validation gate failed the run (run notify_gate_fail_run)"
    )
    run_view = f"{delivered.run_url}/dags/notify_gate_fail/runs/notify_gate_fail_run/plugin/mlpipe-run"
    assert run_view in body(message)
    failed = delivered.email("notify_gate_fail", "run_failed")
    assert field(failed, "Decision") == "failed" and "species [ERROR]" in field(failed, "Reason")


def test_a_push_names_its_version_in_the_specs_own_subject_template(delivered: Delivered) -> None:
    message = delivered.email("notify_pushed", "pushed")
    assert message["Subject"] == "Pushed notify_pushed version 1"
    assert field(message, "Decision") == "pushed" and "Version 1 now serves from" in field(message, "Reason")
    assert (Path(field(message, "Reason").split("serves from ")[1].rstrip(".")) / "1").is_dir()


def test_a_skip_gate_withholds_the_push_and_says_why(delivered: Delivered) -> None:
    message = delivered.email("notify_withheld", "push_withheld")
    assert field(message, "Decision") == "skip"
    assert "Data validation gate skips the push" in field(message, "Reason")
    assert "species [ERROR]" in field(message, "Reason")


def test_the_deadline_fires_from_the_schedulers_deadline_loop_through_the_triggerer(delivered: Delivered) -> None:
    message = delivered.email("notify_withheld", "deadline_missed")
    assert field(message, "Run") == "notify_withheld_run" and field(message, "Decision") == "deadline missed"
    assert "at its deadline" in field(message, "Reason")
    env = delivered.stack.env
    [(missed,)] = query(env, "select count(*) from deadline where missed = 1")
    assert missed == 1
    assert "mlpipe" in "".join(str(row) for row in query(env, "select data from callback"))


def test_the_slack_webhook_gets_the_gate_and_deadline_messages(delivered: Delivered) -> None:
    posts = {(slack_line(p, "Pipeline"), slack_line(p, "Event")) for p in delivered.slack}
    assert posts == {("notify_gate_fail", "gate_failed"), ("notify_withheld", "deadline_missed")}
    assert len(delivered.slack) == 2
    assert {p["path"] for p in delivered.slack} == {"/hooks/T000/B000/secret"}
    [gate] = [p for p in delivered.slack if slack_line(p, "Event") == "gate_failed"]
    assert "species [ERROR]" in gate["text"] and slack_line(gate, "Run") == "notify_gate_fail_run"
