# syntax=docker/dockerfile:1
# mlpipe image: Airflow 3.3.2 + this provider in /opt/mlpipe/.venv, the ML runtime (TF 2.16 stack) in its own
# venv at /opt/mlpipe/.venv-runtime. Both come from the repo's lock files, so the image holds exactly what the
# tests ran against. The two venvs cannot be merged (ml-metadata pins attrs<24, the Airflow task SDK needs >=24.2).
#
# We start from python:3.11-slim rather than apache/airflow:3.3.2-python3.11: the official image ships its own
# provider set and constraints, and syncing our lock on top of it would fight them. The layout (AIRFLOW_HOME,
# uid 50000, gid 0) follows the official image so its docker-compose conventions carry over.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first: this layer is rebuilt only when a lock changes, not on every source edit.
COPY requirements/airflow.lock requirements/runtime.lock requirements/
RUN uv venv --python /usr/local/bin/python3.11 /opt/mlpipe/.venv \
 && uv pip sync --python /opt/mlpipe/.venv/bin/python requirements/airflow.lock
RUN uv venv --python /usr/local/bin/python3.11 /opt/mlpipe/.venv-runtime \
 && uv pip sync --python /opt/mlpipe/.venv-runtime/bin/python requirements/runtime.lock
COPY pyproject.toml setup.cfg README.md ./
COPY airflow_provider_mlpipe/ airflow_provider_mlpipe/
# --no-deps: the locks already hold every dependency; a resolver run here could only drift from them.
RUN uv pip install --python /opt/mlpipe/.venv/bin/python --no-deps . \
 && uv pip install --python /opt/mlpipe/.venv-runtime/bin/python --no-deps .

FROM ${PYTHON_IMAGE}
# curl: the api-server and scheduler health checks; tini: reaps the runtime's Beam worker processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow airflow \
 && mkdir -p /opt/airflow/dags /opt/airflow/plugins /opt/airflow/logs /opt/airflow/mlpipe-artifacts \
 && chown -R 50000:0 /opt/airflow && chmod -R g+rwX /opt/airflow
COPY --from=build /opt/mlpipe /opt/mlpipe
COPY docker/init.sh /opt/mlpipe/init.sh
ENV AIRFLOW_HOME=/opt/airflow \
    PATH=/opt/mlpipe/.venv/bin:${PATH} \
    AIRFLOW__MLPIPE__RUNTIME_PYTHON=/opt/mlpipe/.venv-runtime/bin/python \
    MLPIPE_RUNTIME_PYTHON=/opt/mlpipe/.venv-runtime/bin/python \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2
USER 50000
WORKDIR /opt/airflow
# Import checks at build time: a broken venv fails the build, not the first DAG run. A throwaway AIRFLOW_HOME,
# so no generated airflow.cfg (with its own fernet key) is baked into the image.
RUN AIRFLOW_HOME=/tmp/airflow-check airflow version && rm -rf /tmp/airflow-check \
 && /opt/mlpipe/.venv-runtime/bin/python -c "import tensorflow, ml_metadata, tensorflow_data_validation, apache_beam, airflow_provider_mlpipe.runtime.runner" \
 && /opt/mlpipe/.venv-runtime/bin/python -m airflow_provider_mlpipe.runtime --help > /dev/null \
 && mlpipe --help > /dev/null
ENTRYPOINT ["/usr/bin/tini", "--", "airflow"]
CMD ["version"]
