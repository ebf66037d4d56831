"""Pipeline folders for spec and factory tests: dags/pipelines/*.yaml plus stand-in user modules."""

from __future__ import annotations

import textwrap
from pathlib import Path

# The user modules only need the right top-level functions: specs are checked with `ast`, never imported.
TRANSFORM_MODULE = "import tensorflow as tf\n\n\ndef preprocessing_fn(inputs):\n    return inputs\n"
TRAINER_MODULE = "import tensorflow as tf\n\n\ndef run_fn(fn_args):\n    return None\n"

FULL_SPEC = """\
name: {name}
description: A test pipeline.
owner: tests
tags: [test]
schedule: "@daily"
start_date: 2024-01-01
catchup: false
pipeline_root: ../artifacts
beam:
  runner: DirectRunner
  args: [--direct_num_workers=1]
stages:
  example_gen:
    params:
      input: {{pattern: "../data/span-{{YYYY}}-{{MM}}-{{DD}}.csv", format: csv}}
  statistics_gen: {{}}
  schema_gen: {{}}
  example_validator: {{}}
  transform:
    params: {{module_file: ../modules/transform.py}}
  trainer:
    params: {{module_file: ../modules/trainer.py, train_steps: 10}}
  evaluator:
    params:
      label_key: species
      slices: [[], [island]]
      metrics: [{{name: accuracy, class_name: SparseCategoricalAccuracy, threshold: {{lower_bound: 0.5}}}}]
  pusher:
    params: {{destination: ../serving/{name}}}
"""


def full_spec(name: str = "full", extra: str = "") -> str:
    return FULL_SPEC.format(name=name) + textwrap.dedent(extra)


def make_dags_folder(root: Path, specs: dict[str, str], *, dag_file: bool = True) -> Path:
    """root/dags/{mlpipe_dags.py, pipelines/<name>.yaml, modules/*.py}; returns the dags folder."""
    dags = root / "dags"
    (dags / "pipelines").mkdir(parents=True, exist_ok=True)
    (dags / "modules").mkdir(exist_ok=True)
    (dags / "modules" / "transform.py").write_text(TRANSFORM_MODULE)
    (dags / "modules" / "trainer.py").write_text(TRAINER_MODULE)
    for name, text in specs.items():
        (dags / "pipelines" / f"{name}.yaml").write_text(textwrap.dedent(text))
    if dag_file:
        (dags / "mlpipe_dags.py").write_text(
            '"""mlpipe DAGs (safe-mode discovery needs the words airflow and dag in the file)."""\n\n'
            "from pathlib import Path\n\n"
            "from airflow_provider_mlpipe.factory import load_pipelines\n\n"
            'load_pipelines(Path(__file__).parent / "pipelines", globals())\n'
        )
    return dags
