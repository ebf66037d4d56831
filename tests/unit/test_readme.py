"""The README stays true: its complete spec example is the bundled spec, and that spec lints clean."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.support.paths import REPO


def readme_spec() -> dict:
    text = (REPO / "README.md").read_text()
    section = text.split("The bundled example", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "the README lost its complete spec example"
    return yaml.safe_load(block.group(1))


def test_readme_example_is_the_bundled_penguins_spec():
    bundled = yaml.safe_load((REPO / "dags" / "pipelines" / "penguins.yaml").read_text())
    assert readme_spec() == bundled


def test_bundled_specs_lint_clean():
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "mlpipe"), "lint", "dags/pipelines"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_names_both_commands():
    text = (REPO / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (REPO / ".ci" / "run").read_text()
