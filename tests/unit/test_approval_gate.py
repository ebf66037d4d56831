"""The approval gate without a running Airflow: spec, wiring, the operator's arguments and the reviewer's text.

tests/integration/test_approval_airflow.py approves, rejects and times out real requests under a real scheduler.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_mlpipe.factory import build_dag
from airflow_provider_mlpipe.operators.approval import MlpipeApprovalOperator
from airflow_provider_mlpipe.operators.approval_request import approval_body, approval_subject, threshold_text
from airflow_provider_mlpipe.spec.errors import SpecErrors
from airflow_provider_mlpipe.spec.validate import load_pipeline
from tests.support.spec_fixtures import full_spec, make_dags_folder

PROD_APPROVAL = """\
params:
  span: {default: null, type: [integer, "null"]}
gates:
  blessing: {policy: fail}
environments:
  prod:
    gates:
      approval: {approvers: [alice, bob], timeout: 2h, on_reject: fail}
"""


def build(tmp_path: Path, text: str, environment: str | None = None):
    dags = make_dags_folder(tmp_path, {"p": text}, dag_file=False)
    return build_dag(load_pipeline(dags / "pipelines" / "p.yaml", environment=environment))


def test_prod_overlay_puts_airflows_approval_operator_between_the_blessing_gate_and_the_pusher(tmp_path):
    dev = build(tmp_path / "dev", full_spec(extra=PROD_APPROVAL), environment="dev")
    assert "approval_gate" not in dev.task_ids
    dag = build(tmp_path / "prod", full_spec(extra=PROD_APPROVAL), environment="prod")
    gate = dag.get_task("approval_gate")
    assert isinstance(gate, MlpipeApprovalOperator)
    assert type(gate).__mro__[1].__name__ == "ApprovalOperator"
    assert set(gate.upstream_task_ids) == {"blessing_gate"}
    assert "approval_gate" in dag.get_task("pusher").upstream_task_ids
    assert gate.options == ["Approve", "Reject"] and gate.multiple is False
    assert gate.assigned_users == [{"id": "alice", "name": "alice"}, {"id": "bob", "name": "bob"}]
    assert gate.response_timeout == timedelta(hours=2)
    assert gate.defaults == ["Reject"]  # the outcome when nobody answers
    assert gate.fail_on_reject is True
    assert (gate.evaluator_task_id, gate.validator_task_id) == ("evaluator", "example_validator")
    assert list(gate.params) == ["comment"]  # the reviewer's form; the DAG's params stay out of it
    from airflow.serialization.serialized_objects import DagSerialization

    back = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag), default=str)))
    assert back.get_task("approval_gate").task_type == "MlpipeApprovalOperator"
    # the spec's retries and execution_timeout are not the approval's: a retry would ask again after a rejection
    assert (gate.retries, gate.execution_timeout) == (0, None)


def test_defaults_reject_on_timeout_skip_the_push_and_let_anyone_allowed_answer(tmp_path):
    text = full_spec(extra="retries: 2\nexecution_timeout: 1h\ngates:\n  approval: {default: approve, timeout: null}\n")
    dag = build(tmp_path, text)
    gate = dag.get_task("approval_gate")
    assert set(gate.upstream_task_ids) == {"evaluator"}  # no blessing gate: right after the Evaluator
    assert gate.assigned_users is None and gate.response_timeout is None
    assert gate.defaults == ["Approve"] and gate.fail_on_reject is False
    plain = build(tmp_path / "plain", full_spec(extra="gates:\n  approval: {}\n")).get_task("approval_gate")
    assert plain.defaults == ["Reject"] and plain.response_timeout == timedelta(days=1)


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ("gates:\n  approval: {default: maybe}\n", "gates.approval.default", "'approve' or 'reject'"),
        ("gates:\n  approval: {on_reject: warn}\n", "gates.approval.on_reject", "'fail' or 'skip'"),
        ("gates:\n  approval: {roles: [Op]}\n", "gates.approval.roles", ""),
    ],
)
def test_bad_approval_settings_name_the_field(tmp_path, extra, field, words):
    with pytest.raises(SpecErrors) as info:
        build(tmp_path, full_spec(extra=extra))
    [error] = info.value.errors
    assert error.field == field and words in error.message


def test_an_approval_without_a_pusher_is_a_spec_error(tmp_path):
    text = full_spec(extra="gates:\n  approval: {}\n").replace("  pusher:\n", "  pusher:\n    enabled: false\n")
    with pytest.raises(SpecErrors) as info:
        build(tmp_path, text)
    [error] = info.value.errors
    assert error.field == "gates.approval" and "no pusher stage is enabled" in error.message


def test_the_operator_refuses_unknown_outcomes():
    with pytest.raises(ValueError, match="approve, reject"):
        MlpipeApprovalOperator(task_id="a", default="maybe")
    with pytest.raises(ValueError, match="fail, skip"):
        MlpipeApprovalOperator(task_id="a", on_reject="warn")
    with pytest.raises(TypeError, match="list of Airflow user ids"):
        MlpipeApprovalOperator(task_id="a", approvers="alice")


METRICS = {
    "slices": [
        {"slice": "Overall", "metrics": {"accuracy": 0.97, "example_count": 69}},
        {"slice": "island=Biscoe", "metrics": {"accuracy": 0.95, "example_count": 30}},
    ],
    "thresholds": [
        {
            "metric": "accuracy",
            "lower_bound": 0.5,
            "upper_bound": None,
            "change": {"direction": "higher_is_better", "absolute": -0.05, "relative": None},
            "change_applied": True,
            "slices": None,
            "min_examples": 0,
        }
    ],
    "baseline": {"model_id": 7, "slices": [{"slice": "Overall", "metrics": {"accuracy": 0.9, "example_count": 60}}]},
}
BLESSING = {"blessed": True, "reason": "all thresholds passed", "current_model_id": 12, "baseline_model_id": 7}
ANOMALIES = {
    "anomalies": [
        {"split": "train", "feature": "island", "severity": "WARNING", "kind": "drift", "short_description": "drift"}
    ],
    "measurements": [
        {"split": "train", "feature": "bill_length_mm", "kind": "drift", "comparator": "jsd", "value": 0.12,
         "threshold": 0.3},
        {"split": "train", "feature": "island", "kind": "drift", "comparator": "linf", "value": 0.41,
         "threshold": 0.3},
        {"split": "eval", "feature": "island", "kind": "drift", "comparator": "linf", "value": 0.9, "threshold": 0.3},
    ],
    "previous_statistics_id": 5,
}  # fmt: skip


def test_the_request_shows_metrics_by_slice_against_the_baseline_with_thresholds_drift_and_the_run_view():
    body = approval_body(
        pipeline="penguins",
        run_id="manual__2024",
        run_view="http://airflow/dags/penguins/runs/manual__2024/plugin/mlpipe-run",
        metrics=METRICS,
        blessing=BLESSING,
        anomalies=ANOMALIES,
        default="reject",
        timeout_text="within 2 h",
    )
    assert "| Overall | 69 | accuracy | 0.97 | 0.9 | +0.07 | >= 0.5; absolute change >= -0.05 |" in body
    assert "| island=Biscoe | 30 | accuracy | 0.95 | — | — |" in body  # no baseline value for this slice
    assert "| example_count |" not in body  # the slice's size is its own column
    assert "against baseline model 7" in body
    assert "island [WARNING] (train, drift): drift" in body
    drift = body[body.index("Drift against") :]
    assert drift.index("| island | linf | 0.41 | 0.3 |") < drift.index("| bill_length_mm | jsd | 0.12 | 0.3 |")
    assert "0.9 |" not in drift  # the eval split is not the scored one
    assert "[Open the run view](http://airflow/dags/penguins/runs/manual__2024/plugin/mlpipe-run)" in body
    assert "Without an answer within 2 h, the outcome is **reject**." in body
    assert approval_subject("penguins", BLESSING, 20240103) == (
        "Push model 12 (span 20240103) of penguins? The Evaluator says: blessed."
    )


def test_threshold_text_says_when_a_change_threshold_had_no_baseline():
    text = threshold_text({"upper_bound": 0.3, "change": {"direction": "lower_is_better", "relative": 0.1},
                           "change_applied": False, "slices": ["Overall"], "min_examples": 20})  # fmt: skip
    assert text == "<= 0.3; relative change <= 0.1 (no baseline: not applied); on Overall; min 20 examples"


def test_the_lineage_graph_names_the_approver_or_the_timeout():
    from airflow_provider_mlpipe.ui.mlmd_reader import Artifact, EventEdge, Execution, RunGraph
    from airflow_provider_mlpipe.ui.svg import lineage_svg

    approved = Execution(1, "mlpipe.Approval", "COMPLETE", {"gate": "approval", "decision": "approve",
                                                            "approver": "alice", "timed_out": 0})  # fmt: skip
    timed_out = Execution(2, "mlpipe.Approval", "COMPLETE", {"gate": "approval", "decision": "reject", "timed_out": 1})
    blessing = Artifact(9, "ModelBlessing", "/b", "LIVE")
    events = [EventEdge(1, 9, "INPUT", "verdict"), EventEdge(2, 9, "INPUT", "verdict")]
    svg = lineage_svg(RunGraph([approved, timed_out], {9: blessing}, events), lambda i: f"#a{i}")
    assert svg.count(">Approval</text>") == 2
    assert "approve by alice" in svg and "reject timed out" in svg


SMTP = "{notifier: SmtpNotifier, args: {to: ml@example.com, from_email: mlpipe@example.com}}"


def test_approval_events_reach_the_notifiers_the_spec_names(tmp_path):
    from airflow_provider_mlpipe.notifications.notifier import MlpipeNotifier

    extra = f"gates:\n  approval: {{}}\nnotify:\n  approval_pending: {SMTP}\n  approval_timed_out: {SMTP}\n"
    extra += f"  push_withheld: {SMTP}\n  gate_failed: {SMTP}\n"
    gate = build(tmp_path, full_spec(extra=extra)).get_task("approval_gate")

    def events(callbacks):
        return [c.event for c in callbacks or [] if isinstance(c, MlpipeNotifier)]

    assert events(gate.notifiers) == ["approval_pending"]  # Airflow's HITL operator sends these with the request
    assert events(gate.on_success_callback) == ["approval_timed_out", "push_withheld"]
    assert events(gate.on_failure_callback) == ["approval_timed_out", "gate_failed"]  # on_reject: fail


class _Ti:
    task_id = "approval_gate"
    state = "success"

    def __init__(self, decision):
        self.decision = decision

    def xcom_pull(self, task_ids, key="return_value"):
        return self.decision if key == "gate_decision" else None


class _Run:
    dag_id, run_id = "penguins", "manual__1"


def test_approval_messages_say_what_waits_and_what_the_timeout_decided():
    from airflow_provider_mlpipe.notifications.message import describe

    task = MlpipeApprovalOperator(task_id="approval_gate", response_timeout=timedelta(hours=2))
    task.subject = "Push model 12 (span 20240103) of penguins? The Evaluator says: blessed."
    pending = describe("approval_pending", {"task": task, "ti": _Ti(None), "dag_run": _Run()})
    assert pending is not None and pending.decision == "pending"
    assert "Push model 12" in pending.reason and "the default (reject) applies after 2:00:00" in pending.reason

    answered = {"gate": "approval", "decision": "reject", "timed_out": 0, "push_withheld": True, "reason": "bob: no"}
    context = {"ti": _Ti(answered), "dag_run": _Run()}
    assert describe("approval_timed_out", context) is None  # a person answered: no timeout message
    assert describe("push_withheld", context).reason == "bob: no"
    timed_out = {**answered, "timed_out": 1, "reason": "Approval: nobody answered in time"}
    message = describe("approval_timed_out", {"ti": _Ti(timed_out), "dag_run": _Run()})
    assert message is not None and message.decision == "reject" and "nobody answered" in message.text
    approved = {"gate": "approval", "decision": "approve", "timed_out": 0, "push_withheld": False}
    assert describe("push_withheld", {"ti": _Ti(approved), "dag_run": _Run()}) is None


def test_a_rejection_does_not_skip_the_retention_task(tmp_path):
    # ApprovalOperator skips every task right after it on Reject; the retention task follows the Pusher instead.
    extra = "gates:\n  approval: {}\nretention: {keep_spans: 3, cleanup_task: true}\n"
    dag = build(tmp_path, full_spec(extra=extra))
    assert set(dag.get_task("approval_gate").downstream_task_ids) == {"pusher"}
    assert "pusher" in dag.get_task("retention_gc").upstream_task_ids
