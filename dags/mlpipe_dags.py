"""Every pipeline spec under dags/pipelines/ becomes a DAG; an invalid spec shows up as its own import error."""

from pathlib import Path

from airflow_provider_mlpipe.factory import load_pipelines

load_pipelines(Path(__file__).parent / "pipelines", globals())
