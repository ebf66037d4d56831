"""mlpipe: an Apache Airflow provider for TFX-style ML pipelines driven by YAML specs."""

__version__ = "0.1.0"
