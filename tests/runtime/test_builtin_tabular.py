"""The built-in tabular transform and trainer: binary, multiclass and regression runs through the Evaluator."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.builtin import tabular_config
from airflow_provider_mlpipe.runtime.executors import trainer, transform
from airflow_provider_mlpipe.runtime.io import schema_tables
from airflow_provider_mlpipe.stages.trainer import TrainerParams
from airflow_provider_mlpipe.stages.transform import TransformParams
from tests.runtime.model_fixtures import make_context
from tests.runtime.tabular_fixtures import TabularRun, customer_table, run_tabular, write_table_schema

pytestmark = pytest.mark.runtime

SMALL_MODEL = {"hidden_units": [16], "embedding_dim": 4, "batch_size": 32, "learning_rate": 0.01, "epochs": 12}


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> TabularRun:
    return run_tabular(
        tmp_path_factory.mktemp("binary"), "binary", "auto", {**SMALL_MODEL, "type": "mlp"}, slices=[[], ["plan"]]
    )


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory: pytest.TempPathFactory) -> TabularRun:
    features = {
        "numeric": ["income"],
        "categorical": ["color", "plan"],
        "bucketize": {"age": 4},
        "crosses": [["color", "plan"], ["age", "plan"]],
        "cross_buckets": 50,
    }
    return run_tabular(tmp_path_factory.mktemp("multiclass"), "multiclass", features, {**SMALL_MODEL, "type": "mlp"})


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> TabularRun:
    features = {
        "numeric": ["age", "income", "tenure"],
        "categorical": ["plan", "color"],
        "crosses": [["plan", "color"]],
    }
    model = {**SMALL_MODEL, "type": "wide_and_deep", "learning_rate": 0.02, "epochs": 20}
    return run_tabular(tmp_path_factory.mktemp("regression"), "regression", features, model)


def _raw_examples(run: TabularRun, *rows: dict[str, object]) -> list[bytes]:
    """Serialized tf.Examples as the Evaluator encodes rows: a missing value is an absent feature."""
    schema = schema_tables.load_schema(run.schema.uri)
    columns = {feature.name: [row.get(feature.name) for row in rows] for feature in schema.feature}
    return schema_tables.encode_examples(schema_tables.to_list_batch(pa.table(columns), schema, strict=False))


# No age (an INT feature, read as sparse), no balance (a dense FLOAT one) and a colour the analysis never saw.
UNSEEN = {"customer_id": "c9999", "income": 61.0, "tenure": 4.0, "plan": "pro", "color": "ultraviolet"}


def _serve(run: TabularRun, examples: list[bytes]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    model = tf.saved_model.load(run.serving_dir)
    batch = tf.constant(examples)
    served = model.signatures["serving_default"](examples=batch)
    transformed = model.signatures["transform_features"](examples=batch)
    return {"outputs": served["outputs"].numpy(), **{k: v.numpy() for k, v in transformed.items()}}


def test_auto_features_are_the_schema_columns_without_label_and_identifier(binary_run):
    config = binary_run.tabular_config()
    assert sorted(config["numeric"]) == ["age", "balance", "income", "tenure"]
    assert sorted(config["categorical"]) == ["color", "plan"]
    assert config["label"] == "churned" and config["kind"] == "binary" and config["positive"] == [1]
    # green, red, blue, violet and __missing__ in the training split, plus one OOV bucket in the model's input
    assert config["vocabulary_sizes"] == {"color": 5, "plan": 3}
    assert binary_run.transform_graph.properties["builtin"] == "tabular"


def test_binary_model_serves_raw_examples_and_scores_well(binary_run):
    assert trainer._signatures(binary_run.serving_dir) == ["serving_default", "transform_features"]
    assert binary_run.model.properties["builtin"] == "tabular"
    assert binary_run.model.properties["hyperparameters"]["type"] == "mlp"
    served = _serve(binary_run, _raw_examples(binary_run, UNSEEN, {**UNSEEN, "age": 30, "churned": 1}))
    assert served["outputs"].shape == (2, 1)
    assert np.all((served["outputs"] >= 0) & (served["outputs"] <= 1))
    # a missing age or balance is the training rows' mean, so its z-score is 0 (every training row has both)
    assert abs(served["age_xf"][0]) < 1e-4 and abs(served["balance_xf"][0]) < 1e-4
    assert served["age_xf"][1] < -0.5  # 30 is well below the mean age (~48)
    assert served["churned_xf"][1] == 1.0
    overall = binary_run.overall()
    assert overall["auc"] > 0.8, overall
    assert overall["example_count"] == binary_run.examples.properties["row_counts"]["eval"]
    assert {s["slice"] for s in binary_run.metrics["slices"]} == {"Overall", "plan=basic", "plan=plus", "plan=pro"}
    assert binary_run.blessed


def test_multiclass_buckets_crosses_and_classes(multiclass_run):
    config = multiclass_run.tabular_config()
    assert config["classes"] == 3
    served = _serve(multiclass_run, _raw_examples(multiclass_run, UNSEEN, {**UNSEEN, "age": 20, "segment": "young"}))
    assert served["outputs"].shape == (2, 3)
    np.testing.assert_allclose(served["outputs"].sum(axis=1), 1.0, rtol=1e-5)
    assert "age_xf" not in served  # bucketized only
    assert set(served["age_bucket_xf"]) <= set(range(4)) and served["age_bucket_xf"][1] == 0
    for cross in ("color_X_plan_xf", "age_X_plan_xf"):
        assert served[cross].min() >= 0 and served[cross].max() < 50
    assert served["segment_xf"][0] == -1  # no label: no class
    assert 0 <= served["segment_xf"][1] < 3
    assert multiclass_run.overall()["sparse_categorical_accuracy"] > 0.7, multiclass_run.overall()


def test_regression_error_is_well_below_the_label_variance(regression_run):
    import pyarrow.parquet as pq

    served = _serve(regression_run, _raw_examples(regression_run, UNSEEN))
    assert served["outputs"].shape == (1, 1) and np.isfinite(served["outputs"]).all()
    eval_spend = pq.read_table(schema_tables.split_files(regression_run.examples.uri, "eval")).column("spend")
    variance = float(np.var(eval_spend.to_numpy()))
    overall = regression_run.overall()
    assert overall["mean_squared_error"] < 0.3 * variance, (overall, variance)
    assert regression_run.model.properties["hyperparameters"]["type"] == "wide_and_deep"


def test_builtin_trainer_needs_the_builtin_transform(tmp_path, binary_run):
    other_graph = tmp_path / "module-transform-graph"
    other_graph.mkdir()
    ctx = make_context(
        tmp_path,
        "trainer",
        {"model": "Model"},
        params={"model": SMALL_MODEL},
        inputs={
            "examples": [binary_run.transformed_examples],
            "schema": [binary_run.schema],
            "transform_graph": [ArtifactRef(type="TransformGraph", uri=str(other_graph))],
        },
    )
    with pytest.raises(ValueError, match="needs the output of the built-in tabular transform"):
        trainer.execute(ctx)


def test_resolve_explains_features_and_labels_that_do_not_fit(tmp_path):
    table = customer_table("churned")
    schema = schema_tables.load_schema(write_table_schema(tmp_path, table).uri)

    def resolve(**params: object) -> tabular_config.TabularConfig:
        return tabular_config.resolve(TransformParams.model_validate(params), schema)

    with pytest.raises(ValueError, match=r"features \['height'\] are not in the schema"):
        resolve(features={"numeric": ["height"]}, label={"name": "churned", "kind": "binary"})
    with pytest.raises(ValueError, match="hold strings, so they cannot be numeric"):
        resolve(features={"numeric": ["plan"]}, label={"name": "churned", "kind": "binary"})
    with pytest.raises(ValueError, match="label 'churned' is also listed"):
        resolve(features={"numeric": ["churned"]}, label={"name": "churned", "kind": "binary"})
    with pytest.raises(ValueError, match="label 'churn' is not in the schema"):
        resolve(label={"name": "churn", "kind": "binary"})
    with pytest.raises(ValueError, match="positive value must be a number"):
        resolve(label={"name": "churned", "kind": "binary", "positive": "M"})
    assert resolve(label={"name": "churned", "kind": "binary", "positive": "true"}).positive == [1]
    assert resolve(label={"name": "plan", "kind": "binary", "positive": "pro"}).positive == ["pro"]


def test_cache_fingerprint_covers_the_builtin_params():
    request = StageRequest(pipeline="shop", pipeline_root=".", stage="transform", node_id="transform", run_id="r1")
    base = TransformParams.model_validate({"label": {"name": "churned", "kind": "binary"}})
    other = TransformParams.model_validate({"label": {"name": "churned", "kind": "binary", "positive": 0}})
    assert transform.fingerprint(request, base) == transform.fingerprint(request, base)
    assert transform.fingerprint(request, base) != transform.fingerprint(request, other)
    assert transform.fingerprint(request, base).startswith("builtin:")
    small, deep = TrainerParams(), TrainerParams.model_validate({"model": {"hidden_units": [128, 64, 32]}})
    assert trainer.fingerprint(request, small) != trainer.fingerprint(request, deep)
    with_module = TrainerParams.model_validate({"module_file": "modules/penguins_trainer.py", "train_steps": 10})
    assert not trainer.fingerprint(request, with_module).startswith("builtin:")
