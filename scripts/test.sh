#!/usr/bin/env bash
# Runs the whole suite in three lanes side by side, each a pytest process of its own:
#   lane 1: the runtime tests (.venv-runtime), then the Celery topology test;
#   lane 2: the Airflow stacks that spend much of their time waiting (on a reviewer's timeout, backfills' runs,
#           a deadline, the browser), which overlap well with the CPU-bound lanes;
#   lane 3: every other Airflow-side test (.venv).
# The split balances the lanes by the durations pytest prints at the end of each.
# The lanes share nothing: every test starts its own servers on free loopback ports, in its own temp folders.
# Most of an integration test's time is spent waiting on Airflow's scheduler loops, so three lanes on two cores
# finish well before fewer would. Arguments are passed to every pytest run.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-artifacts
LANE1_AIRFLOW=(
  tests/integration/test_celery_airflow.py
)
LANE2=(
  tests/integration/test_approval_airflow.py
  tests/integration/test_notifications_airflow.py
  tests/integration/test_backfill_30_days.py
  tests/integration/test_ui_browser.py
  tests/integration/test_summary_airflow.py
  tests/integration/test_backfill_airflow.py
)
COMMON=(-p no:cacheprovider --durations=15)

lane1() {
  .venv-runtime/bin/python -m pytest "${COMMON[@]}" tests/runtime "$@" || return 1
  .venv/bin/python -m pytest "${COMMON[@]}" "${LANE1_AIRFLOW[@]}" "$@"
}

lane2() {
  .venv/bin/python -m pytest "${COMMON[@]}" "${LANE2[@]}" "$@"
}

lane3() {
  local ignores=(--ignore=tests/runtime)
  for path in "${LANE1_AIRFLOW[@]}" "${LANE2[@]}"; do ignores+=("--ignore=$path"); done
  .venv/bin/python -m pytest "${COMMON[@]}" tests "${ignores[@]}" "$@"
}

started=$(date +%s)
pids=()
for lane in 1 2 3; do
  "lane$lane" "$@" >".test-artifacts/lane$lane.log" 2>&1 &
  pids+=($!)
done
statuses=()
for pid in "${pids[@]}"; do
  wait "$pid"
  statuses+=($?)
done
for lane in 1 2 3; do
  echo "=================================== lane $lane ==================================="
  cat ".test-artifacts/lane$lane.log"
done
echo "lane 1: exit ${statuses[0]}, lane 2: exit ${statuses[1]}, lane 3: exit ${statuses[2]}, wall time $(($(date +%s) - started)) s"
[ "${statuses[0]}" -eq 0 ] && [ "${statuses[1]}" -eq 0 ] && [ "${statuses[2]}" -eq 0 ]
