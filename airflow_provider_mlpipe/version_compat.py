"""Airflow 3 import paths and version gates in one place, so the rest of the provider never guesses."""

from __future__ import annotations

from airflow import __version__ as airflow_version
from airflow.providers.standard.operators.hitl import ApprovalOperator  # human-in-the-loop: Airflow 3.1+
from airflow.sdk import (
    Asset,
    AsyncCallback,
    BaseHook,
    BaseNotifier,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    Context,
    DeadlineAlert,
    DeadlineReference,
    Param,
    PokeReturnValue,
    Variable,
    conf,
    get_parsing_context,
)
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.triggers.base import BaseTrigger, TriggerEvent
from packaging.version import Version


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """The running Airflow's release as (major, minor, micro), without pre-release or dev suffixes."""
    version = Version(airflow_version)
    return version.major, version.minor, version.micro


# Gates as official providers spell them; code that touches Airflow internals checks one of these first.
AIRFLOW_V_3_3_PLUS = get_base_airflow_version_tuple() >= (3, 3, 0)
AIRFLOW_V_3_4_PLUS = get_base_airflow_version_tuple() >= (3, 4, 0)

__all__ = [
    "AIRFLOW_V_3_3_PLUS",
    "AIRFLOW_V_3_4_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "ApprovalOperator",
    "Asset",
    "AsyncCallback",
    "BaseHook",
    "BaseNotifier",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "DeadlineAlert",
    "DeadlineReference",
    "Param",
    "PokeReturnValue",
    "TriggerEvent",
    "Variable",
    "conf",
    "get_base_airflow_version_tuple",
    "get_parsing_context",
]
