"""The approval gate: a person signs off before the push, through Airflow's own human-in-the-loop ApprovalOperator.

Airflow does the waiting (the task parks in ``awaiting_input``; the scheduler applies the default when the response
timeout passes), shows the request under "Required actions" and takes the answer from the UI or the REST API
(``PATCH .../taskInstances/{task_id}/hitlDetails``). This subclass only writes what the reviewer needs into the
request (the candidate's metrics by slice against the baseline's with the thresholds, the data anomalies and drift,
a link to the run view) and records every decision in MLMD as an ``mlpipe.Approval`` execution.

A rejection either skips the Pusher (``on_reject="skip"``: the run succeeds, nothing is pushed) or fails the task
(``on_reject="fail"``). A timeout takes ``default`` (``reject`` unless set), recorded with ``timed_out``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_mlpipe.hooks.gcp_storage import storage_for
from airflow_provider_mlpipe.links.stage import run_view_url
from airflow_provider_mlpipe.operators.approval_request import approval_body, approval_subject
from airflow_provider_mlpipe.operators.launch import kill_process_group
from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult
from airflow_provider_mlpipe.sensors.gates import DECISION_KEY, record_decision
from airflow_provider_mlpipe.stages import ANOMALIES, MODEL_BLESSING, MODEL_EVALUATION
from airflow_provider_mlpipe.storage import join
from airflow_provider_mlpipe.triggers.gates import read_verdict
from airflow_provider_mlpipe.version_compat import AirflowFailException, ApprovalOperator, Context, Param

OUTCOMES = ("approve", "reject")
ON_REJECT = ("fail", "skip")
COMMENT_PARAM = "comment"


def _timeout_text(timeout: timedelta | None) -> str:
    if timeout is None:
        return "ever (no timeout is set)"
    hours, rest = divmod(int(timeout.total_seconds()), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{seconds} s" if seconds else ""]
    return "within " + (" ".join(p for p in parts if p) or "0 s")


class MlpipeApprovalOperator(ApprovalOperator):
    """Asks a person to approve the push of this run's candidate model; records the answer in MLMD.

    :param evaluator_task_id: the Evaluator task whose result (XCom) names the metrics and the blessing.
    :param validator_task_id: the ExampleValidator task whose anomalies and drift the request shows, if any.
    :param approvers: Airflow user ids who may respond (Airflow's ``assigned_users``); empty: anyone allowed
        to act on the DAG's required actions. Airflow 3.3 assigns users only, not roles.
    :param response_timeout: how long to wait; then ``default`` is taken. ``None`` waits forever.
    :param default: ``approve`` or ``reject`` (the default), the outcome when the timeout passes.
    :param on_reject: ``skip`` (default) skips the push and the run succeeds; ``fail`` fails the task.
    :param pipeline: the MLMD pipeline context; the DAG id when empty.
    """

    template_fields: Sequence[str] = (
        *ApprovalOperator.template_fields,
        "evaluator_task_id",
        "validator_task_id",
        "pipeline",
        "mlmd_conn_id",
        "runtime_python",
    )
    ui_color = "#fff3bf"

    def __init__(
        self,
        *,
        evaluator_task_id: str = "evaluator",
        validator_task_id: str | None = None,
        approvers: Sequence[str] = (),
        response_timeout: timedelta | None = timedelta(days=1),
        default: str = "reject",
        on_reject: str = "skip",
        pipeline: str = "",
        mlmd_conn_id: str | None = "mlmd_default",
        runtime_python: str | None = None,
        **kwargs: Any,
    ) -> None:
        if default not in OUTCOMES:
            raise ValueError(f"The approval default {default!r} is not one of {', '.join(OUTCOMES)}.")
        if on_reject not in ON_REJECT:
            raise ValueError(f"on_reject {on_reject!r} is not one of {', '.join(ON_REJECT)}.")
        if isinstance(approvers, str):
            raise TypeError("approvers takes a list of Airflow user ids, not one string.")
        comment = Param(None, type=["null", "string"], description="Why (recorded in ML Metadata).", source="task")
        kwargs.pop("params", None)  # the DAG's params: Airflow leaves those out of a HITL form anyway
        kwargs.setdefault("subject", f"Approve the push of {pipeline or kwargs.get('task_id', 'this model')}?")
        super().__init__(
            fail_on_reject=on_reject == "fail",
            defaults=ApprovalOperator.APPROVE if default == "approve" else ApprovalOperator.REJECT,
            assigned_users=[{"id": user, "name": user} for user in approvers] or None,
            response_timeout=response_timeout,
            params={COMMENT_PARAM: comment},
            **kwargs,
        )
        self.evaluator_task_id = evaluator_task_id
        self.validator_task_id = validator_task_id
        self.approvers = list(approvers)
        self.default = default
        self.on_reject = on_reject
        self.pipeline = pipeline
        self.mlmd_conn_id = mlmd_conn_id
        self.runtime_python = runtime_python
        self._process: subprocess.Popen[str] | None = None

    # ----- what the reviewer sees --------------------------------------------------------------------------
    def _result(self, context: Context, task_id: str) -> StageResult:
        raw = context["ti"].xcom_pull(task_ids=task_id)
        if not raw:
            raise AirflowFailException(f"The {self.task_id} gate reads the result of {task_id}, but it left none.")
        return StageResult.from_dict(raw)

    @staticmethod
    def _artifact(result: StageResult, artifact_type: str, where: str) -> ArtifactRef:
        for refs in result.outputs.values():
            for ref in refs:
                if ref.type == artifact_type:
                    return ref
        raise AirflowFailException(f"The result of {where} has no {artifact_type} artifact.")

    @staticmethod
    def _read(uri: str) -> dict[str, Any]:
        verdict = read_verdict(uri, storage_for(uri))
        if verdict is None:
            raise AirflowFailException(f"{uri} does not exist, so there is nothing to show the reviewer.")
        return verdict

    def execute(self, context: Context) -> Any:
        evaluator = self._result(context, self.evaluator_task_id)
        metrics_ref = self._artifact(evaluator, MODEL_EVALUATION, self.evaluator_task_id)
        blessing_ref = self._artifact(evaluator, MODEL_BLESSING, self.evaluator_task_id)
        blessing = self._read(join(blessing_ref.uri, "blessing.json"))
        anomalies = None
        if self.validator_task_id:
            validator = self._result(context, self.validator_task_id)
            anomalies = self._read(join(self._artifact(validator, ANOMALIES, self.validator_task_id).uri,
                                        "anomalies.json"))  # fmt: skip
        pipeline = self.pipeline or self.dag_id
        self.subject = approval_subject(pipeline, blessing, blessing_ref.properties.get("span"))
        self.body = approval_body(
            pipeline=pipeline,
            run_id=context["run_id"],
            run_view=run_view_url(self.dag_id, context["run_id"]),
            metrics=self._read(join(metrics_ref.uri, "metrics.json")),
            blessing=blessing,
            anomalies=anomalies,
            default=self.default,
            timeout_text=_timeout_text(self.response_timeout),
        )
        return super().execute(context)

    # ----- the answer -------------------------------------------------------------------------------------
    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            self.record(context, event)
        return super().execute_complete(context=context, event=event)

    def record(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Push the decision to XCom (``gate_decision``) and record it in MLMD as an ``mlpipe.Approval``."""
        chosen = (event.get("chosen_options") or [""])[0]
        decision = "approve" if chosen == ApprovalOperator.APPROVE else "reject"
        timed_out = bool(event.get("timedout"))
        user = event.get("responded_by_user") or {}
        comment = (event.get("params_input") or {}).get(COMMENT_PARAM) or ""
        responded_at = event.get("responded_at")
        when = responded_at.isoformat() if hasattr(responded_at, "isoformat") else str(responded_at or "")
        if timed_out:
            who = f"nobody answered in time, so the default ({decision}) applies"
        else:
            who = f"{user.get('name') or user.get('id') or 'an unknown user'} chose {chosen}"
        effect = "the push goes ahead" if decision == "approve" else f"the push is withheld ({self.on_reject})"
        reason = f"Approval: {who} at {when}; {effect}." + (f" Comment: {comment}" if comment else "")
        blessing_ref = self._artifact(
            self._result(context, self.evaluator_task_id), MODEL_BLESSING, self.evaluator_task_id
        )
        model_id = blessing_ref.properties.get("current_model_id")
        details = {
            "approver": user.get("id"),
            "approver_name": user.get("name"),
            "responded_at": when,
            "timed_out": int(timed_out),
            "comment": comment or None,
            "default": self.default,
            "model_id": model_id,
        }
        result = {"gate": "approval", "decision": decision, "push_withheld": decision == "reject",
                  "policy": self.on_reject, "reason": reason, **details}  # fmt: skip
        context["ti"].xcom_push(key=DECISION_KEY, value=result)
        payload = {
            "pipeline": self.pipeline or self.dag_id,
            "run_id": context["run_id"],
            "node_id": self.task_id,
            "gate": "approval",
            "decision": decision,
            "reason": reason,
            "policy": self.on_reject,
            "input_artifact_id": blessing_ref.id,
            "model_artifact_id": model_id,
            "details": details,
        }
        (self.log.info if decision == "approve" else self.log.warning)("%s", reason)
        record_decision(payload, self.runtime_python, self.mlmd_conn_id, self.log, self._set_process)
        return result

    def _set_process(self, process: subprocess.Popen[str] | None) -> None:
        self._process = process

    def on_kill(self) -> None:
        kill_process_group(self._process, self.log)
