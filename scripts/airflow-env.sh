# Sourced by the demo: a local Airflow home with the embedded defaults (SQLite, local artifacts, MLMD SQLite).
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AIRFLOW_HOME=${AIRFLOW_HOME:-$REPO_ROOT/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER=${AIRFLOW__CORE__DAGS_FOLDER:-$REPO_ROOT/dags}
export AIRFLOW__CORE__PLUGINS_FOLDER=${AIRFLOW__CORE__PLUGINS_FOLDER:-$REPO_ROOT/plugins}
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# Airflow on SQLite next to a running scheduler: CLI writes wait for the database lock instead of failing.
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS:-airflow_provider_mlpipe.sqlite_settings.CONNECT_ARGS}
export AIRFLOW__MLPIPE__RUNTIME_PYTHON=${AIRFLOW__MLPIPE__RUNTIME_PYTHON:-$REPO_ROOT/.venv-runtime/bin/python}
export TF_CPP_MIN_LOG_LEVEL=3
export PATH="$REPO_ROOT/.venv/bin:$PATH"
