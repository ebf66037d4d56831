"""Airflow 3 import paths in one place, so the rest of the provider never guesses."""

from __future__ import annotations

from airflow.sdk import (
    Asset,
    BaseHook,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    Variable,
    conf,
    get_parsing_context,
)
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "Asset",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "PokeReturnValue",
    "TriggerEvent",
    "Variable",
    "conf",
    "get_parsing_context",
]
