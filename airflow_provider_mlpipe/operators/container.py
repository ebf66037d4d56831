"""The container runtime: one stage in one Kubernetes pod, with the same stage protocol as the subprocess launcher.

A spec that sets ``runtime: {image: ...}`` gets these operators instead of the subprocess ones. The stage request
is built by the same ``StageRequestMixin`` as in ``MlpipeStageOperator``; it reaches the pod in the ``MLPIPE_REQUEST``
variable, and the runtime writes its StageResult to ``/airflow/xcom/return.json``, which the KubernetesPodOperator's
XCom sidecar reads. So the result lands in XCom exactly as with the subprocess launcher, and downstream stages do
not know which launcher ran their inputs.

Secrets never come from the spec: the MLMD config comes from a Kubernetes Secret named in ``mlmd_secret`` (the
Secret holds the JSON that ``MlmdHook.get_config()`` returns) or, without one, from the Airflow ``mlmd``
connection at run time. GCS credentials come from the pod's service account (Workload Identity) or a key file
Secret named in ``gcp_secret``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

from airflow_provider_mlpipe.hooks.mlmd import MlmdHook
from airflow_provider_mlpipe.operators.stage import MlpipeStageOperator
from airflow_provider_mlpipe.operators.stage_request import STAGE_TEMPLATE_FIELDS, StageRequestMixin
from airflow_provider_mlpipe.operators.stages import operator_for
from airflow_provider_mlpipe.protocol import MLMD_CONFIG_ENV, StageResult, runtime_command
from airflow_provider_mlpipe.stages import get_stage
from airflow_provider_mlpipe.version_compat import AirflowException, Context

REQUEST_ENV = "MLPIPE_REQUEST"
# The KubernetesPodOperator's sidecar reads this file from the shared emptyDir volume it mounts at /airflow/xcom.
XCOM_RESULT_PATH = "/airflow/xcom/return.json"
# Where the repo's Dockerfile puts the runtime venv; images built otherwise set ``runtime.python``.
DEFAULT_POD_PYTHON = "/opt/mlpipe/.venv-runtime/bin/python"
GCP_KEY_DIR = "/var/secrets/google"
RUNTIME_KEYS = frozenset(
    {
        "image",
        "python",
        "namespace",
        "service_account",
        "resources",
        "node_selector",
        "image_pull_policy",
        "image_pull_secrets",
        "labels",
        "annotations",
        "env",
        "mlmd_secret",
        "mlmd_secret_key",
        "gcp_secret",
        "gcp_secret_key",
        "spec_dir",
        "kubernetes_conn_id",
        "startup_timeout_seconds",
    }
)


def _label_value(value: str) -> str:
    """A Kubernetes label value: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value)[:63]
    return cleaned.strip("-_.") or "x"


def _resources(spec: Mapping[str, Any] | None) -> k8s.V1ResourceRequirements | None:
    if not spec:
        return None
    unknown = set(spec) - {"requests", "limits"}
    if unknown:
        raise ValueError(f"runtime.resources takes 'requests' and 'limits', not {sorted(unknown)}.")
    return k8s.V1ResourceRequirements(
        requests={k: str(v) for k, v in (spec.get("requests") or {}).items()} or None,
        limits={k: str(v) for k, v in (spec.get("limits") or {}).items()} or None,
    )


class MlpipeKubernetesStageOperator(StageRequestMixin, KubernetesPodOperator):
    """Runs one mlpipe stage in a Kubernetes pod built from the spec's ``runtime`` mapping.

    Takes the same arguments as ``MlpipeStageOperator`` plus ``runtime``: ``image`` (required), ``python`` (the
    runtime interpreter inside the image), ``namespace``, ``service_account``, ``resources`` (``requests`` /
    ``limits``), ``node_selector``, ``image_pull_policy``, ``image_pull_secrets``, ``labels``, ``annotations``,
    ``env`` (plain variables, no secrets), ``mlmd_secret`` / ``mlmd_secret_key``, ``gcp_secret`` /
    ``gcp_secret_key``, ``spec_dir`` (the pipeline folder's path inside the image), ``kubernetes_conn_id`` and
    ``startup_timeout_seconds``. Any other KubernetesPodOperator argument may be passed directly.
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        *(f for f in STAGE_TEMPLATE_FIELDS if f != "runtime_python"),
    )
    template_fields_renderers = {**KubernetesPodOperator.template_fields_renderers, "stage_params": "json"}
    ui_color = MlpipeStageOperator.ui_color
    runtime_defaults: Mapping[str, Any] = {}

    def __init__(self, *, runtime: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        stage_fields, kwargs = self.split_stage_kwargs(kwargs)
        spec = {**self.runtime_defaults, **(runtime or {})}
        unknown = set(spec) - RUNTIME_KEYS
        if unknown:
            raise ValueError(f"Unknown runtime keys {sorted(unknown)}; known: {sorted(RUNTIME_KEYS)}.")
        if not spec.get("image"):
            raise ValueError("The container runtime needs runtime.image.")
        stage = stage_fields.get("stage") or self.stage_kind
        get_stage(stage)  # fail at parse time on an unknown stage, before building the pod
        python = stage_fields.get("runtime_python") or spec.get("python") or DEFAULT_POD_PYTHON
        secrets = list(kwargs.pop("secrets", None) or [])
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        if spec.get("mlmd_secret"):
            secrets.append(Secret("env", MLMD_CONFIG_ENV, spec["mlmd_secret"], spec.get("mlmd_secret_key", "config")))
        if spec.get("gcp_secret"):
            key = spec.get("gcp_secret_key", "key.json")
            secrets.append(Secret("volume", GCP_KEY_DIR, spec["gcp_secret"], key))
            env["GOOGLE_APPLICATION_CREDENTIALS"] = f"{GCP_KEY_DIR}/{key}"
        forbidden = {MLMD_CONFIG_ENV, REQUEST_ENV} & set(env)
        if forbidden:
            raise ValueError(f"runtime.env may not set {sorted(forbidden)}; the operator provides them.")
        labels = {
            "mlpipe-pipeline": _label_value(str(stage_fields.get("pipeline", ""))),
            "mlpipe-stage": _label_value(stage),
            **{str(k): _label_value(str(v)) for k, v in (spec.get("labels") or {}).items()},
        }
        entry = runtime_command(python, "run", "--request-env", REQUEST_ENV, "--result", XCOM_RESULT_PATH)
        pod_args: dict[str, Any] = {
            "image": spec["image"],
            "namespace": spec.get("namespace"),
            "service_account_name": spec.get("service_account"),
            "container_resources": _resources(spec.get("resources")),
            "node_selector": spec.get("node_selector"),
            "image_pull_policy": spec.get("image_pull_policy"),
            "image_pull_secrets": [k8s.V1LocalObjectReference(name=n) for n in spec.get("image_pull_secrets") or []]
            or None,
            "annotations": spec.get("annotations"),
            "cmds": entry[:1],
            "arguments": entry[1:],
            "env_vars": {**env, "PYTHONUNBUFFERED": "1"},
            "labels": labels,
            "secrets": secrets,
            "do_xcom_push": True,
            "get_logs": True,
        }
        if spec.get("kubernetes_conn_id"):
            pod_args["kubernetes_conn_id"] = spec["kubernetes_conn_id"]
        if spec.get("startup_timeout_seconds"):
            pod_args["startup_timeout_seconds"] = int(spec["startup_timeout_seconds"])
        super().__init__(**{**pod_args, **kwargs})
        spec_dir = spec.get("spec_dir") or stage_fields.get("spec_dir")
        self.set_stage_fields(**{**stage_fields, "runtime_python": python, "spec_dir": spec_dir})
        self.mlmd_from_secret = bool(spec.get("mlmd_secret"))

    def execute(self, context: Context) -> dict[str, Any]:
        return self.stage_result(super().execute(context))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        # The deferrable path reads the sidecar's file here instead of in execute.
        return self.stage_result(super().trigger_reentry(context, event))

    def stage_result(self, raw: Any) -> dict[str, Any]:
        """The sidecar's JSON as a StageResult dict, the same XCom the subprocess launcher pushes."""
        if not raw:
            raise AirflowException(
                f"The {self.stage} pod finished without a stage result in {XCOM_RESULT_PATH}; see the pod log above."
            )
        result = StageResult.from_dict(raw)
        return self.stage_result_xcom(result)

    def mlmd_env(self) -> k8s.V1EnvVar | None:
        """The MLMD config as a plain variable, when no Kubernetes Secret provides it."""
        if self.mlmd_from_secret:
            return None
        config = MlmdHook(self.mlmd_conn_id).get_config()
        if config["backend"] == "sqlite":
            raise AirflowException(
                f"The {self.task_id} pod cannot reach the embedded SQLite MLMD store at {config.get('path')}. "
                f"Point the {self.mlmd_conn_id} connection at PostgreSQL or MySQL, or name a Kubernetes Secret "
                "holding the MLMD config in runtime.mlmd_secret."
            )
        return k8s.V1EnvVar(name=MLMD_CONFIG_ENV, value=json.dumps(config))

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        if context is None:  # ``dry_run()`` without a task instance: no request to hand over
            return pod
        if not self.pipeline_root.startswith("gs://"):
            self.log.warning(
                "pipeline_root %s is a local path: the pod sees it only if the same path is a shared volume.",
                self.pipeline_root,
            )
        request = self.build_request(context)
        # Added to the pod, not to self.env_vars, so the request and the MLMD config stay out of the rendered
        # template fields that Airflow stores and shows.
        extra = [k8s.V1EnvVar(name=REQUEST_ENV, value=request.to_json())]
        mlmd = self.mlmd_env()
        if mlmd is not None:
            extra.append(mlmd)
        container = next(c for c in pod.spec.containers if c.name == self.base_container_name)
        container.env = [*(container.env or []), *extra]
        return pod


_POD_OPERATORS: dict[tuple[str, str], type[MlpipeKubernetesStageOperator]] = {}


def pod_operator_for(stage: str, runtime: Mapping[str, Any]) -> type[MlpipeKubernetesStageOperator]:
    """A pod operator class for ``stage`` that carries ``runtime`` as its defaults (one class per pair)."""
    key = (stage, json.dumps(runtime, sort_keys=True, default=str))
    if key not in _POD_OPERATORS:
        base = operator_for(stage)
        name = base.__name__.removesuffix("Operator") + "PodOperator"
        _POD_OPERATORS[key] = type(
            name,
            (MlpipeKubernetesStageOperator,),
            {
                "stage_kind": stage,
                "ui_color": base.ui_color,
                "runtime_defaults": dict(runtime),
                "__module__": __name__,
            },
        )
    return _POD_OPERATORS[key]
