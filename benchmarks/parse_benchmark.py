# bench-venv: .venv-bench
"""DAG parse cost: 100 mlpipe specs against 100 equivalent dag-factory 1.1.0 YAML DAGs, both of 10 tasks.

The dag-factory YAML is generated from the validated mlpipe pipelines, so both sides build the same operators
with the same arguments and dependencies (8 stage operators + 2 gate sensors per DAG); only the spec handling
differs. Each measurement is Airflow's DagBag over the folder, in a fresh interpreter that has imported Airflow
(as the dag processor has) but neither contender's library, because every real parse pays that import too.
Rounds alternate between the contenders; the median is reported.

Also timed: one task's single-DAG parse (``_AIRFLOW_PARSING_CONTEXT_DAG_ID`` set, as the task runner does).

It runs in ``.venv-bench`` (``make bench`` builds it): the product's Airflow lock plus dag-factory, which registers
an Airflow plugin and so is kept out of the product's ``.venv``. The measuring interpreters load no plugins.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
N_DAGS = 100
ROUNDS = int(os.environ.get("MLPIPE_BENCH_ROUNDS", "3"))
TARGET = 0.5

SPEC = """\
name: {name}
owner: bench
tags: [bench]
schedule: "@daily"
start_date: 2024-01-01
retries: 1
retry_delay: 2m
pipeline_root: ../artifacts
beam: {{runner: DirectRunner, args: [--direct_num_workers=1]}}
stages:
  example_gen:
    params: {{input: {{pattern: "../data/span-{{YYYY}}-{{MM}}-{{DD}}.csv", format: csv}}}}
  statistics_gen: {{params: {{mode: auto}}}}
  schema_gen: {{}}
  example_validator:
    params: {{drift: {{bill_length_mm: {{comparator: jsd, threshold: 0.3}}}}}}
  transform: {{params: {{module_file: ../modules/transform.py}}}}
  trainer: {{params: {{module_file: ../modules/trainer.py, train_steps: 100}}}}
  evaluator:
    params:
      label_key: species
      slices: [[], [island]]
      metrics: [{{name: accuracy, threshold: {{lower_bound: 0.6}}}}]
  pusher: {{params: {{destination: ../serving/{name}}}}}
gates:
  data_validation: {{policy: fail}}
  blessing: {{policy: fail}}
"""

# What a measuring interpreter runs: Airflow is warm (the dag processor imported it), the contenders are not.
MEASURE = """
import json, os, sys, time, logging
logging.disable(logging.CRITICAL)
import airflow.sdk, airflow.providers.standard.operators.empty  # warm, like the dag processor
from airflow.dag_processing.dagbag import DagBag
folder = sys.argv[1]
start = time.perf_counter()
bag = DagBag(dag_folder=folder, bundle_path=folder, bundle_name="bench")
elapsed = time.perf_counter() - start
start = time.perf_counter()  # again, with the contender's library already imported
DagBag(dag_folder=folder, bundle_path=folder, bundle_name="bench")
warm = time.perf_counter() - start
tasks = sum(len(d.tasks) for d in bag.dags.values())
print(json.dumps({"seconds": elapsed, "warm": warm, "dags": len(bag.dags), "tasks": tasks,
                  "errors": len(bag.import_errors)}))
"""


def write_mlpipe(root: Path) -> Path:
    dags = root / "mlpipe"
    (dags / "pipelines").mkdir(parents=True)
    (dags / "modules").mkdir()
    (dags / "modules" / "transform.py").write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    (dags / "modules" / "trainer.py").write_text("def run_fn(fn_args):\n    return None\n")
    for i in range(N_DAGS):
        (dags / "pipelines" / f"p{i:03d}.yaml").write_text(SPEC.format(name=f"p{i:03d}"))
    (dags / "mlpipe_dags.py").write_text(
        '"""mlpipe DAGs for the airflow parse benchmark."""\n'
        "from pathlib import Path\n\n"
        "from airflow_provider_mlpipe.factory import load_pipelines\n\n"
        'load_pipelines(Path(__file__).parent / "pipelines", globals())\n'
    )
    return dags


def write_dagfactory(root: Path, mlpipe_dags: Path) -> Path:
    """The same DAGs as dag-factory YAML: operators, arguments and dependencies taken from the mlpipe pipelines."""
    from airflow_provider_mlpipe.spec.validate import load_pipeline
    from airflow_provider_mlpipe.stages import get_stage

    dags = root / "dagfactory"
    (dags / "configs").mkdir(parents=True)
    for spec in sorted((mlpipe_dags / "pipelines").glob("*.yaml")):
        pipeline = load_pipeline(spec)
        tasks: dict[str, dict] = {}
        for node_id in pipeline.graph.order():
            node = pipeline.graph.nodes[node_id]
            task = {
                "operator": f"airflow_provider_mlpipe.operators.stages.{_operator_name(node.kind)}",
                "pipeline": pipeline.name,
                "pipeline_root": pipeline.pipeline_root,
                "stage_params": pipeline.stage_params[node_id],
                "inputs": node.inputs,
                "beam_args": pipeline.beam_args if get_stage(node.kind).uses_beam else [],
                "mlmd_conn_id": "mlmd_default",
                "spec_dir": str(pipeline.base_dir),
            }
            if node.upstream:
                task["dependencies"] = sorted(node.upstream)
            tasks[node_id] = task
        for gate in pipeline.graph.gates:
            cls = "DataValidationSensor" if gate.gate == "data_validation" else "ModelBlessingSensor"
            tasks[gate.task_id] = {
                "operator": f"airflow_provider_mlpipe.sensors.gates.{cls}",
                "upstream_task_id": gate.upstream,
                "policy": "fail",
                "pipeline": pipeline.name,
                "poke_interval": 10,
                "timeout": 3600,
                "dependencies": [gate.upstream],
            }
        config = {
            pipeline.name.replace("p", "d", 1): {
                "default_args": {"owner": "bench", "retries": 1, "retry_delay_sec": 120, "start_date": "2024-01-01"},
                "schedule": "@daily",
                "catchup": False,
                "tags": ["bench"],
                "tasks": tasks,
            }
        }
        (dags / "configs" / spec.name).write_text(yaml.safe_dump(config, sort_keys=False))
    (dags / "dagfactory_dags.py").write_text(
        '"""dag-factory DAGs for the airflow parse benchmark."""\n'
        "from pathlib import Path\n\n"
        "from dagfactory import load_yaml_dags\n\n"
        'load_yaml_dags(globals_dict=globals(), dags_folder=str(Path(__file__).parent / "configs"))\n'
    )
    return dags


def _operator_name(kind: str) -> str:
    from airflow_provider_mlpipe.operators.stages import operator_for

    return operator_for(kind).__name__


def measure(folder: Path, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="mlpipe-parse-bench-"))
    os.environ.setdefault("AIRFLOW_HOME", str(root / "airflow-home"))
    try:
        ours_dir = write_mlpipe(root)
        theirs_dir = write_dagfactory(root, ours_dir)
        ours, theirs, single = [], [], []
        for _ in range(ROUNDS):
            ours.append(measure(ours_dir))
            theirs.append(measure(theirs_dir))
            single.append(measure(ours_dir, {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": "p050"}))
        for name, runs in (("mlpipe", ours), ("dag-factory", theirs), ("mlpipe single-DAG (task parse)", single)):
            last = runs[-1]
            times = ", ".join(f"{r['seconds']:.3f}" for r in runs)
            warm = statistics.median(r["warm"] for r in runs)
            print(f"{name:32s} dags={last['dags']:3d} tasks={last['tasks']:4d} errors={last['errors']} "
                  f"DagBag seconds: {times} (median {statistics.median(r['seconds'] for r in runs):.3f}; "
                  f"repeat parse with the library imported: {warm:.3f})")  # fmt: skip
        assert ours[-1]["dags"] == theirs[-1]["dags"] == N_DAGS, "both sides must build every DAG"
        assert ours[-1]["tasks"] == theirs[-1]["tasks"] == 10 * N_DAGS
        assert single[-1]["dags"] == 1
        ours_s = statistics.median(r["seconds"] for r in ours)
        theirs_s = statistics.median(r["seconds"] for r in theirs)
        single_s = statistics.median(r["seconds"] for r in single)
        print(f"single-DAG parse (task runner, parsing context p050): {single_s:.3f} s")
        ours_w = statistics.median(r["warm"] for r in ours)
        theirs_w = statistics.median(r["warm"] for r in theirs)
        print(f"mlpipe {ours_s:.3f} s vs dag-factory {theirs_s:.3f} s for {N_DAGS} DAGs x 10 tasks (first parse)")
        print(f"repeat parse (libraries imported): mlpipe {ours_w:.3f} s vs dag-factory {theirs_w:.3f} s, "
              f"ratio {ours_w / theirs_w:.3f}")  # fmt: skip
        print(f"BENCH parse_vs_dagfactory ratio={ours_s / theirs_s:.3f} target={TARGET}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
