"""Pipeline specs: the pydantic model, the line-keeping YAML loader, validation, the JSON Schema and the CLI.

Importing this package stays cheap and Airflow-free; ``airflow_provider_mlpipe.factory`` turns specs into DAGs.
"""

from __future__ import annotations

from airflow_provider_mlpipe.spec.errors import SpecError, SpecErrors
from airflow_provider_mlpipe.spec.loader import LoadedSpec, load_spec, selected_environment
from airflow_provider_mlpipe.spec.model import PipelineSpec
from airflow_provider_mlpipe.spec.validate import Pipeline, discover, load_all, load_pipeline, validate

__all__ = [
    "LoadedSpec",
    "Pipeline",
    "PipelineSpec",
    "SpecError",
    "SpecErrors",
    "discover",
    "load_all",
    "load_pipeline",
    "load_spec",
    "selected_environment",
    "validate",
]
