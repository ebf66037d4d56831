"""The ML runtime: runs in ``.venv-runtime`` (or a container) and never imports Airflow."""
