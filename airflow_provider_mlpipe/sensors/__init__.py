"""Gate sensors that hold the push on data validation and on model blessing."""

from __future__ import annotations

from airflow_provider_mlpipe.sensors.gates import DataValidationSensor, ModelBlessingSensor

__all__ = ["DataValidationSensor", "ModelBlessingSensor"]
