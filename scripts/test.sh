#!/usr/bin/env bash
# Runs the whole suite: runtime tests in .venv-runtime, then Airflow-side tests in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-artifacts
.venv-runtime/bin/python -m pytest -p no:cacheprovider tests/runtime "$@"
.venv/bin/python -m pytest -p no:cacheprovider tests --ignore=tests/runtime "$@"
