"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_mlpipe import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-mlpipe",
        "name": "mlpipe",
        "description": "TFX-style ML pipelines (TFDV, tf.Transform, Keras, TFMA, MLMD, Beam) from YAML specs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "mlpipe",
                "external-doc-url": "https://github.com/mlpipe/airflow-provider-mlpipe",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "mlpipe",
                "python-modules": [
                    "airflow_provider_mlpipe.operators.stage",
                    "airflow_provider_mlpipe.operators.stages",
                    "airflow_provider_mlpipe.operators.container",
                ],
            }
        ],
        "sensors": [{"integration-name": "mlpipe", "python-modules": ["airflow_provider_mlpipe.sensors.gates"]}],
        "triggers": [{"integration-name": "mlpipe", "python-modules": ["airflow_provider_mlpipe.triggers.gates"]}],
        "hooks": [{"integration-name": "mlpipe", "python-modules": ["airflow_provider_mlpipe.hooks.mlmd"]}],
        "connection-types": [
            {
                "connection-type": "mlmd",
                "hook-class-name": "airflow_provider_mlpipe.hooks.mlmd.MlmdHook",
            }
        ],
        "config": {
            "mlpipe": {
                "description": "Settings of the mlpipe provider.",
                "options": {
                    "runtime_python": {
                        "description": "Interpreter of the ML runtime venv, used when a spec names none.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/mlpipe/.venv-runtime/bin/python",
                        "default": "",
                    },
                    "warm_runtime": {
                        "description": "Fork each stage from a per-host warm runtime that keeps the ML stack "
                        "imported; False runs every stage in a cold interpreter.",
                        "version_added": "0.2.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "warm_idle_timeout": {
                        "description": "Seconds without a stage after which the warm runtime exits.",
                        "version_added": "0.2.0",
                        "type": "integer",
                        "example": "120",
                        "default": "600",
                    },
                    "warm_startup_timeout": {
                        "description": "Seconds a stage waits for a starting warm runtime before running cold.",
                        "version_added": "0.2.0",
                        "type": "integer",
                        "example": "60",
                        "default": "180",
                    },
                    "ui_mlmd_conn_id": {
                        "description": "The mlmd connection the UI plugin reads lineage from.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "mlmd_default",
                        "default": "mlmd_default",
                    },
                    "environment": {
                        "description": "Spec overlay to apply (dev, staging or prod) when no variable names one.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "prod",
                        "default": "",
                    },
                },
            }
        },
        "plugins": [
            {"name": "mlpipe", "plugin-class": "airflow_provider_mlpipe.ui.plugin.MlpipePlugin"},
        ],
    }
