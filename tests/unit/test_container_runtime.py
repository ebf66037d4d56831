"""The Kubernetes container runtime: the pod each stage would get, built without a cluster.

The last test runs the pod's own command and environment against the real runtime venv (the image's
interpreter swapped for ``.venv-runtime``), which is as close to a pod as this machine gets.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pendulum
import pytest
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from airflow_provider_mlpipe.operators.container import (
    DEFAULT_POD_PYTHON,
    REQUEST_ENV,
    XCOM_RESULT_PATH,
    MlpipeKubernetesStageOperator,
)
from airflow_provider_mlpipe.operators.operator_choice import stage_operator_for
from airflow_provider_mlpipe.operators.stages import StatisticsGenOperator, operator_for
from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, StageRequest, StageResult
from airflow_provider_mlpipe.version_compat import AirflowException
from tests.support.paths import REPO

RuntimeProbeOperator = operator_for("probe")  # the test-only stage of tests/support/probe_stage.py

RUNTIME_PYTHON = REPO / ".venv-runtime" / "bin" / "python"
RUNTIME = {
    "image": "europe-docker.pkg.dev/acme/ml/mlpipe:1.2.3",
    "namespace": "ml-pipelines",
    "service_account": "mlpipe-runner",
    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
    "node_selector": {"pool": "highmem"},
    "env": {"MLPIPE_LOG_LEVEL": "DEBUG"},
    "labels": {"team": "Data Science/Platform"},
}
UPSTREAM = {
    "stage": "example_gen",
    "execution_id": 3,
    "cached": False,
    "outputs": {"examples": [{"type": "Examples", "uri": "gs://bucket/root/p/example_gen/3/examples", "id": 5}]},
}
PG_CONN = {
    "conn_type": "mlmd",
    "schema": "postgresql",
    "host": "mlmd-db.internal",
    "port": 5432,
    "login": "mlpipe",
    "password": "s3cret",
    "extra": {"database": "mlmd"},
}


class FakeTI:
    dag_id = "penguins"
    map_index = -1
    try_number = 2

    def __init__(self, task_id: str, upstream: dict | None = None) -> None:
        self.task_id = task_id
        self.upstream = upstream or {}
        self.pulled: list[str] = []

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> dict | None:
        self.pulled.append(task_ids)
        return self.upstream.get(task_ids)


class FakeDagRun:
    conf = {"stages": {"statistics_gen": {"mode": "beam"}}}


def make_context(task_id: str, upstream: dict | None = None) -> dict:
    start = pendulum.datetime(2024, 1, 5, tz="UTC")
    return {
        "ti": FakeTI(task_id, upstream),
        "run_id": "scheduled__2024-01-05T00:00:00+00:00",
        "dag_run": FakeDagRun(),
        "logical_date": start,
        "data_interval_start": start,
        "data_interval_end": start.add(days=1),
        "dag": object(),
    }


@pytest.fixture
def mlmd_on_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLMD_DEFAULT", json.dumps(PG_CONN))


STAGE_KWARGS = {
    "task_id": "statistics_gen",
    "pipeline": "penguins",
    "pipeline_root": "gs://bucket/root",
    "stage_params": {"mode": "beam"},
    "inputs": {"examples": "example_gen.examples"},
    "beam_args": ["--runner=DataflowRunner", "--project=acme", "--region=europe-west1"],
    "spec_dir": "/opt/airflow/dags/pipelines",
}


def build(runtime: dict, stage: str = "statistics_gen", **overrides: object):
    cls = stage_operator_for(runtime, stage)
    op = cls(**{**STAGE_KWARGS, **overrides})
    context = make_context(op.task_id, {"example_gen": UPSTREAM})
    return op, op.build_pod_request_obj(context, dry_run=True), context


def env_of(container) -> dict[str, object]:
    return {e.name: (e.value if e.value is not None else e.value_from) for e in container.env or []}


def base_container(pod):
    return next(c for c in pod.spec.containers if c.name == "base")


def test_stage_operator_for_chooses_the_launcher() -> None:
    assert stage_operator_for(None, "statistics_gen") is StatisticsGenOperator
    assert stage_operator_for({"python": "/usr/bin/python3"}, "probe") is RuntimeProbeOperator
    pod_cls = stage_operator_for(RUNTIME, "statistics_gen")
    assert issubclass(pod_cls, MlpipeKubernetesStageOperator) and issubclass(pod_cls, KubernetesPodOperator)
    assert pod_cls.__name__ == "StatisticsGenPodOperator"
    assert pod_cls.ui_color == StatisticsGenOperator.ui_color
    assert stage_operator_for(dict(RUNTIME), "statistics_gen") is pod_cls  # one class per (stage, runtime)
    assert stage_operator_for({**RUNTIME, "namespace": "other"}, "statistics_gen") is not pod_cls


def test_pod_spec_image_command_resources_labels(mlmd_on_postgres: None) -> None:
    _, pod, _ = build(RUNTIME)
    container = base_container(pod)
    assert container.image == RUNTIME["image"]
    assert container.command == [DEFAULT_POD_PYTHON]
    assert container.args == [
        "-m",
        "airflow_provider_mlpipe.runtime",
        "run",
        "--request-env",
        REQUEST_ENV,
        "--result",
        XCOM_RESULT_PATH,
    ]
    assert pod.metadata.namespace == "ml-pipelines"
    assert pod.spec.service_account_name == "mlpipe-runner"
    assert pod.spec.node_selector == {"pool": "highmem"}
    assert container.resources.requests == {"cpu": "2", "memory": "4Gi"}
    assert container.resources.limits == {"memory": "8Gi"}
    labels = pod.metadata.labels
    assert labels["mlpipe-pipeline"] == "penguins" and labels["mlpipe-stage"] == "statistics_gen"
    assert labels["team"] == "Data-Science-Platform"  # made a valid label value
    assert labels["dag_id"] == "penguins" and labels["task_id"] == "statistics_gen" and labels["try_number"] == "2"
    assert pod.spec.restart_policy == "Never"


def test_xcom_sidecar_reads_the_result_file(mlmd_on_postgres: None) -> None:
    op, pod, _ = build(RUNTIME)
    assert op.do_xcom_push is True
    names = [c.name for c in pod.spec.containers]
    assert names == ["base", "airflow-xcom-sidecar"]
    xcom_dir = os.path.dirname(XCOM_RESULT_PATH)
    base_mounts = {m.mount_path: m.name for m in base_container(pod).volume_mounts}
    sidecar = pod.spec.containers[1]
    assert base_mounts[xcom_dir] == "xcom"
    assert {m.mount_path for m in sidecar.volume_mounts} == {xcom_dir}
    assert any(v.name == "xcom" and v.empty_dir is not None for v in pod.spec.volumes)
    assert XCOM_RESULT_PATH == "/airflow/xcom/return.json"  # the file the provider's sidecar cats


def test_request_round_trips_and_equals_the_subprocess_request(mlmd_on_postgres: None) -> None:
    _, pod, _ = build(RUNTIME)
    env = env_of(base_container(pod))
    request = StageRequest.from_dict(json.loads(env[REQUEST_ENV]))
    assert request.stage == "statistics_gen" and request.node_id == "statistics_gen"
    assert request.pipeline_root == "gs://bucket/root"
    assert request.beam_args == STAGE_KWARGS["beam_args"]
    assert request.inputs["examples"][0].uri == "gs://bucket/root/p/example_gen/3/examples"
    assert request.inputs["examples"][0].id == 5
    assert request.conf == FakeDagRun.conf
    assert request.data_interval_start == "2024-01-05T00:00:00+00:00"
    assert request.try_number == 2
    # The subprocess launcher, given the same arguments and context, builds the identical request.
    kwargs = {k: v for k, v in STAGE_KWARGS.items()}
    subprocess_request = StatisticsGenOperator(**kwargs).build_request(
        make_context("statistics_gen", {"example_gen": UPSTREAM})
    )
    assert request.to_json() == subprocess_request.to_json()
    assert env["MLPIPE_LOG_LEVEL"] == "DEBUG" and env["PYTHONUNBUFFERED"] == "1"


def test_mlmd_config_comes_from_the_connection_not_the_spec(mlmd_on_postgres: None) -> None:
    op, pod, _ = build(RUNTIME)
    env = env_of(base_container(pod))
    assert json.loads(env[MLMD_CONFIG_ENV]) == {
        "backend": "postgresql",
        "host": "mlmd-db.internal",
        "port": 5432,
        "user": "mlpipe",
        "password": "s3cret",
        "database": "mlmd",
    }
    # The password is in the pod only, never in the operator's templated (stored and displayed) fields.
    for field in op.template_fields:
        assert "s3cret" not in json.dumps(getattr(op, field, None), default=str), field


def test_mlmd_and_gcp_credentials_from_kubernetes_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLMD_DEFAULT", raising=False)  # the connection is not even read
    runtime = {**RUNTIME, "mlmd_secret": "mlmd-config", "gcp_secret": "gcs-writer"}
    _, pod, _ = build(runtime)
    env = env_of(base_container(pod))
    ref = env[MLMD_CONFIG_ENV].secret_key_ref
    assert (ref.name, ref.key) == ("mlmd-config", "config")
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/google/key.json"
    secret_volumes = [v for v in pod.spec.volumes if v.secret is not None]
    assert [v.secret.secret_name for v in secret_volumes] == ["gcs-writer"]
    mounts = {m.mount_path: m.name for m in base_container(pod).volume_mounts}
    assert mounts["/var/secrets/google"] == secret_volumes[0].name


def test_embedded_sqlite_mlmd_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MLMD_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    with pytest.raises(AirflowException, match="SQLite"):
        build(RUNTIME)


def test_bad_runtime_specs_fail_at_parse_time() -> None:
    with pytest.raises(ValueError, match="Unknown runtime keys"):
        stage_operator_for({**RUNTIME, "imagee": "x"}, "probe")(**{**STAGE_KWARGS, "task_id": "probe"})
    with pytest.raises(ValueError, match="may not set"):
        stage_operator_for({**RUNTIME, "env": {MLMD_CONFIG_ENV: "{}"}}, "probe")(**{**STAGE_KWARGS, "task_id": "p"})
    with pytest.raises(ValueError, match="requests"):
        stage_operator_for({**RUNTIME, "resources": {"cpu": 1}}, "probe")(**{**STAGE_KWARGS, "task_id": "probe"})
    with pytest.raises(KeyError, match="Unknown stage"):
        MlpipeKubernetesStageOperator(task_id="x", pipeline="p", pipeline_root="gs://b", stage="nope", runtime=RUNTIME)


def test_the_sidecar_result_becomes_the_stage_result(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {**UPSTREAM, "stage": "statistics_gen", "summary": {"path": "beam"}, "duration_s": 1.5}
    monkeypatch.setattr(KubernetesPodOperator, "execute", lambda self, context: raw)
    op = stage_operator_for(RUNTIME, "statistics_gen")(**STAGE_KWARGS)
    result = op.execute(make_context("statistics_gen"))
    assert result == StageResult.from_dict(raw).to_dict()
    monkeypatch.setattr(KubernetesPodOperator, "execute", lambda self, context: None)
    with pytest.raises(AirflowException, match="without a stage result"):
        op.execute(make_context("statistics_gen"))


def test_a_pipeline_of_pod_stages_serializes_for_the_scheduler() -> None:
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("pods", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        gen = stage_operator_for(RUNTIME, "example_gen")(**{**STAGE_KWARGS, "task_id": "example_gen", "inputs": {}})
        stats = stage_operator_for(RUNTIME, "statistics_gen")(**STAGE_KWARGS)
        gen >> stats
    back = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag), default=str)))
    task = back.get_task("statistics_gen")
    assert task.task_type == "StatisticsGenPodOperator"
    assert task.image == RUNTIME["image"] and task.beam_args == STAGE_KWARGS["beam_args"]
    assert back.get_task("example_gen").downstream_task_ids == {"statistics_gen"}


@pytest.mark.skipif(not RUNTIME_PYTHON.exists(), reason="needs .venv-runtime")
def test_pod_command_runs_the_stage_in_the_runtime(tmp_path: Path) -> None:
    """Run the base container's command with its environment, as the kubelet would, on this machine."""
    runtime = {**RUNTIME, "mlmd_secret": "mlmd-config"}
    _, pod, _ = build(
        runtime,
        stage="probe",
        task_id="probe",
        inputs={},
        stage_params={"values": [1.0, 2.0, 4.5]},
        pipeline_root=str(tmp_path / "root"),
    )
    container = base_container(pod)
    env = {k: v for k, v in env_of(container).items() if isinstance(v, str)}
    # What the Secret would inject, and where the image's interpreter and the xcom volume are here.
    env[MLMD_CONFIG_ENV] = json.dumps({"backend": "sqlite", "path": str(tmp_path / "mlmd.sqlite")})
    result_path = tmp_path / "return.json"
    args = [str(result_path) if a == XCOM_RESULT_PATH else a for a in container.args]
    proc = subprocess.run(
        [str(RUNTIME_PYTHON), *args],
        env={"PATH": os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = StageResult.from_dict(json.loads(result_path.read_text()))
    probe = result.artifact("probe")
    assert result.stage == "probe" and not result.cached and result.execution_id
    assert probe.properties["sum"] == 7.5
    assert probe.uri.startswith(str(tmp_path / "root" / "penguins" / "probe"))
    assert (Path(probe.uri) / "_MLPIPE_COMPLETE").exists()
