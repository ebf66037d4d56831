"""The stage descriptions drive the spec models, the operators and the README's table; test-only stages stay
out of what users see."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from airflow_provider_mlpipe.operators.stages import operator_for
from airflow_provider_mlpipe.spec.model import STAGE_MODELS, USER_MODULES
from airflow_provider_mlpipe.stages import all_stages, get_stage
from airflow_provider_mlpipe.stages.registry import StageRegistry
from tests.support.paths import REPO

BUILTIN = """
import json
from airflow_provider_mlpipe.stages import all_stages, stages_table
print(json.dumps({"names": list(all_stages()), "table": stages_table()}))
"""


def _builtin() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLPIPE_STAGE_MODULES"}
    proc = subprocess.run([sys.executable, "-c", BUILTIN], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_users_see_the_eight_stages_and_not_the_test_probe() -> None:
    names = _builtin()["names"]
    assert names == [
        "example_gen", "statistics_gen", "schema_gen", "example_validator", "transform", "trainer", "evaluator",
        "pusher",
    ]  # fmt: skip
    assert "probe" in all_stages()  # registered here only through MLPIPE_STAGE_MODULES (tests/conftest.py)


def test_the_readme_table_of_stages_is_derived_from_the_descriptions() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert _builtin()["table"] in readme, "regenerate the table with airflow_provider_mlpipe.stages.stages_table()"


def test_spec_models_operators_and_user_modules_come_from_the_descriptions() -> None:
    for name, stage in all_stages().items():
        model = STAGE_MODELS[name]
        assert model.model_fields["params"].annotation is stage.params
        assert model.model_fields["params"].is_required() == stage.params_required
        cls = operator_for(name)
        assert cls.__name__ == f"{stage.component}Operator" and cls.ui_color == stage.ui_color
        assert operator_for(name) is cls  # one class per stage
    assert USER_MODULES == {"transform": "preprocessing_fn", "trainer": "run_fn"}


def test_a_stage_name_cannot_be_taken_twice(tmp_path, monkeypatch) -> None:
    (tmp_path / "second_probe.py").write_text(
        "from tests.support.probe_stage import DESCRIPTION as PROBE\n"
        "from dataclasses import replace\n"
        "DESCRIPTION = replace(PROBE, component='OtherProbe')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = StageRegistry()
    registry.add_module("tests.support.probe_stage")
    registry.add_module("tests.support.probe_stage")  # the same module again is harmless
    with pytest.raises(ValueError, match=r"already defined by tests\.support\.probe_stage"):
        registry.add_module("second_probe")


def test_an_unknown_stage_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="Known stages are: example_gen, statistics_gen"):
        get_stage("no_such_stage")


def test_the_readme_layout_names_every_module_of_the_package() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("Layout of `airflow_provider_mlpipe/`") : readme.index("## The stages")]
    package = REPO / "airflow_provider_mlpipe"
    files = [p for p in package.rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts]
    missing = sorted(str(p.relative_to(package)) for p in files if p.name not in layout)
    executors = {p.name for p in (package / "runtime" / "executors").glob("*.py")} - {"__init__.py"}
    missing = [m for m in missing if not (m.startswith("runtime/executors/") and m.split("/")[-1] in executors)]
    assert missing == [], f"the README's layout does not name {missing}"
    folders = {p.parent.relative_to(package).parts[0] for p in files if p.parent != package}
    assert all(f"{folder}/" in layout for folder in folders)


def test_the_readme_metric_table_lists_every_metric_with_its_engines() -> None:
    from airflow_provider_mlpipe.stages.evaluator import EVALUATOR_METRICS, FAST_ENGINE_METRICS

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Evaluator metrics") : readme.index("## Gates")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    named = {row: set(re.findall(r"`([A-Z][A-Za-z0-9]+)`", row.split(" | ")[0])) for row in rows}
    tfma_only = set().union(*(names for row, names in named.items() if row.split(" | ")[1] == "tfma"))
    both = set().union(*(names for row, names in named.items() if row.split(" | ")[1] == "fast, tfma"))
    assert tfma_only == EVALUATOR_METRICS - FAST_ENGINE_METRICS
    assert both == FAST_ENGINE_METRICS
