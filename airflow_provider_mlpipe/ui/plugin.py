"""The mlpipe Airflow plugin: registered by the provider and by the plugins/ folder."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class MlpipePlugin(AirflowPlugin):
    name = "mlpipe"
