"""Bad specs: each file of the corpus gives ONE clear error naming file, line and field; valid specs still load.

Each corpus file states what it injects in its header: ``# expect-field:``, ``# expect-message:`` (a fragment),
and either a ``# <-`` marker on the offending line or ``# expect-line:``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from airflow_provider_mlpipe.spec.errors import SpecErrors
from airflow_provider_mlpipe.spec.validate import discover, load_all, load_pipeline

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"
VALID = {
    "duplicate_name_a.yaml": "duplicate_name",
    "valid_evaluator.yaml": "valid_evaluator",
    "valid_minimal.yaml": "valid_minimal",
    "valid_trainer.yaml": "valid_trainer",
}


def expectations(path: Path) -> dict[str, str | int]:
    text = path.read_text()
    header = dict(re.findall(r"^# expect-([a-z-]+): (.+)$", text, flags=re.MULTILINE))
    marked = [i + 1 for i, line in enumerate(text.splitlines()) if line.rstrip().endswith("# <-")]
    line = int(header["line"]) if "line" in header else marked[0]
    return {"field": header["field"], "message": header["message"], "line": line, "lint_only": "lint-only" in header}


BAD = sorted(p.name for p in SPECS.glob("*.yaml") if p.name not in VALID)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import os

    os.environ.pop("MLPIPE_RELIABILITY_UNSET", None)
    pipelines, errors = load_all(discover(SPECS), base_dir=HERE, environment=None, check_data=True)
    return {p.loaded.path.name: p for p in pipelines}, {e.path.name: e for e in errors}


def test_corpus_is_big_enough():
    assert len(BAD) >= 20


@pytest.mark.parametrize("name", BAD)
def test_bad_spec_gives_one_clear_error(results, name):
    _, errors = results
    expected = expectations(SPECS / name)
    assert name in errors, f"{name} was accepted"
    (error,) = errors[name].errors  # exactly one
    assert error.file.endswith(f"specs/{name}")
    assert error.field == expected["field"]
    assert error.line == expected["line"]
    assert expected["message"] in error.message
    formatted = error.format()
    assert formatted.startswith(f"{error.file}:{expected['line']}: {expected['field']}: ")
    assert formatted.endswith((".", "?")), "errors are sentences"


def test_valid_specs_still_load(results):
    pipelines, errors = results
    assert {name: p.name for name, p in pipelines.items()} == VALID
    assert not set(VALID) & set(errors)


def test_the_corpus_python_tag_is_refused(results):
    _, errors = results
    (error,) = errors["python_object.yaml"].errors
    assert error.field == "description" and "The YAML tag '!!python/object/apply:os.system'" in error.message


@pytest.mark.parametrize(
    ("field", "placement"),
    [
        ("description", "description: !!python/object/apply:os.mkdir [{marker}]\nstages: {{example_gen: {{}}}}\n"),
        (
            "stages.example_gen.params.input",
            "stages:\n  example_gen:\n    params: {{input: !!python/object/apply:os.mkdir [{marker}]}}\n",
        ),
        (
            "stages.example_gen.params",
            "stages:\n  example_gen:\n    params: !!python/object/apply:os.mkdir {{args: [{marker}]}}\n",
        ),
    ],
)
def test_yaml_cannot_construct_python_objects(tmp_path, field, placement):
    """A payload that does run under ``yaml.unsafe_load`` is refused by the spec loader, naming its field, and
    leaves no trace."""
    marker = tmp_path / "constructed"
    text = 'name: payload\nschedule: "@daily"\nstart_date: 2024-01-01\n' + placement.format(marker=f"'{marker}'")
    yaml.unsafe_load(text)  # the payload is live: an unsafe loader creates the marker
    assert marker.is_dir()
    marker.rmdir()
    spec = tmp_path / "pipelines" / "payload.yaml"
    spec.parent.mkdir()
    spec.write_text(text)
    with pytest.raises(SpecErrors) as exc_info:
        load_pipeline(spec)
    (error,) = exc_info.value.errors
    assert error.field == field and "is not allowed" in error.message
    assert not marker.exists()


def test_corpus_through_airflow_dagbag(tmp_path):
    """The same corpus parsed by a DagBag: every valid spec is a DAG, every bad one its own import error."""
    from airflow.dag_processing.dagbag import DagBag

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "corpus_dags.py").write_text(
        '"""Airflow DAGs of the bad-spec corpus."""\n'
        "from airflow_provider_mlpipe.factory import load_pipelines\n"
        f"load_pipelines({str(SPECS)!r}, globals())\n"
    )
    bag = DagBag(dag_folder=str(dags), bundle_path=dags, bundle_name="corpus")
    # data checks belong to mlpipe lint: parsing never reads the data, so those specs load as DAGs
    lint_only = {n: n.removesuffix(".yaml") for n in BAD if expectations(SPECS / n)["lint_only"]}
    assert len(lint_only) >= 5
    assert sorted(bag.dag_ids) == sorted([*VALID.values(), *lint_only.values()])
    keyed = {Path(key).name: message for key, message in bag.import_errors.items()}
    assert sorted(keyed) == sorted(set(BAD) - set(lint_only))
    for name, message in keyed.items():
        expected = expectations(SPECS / name)
        assert f"{name}:{expected['line']}: {expected['field']}: " in message
