#!/usr/bin/env bash
# The demo: runs the bundled penguins pipeline end to end through Airflow (`airflow dags test`) with the
# embedded defaults, then prints a readable summary. The full Airflow log goes to .airflow/demo.log.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/airflow-env.sh
DAG_ID=${MLPIPE_DEMO_DAG:-penguins}
LOGICAL_DATE=${MLPIPE_DEMO_DATE:-2024-01-05}
mkdir -p "$AIRFLOW_HOME"
if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  echo "Setting up Airflow in $AIRFLOW_HOME ..."
  airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1
fi
echo "Running the $DAG_ID pipeline for $LOGICAL_DATE through Airflow (log: $AIRFLOW_HOME/demo.log) ..."
started=$(date +%s)
set +e
: >"$AIRFLOW_HOME/demo.log"
airflow dags test "$DAG_ID" "$LOGICAL_DATE" >"$AIRFLOW_HOME/demo.log" 2>&1 &
airflow_pid=$!
# One line per stage as it ends (name, state, time, cache hit), instead of one silent wait.
.venv/bin/python scripts/demo_progress.py "$AIRFLOW_HOME/demo.log" "$airflow_pid" || true
wait "$airflow_pid"
code=$?
set -e
echo "Finished in $(( $(date +%s) - started ))s."
echo
.venv/bin/mlpipe summary "$DAG_ID" || true
if [ $code -ne 0 ]; then
  echo
  echo "The run failed; the last lines of the log:" >&2
  grep -E "ERROR|failed|Error" "$AIRFLOW_HOME/demo.log" | tail -n 15 >&2
  exit $code
fi
