#!/usr/bin/env bash
# airflow-init: migrate the Airflow metadata DB and (re)create the mlmd connection. Idempotent.
set -euo pipefail

airflow db migrate

# The ML Metadata store lives in the "mlmd" database of the same PostgreSQL server; see
# airflow_provider_mlpipe/hooks/mlmd.py for the connection fields. Re-created on every start so a changed
# password in .env takes effect.
airflow connections delete "${MLMD_CONN_ID:-mlmd_default}" >/dev/null 2>&1 || true
airflow connections add "${MLMD_CONN_ID:-mlmd_default}" \
  --conn-type mlmd \
  --conn-schema postgresql \
  --conn-host "${MLMD_DB_HOST:-postgres}" \
  --conn-port "${MLMD_DB_PORT:-5432}" \
  --conn-login "${POSTGRES_USER:-airflow}" \
  --conn-password "${POSTGRES_PASSWORD:-airflow}" \
  --conn-extra "{\"database\": \"${MLMD_DB_NAME:-mlmd}\"}"

airflow connections get "${MLMD_CONN_ID:-mlmd_default}" -o json | grep -q '"conn_type": "mlmd"'
echo "mlpipe init done: Airflow DB migrated, connection ${MLMD_CONN_ID:-mlmd_default} points at ${MLMD_DB_NAME:-mlmd}."
