"""Airflow plugins-folder entry for mlpipe; the provider's entry point registers the same plugin."""

from airflow_provider_mlpipe.ui.plugin import MlpipePlugin

__all__ = ["MlpipePlugin"]
