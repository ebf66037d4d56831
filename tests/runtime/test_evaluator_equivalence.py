"""The fast engine against TFMA: every metric of every slice, binary, multi-class and regression, both engines.

Small Keras models the test builds on the penguins rows (a binary "is it an Adelie" classifier, a body-mass
regressor, with a weaker second model of each as the baseline) and the penguins pipeline's own multi-class model.
Each goes through the Evaluator executor twice, ``engine: fast`` and ``engine: tfma``; every metric of every slice,
for the candidate and the baseline, and every plot point must agree within 1e-6.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_provider_mlpipe.protocol import ArtifactRef
from airflow_provider_mlpipe.runtime.executors import evaluator
from tests.runtime.model_fixtures import make_context, penguins_table, write_examples

pytest_plugins = ["tests.runtime.model_fixtures"]
pytestmark = pytest.mark.runtime

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
SLICES = [[], ["island"], ["island", "sex"]]
TOLERANCE = 1e-6

BINARY_METRICS = [
    {"class_name": "ExampleCount"},
    {"class_name": "WeightedExampleCount"},
    {"class_name": "BinaryAccuracy"},
    {"class_name": "Precision"},
    {"class_name": "Recall"},
    {"class_name": "AUC"},
    {"class_name": "AUCPrecisionRecall"},
    {"class_name": "MeanLabel"},
    {"class_name": "MeanPrediction"},
    {"class_name": "Calibration"},
    {"class_name": "BinaryCrossentropy"},
    {"class_name": "BinaryCrossEntropy"},
    {"class_name": "F1Score"},
    {"class_name": "ConfusionMatrixAtThresholds", "config": {"thresholds": [0.25, 0.5, 0.75]}},
    {"class_name": "PrecisionAtRecall", "config": {"recall": 0.8}},
]
REGRESSION_METRICS = [
    {"class_name": "ExampleCount"},
    {"class_name": "MeanSquaredError"},
    {"class_name": "RootMeanSquaredError"},
    {"class_name": "MeanAbsoluteError"},
    {"class_name": "MeanAbsolutePercentageError"},
    {"class_name": "MeanLabel"},
    {"class_name": "MeanPrediction"},
]
MULTICLASS_METRICS = [
    {"class_name": "SparseCategoricalAccuracy"},
    {"class_name": "SparseCategoricalCrossentropy"},
    {"class_name": "CategoricalAccuracy"},
    {"class_name": "SparseTopKCategoricalAccuracy"},
    {"name": "precision_top_2", "class_name": "Precision", "config": {"top_k": 2}},
    {"name": "recall_top_2", "class_name": "Recall", "config": {"top_k": 2}},
]


def _table() -> pa.Table:
    table = penguins_table()
    table = table.filter(pc.invert(pc.is_null(table.column("body_mass_g"))))
    species = table.column("species")
    is_adelie = pc.cast(pc.equal(species, "Adelie"), pa.int64())
    mass_kg = pc.cast(pc.divide(pc.cast(table.column("body_mass_g"), pa.float64()), 1000.0), pa.float32())
    weight = pa.array([1.0 + (i % 4) * 0.5 for i in range(table.num_rows)], pa.float32())
    return table.append_column("is_adelie", is_adelie).append_column("mass_kg", mass_kg).append_column("weight", weight)


def _export(path: Path, table: pa.Table, label: str, kind: str, epochs: int, seed: int) -> ArtifactRef:
    """A Keras model over the raw numeric features with a ``serving_default`` that parses tf.Examples."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    columns = {f: np.nan_to_num(table.column(f).to_numpy().astype(np.float32)) for f in NUMERIC}
    matrix = np.stack([columns[f] for f in NUMERIC], axis=1)
    mean, std = matrix.mean(axis=0), matrix.std(axis=0) + 1e-6
    inputs = keras.Input(shape=(len(NUMERIC),))
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Normalization(mean=mean, variance=std**2)(inputs))
    output = keras.layers.Dense(1, activation="sigmoid" if kind == "binary" else None)(hidden)
    model = keras.Model(inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy" if kind == "binary" else "mse")
    target = table.column(label).to_numpy().astype(np.float32)
    model.fit(matrix, target, epochs=epochs, batch_size=32, verbose=0)
    kinds = {f: tf.int64 if pa.types.is_integer(table.schema.field(f).type) else tf.float32 for f in NUMERIC}
    spec = {f: tf.io.FixedLenFeature([], kinds[f], default_value=tf.zeros([], kinds[f])) for f in NUMERIC}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialized, spec)
        return {"outputs": model(tf.stack([tf.cast(parsed[f], tf.float32) for f in NUMERIC], axis=1))}

    serving = path / "Format-Serving"
    model.save(str(serving), save_format="tf", signatures={"serving_default": serve})
    return ArtifactRef(type="Model", uri=str(path), id=seed, properties={})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("equivalence")
    table = _table()
    examples = write_examples(root / "examples", table)
    train = table.filter(pa.array([i % 3 != 0 for i in range(table.num_rows)]))
    return {
        "examples": examples,
        "binary": _export(root / "binary", train, "is_adelie", "binary", epochs=20, seed=1),
        "binary_baseline": _export(root / "binary-old", train, "is_adelie", "binary", epochs=2, seed=2),
        "regression": _export(root / "regression", train, "mass_kg", "regression", epochs=30, seed=3),
        "regression_baseline": _export(root / "regression-old", train, "mass_kg", "regression", epochs=3, seed=4),
    }


def _run(tmp: Path, examples: ArtifactRef, model: ArtifactRef, baseline: ArtifactRef, **params: Any) -> dict:
    ctx = make_context(
        tmp,
        "evaluator",
        {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
        params=params,
        inputs={"examples": [examples], "model": [model]},
        resolved={"baseline_model": baseline},
    )
    summary = evaluator.execute(ctx)
    folder = ctx.output("evaluation").path
    documents = {name: json.loads(Path(folder, f"{name}.json").read_text()) for name in ("metrics", "plots")}
    return {"summary": summary, **documents}


def _numbers(value: Any, path: str = "") -> dict[str, float | None]:
    """Every number of a JSON document by its path, for an element-wise comparison."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}[{i}]").items()}
    return {path: value} if isinstance(value, (int, float)) or value is None else {}


def _differences(fast: Any, tfma: Any) -> list[str]:
    a, b = _numbers(fast), _numbers(tfma)
    problems = [f"{k}: only in {'fast' if k in a else 'tfma'}" for k in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        same = x == y or (
            x is not None and y is not None and (abs(x - y) <= TOLERANCE or (math.isnan(x) and math.isnan(y)))
        )
        if not same:
            problems.append(f"{key}: fast {x} vs tfma {y}")
    return problems


def _both_engines(tmp: Path, examples: ArtifactRef, model: ArtifactRef, baseline: ArtifactRef, **params: Any):
    fast = _run(tmp / "fast", examples, model, baseline, engine="fast", **params)
    tfma = _run(tmp / "tfma", examples, model, baseline, engine="tfma", **params)
    assert fast["summary"]["engine"] == "fast" and tfma["summary"]["engine"] == "tfma"
    for part in ("slices", "baseline"):
        assert _differences(fast["metrics"][part], tfma["metrics"][part]) == []
    assert _differences(fast["plots"], tfma["plots"]) == []
    assert fast["summary"]["blessed"] == tfma["summary"]["blessed"]
    return fast, tfma


def test_binary_metrics_and_plots_agree(tmp_path: Path, built: dict[str, Any]) -> None:
    fast, _ = _both_engines(
        tmp_path, built["examples"], built["binary"], built["binary_baseline"],
        label_key="is_adelie", slices=SLICES, metrics=BINARY_METRICS,
    )  # fmt: skip
    overall = fast["metrics"]["slices"][0]["metrics"]
    assert 0.5 < overall["auc"] <= 1.0 and "confusion_matrix_at_thresholds/precision@0.5" in overall
    names = [s["slice"] for s in fast["metrics"]["slices"]]
    assert "island=Biscoe" in names and "island=Biscoe, sex=female" in names
    plot = fast["plots"]["candidate"]["Overall"]
    assert fast["plots"]["kind"] == "binary" and fast["plots"]["baseline"]["Overall"]["roc"]["fpr"]
    assert len(plot["roc"]["fpr"]) == len(plot["thresholds"]) and plot["calibration"]
    assert sum(map(sum, plot["confusion_matrix"]["counts"])) == overall["example_count"]


def test_weighted_binary_metrics_agree(tmp_path: Path, built: dict[str, Any]) -> None:
    fast, _ = _both_engines(
        tmp_path, built["examples"], built["binary"], built["binary_baseline"],
        label_key="is_adelie", example_weight_key="weight", slices=SLICES[:2], metrics=BINARY_METRICS,
    )  # fmt: skip
    overall = fast["metrics"]["slices"][0]["metrics"]
    rows = built["examples"].properties["row_counts"]["eval"]
    assert overall["weighted_example_count"] > rows  # TFMA weighs every metric, counts too, once a weight is set


def test_regression_metrics_agree(tmp_path: Path, built: dict[str, Any]) -> None:
    fast, _ = _both_engines(
        tmp_path, built["examples"], built["regression"], built["regression_baseline"],
        label_key="mass_kg", slices=SLICES, metrics=REGRESSION_METRICS,
    )  # fmt: skip
    overall = fast["metrics"]["slices"][0]["metrics"]
    assert math.isclose(overall["root_mean_squared_error"] ** 2, overall["mean_squared_error"], rel_tol=1e-5)
    assert fast["plots"]["kind"] == "regression" and fast["plots"]["candidate"] == {}


def test_rows_without_a_label_are_left_out_by_both_engines(tmp_path: Path, built: dict[str, Any]) -> None:
    table = _table()
    mass = table.column("mass_kg").to_pylist()
    unlabeled = pa.array([None if i % 5 == 0 else m for i, m in enumerate(mass)], pa.float32())
    table = table.set_column(table.schema.get_field_index("mass_kg"), "mass_kg", unlabeled)
    examples = write_examples(tmp_path / "examples", table)
    fast, _ = _both_engines(
        tmp_path, examples, built["regression"], built["regression_baseline"],
        label_key="mass_kg", label_column="mass_kg", slices=SLICES[:2], metrics=REGRESSION_METRICS[:3],
    )  # fmt: skip
    labeled = sum(1 for i in range(table.num_rows) if i % 3 == 0 and i % 5 != 0)  # write_examples: every 3rd row
    assert fast["metrics"]["slices"][0]["metrics"]["example_count"] == labeled


def test_multiclass_metrics_and_confusion_matrix_agree(
    tmp_path: Path,
    penguins_inputs: dict[str, ArtifactRef],
    penguins_model: ArtifactRef,
    penguins_bad_model: ArtifactRef,
) -> None:
    fast, _ = _both_engines(
        tmp_path, penguins_inputs["examples"], penguins_model, penguins_bad_model,
        label_key="species_xf", slices=SLICES[:2], metrics=MULTICLASS_METRICS,
    )  # fmt: skip
    matrix = fast["plots"]["candidate"]["Overall"]["confusion_matrix"]
    assert matrix["labels"][:3] == ["0", "1", "2"]
    assert sum(map(sum, matrix["counts"])) == fast["metrics"]["slices"][0]["metrics"]["example_count"]


def test_auto_engine_names_the_metric_it_hands_to_tfma(
    tmp_path: Path, built: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mlpipe.runtime.evaluator")
    result = _run(
        tmp_path, built["examples"], built["regression"], None,
        label_key="mass_kg", metrics=[{"class_name": "MeanSquaredError"}, {"class_name": "SquaredPearsonCorrelation"}],
    )  # fmt: skip
    assert result["summary"]["engine"] == "tfma"
    assert "does not compute SquaredPearsonCorrelation" in caplog.text
