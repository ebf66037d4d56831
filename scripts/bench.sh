#!/usr/bin/env bash
# Runs benchmarks/<name>_benchmark.py (all of them without an argument). Each prints a final
# `BENCH <name> ratio=<x> target=<y>` line. Benchmarks of the ML stack run in .venv-runtime, the DAG-parsing
# one in .venv (it needs Airflow).
set -euo pipefail
cd "$(dirname "$0")/.."
only=${1:-}
status=0
for file in benchmarks/*_benchmark.py; do
  name=$(basename "$file" _benchmark.py)
  if [ -n "$only" ] && [ "$only" != "$name" ]; then continue; fi
  python=.venv-runtime/bin/python
  if grep -q "^# bench-venv: airflow" "$file"; then python=.venv/bin/python; fi
  echo "== $name ($python)"
  "$python" "$file" || status=$?
done
if [ -n "$only" ] && [ ! -f "benchmarks/${only}_benchmark.py" ]; then
  echo "No benchmark named '$only'. Available: $(ls benchmarks/*_benchmark.py | xargs -n1 basename | sed 's/_benchmark.py//' | tr '\n' ' ')" >&2
  exit 2
fi
exit $status
