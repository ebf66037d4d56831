"""The gates that hold the push: data validation (anomalies) and model blessing.

A gate reads the verdict of *this* run — the artifact URI comes from the upstream task's XCom result, never from
"the latest file on disk" — waits until the verdict file is readable (deferring to the triggerer, or poking),
then applies its policy:

- ``fail``: the task fails without retries (``AirflowFailException``); the DAG run ends ``failed`` and every
  downstream task, the push included, ends ``upstream_failed``.
- ``skip``: the task is skipped (``AirflowSkipException``); downstream tasks with the default trigger rule are
  skipped too, so nothing is pushed. Skipped counts as done, so the DAG run itself ends ``success``; the gate's
  ``gate_decision`` XCom and the MLMD ``mlpipe.Gate`` execution say the push was withheld and why.
- ``warn``: the problems are logged as a warning and the push goes ahead (the factory allows it in dev only).

Every decision lands in the task log, in XCom (key ``gate_decision``, also the return value) and in MLMD.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

# PokeReturnValue is not (yet) in version_compat; airflow.sdk is where Airflow 3 exports it.
from airflow_provider_mlpipe.hooks.gcp_storage import storage_for
from airflow_provider_mlpipe.operators.launch import kill_process_group, run_streaming, runtime_env
from airflow_provider_mlpipe.operators.runtime_interpreter import resolve_runtime_python
from airflow_provider_mlpipe.protocol import ArtifactRef, StageResult, runtime_command
from airflow_provider_mlpipe.stages import ANOMALIES, MODEL_BLESSING
from airflow_provider_mlpipe.storage import join
from airflow_provider_mlpipe.triggers.gates import STATUS_SUCCESS, VerdictFileTrigger, read_verdict
from airflow_provider_mlpipe.version_compat import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)

POLICIES = ("fail", "skip", "warn")
# Read once at import, as official providers do: gates defer when the call or Airflow's config says so.
DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)
SEVERITIES = {"UNKNOWN": 0, "INFO": 1, "WARNING": 2, "ERROR": 3}
DECISION_KEY = "gate_decision"
MAX_LISTED = 50


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"The gate policy {policy!r} is not one of {', '.join(POLICIES)}.")
    return policy


def check_severity(severity: str) -> str:
    name = str(severity).upper()
    if name not in SEVERITIES:
        raise ValueError(f"The severity {severity!r} is not one of {', '.join(SEVERITIES)}.")
    return name


# ----- verdicts (pure functions, so the policy is testable without Airflow) ---------------------------------
def blocking_anomalies(
    verdict: dict[str, Any], ignore_features: Iterable[str] = (), min_severity: str = "WARNING"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``anomalies.json`` into (anomalies that block, anomalies the filters let through)."""
    ignored_names = set(ignore_features)
    floor = SEVERITIES[check_severity(min_severity)]
    blocking: list[dict[str, Any]] = []
    ignored: list[dict[str, Any]] = []
    for anomaly in verdict.get("anomalies") or []:
        # An anomaly without a known severity is treated as an error: unknown must not slip through.
        severity = SEVERITIES.get(str(anomaly.get("severity", "ERROR")).upper(), SEVERITIES["ERROR"])
        if anomaly.get("feature") in ignored_names or severity < floor:
            ignored.append(anomaly)
        else:
            blocking.append(anomaly)
    if not blocking and not ignored and verdict.get("blessed") is False:
        # The validator refused its blessing without saying why; do not read that as a pass.
        blocking.append(
            {"feature": "", "severity": "ERROR", "short_description": "Not blessed", "description": "no details"}
        )
    return blocking, ignored


def failed_thresholds(verdict: dict[str, Any], properties: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The failed thresholds of ``blessing.json``; empty when the model is blessed."""
    # Both the file and the artifact's MLMD property must say "blessed": a disagreement blocks.
    blessed = verdict.get("blessed") is True and (properties or {}).get("blessed", 1) in (1, True)
    if blessed:
        return []
    failed = list(verdict.get("failed") or [])
    if not failed:
        failed.append(
            {
                "metric": "",
                "slice": "",
                "value": None,
                "threshold": "",
                "reason": verdict.get("reason") or "not blessed",
            }
        )
    return failed


def format_anomaly(anomaly: dict[str, Any]) -> str:
    where = ", ".join(str(anomaly[k]) for k in ("split", "kind") if anomaly.get(k))
    text = f"{anomaly.get('feature') or '(dataset)'} [{anomaly.get('severity', 'ERROR')}]"
    if where:
        text += f" ({where})"
    short, long = anomaly.get("short_description") or "", anomaly.get("description") or ""
    return f"{text}: {short}" + (f" - {long}" if long and long != short else "")


def format_threshold(failed: dict[str, Any]) -> str:
    if not failed.get("metric"):
        return str(failed.get("reason") or "not blessed")
    value = failed.get("value")
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    name = f"KPI {failed['metric']}" if failed.get("kpi") else failed["metric"]
    return f"{name} on {failed.get('slice') or 'Overall'} = {shown}, threshold {failed.get('threshold')}"


def _bullets(lines: Iterable[str], limit: int = MAX_LISTED) -> str:
    # A broken upstream can raise hundreds of anomalies; the message, XCom and MLMD keep the first ones readable.
    lines = list(lines)
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "".join(f"\n  - {line}" for line in lines[:limit]) + more


def record_decision(
    payload: dict[str, Any],
    runtime_python: str | None,
    mlmd_conn_id: str | None,
    log: Any,
    on_process: Callable[[subprocess.Popen[str] | None], None],
) -> None:
    """Record a gate's or an approval's decision in MLMD through the runtime, which alone may import ml_metadata.

    ``payload`` is what ``runtime gate-record`` takes; ``on_process`` receives the child so ``on_kill`` can end it.
    """
    command = runtime_command(resolve_runtime_python(runtime_python), "gate-record", json.dumps(payload))
    run_streaming(command, runtime_env(mlmd_conn_id), log, f"Recording the {payload['gate']} decision", on_process)


# ----- sensors ---------------------------------------------------------------------------------------------
class _ArtifactGateSensor(BaseSensorOperator):
    """Shared mechanics: find this run's verdict artifact, wait for its file, decide, record, apply the policy."""

    gate: ClassVar[str] = ""
    title: ClassVar[str] = ""
    artifact_type: ClassVar[str] = ""
    verdict_file: ClassVar[str] = ""
    default_upstream: ClassVar[str] = ""  # the task whose result names the verdict artifact
    template_fields: Sequence[str] = ("upstream_task_id", "policy", "pipeline", "mlmd_conn_id", "runtime_python")
    ui_color = "#f4cccc"

    def __init__(
        self,
        *,
        upstream_task_id: str | None = None,
        policy: str = "fail",
        deferrable: bool = DEFAULT_DEFERRABLE,
        poke_interval: float = 10.0,
        pipeline: str = "",
        mlmd_conn_id: str | None = "mlmd_default",
        runtime_python: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        if "{{" not in policy:  # a templated policy is checked once rendered
            check_policy(policy)
        if deferrable and self.mode == "reschedule":  # deferring would silently ignore the mode
            raise ValueError(
                f"The {self.task_id} gate cannot both defer and reschedule: a deferred sensor waits on the "
                "triggerer. Pass deferrable=False to reschedule, or leave mode at 'poke' to defer."
            )
        self.upstream_task_id = upstream_task_id or self.default_upstream
        self.policy = policy
        self.deferrable = deferrable
        self.pipeline = pipeline
        self.mlmd_conn_id = mlmd_conn_id
        self.runtime_python = runtime_python
        self._process: subprocess.Popen[str] | None = None

    # ----- what a gate decides on; the subclasses fill these in -----------------------------------------
    def evaluate(self, verdict: dict[str, Any], ref: ArtifactRef) -> dict[str, Any]:
        """Return ``{"items": [blocking problems], "lines": [their text], ...extra XCom fields}``."""
        raise NotImplementedError

    # ----- the verdict artifact of this run ---------------------------------------------------------------
    def verdict_artifact(self, context: Context) -> ArtifactRef:
        raw = context["ti"].xcom_pull(task_ids=self.upstream_task_id)
        if not raw:
            raise AirflowFailException(
                f"The {self.task_id} gate reads the result of {self.upstream_task_id}, but that task left none."
            )
        result = StageResult.from_dict(raw)
        for refs in result.outputs.values():
            for ref in refs:
                if ref.type == self.artifact_type:
                    return ref
        raise AirflowFailException(
            f"The result of {self.upstream_task_id} has no {self.artifact_type} artifact "
            f"(outputs: {', '.join(result.outputs) or 'none'}); point the gate at the right task."
        )

    def verdict_uri(self, ref: ArtifactRef) -> str:
        return join(ref.uri, self.verdict_file)

    # ----- waiting -----------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any] | None:
        check_policy(self.policy)
        if not self.deferrable:
            return super().execute(context)  # poke or reschedule until poke() has a verdict
        ref = self.verdict_artifact(context)
        verdict = self._read(self.verdict_uri(ref))
        if verdict is None:
            self.log.info("No verdict at %s yet; deferring to the triggerer.", self.verdict_uri(ref))
            self.defer(
                trigger=VerdictFileTrigger(
                    uri=self.verdict_uri(ref), poll_interval=self.poke_interval, timeout=self.timeout
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        return self.decide(context, ref, verdict)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        ref = self.verdict_artifact(context)
        verdict = self._read(self.verdict_uri(ref))
        if verdict is None:
            self.log.info("No verdict at %s yet.", self.verdict_uri(ref))
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.decide(context, ref, verdict))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = event or {}
        if event.get("status") != STATUS_SUCCESS:
            raise AirflowException(
                f"The {self.task_id} gate got no verdict: {event.get('message') or 'the trigger sent no event'}"
            )
        self.log.info("The triggerer found the verdict at %s.", event.get("uri"))
        return self.decide(context, self.verdict_artifact(context), event["verdict"])

    def _read(self, uri: str) -> dict[str, Any] | None:
        try:
            return read_verdict(uri, storage_for(uri))
        except ValueError as exc:
            raise AirflowException(f"The verdict at {uri} is not valid JSON: {exc}")

    # ----- deciding --------------------------------------------------------------------------------------
    def decide(self, context: Context, ref: ArtifactRef, verdict: dict[str, Any]) -> dict[str, Any]:
        check_policy(self.policy)
        found = self.evaluate(verdict, ref)
        lines, headline = found.pop("lines"), found.pop("headline")
        decision = self.policy if found.pop("items") else "pass"
        action = {"pass": "passed", "fail": "fails the run", "skip": "skips the push", "warn": "only warns (dev)"}
        reason = f"{self.title} gate {action[decision]}: {headline}{_bullets(lines)}"
        result = {
            "gate": self.gate,
            "decision": decision,
            "push_withheld": decision in ("fail", "skip"),
            "policy": self.policy,
            "reason": reason,
            "artifact": {"type": ref.type, "uri": ref.uri, "id": ref.id, "verdict": self.verdict_uri(ref)},
            **found,
        }
        context["ti"].xcom_push(key=DECISION_KEY, value=result)
        self.record(context, result, ref)
        if decision == "fail":
            self.log.error("%s", reason)
            raise AirflowFailException(reason)
        if decision == "skip":
            self.log.warning("%s", reason)
            raise AirflowSkipException(reason)
        if decision == "warn":
            self.log.warning("%s", reason)
        else:
            self.log.info("%s", reason)
        return result

    def record(self, context: Context, result: dict[str, Any], ref: ArtifactRef) -> None:
        """Record the decision in MLMD through the runtime, which alone may import ml_metadata."""
        payload = {
            "pipeline": self.pipeline or self.dag_id,
            "run_id": context["run_id"],
            "node_id": self.task_id,
            "gate": self.gate,
            "decision": result["decision"],
            "reason": result["reason"],
            "policy": self.policy,
            "input_artifact_id": ref.id,
            "verdict_uri": result["artifact"]["verdict"],
        }
        record_decision(payload, self.runtime_python, self.mlmd_conn_id, self.log, self._set_process)

    def _set_process(self, process: subprocess.Popen[str] | None) -> None:
        self._process = process

    def on_kill(self) -> None:
        kill_process_group(self._process, self.log)


class DataValidationSensor(_ArtifactGateSensor):
    """Holds the pipeline on this run's ExampleValidator anomalies.

    :param upstream_task_id: the ExampleValidator task whose result (XCom) names the anomalies artifact.
    :param policy: ``fail``, ``skip`` or ``warn`` when anomalies remain after the filters.
    :param ignore_features: anomalies on these features never block.
    :param min_severity: anomalies below this severity (``INFO`` < ``WARNING`` < ``ERROR``) never block.
    :param deferrable: wait on the triggerer instead of holding a worker slot; by default Airflow's
        ``[operators] default_deferrable``. When not deferring, ``mode`` (``poke`` or ``reschedule``) applies.
    :param pipeline: the MLMD pipeline context; the DAG id when empty.
    """

    gate = "data_validation"
    title = "Data validation"
    artifact_type = ANOMALIES
    verdict_file = "anomalies.json"
    default_upstream = "example_validator"
    template_fields: Sequence[str] = (*_ArtifactGateSensor.template_fields, "ignore_features", "min_severity")

    def __init__(self, *, ignore_features: Sequence[str] = (), min_severity: str = "WARNING", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(ignore_features, str):
            raise TypeError("ignore_features takes a list of feature names, not one string.")
        if "{{" not in min_severity:
            check_severity(min_severity)
        self.ignore_features = list(ignore_features)
        self.min_severity = min_severity

    def evaluate(self, verdict: dict[str, Any], ref: ArtifactRef) -> dict[str, Any]:
        blocking, ignored = blocking_anomalies(verdict, self.ignore_features, self.min_severity)
        floor = check_severity(self.min_severity)
        if blocking:
            headline = f"{len(blocking)} anomal{'y' if len(blocking) == 1 else 'ies'} at or above {floor}"
        else:
            headline = "no anomalies" if not ignored else "no anomalies left after the filters"
        if ignored:
            headline += f" ({len(ignored)} ignored: below {floor} or on ignored features)"
        return {
            "items": blocking,
            "lines": [format_anomaly(a) for a in blocking],
            "headline": headline,
            "anomalies": blocking,
            "ignored": ignored,
            "filters": {"ignore_features": list(self.ignore_features), "min_severity": floor},
        }


class ModelBlessingSensor(_ArtifactGateSensor):
    """Holds the push on this run's Evaluator blessing.

    :param upstream_task_id: the Evaluator task whose result (XCom) names the ModelBlessing artifact.
    :param policy: ``fail``, ``skip`` or ``warn`` when the model is not blessed.
    """

    gate = "model_blessing"
    title = "Model blessing"
    artifact_type = MODEL_BLESSING
    verdict_file = "blessing.json"
    default_upstream = "evaluator"

    def evaluate(self, verdict: dict[str, Any], ref: ArtifactRef) -> dict[str, Any]:
        failed = failed_thresholds(verdict, ref.properties)
        model = verdict.get("current_model_id")
        if failed:
            headline = f"model {model} is not blessed: {verdict.get('reason') or 'thresholds failed'}"
        else:
            headline = f"model {model} is blessed"
        return {
            "items": failed,
            "lines": [format_threshold(f) for f in failed if f.get("metric")],
            "headline": headline,
            "failed": failed,
            "current_model_id": model,
            "baseline_model_id": verdict.get("baseline_model_id"),
        }
