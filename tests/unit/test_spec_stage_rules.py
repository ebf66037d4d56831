"""Stage rules of the lint beyond single fields: input pattern placeholders, metric classes, the fast engine's
metrics, thresholds that judge something, slice features against a curated schema, and dates that name their
field. The corpus in tests/reliability/specs has one spec per rule; these tests pin the edges."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from airflow_provider_mlpipe.spec.errors import SpecErrors, suggest
from airflow_provider_mlpipe.spec.loader import load_spec
from airflow_provider_mlpipe.spec.model import PipelineSpec, parse_date
from airflow_provider_mlpipe.spec.stage_rules import schema_feature_names
from airflow_provider_mlpipe.spec.validate import Pipeline, validate
from airflow_provider_mlpipe.stages.evaluator import (
    ARGUMENT_METRICS,
    EVALUATOR_METRICS,
    FAST_ENGINE_METRICS,
    UNAVAILABLE_METRICS,
)
from airflow_provider_mlpipe.stages.example_gen import PATTERN_PLACEHOLDERS
from tests.support.spec_fixtures import make_dags_folder

SCHEMA = """\
# A curated schema: comments, nested messages and domains whose `name` is not a feature's.
feature {
  name: "island"
  type: BYTES
  domain: "island"
  presence { min_count: 1 }
}
feature: {
  name: 'body_mass_g'
  value_count < min: 1 max: 1 >
}
feature { name: "species" type: BYTES }
string_domain {
  name: "island"
  value: "Biscoe"
}
string_domain { name: "not_a_feature" value: "x" }
"""

PIPELINE = """\
name: p
schedule: null
stages:
  example_gen:
    params: {{input: {{pattern: "../data/{{SPAN}}.csv"}}}}
  statistics_gen: {{}}
  schema_gen:
    params: {{schema_file: ../schema.pbtxt}}
  trainer:
    params: {{module_file: ../modules/trainer.py, train_steps: 5}}
{extra_stage}  evaluator:
    params:
      label_key: {label}
      engine: {engine}
      slices: {slices}
      metrics: {metrics}
"""


def _validate(tmp_path, label="species", engine="auto", slices="[[], [island]]", metrics="[]", extra_stage=""):
    text = PIPELINE.format(label=label, engine=engine, slices=slices, metrics=metrics, extra_stage=extra_stage)
    dags = make_dags_folder(tmp_path, {"p": text}, dag_file=False)
    (dags / "schema.pbtxt").write_text(SCHEMA)
    return validate(load_spec(dags / "pipelines" / "p.yaml"), dags)


def _errors(tmp_path, **fields) -> list[tuple[str, str]]:
    with pytest.raises(SpecErrors) as exc_info:
        _validate(tmp_path, **fields)
    return [(e.field, e.message) for e in exc_info.value.errors]


def test_schema_feature_names_reads_top_level_features_only():
    assert schema_feature_names(SCHEMA) == {"island", "body_mass_g", "species"}
    assert schema_feature_names('feature { name: "a" ') == set()  # unbalanced: nothing to check against
    assert schema_feature_names("} feature { name: 'a' }") == set()
    assert schema_feature_names("") == set()


def test_slices_and_label_are_checked_against_the_curated_schema(tmp_path):
    assert isinstance(_validate(tmp_path, slices="[[], [island], [island, species]]"), Pipeline)
    errors = _errors(tmp_path, label="speces", slices="[[], [island, sex], [bodymass_g]]")
    fields = [field for field, _ in errors]
    assert fields == [
        "stages.evaluator.params.label_key",
        "stages.evaluator.params.slices[1]",
        "stages.evaluator.params.slices[2]",
    ]
    assert "Did you mean 'species'?" in errors[0][1]
    assert "'sex' is not a feature of the schema ../schema.pbtxt" in errors[1][1]
    assert "Did you mean 'body_mass_g'?" in errors[2][1]
    assert errors[1][1].endswith("Its features are body_mass_g, island, species.")


def test_a_transform_stage_may_add_slice_features_the_lint_cannot_know(tmp_path):
    transform = "  transform:\n    params: {module_file: ../modules/transform.py}\n"
    assert isinstance(_validate(tmp_path, slices="[[island_xf]]", extra_stage=transform), Pipeline)
    disabled = transform.replace("params:", "enabled: false\n    params:")
    [(field, message)] = _errors(tmp_path, slices="[[island_xf]]", extra_stage=disabled)
    assert field == "stages.evaluator.params.slices[0]" and "'island_xf'" in message


def test_every_metric_class_is_checked_and_the_fast_engine_too(tmp_path):
    metrics = (
        "[{class_name: BinaryAccuracy}, {name: auc}, {class_name: SquaredPearsonCorrelation}, {class_name: Frobnicate}]"
    )
    errors = dict(_errors(tmp_path, engine="fast", metrics=metrics))
    assert set(errors) == {
        "stages.evaluator.params.metrics[1].name",
        "stages.evaluator.params.metrics[3].class_name",
        "stages.evaluator.params.engine",
    }
    assert "Did you mean 'AUC'?" in errors["stages.evaluator.params.metrics[1].name"]
    unknown = errors["stages.evaluator.params.metrics[3].class_name"]
    assert "Did you mean" not in unknown and all(name in unknown for name in EVALUATOR_METRICS)
    # only the known metric the fast engine lacks: the unknown ones are their own errors
    assert errors["stages.evaluator.params.engine"].startswith(
        "engine: fast cannot compute SquaredPearsonCorrelation; it computes"
    )


def test_the_fast_engine_passes_with_its_own_metrics(tmp_path):
    arguments = {name: "{" + ", ".join(f"{a}: [0.5]" for a in args) + "}" for name, args in ARGUMENT_METRICS.items()}
    entries = [f"{{class_name: {name}, config: {arguments.get(name, '{}')}}}" for name in sorted(FAST_ENGINE_METRICS)]
    metrics = "[" + ", ".join(entries) + "]"
    assert isinstance(_validate(tmp_path, engine="fast", metrics=metrics), Pipeline)


@pytest.mark.parametrize(
    ("class_name", "fragment"),
    [
        ("CalibrationPlot", "writes a plot or a matrix"),
        ("NDCG", "ranking metric"),
        ("MeanIoU", "needs constructor arguments (num_classes)"),
        ("sparse_categorical_accuracy", "Did you mean 'SparseCategoricalAccuracy'?"),
        ("RMSE", "Did you mean 'RootMeanSquaredError'?"),
        ("roc_auc", "Did you mean 'AUC'?"),
    ],
)
def test_metric_class_messages(tmp_path, class_name, fragment):
    [(field, message)] = _errors(tmp_path, metrics=f"[{{name: m, class_name: {class_name}}}]")
    assert field == "stages.evaluator.params.metrics[0].class_name" and fragment in message
    assert message.endswith(".") or message.endswith("?")
    assert (class_name in UNAVAILABLE_METRICS) == ("Did you mean" not in message)


def test_a_metric_with_arguments_needs_them_in_its_config(tmp_path):
    [(field, message)] = _errors(tmp_path, metrics="[{class_name: ConfusionMatrixAtThresholds}]")
    assert field.startswith("stages.evaluator.params.metrics[0]")
    assert "needs thresholds in its config, e.g. config: {thresholds: [0.5]}" in message
    ok = "[{class_name: ConfusionMatrixAtThresholds, config: {thresholds: [0.3, 0.5]}}]"
    assert isinstance(_validate(tmp_path, metrics=ok), Pipeline)


@pytest.mark.parametrize(
    ("threshold", "field", "fragment"),
    [
        ("{}", "threshold", "A threshold needs `lower_bound`, `upper_bound` or `change`"),
        ("{change: {}}", "threshold.change", "A change threshold needs `absolute`, `relative` or both"),
        ("{upper_bound: 0.1, lower_bound: 0.2}", "threshold", "lower_bound 0.2 is above upper_bound 0.1"),
    ],
)
def test_thresholds_must_judge_something(tmp_path, threshold, field, fragment):
    metrics = f"[{{class_name: BinaryAccuracy, threshold: {threshold}}}]"
    [(got, message)] = _errors(tmp_path, metrics=metrics)
    assert got == f"stages.evaluator.params.metrics[0].{field}" and fragment in message


def _example_gen_errors(tmp_path, pattern: str) -> list:
    text = f"name: x\nstages:\n  example_gen:\n    params: {{input: {{pattern: '{pattern}'}}}}\n"
    dags = make_dags_folder(tmp_path, {"x": text}, dag_file=False)
    try:
        validate(load_spec(dags / "pipelines" / "x.yaml"), dags)
    except SpecErrors as exc:
        return exc.errors
    return []


def test_every_documented_placeholder_is_accepted_and_others_are_not(tmp_path):
    assert _example_gen_errors(tmp_path, "data/" + "-".join(PATTERN_PLACEHOLDERS) + "/*.csv") == []
    [error] = _example_gen_errors(tmp_path, "d/{yyyy}/{DAY}.csv")  # one error per pattern, the first unknown
    assert (error.field, error.line) == ("stages.example_gen.params.input.pattern", 4)
    assert error.message.startswith("{yyyy} in the input pattern") and "Did you mean '{YYYY}'?" in error.message


def test_suggestions_ignore_case():
    assert suggest("auc", ["AUC", "Precision"]) == " Did you mean 'AUC'?"
    assert suggest("PROD", ["dev", "prod"]) == " Did you mean 'prod'?"
    assert suggest("zzz", ["AUC"]) == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2024, 1, 1), date(2024, 1, 1)),
        ("2024-01-01", datetime(2024, 1, 1)),
        ("2024-01-01 03:00", datetime(2024, 1, 1, 3)),
        ("2024-01-01T03:00:00Z", datetime(2024, 1, 1, 3, tzinfo=UTC)),
        (None, None),
    ],
)
def test_dates_keep_their_meaning(value, expected):
    assert parse_date(value) == expected
    assert PipelineSpec.model_validate({"name": "x", "start_date": value, "stages": {"pusher": {
        "kind": "pusher", "params": {"destination": "d"}}}}).start_date == expected  # fmt: skip


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("start_date: 2024-02-30", "Invalid date 2024-02-30: day is out of range for month."),
        ("start_date: '2024-1-45'", "Invalid date '2024-1-45': day is out of range for month."),
        ("start_date: 1.5", "Expected a date, got the number 1.5."),
        ("start_date: [2024]", "Expected a date, got list."),
        ("end_date: 2024-01-01T24:00:00", "hour must be in 0..23"),
        ("retry_delay: .inf", "it must be a finite number"),
        ("retry_delay: {days: 1.0e+12}", "is too long"),
        ("schedule: '0 0 * * * *'", "it has 6 fields; a cron has five"),
        ("schedule: '0 0 1 13 *'", "the month field '13' is not valid: it takes 1-12 or JAN-DEC."),
    ],
)
def test_date_duration_and_cron_errors_name_their_line_and_field(tmp_path, line, fragment):
    text = f"name: x\nstart_date: 2024-01-01\n{line}\nstages:\n  probe: {{params: {{values: [1]}}}}\n"
    text = text.replace("start_date: 2024-01-01\nstart_date", "start_date")  # the line under test may set it
    dags = make_dags_folder(tmp_path, {"x": text}, dag_file=False)
    with pytest.raises(SpecErrors) as exc_info:
        validate(load_spec(dags / "pipelines" / "x.yaml"), dags)
    [error] = exc_info.value.errors
    key = line.split(":")[0]
    assert (error.field, error.line) == (key, text.splitlines().index(line) + 1)
    assert fragment in error.message and "unexpectedly" not in error.message


# ----- the built-in tabular transform: Evaluator defaults, pairing with the trainer, features against the data ---
BUILTIN = """\
name: b
schedule: null
stages:
  example_gen:
    params: {{input: {{pattern: "{pattern}"}}}}
  statistics_gen: {{}}
  schema_gen: {{}}
  transform:
    params:
      features: {features}
      label: {label}
  trainer: {{}}
{evaluator}"""
PENGUINS_CSV = "species,island,bill_length_mm,body_mass_g,sex\n" + "".join(
    f"{s},{i},{35 + n * 0.37:.2f},{3000 + n * 25},{'male' if n % 3 else ('female' if n % 2 else '')}\n"
    for n, (s, i) in enumerate(
        [("Adelie", "Torgersen"), ("Gentoo", "Biscoe"), ("Chinstrap", "Dream"), ("Adelie", "Dream")] * 8
    )
)


def _builtin(tmp_path, features="{numeric: [bill_length_mm], categorical: [island]}", label=None, evaluator="",
             pattern="../data/penguins.csv", data=PENGUINS_CSV):  # fmt: skip
    text = BUILTIN.format(
        pattern=pattern,
        features=features,
        label=label or "{name: species, kind: multiclass}",
        evaluator=evaluator,
    )
    dags = make_dags_folder(tmp_path, {"b": text}, dag_file=False)
    if data is not None:
        (dags / "data").mkdir(exist_ok=True)
        (dags / "data" / "penguins.csv").write_text(data)
    return validate(load_spec(dags / "pipelines" / "b.yaml"), dags, check_data=True)


def _builtin_errors(tmp_path, **fields) -> list[tuple[str, str]]:
    with pytest.raises(SpecErrors) as exc_info:
        _builtin(tmp_path, **fields)
    return [(e.field, e.message) for e in exc_info.value.errors]


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_the_builtin_transform_implies_the_evaluators_label_key_and_metrics(tmp_path, kind):
    from airflow_provider_mlpipe.stages.tabular import DEFAULT_METRICS

    label = {"binary": "{name: sex, kind: binary, positive: male}", "multiclass": None,
             "regression": "{name: body_mass_g, kind: regression}"}[kind]  # fmt: skip
    pipeline = _builtin(tmp_path, label=label, evaluator="  evaluator: {}\n")
    params = pipeline.stage_params["evaluator"]
    name = {"binary": "sex", "multiclass": "species", "regression": "body_mass_g"}[kind]
    assert params["label_key"] == f"{name}_xf"
    assert [m["class_name"] for m in params["metrics"]] == [m["class_name"] for m in DEFAULT_METRICS[kind]]
    # the runtime validates the same dict again and gets what the spec layer filled in
    from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams

    again = EvaluatorParams.model_validate(params)
    assert again.label_key == f"{name}_xf" and len(again.all_metrics()) == len(DEFAULT_METRICS[kind])


def test_a_given_label_key_and_metrics_win_over_the_defaults(tmp_path):
    evaluator = (
        "  evaluator:\n    params: {label_key: species_xf, metrics: [{class_name: SparseCategoricalAccuracy}]}\n"
    )
    params = _builtin(tmp_path, evaluator=evaluator).stage_params["evaluator"]
    assert [m["class_name"] for m in params["metrics"]] == ["SparseCategoricalAccuracy"]
    # an empty list given on purpose is kept too: only ExampleCount is reported then
    empty = _builtin(tmp_path, evaluator="  evaluator:\n    params: {metrics: []}\n").stage_params["evaluator"]
    assert empty["metrics"] == [] and empty["label_key"] == "species_xf"


def test_without_the_builtin_transform_the_evaluator_needs_a_label_key(tmp_path):
    [(field, message)] = _errors(tmp_path, label="null")
    assert field == "stages.evaluator.params.label_key"
    assert message.startswith("The evaluator needs label_key: the label as the model's examples carry it")


def test_the_builtin_trainer_needs_the_builtin_transform(tmp_path):
    text = PIPELINE.format(label="species", engine="auto", slices="[[]]", metrics="[]", extra_stage="")
    text = text.replace("params: {module_file: ../modules/trainer.py, train_steps: 5}", "params: {model: {epochs: 2}}")
    dags = make_dags_folder(tmp_path, {"p": text}, dag_file=False)
    (dags / "schema.pbtxt").write_text(SCHEMA)
    with pytest.raises(SpecErrors) as exc_info:
        validate(load_spec(dags / "pipelines" / "p.yaml"), dags)
    [error] = exc_info.value.errors
    assert (error.field, error.line) == ("stages.trainer.params.module_file", 10)
    assert "but the pipeline has no transform stage" in error.message


def test_features_and_label_are_checked_against_a_sample_of_the_data(tmp_path):
    features = "{numeric: [bill_lenght_mm, island], categorical: [species], bucketize: {sex: 3}}"
    errors = dict(_builtin_errors(tmp_path, features=features, label="{name: species, kind: regression}"))
    prefix = "stages.transform.params."
    assert set(errors) == {prefix + f for f in ("features.numeric[0]", "features.numeric[1]",
                           "features.categorical[0]", "features.bucketize.sex", "label.kind")}  # fmt: skip
    assert "Did you mean 'bill_length_mm'?" in errors[prefix + "features.numeric[0]"]
    assert errors[prefix + "features.numeric[1]"].startswith("'island' holds text (Biscoe, Dream, Torgersen)")
    assert "'species' is the label" in errors[prefix + "features.categorical[0]"]
    assert "so it cannot be bucketize" in errors[prefix + "features.bucketize.sex"]
    assert "Use kind: multiclass." in errors[prefix + "label.kind"]


def test_auto_features_check_the_label_only(tmp_path):
    assert isinstance(_builtin(tmp_path, features="auto"), Pipeline)
    [(field, message)] = _builtin_errors(tmp_path, features="auto", label="{name: Species, kind: multiclass}")
    assert field == "stages.transform.params.label.name" and "Did you mean 'species'?" in message


@pytest.mark.parametrize(
    ("label", "fragment"),
    [
        ("{name: sex, kind: binary}", "e.g. positive: female."),  # the rarer value
        ("{name: sex, kind: binary, positive: M}", "positive: M is not a value of 'sex' in ../data/penguins.csv"),
        ("{name: island, kind: binary, positive: yes}", "needs two label values, but 'island' has 3"),
        ("{name: bill_length_mm, kind: multiclass}", "has 32 distinct decimal numbers"),
    ],
)
def test_label_kinds_that_do_not_fit_the_values(tmp_path, label, fragment):
    [(_field, message)] = _builtin_errors(tmp_path, label=label, features="{numeric: [body_mass_g]}")
    assert fragment in message


def test_an_unquoted_yes_is_explained():
    from airflow_provider_mlpipe.spec.data_sample import Column, kind_problem

    column = Column("churned", "string", 10, 0, 2, {"yes": 4, "no": 6})
    key, message = kind_problem("binary", True, column, "x.csv")
    assert key == "positive" and 'quote it, e.g. "yes"' in message
    assert kind_problem("binary", "yes", column, "x.csv") is None


def test_the_data_check_is_skipped_when_the_data_is_remote_or_absent(tmp_path):
    features = "{numeric: [not_a_column]}"
    assert isinstance(_builtin(tmp_path / "a", features=features, data=None), Pipeline)
    remote = "gs://bucket/data/{SPAN}.csv"
    assert isinstance(_builtin(tmp_path / "b", features=features, pattern=remote), Pipeline)


def test_span_patterns_sample_their_first_file_and_parquet_is_read_too(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    dags = tmp_path / "dags"
    (dags / "data").mkdir(parents=True)
    pq.write_table(
        pa.table({"species": ["Adelie", "Gentoo"] * 5, "mass": [1.5] * 10}), dags / "data" / "20240102.parquet"
    )
    (dags / "data" / "20240103.parquet").write_text("not parquet: only the first span is read")
    features = "{numeric: [mass, flipper]}"
    errors = _builtin_errors(tmp_path, features=features, pattern="../data/{SPAN}.parquet", data=None)
    assert errors == [(
        "stages.transform.params.features.numeric[1]",
        "The feature 'flipper' is not a column of the data ../data/20240102.parquet. Its columns are mass, species.",
    )]  # fmt: skip


def test_the_curated_schema_names_the_columns_before_the_data(tmp_path):
    text = BUILTIN.format(pattern="../data/penguins.csv", features="{numeric: [bill_length_mm]}",
                          label="{name: species, kind: multiclass}", evaluator="")  # fmt: skip
    text = text.replace("schema_gen: {}", "schema_gen: {params: {schema_file: ../schema.pbtxt}}")
    dags = make_dags_folder(tmp_path, {"b": text}, dag_file=False)
    (dags / "schema.pbtxt").write_text(SCHEMA)
    (dags / "data").mkdir()
    (dags / "data" / "penguins.csv").write_text(PENGUINS_CSV)
    with pytest.raises(SpecErrors) as exc_info:
        validate(load_spec(dags / "pipelines" / "b.yaml"), dags)
    [error] = exc_info.value.errors
    assert error.message.startswith("The feature 'bill_length_mm' is not a column of the schema ../schema.pbtxt.")


def test_the_csv_sample_reads_missing_values_as_example_gen_does():
    import ast

    from airflow_provider_mlpipe.spec.data_sample import CSV_NULL_VALUES
    from tests.support.paths import REPO

    tree = ast.parse((REPO / "airflow_provider_mlpipe" / "runtime" / "io" / "example_io.py").read_text())
    [runtime] = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", "") == "NULL_VALUES" for t in n.targets)]  # fmt: skip
    assert runtime == CSV_NULL_VALUES


def test_a_typo_in_the_feature_mapping_is_reported_once(tmp_path):
    [(field, message)] = _builtin_errors(tmp_path, features="{numerc: [bill_length_mm]}")
    assert field == "stages.transform.params.features.numerc" and "Did you mean 'numeric'?" in message
    [(field, message)] = _builtin_errors(tmp_path, features="aut")
    assert field == "stages.transform.params.features" and message == "Expected 'auto', got 'aut'."
