#!/usr/bin/env bash
# Runs benchmarks/<name>_benchmark.py (all of them without an argument). Each prints a final
# `BENCH <name> ratio=<x> target=<y>` line. Benchmarks run in .venv-runtime (the ML stack) unless their file names
# another environment in a `# bench-venv: <folder>` line: the DAG-parsing one runs in .venv-bench, the product's
# Airflow side plus dag-factory, which must stay out of the product's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
only=${1:-}
status=0
for file in benchmarks/*_benchmark.py; do
  name=$(basename "$file" _benchmark.py)
  if [ -n "$only" ] && [ "$only" != "$name" ]; then continue; fi
  venv=$(sed -n 's/^# bench-venv: *//p' "$file" | head -n1)
  python=${venv:-.venv-runtime}/bin/python
  echo "== $name ($python)"
  "$python" "$file" || status=$?
done
if [ -n "$only" ] && [ ! -f "benchmarks/${only}_benchmark.py" ]; then
  echo "No benchmark named '$only'. Available: $(ls benchmarks/*_benchmark.py | xargs -n1 basename | sed 's/_benchmark.py//' | tr '\n' ' ')" >&2
  exit 2
fi
exit $status
