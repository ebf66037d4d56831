"""Triggers that run on the Airflow triggerer; free of TensorFlow and ML Metadata imports."""

from __future__ import annotations

from airflow_provider_mlpipe.triggers.gates import VerdictFileTrigger

__all__ = ["VerdictFileTrigger"]
