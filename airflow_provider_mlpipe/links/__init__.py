"""Operator extra links of the mlpipe stage tasks."""

from airflow_provider_mlpipe.links.stage import MlpipeArtifactsLink, MlpipeRunViewLink

__all__ = ["MlpipeArtifactsLink", "MlpipeRunViewLink"]
