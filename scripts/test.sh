#!/usr/bin/env bash
# Runs the whole suite in two lanes side by side, each a pytest process of its own:
#   lane 1: the runtime tests (.venv-runtime), then the two PostgreSQL topology tests (Celery and LocalExecutor),
#           the browser tests and the summary tests;
#   lane 2: every other Airflow-side test (.venv).
# The split balances the lanes by the durations pytest prints at the end of each.
# The lanes share nothing: every test starts its own servers on free loopback ports, in its own temp folders.
# Most of an integration test's time is spent waiting on Airflow's scheduler loops, so two lanes on two cores
# finish well before one would. Arguments are passed to every pytest run.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-artifacts
LANE1_AIRFLOW=(
  tests/integration/test_celery_airflow.py
  tests/integration/test_production_topology.py
  tests/integration/test_ui_browser.py
  tests/integration/test_summary_airflow.py
)
COMMON=(-p no:cacheprovider --durations=15)

lane1() {
  .venv-runtime/bin/python -m pytest "${COMMON[@]}" tests/runtime "$@" || return 1
  .venv/bin/python -m pytest "${COMMON[@]}" "${LANE1_AIRFLOW[@]}" "$@"
}

lane2() {
  local ignores=(--ignore=tests/runtime)
  for path in "${LANE1_AIRFLOW[@]}"; do ignores+=("--ignore=$path"); done
  .venv/bin/python -m pytest "${COMMON[@]}" tests "${ignores[@]}" "$@"
}

started=$(date +%s)
lane1 "$@" >.test-artifacts/lane1.log 2>&1 &
pid1=$!
lane2 "$@" >.test-artifacts/lane2.log 2>&1 &
pid2=$!
wait "$pid1"
status1=$?
wait "$pid2"
status2=$?
for lane in 1 2; do
  echo "=================================== lane $lane ==================================="
  cat ".test-artifacts/lane$lane.log"
done
echo "lane 1: exit $status1, lane 2: exit $status2, wall time $(($(date +%s) - started)) s"
[ "$status1" -eq 0 ] && [ "$status2" -eq 0 ]
