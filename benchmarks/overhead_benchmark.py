# bench-venv: .venv
"""What a stage costs beyond its work: the penguins pipeline's eight stages through the operator's launch path,
warm (forked from the warm runtime) and cold (a fresh interpreter each), against the bare executor calls
(``run_stage``) in one process that has already imported the ML stack.

Same requests, same data, same MLMD backend (a fresh SQLite store per side), cache off, one after another:
- ``stage_overhead``: (warm total - bare total) / stages, in seconds, against the 1 s target;
- ``demo_warm_vs_cold``: warm total / cold total, against 0.4.

Run with ``make bench BENCH=overhead``. The launch path is ``operators.launch.run_streaming``, which the stage
operator calls; the Airflow scheduler itself is not part of what is measured.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RUNTIME_PYTHON = str(REPO / ".venv-runtime" / "bin" / "python")
SPAN = "2024-01-05T00:00:00+00:00"

from airflow_provider_mlpipe.protocol import (  # noqa: E402  (after the path setup)
    MLMD_CONFIG_ENV,
    ArtifactRef,
    StageRequest,
    StageResult,
)


def build_request(task: dict[str, Any], results: dict[str, StageResult], root: str, run_id: str) -> StageRequest:
    """The request the operator would build, with its inputs taken from earlier results (as XCom gives them)."""
    inputs: dict[str, list[ArtifactRef]] = {}
    for slot, source in task["inputs"].items():
        upstream, _, out_slot = source.partition(".")
        refs = results[upstream].outputs.get(out_slot or slot) or []
        inputs[slot] = [ArtifactRef(r.type, r.uri, r.id, slot, r.properties) for r in refs]
    return StageRequest(
        pipeline="penguins", pipeline_root=root, stage=task["stage"], node_id=task["task_id"], run_id=run_id,
        params=task["params"], inputs=inputs, beam_args=task["beam_args"], logical_date=SPAN,
        data_interval_start=SPAN, data_interval_end=SPAN, spec_dir=task["spec_dir"], enable_cache=False,
    )  # fmt: skip


def penguins_chain(home: str) -> list[dict[str, Any]]:
    """The bundled spec's stage tasks in dependency order, as the factory builds them."""
    os.environ["AIRFLOW_HOME"] = home
    from airflow_provider_mlpipe.factory import load_pipelines
    from airflow_provider_mlpipe.operators.stage import MlpipeStageOperator

    dags: dict[str, Any] = {}
    load_pipelines(REPO / "dags" / "pipelines", dags)
    dag = next(d for d in dags.values() if d.dag_id == "penguins")
    tasks = [t for t in dag.topological_sort() if isinstance(t, MlpipeStageOperator)]
    return [
        {
            "task_id": t.task_id,
            "stage": t.stage,
            "params": t.stage_params,
            "inputs": t.inputs,
            "beam_args": list(t.beam_args),
            "spec_dir": t.spec_dir,
        }
        for t in tasks
    ]


def run_launched(chain: list[dict[str, Any]], work: Path, warm: bool) -> dict[str, float]:
    from airflow_provider_mlpipe.operators.launch import run_streaming
    from airflow_provider_mlpipe.operators.warm_runtime import connect_or_start
    from airflow_provider_mlpipe.protocol import runtime_command

    log = logging.getLogger("mlpipe.bench")
    log.propagate = False  # the stages' own output is not what is measured; keep the report readable
    log.addHandler(logging.NullHandler())
    mode = "warm" if warm else "cold"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env[MLMD_CONFIG_ENV] = json.dumps({"backend": "sqlite", "path": str(work / f"{mode}.sqlite")})
    if warm:  # a running server, as for every stage but a host's first
        connect_or_start(RUNTIME_PYTHON, env, log).close()
    results: dict[str, StageResult] = {}
    seconds: dict[str, float] = {}
    for task in chain:
        request = build_request(task, results, str(work / mode), f"bench-{mode}")
        request_path, result_path = work / f"{mode}-{task['task_id']}.json", work / f"{mode}-{task['task_id']}.out"
        request.write(request_path)
        started = time.perf_counter()
        command = runtime_command(RUNTIME_PYTHON, "run", str(request_path), "--result", str(result_path))
        run_streaming(command, env, log, task["task_id"], warm=warm)
        seconds[task["task_id"]] = time.perf_counter() - started
        results[task["task_id"]] = StageResult.from_dict(json.loads(result_path.read_text()))
    return seconds


def run_bare(chain_file: str, out_file: str) -> None:
    """In the runtime venv: import the stack first, then time each ``run_stage`` call alone."""
    from airflow_provider_mlpipe.runtime.metadata.client import MetadataClient
    from airflow_provider_mlpipe.runtime.runner import run_stage
    from airflow_provider_mlpipe.runtime.warm_server import preload

    preload()
    chain = json.loads(Path(chain_file).read_text())
    work = Path(out_file).parent
    client = MetadataClient({"backend": "sqlite", "path": str(work / "bare.sqlite")})
    results: dict[str, StageResult] = {}
    seconds: dict[str, float] = {}
    for task in chain:
        request = build_request(task, results, str(work / "bare"), "bench-bare")
        started = time.perf_counter()
        results[task["task_id"]] = run_stage(request, client)
        seconds[task["task_id"]] = time.perf_counter() - started
    Path(out_file).write_text(json.dumps(seconds))


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-overhead-") as tmp:
        work = Path(tmp)
        chain = penguins_chain(str(work / "airflow"))
        (work / "chain.json").write_text(json.dumps(chain))
        subprocess.run(
            [RUNTIME_PYTHON, __file__, "--bare", str(work / "chain.json"), str(work / "bare.json")],
            check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        bare = json.loads((work / "bare.json").read_text())
        cold = run_launched(chain, work, warm=False)
        warm = run_launched(chain, work, warm=True)
        subprocess.run(["pkill", "-f", f"serve --socket {work}"], check=False)
    print(f"{'stage':<20} {'bare':>8} {'warm':>8} {'cold':>8}")
    for task in chain:
        name = task["task_id"]
        print(f"{name:<20} {bare[name]:8.2f} {warm[name]:8.2f} {cold[name]:8.2f}")
    totals = {k: sum(v.values()) for k, v in (("bare", bare), ("warm", warm), ("cold", cold))}
    print(f"{'total':<20} {totals['bare']:8.2f} {totals['warm']:8.2f} {totals['cold']:8.2f}")
    overhead = (totals["warm"] - totals["bare"]) / len(chain)
    cold_overhead = (totals["cold"] - totals["bare"]) / len(chain)
    print(f"overhead per stage: warm {overhead:.2f} s, cold {cold_overhead:.2f} s")
    print(f"BENCH stage_overhead ratio={overhead / 1.0:.3f} target=1")
    print(f"BENCH demo_warm_vs_cold ratio={totals['warm'] / totals['cold']:.3f} target=0.4")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--bare":
        run_bare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
