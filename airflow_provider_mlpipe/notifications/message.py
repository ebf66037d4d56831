"""What a notification says: the event, the pipeline, the run, the decision, the reason and a link to the run view.

Each event reads its facts where the deciding task left them: a gate's ``gate_decision`` XCom, the Pusher's
StageResult XCom (the version, or why the push was withheld), the rollback operator's return value, the DAG
callback's reason, the deadline's time. ``describe`` returns None when the event did not happen in this context
(a Pusher that withheld its push sends no ``pushed`` message).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_mlpipe.links.stage import pipeline_view_url, run_view_url
from airflow_provider_mlpipe.notifications.events import EVENTS
from airflow_provider_mlpipe.sensors.gates import DECISION_KEY


@dataclass
class Message:
    event: str
    pipeline: str
    run_id: str
    decision: str
    headline: str
    reason: str
    url: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"[mlpipe] {self.pipeline}: {self.headline}" + (f" (run {self.run_id})" if self.run_id else "")

    @property
    def text(self) -> str:
        return (
            f"{self.subject}\nEvent: {self.event}\nPipeline: {self.pipeline}\nRun: {self.run_id}\n"
            f"Decision: {self.decision}\nReason: {self.reason}\nRun view: {self.url}"
        )

    @property
    def html(self) -> str:
        rows = [("Event", self.event), ("Pipeline", self.pipeline), ("Run", self.run_id)]
        rows += [("Decision", self.decision), ("Reason", self.reason)]
        cells = "".join(f"<tr><th align='left'>{k}</th><td><pre>{html.escape(v)}</pre></td></tr>" for k, v in rows)
        link = f"<a href='{html.escape(self.url, quote=True)}'>Open the run view</a>"
        return f"<h3>{html.escape(self.headline)}</h3><table>{cells}</table><p>{link}</p>"

    def template_context(self) -> dict[str, Any]:
        """The ``mlpipe`` variable that notifier arguments may use in their Jinja templates."""
        return {**asdict(self), "subject": self.subject, "text": self.text, "html": self.html}


# ----- reading the context (task callbacks, DAG callbacks and deadline callbacks hand different ones) -----------
def run_ids(context: Any) -> tuple[str, str]:
    """(dag_id, run_id) from a task or DAG callback context, or the deadline callback's ``dag_run`` mapping."""
    dag_run = context.get("dag_run")
    if isinstance(dag_run, dict):  # the REST API's DAGRunResponse: the run id is dag_run_id there
        return str(dag_run.get("dag_id", "")), str(dag_run.get("dag_run_id") or dag_run.get("run_id", ""))
    dag = context.get("dag")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", "")
    return str(dag_id), str(getattr(dag_run, "run_id", None) or context.get("run_id", ""))


def _xcom(context: Any, key: str = "return_value") -> Any:
    ti = context.get("ti")
    if ti is None:
        return None
    try:
        return ti.xcom_pull(task_ids=ti.task_id, key=key)
    except Exception:  # a callback context without XCom access: the message says what it knows
        return None


def _task_id(context: Any) -> str:
    return str(getattr(context.get("ti"), "task_id", "") or "")


def _failure(context: Any) -> str:
    exception = context.get("exception")
    return f"{type(exception).__name__}: {exception}" if isinstance(exception, BaseException) else str(exception or "")


# ----- one describer per event: (headline, decision, reason, details), or None when the event did not happen --
Facts = tuple[str, str, str, dict[str, Any]]


def _gate_failed(context: Any) -> Facts | None:
    decision = _xcom(context, DECISION_KEY)
    if isinstance(decision, dict) and decision.get("decision") == "fail":
        return f"the {decision.get('gate')} gate failed the run", "fail", str(decision.get("reason")), decision
    return f"the {_task_id(context)} gate failed", "failed", _failure(context) or "no verdict", {}


def _push_withheld(context: Any) -> Facts | None:
    decision = _xcom(context, DECISION_KEY)
    if isinstance(decision, dict) and decision.get("decision") == "skip":
        return f"the {decision.get('gate')} gate withheld the push", "skip", str(decision.get("reason")), decision
    if isinstance(decision, dict) and decision.get("gate") == "approval" and decision.get("push_withheld"):
        return "the approval withheld the push", str(decision.get("decision")), str(decision.get("reason")), decision
    summary = (_xcom(context) or {}).get("summary") or {}
    if summary.get("push_withheld"):
        return "the Pusher withheld the push", "withheld", str(summary.get("reason")), summary
    if context.get("ti") is not None and getattr(context["ti"], "state", None) == "skipped":
        return f"{_task_id(context)} withheld the push", "skip", _failure(context) or "skipped", {}
    return None


def _approval_pending(context: Any) -> Facts | None:
    task = context.get("task")
    subject = str(getattr(task, "subject", "") or "A push waits for approval.")
    default = str(getattr(task, "default", "reject"))
    timeout = getattr(task, "response_timeout", None)
    after = f"after {timeout}" if timeout else "never (no timeout)"
    reason = f"{subject} Answer under Required actions in Airflow; the default ({default}) applies {after}."
    return "an approval waits for a reviewer", "pending", reason, {"subject": subject, "default": default}


def _approval_timed_out(context: Any) -> Facts | None:
    decision = _xcom(context, DECISION_KEY)
    if not (isinstance(decision, dict) and decision.get("gate") == "approval" and decision.get("timed_out")):
        return None
    outcome = str(decision.get("decision"))
    return f"the approval timed out: {outcome} by default", outcome, str(decision.get("reason")), decision


def _pushed(context: Any) -> Facts | None:
    summary = (_xcom(context) or {}).get("summary") or {}
    if not summary.get("pushed"):
        return None
    version, where = summary.get("version"), summary.get("destination")
    return f"model version {version} pushed", "pushed", f"Version {version} now serves from {where}.", summary


def _rolled_back(context: Any) -> Facts | None:
    # the rollback operator's return value, or the summary `mlpipe rollback` hands over (no task, no run)
    result = context.get("rollback") or _xcom(context) or {}
    if not result.get("version"):
        return None
    version, copy_of, was = result.get("version"), result.get("rollback_of"), result.get("rolled_back_from")
    reason = f"Version {version} now serves a copy of version {copy_of}; version {was} served before."
    return f"rolled back to version {copy_of}", "rolled back", reason, result


def _run_failed(context: Any) -> Facts | None:
    reason = str(context.get("reason") or "the run failed")
    task = _task_id(context)
    decision = _xcom(context, DECISION_KEY) if task else None
    if isinstance(decision, dict) and decision.get("reason"):
        reason = f"{reason}; {decision['reason']}"
    elif task:
        reason = f"{reason}; last task: {task}"
    return "the run failed", "failed", reason, {}


def _deadline_missed(context: Any) -> Facts | None:
    deadline = context.get("deadline") or {}
    dag_run = context.get("dag_run") if isinstance(context.get("dag_run"), dict) else {}
    state, when = dag_run.get("state", "running"), deadline.get("deadline_time", "")
    # Airflow drops a run's deadline only when the run succeeds, so a failed run reaches its deadline too.
    if state == "failed":
        reason = f"The run failed, so it was not done by its deadline {when}."
    else:
        reason = f"The run was still {state} at its deadline {when}."
    return "the run missed its deadline", "deadline missed", reason, {"deadline": deadline}


def _generic(event: str) -> Callable[[Any], Facts | None]:
    def describe(context: Any) -> Facts | None:
        return EVENTS[event], event, _failure(context) or f"{_task_id(context) or 'the run'}: {EVENTS[event]}", {}

    return describe


DESCRIBERS: dict[str, Callable[[Any], Facts | None]] = {
    "gate_failed": _gate_failed,
    "push_withheld": _push_withheld,
    "approval_pending": _approval_pending,
    "approval_timed_out": _approval_timed_out,
    "pushed": _pushed,
    "rolled_back": _rolled_back,
    "run_failed": _run_failed,
    "deadline_missed": _deadline_missed,
}


def describe(event: str, context: Any) -> Message | None:
    """The message for ``event`` in this callback context, or None when the event did not happen."""
    facts = DESCRIBERS.get(event, _generic(event))(context)
    if facts is None:
        return None
    headline, decision, reason, details = facts
    dag_id, run_id = run_ids(context)
    url = run_view_url(dag_id, run_id) if run_id else pipeline_view_url(dag_id)
    return Message(event, dag_id, run_id, decision, headline, reason, url, details)
