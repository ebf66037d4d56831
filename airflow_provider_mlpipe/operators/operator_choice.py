"""Which launcher runs a stage: the spec's ``runtime`` decides between a subprocess and a Kubernetes pod."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_mlpipe.operators.stages import operator_for


def stage_operator_for(runtime: Mapping[str, Any] | None, stage: str) -> type:
    """The operator class for ``stage`` under a spec's ``runtime`` mapping.

    ``runtime.image`` set: a ``MlpipeKubernetesStageOperator`` subclass that carries the mapping (image, namespace,
    resources, ...). Otherwise the subprocess operator of the stage. Both take the keyword arguments of
    ``MlpipeStageOperator``; for the pod, ``runtime_python`` is the interpreter inside the image.
    """
    if runtime and runtime.get("image"):
        # Imported here so DAGs without a container runtime do not need the cncf-kubernetes provider.
        from airflow_provider_mlpipe.operators.container import pod_operator_for

        return pod_operator_for(stage, runtime)
    return operator_for(stage)
