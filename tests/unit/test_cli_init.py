"""``mlpipe init``: feature lists and the label's kind from a data sample, span patterns from file names, a spec
that lints clean and validates to the built-ins, and no overwriting without --force."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from airflow_provider_mlpipe.cli.lint import lint_paths
from airflow_provider_mlpipe.cli.main import main
from airflow_provider_mlpipe.spec.data_sample import CATEGORICAL_MAX_INTEGERS, read_sample
from airflow_provider_mlpipe.spec.proposal import span_pattern
from airflow_provider_mlpipe.spec.validate import load_pipeline
from airflow_provider_mlpipe.stages.tabular import DEFAULT_METRICS
from tests.support.tabular_data import write_churn_csv


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def init(*args: str) -> int:
    return main(["init", *args])


def spec_of(name: str, dags: str = "dags") -> dict:
    return yaml.safe_load(Path(dags, "pipelines", f"{name}.yaml").read_text())


def test_init_proposes_features_and_a_binary_label_and_lints_clean(workdir, capsys):
    write_churn_csv(workdir / "data" / "churn.csv")
    assert init("churn", "--data", "data/churn.csv", "--label", "churned") == 0
    out = capsys.readouterr().out
    assert "Wrote dags/pipelines/churn.yaml" in out and "churned (binary, positive yes)" in out
    spec = spec_of("churn")
    transform = spec["stages"]["transform"]["params"]
    assert transform["features"] == {
        "numeric": ["age", "income", "tenure_months"],
        "categorical": ["plan", "region", "support_calls"],  # support_calls: integers 0-6, a category
    }
    assert transform["label"] == {"name": "churned", "kind": "binary", "positive": "yes"}  # quoted: not YAML's true
    text = Path("dags/pipelines/churn.yaml").read_text()
    assert "# left out: customer_id differs in every row" in text
    assert "# left out: signup holds dates or times" in text
    assert spec["stages"]["example_gen"]["params"]["input"] == {"pattern": "../../data/churn.csv", "format": "csv"}
    assert spec["stages"]["schema_gen"]["params"] == {"allow_missing": True}  # the sample has missing values
    assert "module_file" not in str(spec) and spec["start_date"] == datetime.now(UTC).date()
    assert lint_paths([Path("dags/pipelines")]) == []
    # validated, the pipeline hands the runtime the built-ins and the Evaluator's defaults
    pipeline = load_pipeline("dags/pipelines/churn.yaml")
    assert pipeline.stage_params["evaluator"]["label_key"] == "churned_xf"
    assert len(pipeline.stage_params["evaluator"]["metrics"]) == len(DEFAULT_METRICS["binary"])
    assert pipeline.stage_params["trainer"]["model"]["type"] == "mlp"
    assert [n for n in pipeline.graph.order() if "gate" not in n][:2] == ["example_gen", "statistics_gen"]


def test_init_never_overwrites_without_force(workdir, capsys):
    write_churn_csv(workdir / "data" / "churn.csv", rows=120)
    assert init("churn", "--data", "data/churn.csv", "--label", "churned") == 0
    spec = Path("dags/pipelines/churn.yaml")
    spec.write_text(spec.read_text() + "# my edit\n")
    assert init("churn", "--data", "data/churn.csv", "--label", "churned") == 1
    assert "dags/pipelines/churn.yaml already exists; pass --force to overwrite it." in capsys.readouterr().err
    assert spec.read_text().endswith("# my edit\n")
    assert init("churn", "--data", "data/churn.csv", "--label", "churned", "--force") == 0
    assert not spec.read_text().endswith("# my edit\n")
    # another file that names its pipeline churn: a second DAG id of that name would clash
    Path("dags/pipelines/other.yaml").write_text(spec.read_text())
    assert init("churn", "--data", "data/churn.csv", "--label", "churned", "--force") == 1
    assert "dags/pipelines/other.yaml already defines the pipeline 'churn'" in capsys.readouterr().err


def _rows(n: int = 90) -> list[dict]:
    return [
        {
            "rating": n_ % 5 + 1,  # integers with five values
            "score": round(n_ * 1.37 % 17, 3),
            "flag": ["true", "false"][n_ % 2],
            "grade": "ABC"[n_ % 3],
            "outcome": n_ % 2,
            "row": n_,
        }
        for n_ in range(n)
    ]


@pytest.mark.parametrize(
    ("label", "kind", "positive"),
    [
        ("outcome", "binary", None),  # 0 and 1: 1 is positive without saying so
        ("flag", "binary", None),  # true and false
        ("grade", "multiclass", None),  # three strings
        ("rating", "multiclass", None),  # five integers
        ("score", "regression", None),  # decimal numbers
    ],
)
def test_init_infers_the_label_kind(workdir, label, kind, positive):
    write_csv(workdir / "d.csv", _rows())
    assert init("k", "--data", "d.csv", "--label", label) == 0
    assert spec_of("k")["stages"]["transform"]["params"]["label"] == {"name": label, "kind": kind}
    features = spec_of("k")["stages"]["transform"]["params"]["features"]
    assert label not in features["numeric"] + features["categorical"]
    assert "row" not in features["numeric"]  # a row number is left out
    assert lint_paths([Path("dags/pipelines/k.yaml")]) == []


def test_integer_columns_with_few_values_are_categorical(workdir):
    rows = [{"few": i % CATEGORICAL_MAX_INTEGERS, "many": i % (CATEGORICAL_MAX_INTEGERS + 1), "y": i % 2}
            for i in range(60)]  # fmt: skip
    write_csv(workdir / "d.csv", rows)
    assert init("ints", "--data", "d.csv", "--label", "y") == 0
    assert spec_of("ints")["stages"]["transform"]["params"]["features"] == {"numeric": ["many"], "categorical": ["few"]}
    assert "# Integers with few distinct values are categorical: few." in Path("dags/pipelines/ints.yaml").read_text()


def test_a_given_kind_that_does_not_fit_fails_loudly(workdir, capsys):
    write_csv(workdir / "d.csv", _rows())
    assert init("k", "--data", "d.csv", "--label", "grade", "--kind", "binary") == 1
    err = capsys.readouterr().err
    assert "--kind binary does not fit the label: kind: binary needs two label values, but 'grade' has 3" in err
    assert not Path("dags/pipelines/k.yaml").exists()
    assert init("k", "--data", "d.csv", "--label", "outcome", "--kind", "multiclass") == 0
    assert spec_of("k")["stages"]["transform"]["params"]["label"]["kind"] == "multiclass"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "nothing/*.csv", "--label", "y"], "No file matches --data nothing/*.csv."),
        (["--data", "d.csv", "--label", "grad"], "The label 'grad' is not a column of d.csv. Did you mean 'grade'?"),
        (["--data", "one.csv", "--label", "y"], "The label 'y' has a single value (1) in the sample"),
    ],
)
def test_init_explains_what_it_cannot_do(workdir, capsys, args, message):
    write_csv(workdir / "d.csv", _rows())
    write_csv(workdir / "one.csv", [{"x": i, "y": 1} for i in range(5)])
    assert init("p", *args) == 1
    assert message in capsys.readouterr().err


def test_a_spec_that_would_not_lint_clean_is_not_written(workdir, capsys):
    """A file name with braces becomes an input pattern with a placeholder the runtime never fills."""
    write_csv(workdir / "data" / "export{1}.csv", _rows())
    assert init("braces", "--data", "data/export{1}.csv", "--label", "grade") == 1
    err = capsys.readouterr().err
    assert "does not lint clean, so it was not written" in err
    assert "stages.example_gen.params.input.pattern: {1} in the input pattern" in err
    assert not Path("dags/pipelines/braces.yaml").exists()


def test_init_reads_parquet(workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    pq.write_table(pa.Table.from_pylist(rows), workdir / "d.parquet")
    assert init("pq", "--data", "d.parquet", "--label", "score", "--dags", "elsewhere") == 0
    spec = spec_of("pq", dags="elsewhere")
    assert spec["stages"]["example_gen"]["params"]["input"] == {"pattern": "../../d.parquet", "format": "parquet"}
    assert spec["stages"]["transform"]["params"]["label"]["kind"] == "regression"
    assert lint_paths([Path("elsewhere/pipelines")]) == []


@pytest.mark.parametrize(
    ("data", "files", "pattern"),
    [
        ("in/sales-2024-01-05.csv", ["in/sales-2024-01-05.csv"], "in/sales-{YYYY}-{MM}-{DD}.csv"),
        ("in/sales-*.csv", ["in/sales-20240105.csv", "in/sales-20240107.csv"], "in/sales-{SPAN}.csv"),
        ("in/*/part.csv", ["in/2024_01_05/part.csv"], "in/{YYYY}_{MM}_{DD}/part.csv"),
        ("in/*.csv", ["in/day-20240105-a.csv", "in/day-20240106-a.csv"], "in/*{SPAN}*.csv"),
        ("in/*/*/*/x.csv", ["in/2024/01/05/x.csv"], "in/*/*/*/x.csv"),  # a date across folders stays a glob
        ("in/*.csv", ["in/20240105.csv", "in/latest.csv"], "in/*.csv"),  # not every file carries a date
        ("in/data.csv", ["in/data.csv"], "in/data.csv"),
        ("in/20241345.csv", ["in/20241345.csv"], "in/20241345.csv"),  # no such date
    ],
)
def test_span_patterns_from_file_names(data, files, pattern):
    assert span_pattern(data, files)[0] == pattern


def test_dated_files_become_spans_and_the_first_date_starts_the_schedule(workdir):
    for day in ("2024-03-01", "2024-03-02", "2024-03-03"):
        write_csv(workdir / "exports" / f"orders-{day}.csv", _rows())
    assert init("orders", "--data", "exports/orders-*.csv", "--label", "outcome") == 0
    spec = spec_of("orders")
    assert spec["stages"]["example_gen"]["params"]["input"]["pattern"] == "../../exports/orders-{YYYY}-{MM}-{DD}.csv"
    assert spec["start_date"] == date(2024, 3, 1) and spec["schedule"] == "@daily"
    assert "Each run reads the span of its date" in Path("dags/pipelines/orders.yaml").read_text()
    assert lint_paths([Path("dags/pipelines/orders.yaml")]) == []


def test_the_sample_summarises_columns(tmp_path):
    path = write_csv(tmp_path / "s.csv", [{"a": "x" if i % 4 else "NA", "b": i * 0.5, "c": ""} for i in range(20)])
    sample = read_sample(str(path), "csv", rows=10)
    assert sample.rows == 10
    a, b, c = sample.columns["a"], sample.columns["b"], sample.columns["c"]
    assert (a.type, a.nulls, a.distinct, a.values) == ("string", 3, 1, ["x"])  # NA is missing, as in ExampleGen
    assert (b.type, b.distinct, b.shown(3)) == ("float", 10, "0, 0.5, 1 and 7 more")
    assert c.type == "empty"


def test_the_readme_shows_what_init_writes(workdir, capsys):
    """The README's no-code spec is what `mlpipe init` writes for the bundled penguin spans, word for word."""
    import re
    import shutil

    from tests.support.paths import REPO

    shutil.copytree(REPO / "dags" / "data" / "penguins", workdir / "dags" / "data" / "penguins")
    section = (REPO / "README.md").read_text().split("### From a data file, without code", 1)[1]
    commands, printed, spec = re.findall(r"```[a-z]*\n(.*?)```", section, re.S)[:3]
    command = next(line for line in commands.splitlines() if line.startswith("mlpipe init"))
    args = command.split()[2:]
    assert args == ["penguins_builtin", "--data", "'dags/data/penguins/span-*.csv'", "--label", "species"]
    assert init(*[a.strip("'") for a in args]) == 0
    assert capsys.readouterr().out.startswith(printed)
    assert Path("dags/pipelines/penguins_builtin.yaml").read_text() == spec
    assert lint_paths([Path("dags/pipelines")]) == []
