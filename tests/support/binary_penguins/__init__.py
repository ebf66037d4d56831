"""A binary classification pipeline for tests: Adelie or not, from the penguins spans of ``dags/data``.

``pipelines/binary_penguins.yaml`` is a complete spec (Airflow runs it as the ``binary_penguins`` DAG; Airflow
wants it inside its dags folder, see ``add_to_dags``). Its transform and trainer modules can also be used on their
own, to build a binary model in a runtime test: give the executors ``SPEC_DIR`` as the pipeline's folder and
``stage_params(...)`` as their params.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).parent  # the pipeline's folder: user modules are loaded from under it
SPEC = SPEC_DIR / "pipelines" / "binary_penguins.yaml"
DAG_ID = "binary_penguins"
LABEL_KEY = "is_adelie_xf"
TRANSFORM_MODULE = "modules/binary_transform.py"
TRAINER_MODULE = "modules/binary_trainer.py"
KPI_MODULE = "modules/binary_kpis.py"
DATA_PATTERN = "../../../../dags/data/penguins/"  # from the spec's folder to the bundled penguin spans


def stage_params(stage: str) -> dict[str, Any]:
    """A stage's params as the spec sets them, with ``module_file`` and ``kpi_module`` relative to ``SPEC_DIR`` as
    the runner gets them."""
    import yaml

    params = dict(yaml.safe_load(SPEC.read_text())["stages"][stage]["params"])
    for key in ("module_file", "kpi_module"):
        if key in params:
            params[key] = (SPEC.parent / params[key]).resolve().relative_to(SPEC_DIR).as_posix()
    return params


def add_to_dags(dags: Path) -> None:
    """Put the spec and its modules into a copy of the bundled dags folder (``pipelines/``, ``modules/``, ``data/``)."""
    text = SPEC.read_text()
    assert DATA_PATTERN in text, DATA_PATTERN
    (dags / "pipelines" / SPEC.name).write_text(text.replace(DATA_PATTERN, "../data/penguins/"))
    for module in (TRANSFORM_MODULE, TRAINER_MODULE, KPI_MODULE):
        shutil.copy(SPEC_DIR / module, dags / module)
