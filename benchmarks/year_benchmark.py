# bench-venv: .venv
"""A year of daily runs: 365 seeded synthetic spans through the stage operators, with MLMD on PostgreSQL.

Path measured: each stage task's own ``MlpipeStageOperator.execute`` (the request built from the upstream
results as XCom holds them, the ``mlmd`` connection, the warm runtime's forked child, the StageResult back),
called in order for each day without the Airflow scheduler. The gates are not run: no threshold is set, so every
model is blessed. The data stages (ExampleGen, StatisticsGen, SchemaGen, ExampleValidator) run every day; the
model stages (Transform, Trainer, Evaluator, Pusher) on every ``RETRAIN_EVERY``-th day and the last, as a
pipeline that retrains quarterly would: one retraining costs 75 to 220 s on the 2-core machine this was written on
(Transform's Beam pipeline and the Keras export are fixed costs), so a daily retraining would take hours.

It prints
- ``year_last_vs_first``: mean seconds of the data stages per span, the last 30 spans against the first 30;
- ``year_retention_disk``: the bytes left after the real ``gc`` (the runtime's ``gc`` command, as ``mlpipe gc`` and
  the retention_gc task run it) with ``keep_spans: 30``, against the bytes before it;
- ``year_resolvers_365``: the slowest resolver lookup at the last span, in seconds against 0.5 s;
- ``ui_pipeline_view_365``: the pipeline view rendered through the UI's app, seconds against 1 s, and the run
  view's time beside it (year_views.py).

Run with ``make bench BENCH=year``; ``--days N`` runs a shorter year. It needs PostgreSQL (``make system``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
RUNTIME_PYTHON = str(REPO / ".venv-runtime" / "bin" / "python")
PIPELINE = "year"
FIRST_DAY = date(2024, 1, 1)
ROWS_PER_SPAN = 200
RETRAIN_EVERY = 91  # quarterly: days 1, 92, 183, 274 and the last
WINDOW = 30  # spans compared at each end of the year, and the retention policy's N
DATA_TASKS = ("example_gen", "statistics_gen", "schema_gen", "example_validator")
MODEL_TASKS = ("transform", "trainer", "evaluator", "pusher")

SPEC = """\
name: year
schedule: "@daily"
start_date: 2024-01-01
catchup: false
pipeline_root: {root}
stages:
  example_gen:
    params:
      input:
        pattern: ../data/span-{{YYYY}}-{{MM}}-{{DD}}.csv
        format: csv
      splits: {{train: 2, eval: 1}}
  statistics_gen: {{}}
  schema_gen: {{}}
  example_validator:
    params:
      drift:
        amount: {{comparator: jsd, threshold: 0.5}}
        region: {{comparator: linf, threshold: 0.5}}
  transform:
    params:
      features: {{numeric: [amount, tenure], categorical: [region]}}
      label: {{name: churned, kind: binary, positive: 1}}
  trainer:
    params:
      model: {{type: mlp, hidden_units: [8], epochs: 2, batch_size: 64, seed: 7}}
  evaluator: {{params: {{slices: [[], [region]]}}}}
  pusher:
    params: {{destination: {serving}, keep_versions: 5}}
gates:
  data_validation: {{policy: fail, min_severity: ERROR}}
  blessing: {{policy: fail}}
"""


def write_spans(folder: Path, days: int, seed: int = 42) -> None:
    """One CSV per day; the amounts drift slowly over the year so the drift scores move."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    regions = ["north", "south", "east", "west"]
    for day in range(days):
        lines = ["amount,tenure,region,churned"]
        for _ in range(ROWS_PER_SPAN):
            amount = rng.gauss(50 + day / 20, 15)
            tenure = rng.randint(1, 72)
            region = rng.choice(regions)
            odds = 0.04 * (amount - 50) - 0.05 * (tenure - 36) + (0.5 if region == "south" else 0.0)
            churned = int(rng.random() < 1 / (1 + pow(2.718281828, -odds)))
            lines.append(f"{amount:.2f},{tenure},{region},{churned}")
        (folder / f"span-{FIRST_DAY + timedelta(days=day):%Y-%m-%d}.csv").write_text("\n".join(lines) + "\n")


class _TaskInstance:
    """What ``execute`` asks of the task instance: the upstream results (XCom) and the try number."""

    try_number = 1

    def __init__(self, results: dict[str, dict[str, Any]]) -> None:
        self.results = results

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.results.get(task_ids)


def day_start(day: int) -> datetime:
    return datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), tzinfo=UTC)


def year_runs(days: int) -> list[dict[str, Any]]:
    """The DAG runs as ``UiBackend.dag_runs`` lists them, oldest first."""
    return [
        {"run_id": f"scheduled__{day_start(d).isoformat()}", "state": "success",
         "logical_date": day_start(d).isoformat(), "start_date": day_start(d).isoformat()}
        for d in range(days)
    ]  # fmt: skip


def day_context(day: int, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    start = day_start(day)
    return {
        "ti": _TaskInstance(results),
        "run_id": f"scheduled__{start.isoformat()}",
        "logical_date": start,
        "data_interval_start": start,
        "data_interval_end": start + timedelta(days=1),
        "dag_run": None,
    }


def start_postgres(data_dir: str, port: int) -> dict[str, Any]:
    subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), "start", data_dir, str(port)], check=True)
    return {"backend": "postgresql", "host": "127.0.0.1", "port": port, "user": "mlpipe", "password": "mlpipe",
            "database": "mlmd"}  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(work: Path, mlmd: dict[str, Any]) -> dict[str, Any]:
    """The Airflow-side environment of a worker, then the year DAG's stage tasks by id."""
    os.environ["AIRFLOW_HOME"] = str(work / "airflow")
    os.environ["MLPIPE_RUNTIME_PYTHON"] = RUNTIME_PYTHON
    os.environ["PYTHONPATH"] = str(REPO)  # the runtime measured is this checkout's, not an installed copy
    os.environ["AIRFLOW__MLPIPE__WARM_IDLE_TIMEOUT"] = "60"  # the server ends a minute after the last stage
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    extra = {"database": mlmd["database"]}
    os.environ["AIRFLOW_CONN_MLMD_DEFAULT"] = json.dumps({
        "conn_type": "mlmd", "schema": "postgresql", "host": mlmd["host"], "port": mlmd["port"],
        "login": mlmd["user"], "password": mlmd["password"], "extra": extra,
    })  # fmt: skip
    specs = work / "dags" / "pipelines"
    specs.mkdir(parents=True)
    (specs / "year.yaml").write_text(SPEC.format(root=work / "root", serving=work / "serving"))
    from airflow_provider_mlpipe.factory import load_pipelines
    from airflow_provider_mlpipe.operators.stage import MlpipeStageOperator

    dags: dict[str, Any] = {}
    load_pipelines(specs, dags)
    dag = next(d for d in dags.values() if d.dag_id == PIPELINE)
    return {t.task_id: t for t in dag.topological_sort() if isinstance(t, MlpipeStageOperator)}


def run_year(tasks: dict[str, Any], days: int, retrain_every: int) -> tuple[list[float], list[float], dict]:
    """Seconds of the data stages per span, seconds of the model stages per retraining, the last run's XComs."""
    quiet = logging.getLogger("mlpipe.bench.stage")
    quiet.propagate = False  # the stages' own log lines are not what is measured
    quiet.addHandler(logging.NullHandler())
    for task in tasks.values():
        task._cached_logger = quiet  # the logger the operator's ``log`` property hands out
    # Started before the clock runs, as on any host after its first stage: span 1 must not pay for the imports.
    from airflow_provider_mlpipe.operators.launch import runtime_env
    from airflow_provider_mlpipe.operators.warm_runtime import connect_or_start

    connect_or_start(RUNTIME_PYTHON, runtime_env("mlmd_default"), quiet).close()
    data_seconds, model_seconds = [], []
    results: dict[str, dict[str, Any]] = {}
    for day in range(days):
        results = {}
        context = day_context(day, results)
        started = time.perf_counter()
        for name in DATA_TASKS:
            results[name] = tasks[name].execute(context)
        data_seconds.append(time.perf_counter() - started)
        if day % retrain_every == 0 or day == days - 1:
            started = time.perf_counter()
            for name in MODEL_TASKS:
                results[name] = tasks[name].execute(context)
            model_seconds.append(time.perf_counter() - started)
        if day % 30 == 0 or day == days - 1:
            print(f"  span {day + 1:3d}/{days}: data stages {data_seconds[-1]:.2f} s", flush=True)
    return data_seconds, model_seconds, results


def tree_bytes(*paths: Path) -> int:
    return sum(
        os.lstat(os.path.join(folder, name)).st_size
        for path in paths
        for folder, _, files in os.walk(path)
        for name in files
    )


def collect_garbage(mlmd: dict[str, Any], work: Path) -> dict[str, float]:
    """The retention policy applied for real: the pipeline root and serving before and after, and gc's seconds.

    ``--min-age 0``: the year was written in minutes, so the rule that spares anything younger than the longest
    stage timeout would keep it all.
    """
    roots = (work / "root", work / "serving")
    before = tree_bytes(*roots)
    command = [RUNTIME_PYTHON, "-m", "airflow_provider_mlpipe.runtime", "gc", PIPELINE,
               "--pipeline-root", str(work / "root"), "--destination", str(work / "serving"),
               "--keep-spans", str(WINDOW), "--keep-versions", "5", "--min-age", "0"]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         env={**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps(mlmd)})  # fmt: skip
    seconds = time.perf_counter() - started
    headline = next(line for line in out.stdout.splitlines() if line.startswith("mlpipe gc"))
    return {"before_mb": before / 2**20, "after_mb": tree_bytes(*roots) / 2**20, "seconds": seconds,
            "headline": headline}  # fmt: skip


def resolver_seconds(mlmd: dict[str, Any], work: Path, results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The two resolver lookups of the last span, timed in the runtime (year_resolvers.py)."""
    (work / "last_results.json").write_text(json.dumps(results))
    out = subprocess.run(
        [RUNTIME_PYTHON, str(REPO / "benchmarks" / "year_resolvers.py"), str(work / "last_results.json")],
        check=True, capture_output=True, text=True, env={**os.environ, "MLPIPE_MLMD_CONFIG": json.dumps(mlmd)},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--retrain-every", type=int, default=RETRAIN_EVERY)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from year_views import time_views

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-year-") as tmp:
        work = Path(tmp)
        pg_dir = tempfile.mkdtemp(prefix="mlpipe-bench-year-pg-")
        os.chmod(pg_dir, 0o755)  # the server may run as the postgres user, which must reach its folder
        try:
            mlmd = start_postgres(pg_dir, free_port())
            write_spans(work / "dags" / "data", args.days)
            tasks = prepare(work, mlmd)
            print(f"{args.days} spans of {ROWS_PER_SPAN} rows; model stages every {args.retrain_every} days")
            data_s, model_s, last = run_year(tasks, args.days, args.retrain_every)
            resolvers = resolver_seconds(mlmd, work, last)
            views = time_views(mlmd, PIPELINE, year_runs(args.days))
            disk = collect_garbage(mlmd, work)
        finally:
            subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), "stop", pg_dir], check=False)
            subprocess.run(["rm", "-rf", pg_dir], check=False)
    window = min(WINDOW, len(data_s) // 2)
    first, last_mean = statistics.mean(data_s[:window]), statistics.mean(data_s[-window:])
    print(f"data stages per span: first {window} {first:.3f} s, last {window} {last_mean:.3f} s, "
          f"median {statistics.median(data_s):.3f} s; model stages per retraining: {statistics.mean(model_s):.2f} s "
          f"({len(model_s)} times)")  # fmt: skip
    print(f"disk (pipeline root and serving): {disk['before_mb']:.1f} MB without retention, {disk['after_mb']:.1f} MB "
          f"after gc with keep_spans {WINDOW} in {disk['seconds']:.1f} s ({disk['headline']})")  # fmt: skip
    print("resolvers at the last span: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in resolvers.items()))
    print(
        f"UI at {args.days} runs: pipeline view {views['pipeline']:.3f} s, run view {views['run']:.3f} s "
        f"(median of {views['repeats']} renders after a first one of {views['pipeline_first']:.3f} s)"
    )
    print(f"whole benchmark: {time.perf_counter() - began:.0f} s")
    print(f"BENCH year_last_vs_first ratio={last_mean / first:.3f} target=1.2")
    print(f"BENCH year_retention_disk ratio={disk['after_mb'] / disk['before_mb']:.3f} target=0.2")
    print(f"BENCH year_resolvers_365 ratio={max(resolvers.values()) / 0.5:.3f} target=1")
    print(f"BENCH ui_pipeline_view_365 ratio={views['pipeline'] / 1.0:.3f} target=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
