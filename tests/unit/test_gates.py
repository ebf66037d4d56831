"""Gate policy logic, the trigger, and the sensors' execute paths with a mocked task context.

The same paths run for real in tests/integration/test_gates_airflow.py (dags test and a real triggerer).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, ArtifactRef, StageResult
from airflow_provider_mlpipe.sensors import DataValidationSensor, ModelBlessingSensor, gates
from airflow_provider_mlpipe.storage import Storage
from airflow_provider_mlpipe.triggers import VerdictFileTrigger
from airflow_provider_mlpipe.triggers.gates import read_verdict
from airflow_provider_mlpipe.version_compat import AirflowException, AirflowFailException, AirflowSkipException

DROPPED = {
    "split": "train",
    "feature": "bill_length_mm",
    "severity": "ERROR",
    "kind": "schema",
    "short_description": "Column dropped",
    "description": "missing in 100% of examples",
}
DRIFT = {
    "split": "train",
    "feature": "body_mass_g",
    "severity": "WARNING",
    "kind": "drift",
    "short_description": "High Linfty distance",
    "description": "0.42 > 0.1",
}
MINOR = {"feature": "island", "severity": "INFO", "short_description": "New value", "description": ""}
ANOMALIES = {"blessed": False, "anomalies": [DROPPED, DRIFT, MINOR]}
REGRESSED = {
    "blessed": False,
    "reason": "accuracy 0.41 is below the lower bound 0.8",
    "current_model_id": 12,
    "failed": [{"metric": "accuracy", "slice": "Overall", "value": 0.41, "threshold": "lower_bound 0.8"}],
}


# ----- policy logic ------------------------------------------------------------------------------------------
def test_min_severity_and_ignored_features_decide_what_blocks() -> None:
    blocking, ignored = gates.blocking_anomalies(ANOMALIES)
    assert blocking == [DROPPED, DRIFT] and ignored == [MINOR]

    blocking, ignored = gates.blocking_anomalies(ANOMALIES, min_severity="error")
    assert blocking == [DROPPED] and ignored == [DRIFT, MINOR]

    blocking, ignored = gates.blocking_anomalies(ANOMALIES, ignore_features=["bill_length_mm"], min_severity="INFO")
    assert blocking == [DRIFT, MINOR] and ignored == [DROPPED]


def test_unknown_severity_blocks_and_an_unexplained_refusal_is_not_a_pass() -> None:
    odd = {"feature": "x", "severity": "CATASTROPHIC", "short_description": "?"}
    assert gates.blocking_anomalies({"anomalies": [odd]}, min_severity="ERROR")[0] == [odd]
    blocking, _ = gates.blocking_anomalies({"blessed": False, "anomalies": []})
    assert len(blocking) == 1 and blocking[0]["short_description"] == "Not blessed"
    assert gates.blocking_anomalies({"blessed": True, "anomalies": []}) == ([], [])
    with pytest.raises(ValueError, match="severity"):
        gates.blocking_anomalies(ANOMALIES, min_severity="LOUD")


def test_failed_thresholds_need_both_the_file_and_the_artifact_to_bless() -> None:
    assert gates.failed_thresholds({"blessed": True}) == []
    assert gates.failed_thresholds({"blessed": True}, {"blessed": 1}) == []
    assert gates.failed_thresholds(REGRESSED) == REGRESSED["failed"]
    [disagreement] = gates.failed_thresholds({"blessed": True, "reason": "ok"}, {"blessed": 0})
    assert disagreement["metric"] == "" and disagreement["reason"] == "ok"


def test_messages_name_feature_severity_description_and_metric_threshold() -> None:
    assert gates.format_anomaly(DROPPED) == (
        "bill_length_mm [ERROR] (train, schema): Column dropped - missing in 100% of examples"
    )
    assert gates.format_anomaly(MINOR) == "island [INFO]: New value"
    assert gates.format_threshold(REGRESSED["failed"][0]) == "accuracy on Overall = 0.41, threshold lower_bound 0.8"
    kpi = {"metric": "error_cost", "kpi": True, "slice": "Overall", "value": 12.0, "threshold": "upper_bound 10.0"}
    assert gates.format_threshold(kpi) == "KPI error_cost on Overall = 12, threshold upper_bound 10.0"
    listed = gates._bullets([f"f{i}" for i in range(60)])
    assert listed.count("\n  - ") == 50 and listed.endswith("... and 10 more")


def test_constructors_refuse_bad_policies_and_filters() -> None:
    with pytest.raises(ValueError, match="policy"):
        DataValidationSensor(task_id="g", policy="ignore")
    with pytest.raises(TypeError, match="list of feature names"):
        DataValidationSensor(task_id="g", ignore_features="body_mass_g")
    with pytest.raises(ValueError, match="severity"):
        DataValidationSensor(task_id="g", min_severity="LOUD")
    templated = DataValidationSensor(task_id="g", policy="{{ params.policy }}")
    assert "policy" in templated.template_fields and "ignore_features" in templated.template_fields
    assert ModelBlessingSensor(task_id="b").upstream_task_id == "evaluator"


# ----- the trigger -----------------------------------------------------------------------------------------
def _first_event(trigger: VerdictFileTrigger, after: Any = None, timeout: float = 20) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        agen = trigger.run()
        task = asyncio.ensure_future(agen.__anext__())
        if after is not None:
            await asyncio.sleep(0.3)
            after()
        event = await asyncio.wait_for(task, timeout)
        await agen.aclose()
        return event.payload

    return asyncio.run(go())


def test_trigger_serialisation_round_trips_through_airflow_serde(tmp_path: Path) -> None:
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    trigger = VerdictFileTrigger(uri=str(tmp_path / "anomalies.json"), poll_interval=2, timeout=30)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_mlpipe.triggers.gates.VerdictFileTrigger"
    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    expected = {"uri": str(tmp_path / "anomalies.json"), "poll_interval": 2.0, "timeout": 30.0}
    assert kwargs == {**expected, "gcp_conn_id": "google_cloud_default"}


def test_trigger_waits_for_the_file_then_fires_with_the_verdict(tmp_path: Path) -> None:
    path = tmp_path / "anomalies.json"
    trigger = VerdictFileTrigger(uri=str(path), poll_interval=0.1, timeout=15)
    event = _first_event(trigger, after=lambda: path.write_text(json.dumps(ANOMALIES)))
    assert event == {"status": "success", "uri": str(path), "verdict": ANOMALIES}


def test_trigger_reports_timeouts_and_unparsable_files(tmp_path: Path) -> None:
    missing = VerdictFileTrigger(uri=str(tmp_path / "never.json"), poll_interval=0.05, timeout=0.3)
    event = _first_event(missing)
    assert event["status"] == "timeout" and "never.json" in event["message"]

    broken = tmp_path / "blessing.json"
    broken.write_text("{half")
    event = _first_event(VerdictFileTrigger(uri=str(broken), poll_interval=0.05, timeout=5))
    assert event["status"] == "error" and "JSONDecodeError" in event["message"]


# ----- sensors with a mocked task context ------------------------------------------------------------------
def _context(result: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    pushed: dict[str, Any] = {}
    ti = mock.Mock()
    ti.xcom_pull.return_value = result
    ti.xcom_push.side_effect = lambda key, value: pushed.__setitem__(key, value)
    return {"ti": ti, "run_id": "manual__1"}, pushed


def _result(artifact_dir: Path, artifact_type: str, slot: str, **props: Any) -> dict[str, Any]:
    ref = ArtifactRef(artifact_type, str(artifact_dir), 41, slot, dict(props))
    return StageResult(stage="x", execution_id=40, cached=False, outputs={slot: [ref]}).to_dict()


@pytest.fixture
def launched() -> Any:
    """The runtime launch that records the decision in MLMD (run for real in the integration tests)."""
    with (
        mock.patch.object(gates, "run_streaming") as run,
        mock.patch.object(gates, "resolve_runtime_python", return_value="/runtime/python"),
    ):
        yield run


def _anomalies_dir(tmp_path: Path, verdict: dict[str, Any] | None = ANOMALIES) -> Path:
    path = tmp_path / "anomalies"
    path.mkdir()
    if verdict is not None:
        (path / "anomalies.json").write_text(json.dumps(verdict))
    return path


def test_fail_raises_without_retry_pushes_the_decision_and_records_it(tmp_path: Path, launched: Any) -> None:
    context, pushed = _context(_result(_anomalies_dir(tmp_path), "ExampleAnomalies", "anomalies"))
    sensor = DataValidationSensor(task_id="data_gate", upstream_task_id="validator", pipeline="penguins")
    with pytest.raises(AirflowFailException) as err:
        sensor.execute(context)
    assert "2 anomalies at or above WARNING" in str(err.value)
    assert "bill_length_mm [ERROR] (train, schema): Column dropped" in str(err.value)
    context["ti"].xcom_pull.assert_called_with(task_ids="validator")

    decision = pushed["gate_decision"]
    assert decision["decision"] == "fail" and decision["push_withheld"] is True
    assert decision["ignored"] == [MINOR] and decision["artifact"]["id"] == 41

    [call] = launched.call_args_list
    command, env = call.args[0], call.args[1]
    assert command[:4] == ["/runtime/python", "-m", "airflow_provider_mlpipe.runtime", "gate-record"]
    payload = json.loads(command[4])
    assert payload["pipeline"] == "penguins" and payload["run_id"] == "manual__1"
    assert payload["decision"] == "fail" and payload["input_artifact_id"] == 41 and payload["node_id"] == "data_gate"
    assert json.loads(env[MLMD_CONFIG_ENV])["backend"] == "sqlite"


def test_skip_and_warn(tmp_path: Path, launched: Any) -> None:
    context, pushed = _context(_result(_anomalies_dir(tmp_path), "ExampleAnomalies", "anomalies"))
    with pytest.raises(AirflowSkipException, match="skips the push"):
        DataValidationSensor(task_id="g", policy="skip").execute(context)
    assert pushed["gate_decision"]["decision"] == "skip"

    result = DataValidationSensor(task_id="g", policy="warn").execute(context)
    assert result["decision"] == "warn" and result["push_withheld"] is False
    assert pushed["gate_decision"] == result


def test_a_missing_verdict_defers_to_the_trigger_and_execute_complete_decides(tmp_path: Path, launched: Any) -> None:
    artifact = _anomalies_dir(tmp_path, verdict=None)
    context, _ = _context(_result(artifact, "ExampleAnomalies", "anomalies"))
    sensor = DataValidationSensor(task_id="g", deferrable=True, poke_interval=3, timeout=120)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, VerdictFileTrigger)
    assert (trigger.uri, trigger.poll_interval, trigger.timeout) == (str(artifact / "anomalies.json"), 3.0, 120.0)
    assert deferred.value.method_name == "execute_complete"
    assert not launched.called

    clean = {"status": "success", "uri": trigger.uri, "verdict": {"blessed": True, "anomalies": [MINOR]}}
    assert sensor.execute_complete(context, clean)["decision"] == "pass"
    with pytest.raises(AirflowException, match="No verdict appeared"):
        sensor.execute_complete(context, {"status": "timeout", "message": "No verdict appeared at x"})


def test_poke_mode_waits_and_then_decides(tmp_path: Path, launched: Any) -> None:
    blessing = tmp_path / "blessing"
    blessing.mkdir()
    context, _ = _context(_result(blessing, "ModelBlessing", "blessing", blessed=0))
    sensor = ModelBlessingSensor(task_id="b", deferrable=False, poke_interval=0, timeout=0.2)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(context)
    (blessing / "blessing.json").write_text(json.dumps(REGRESSED))
    with pytest.raises(AirflowFailException, match=r"accuracy on Overall = 0\.41, threshold lower_bound 0\.8"):
        sensor.execute(context)

    (blessing / "blessing.json").write_text(json.dumps({"blessed": True, "current_model_id": 12}))
    passed = ModelBlessingSensor(task_id="b", deferrable=False, policy="skip", poke_interval=0, timeout=5)
    context, _ = _context(_result(blessing, "ModelBlessing", "blessing", blessed=1))
    assert passed.execute(context)["decision"] == "pass"


def test_the_gate_refuses_a_missing_or_mismatched_upstream_result(tmp_path: Path, launched: Any) -> None:
    context, _ = _context(None)
    with pytest.raises(AirflowFailException, match="left none"):
        DataValidationSensor(task_id="g").execute(context)
    context, _ = _context(_result(tmp_path, "ModelBlessing", "blessing"))
    with pytest.raises(AirflowFailException, match="no ExampleAnomalies artifact"):
        DataValidationSensor(task_id="g").execute(context)


def test_trigger_reads_gs_uris_through_the_shared_storage() -> None:
    from tests.support.gcs_emulator import running_emulator

    with running_emulator(default_bucket="gates"):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        uri = "gs://gates/penguins/evaluator/9/blessing/blessing.json"
        assert read_verdict(uri, Storage()) is None  # a missing object means "not yet", not an error
        trigger = VerdictFileTrigger(uri=uri, poll_interval=0.2, timeout=30)

        def upload() -> None:
            client = storage.Client(project="mlpipe-test", credentials=AnonymousCredentials())
            blob = client.bucket("gates").blob("penguins/evaluator/9/blessing/blessing.json")
            blob.upload_from_string(json.dumps(REGRESSED))

        assert _first_event(trigger, after=upload) == {"status": "success", "uri": uri, "verdict": REGRESSED}
