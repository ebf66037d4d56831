"""The bundled penguins spec under another name, for tests that need real stages but short, predictable runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.airflow_env import REPO

PENGUINS_DATA = REPO / "dags" / "data" / "penguins"
# The penguins DAG's tasks, upstream first (the order ``mlpipe summary`` lists them in).
PENGUINS_TASK_ORDER = (
    "example_gen",
    "statistics_gen",
    "schema_gen",
    "example_validator",
    "data_validation_gate",
    "transform",
    "trainer",
    "evaluator",
    "blessing_gate",
    "pusher",
)


def penguins_variant(name: str, root: Path, serving: Path, *, last_day: str = "2024-01-04", **replace: str) -> str:
    """The penguins spec named ``name``, scheduled up to ``last_day`` only, training briefly; gates let runs pass.

    Drift and accuracy changes between days of ~20 eval rows are noise, so the gates are relaxed: tests using this
    are about which span each stage reads and what is reported, not about the verdict. ``replace`` maps further
    spec text to its replacement.
    """
    text = (REPO / "dags" / "pipelines" / "penguins.yaml").read_text()
    for old, new in {
        "name: penguins\n": f"name: {name}\n",
        "start_date: 2024-01-01\n": f"start_date: 2024-01-01\nend_date: {last_day}\n",
        "pipeline_root: ${MLPIPE_PIPELINE_ROOT:-${AIRFLOW_HOME}/mlpipe/pipelines}": f"pipeline_root: {root}",
        "destination: ${MLPIPE_SERVING_DIR:-${AIRFLOW_HOME}/mlpipe/serving/penguins}": f"destination: {serving}",
        "../data/penguins/": f"{PENGUINS_DATA}/",
        "train_steps: 200": "train_steps: 30",
        "eval_steps: 20": "eval_steps: 5",
        "bill_length_mm: {comparator: jsd, threshold: 0.3}": "bill_length_mm: {comparator: jsd, threshold: 0.99}",
        "island: {comparator: linf, threshold: 0.3}": "island: {comparator: linf, threshold: 0.99}",
        "lower_bound: 0.5": "lower_bound: 0.0",
        "absolute: -0.05}": "absolute: -1.0}",
        **replace,
    }.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def copy_penguins_modules(dags: Path) -> None:
    """The real transform and trainer modules, where the variant's ``../modules/`` paths look for them."""
    (dags / "modules").mkdir(parents=True, exist_ok=True)
    for module in ("penguins_transform.py", "penguins_trainer.py"):
        shutil.copy(REPO / "dags" / "modules" / module, dags / "modules" / module)
