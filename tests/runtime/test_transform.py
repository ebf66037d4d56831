"""Transform executor: tf.Transform on Beam over Parquet penguins, outputs per the contract."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.context import UserModuleError
from airflow_provider_mlpipe.runtime.executors import transform
from airflow_provider_mlpipe.stages.transform import TransformParams
from tests.runtime.model_fixtures import TRANSFORM_PARAMS, make_context

pytest_plugins = ["tests.runtime.model_fixtures"]

pytestmark = pytest.mark.runtime


def _read_transformed(graph_dir: str, split_dir: str) -> dict[str, np.ndarray]:
    import tensorflow as tf
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(graph_dir).transformed_feature_spec()
    files = sorted(glob.glob(os.path.join(split_dir, "transformed-*.tfrecord.gz")))
    assert files, split_dir
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    parsed = tf.io.parse_example(records, spec)
    return {k: v.numpy() for k, v in parsed.items()}


def test_outputs_follow_the_contract(penguins_inputs, penguins_transformed):
    graph = penguins_transformed["transform_graph"].uri
    for sub in ("transform_fn", "transformed_metadata", "metadata"):
        assert os.path.isdir(os.path.join(graph, sub)), sub
    examples = penguins_transformed["transformed_examples"]
    assert examples.properties["format"] == "tfrecord_gzip"
    assert examples.properties["split_names"] == ["train", "eval"]
    assert examples.properties["span"] == penguins_inputs["examples"].properties["span"]
    assert examples.properties["row_counts"] == penguins_inputs["examples"].properties["row_counts"]
    for split, count in examples.properties["row_counts"].items():
        values = _read_transformed(graph, os.path.join(examples.uri, f"Split-{split}"))
        assert len(values["species_xf"]) == count


def test_features_are_scaled_imputed_and_encoded(penguins_transformed):
    graph = penguins_transformed["transform_graph"].uri
    train = _read_transformed(graph, os.path.join(penguins_transformed["transformed_examples"].uri, "Split-train"))
    assert sorted(train) == [
        "bill_depth_mm_xf",
        "bill_length_mm_xf",
        "body_mass_g_xf",
        "flipper_length_mm_xf",
        "island_xf",
        "sex_xf",
        "species_xf",
    ]
    for key in ("bill_length_mm_xf", "body_mass_g_xf", "flipper_length_mm_xf", "bill_depth_mm_xf"):
        values = train[key]
        assert np.isfinite(values).all(), f"{key} still has missing values"
        # z-scores over the train split; imputing the mean shrinks the deviation only a little.
        assert abs(values.mean()) < 1e-4
        assert 0.97 < values.std() <= 1.0001
    assert set(np.unique(train["species_xf"])) == {0, 1, 2}
    assert set(np.unique(train["island_xf"])) <= {0, 1, 2, 3}
    # sex has missing values: the empty token gets its own index, beside female and male.
    assert len(np.unique(train["sex_xf"])) == 3


def test_graph_applied_to_raw_examples_matches_beam_output(penguins_inputs, penguins_transformed):
    """The saved transform graph reproduces what Beam materialized (it is what travels with the model)."""
    import pyarrow.parquet as pq
    import tensorflow as tf
    import tensorflow_transform as tft

    from airflow_provider_mlpipe.runtime.io import schema_tables

    graph = penguins_transformed["transform_graph"].uri
    output = tft.TFTransformOutput(graph)
    schema = schema_tables.load_schema(penguins_inputs["schema"].uri)
    table = pq.read_table(schema_tables.split_files(penguins_inputs["examples"].uri, "eval"))
    serialized = schema_tables.encode_examples(schema_tables.to_list_batch(table, schema))
    raw = tf.io.parse_example(serialized, output.raw_feature_spec())
    by_graph = {k: v.numpy() for k, v in output.transform_raw_features(raw).items()}
    by_beam = _read_transformed(graph, os.path.join(penguins_transformed["transformed_examples"].uri, "Split-eval"))
    keys = sorted(by_beam)

    def rows(values: dict[str, np.ndarray]) -> np.ndarray:
        matrix = np.stack([values[k].astype(np.float64).reshape(-1) for k in keys], axis=1)
        return matrix[np.lexsort(matrix.T[::-1])]

    np.testing.assert_allclose(rows(by_graph), rows(by_beam), rtol=1e-6, atol=1e-6)


def test_fingerprint_tracks_module_content(tmp_path):
    (tmp_path / "prep.py").write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    request = StageRequest(
        pipeline="p",
        pipeline_root=str(tmp_path),
        stage="transform",
        node_id="transform",
        run_id="r",
        params={"module_file": "prep.py"},
        spec_dir=str(tmp_path),
    )
    params = TransformParams.model_validate(request.params)
    first = transform.fingerprint(request, params)
    assert transform.fingerprint(request, params) == first
    (tmp_path / "prep.py").write_text("def preprocessing_fn(inputs):\n    return dict(inputs)\n")
    assert transform.fingerprint(request, params) != first


def test_module_without_preprocessing_fn_fails_clearly(tmp_path, penguins_inputs):
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "empty.py").write_text("X = 1\n")
    ctx = make_context(
        tmp_path,
        "transform",
        {"transform_graph": "TransformGraph", "transformed_examples": "Examples"},
        params={"module_file": "empty.py"},
        inputs={"examples": [penguins_inputs["examples"]], "schema": [penguins_inputs["schema"]]},
    )
    ctx.spec_dir = str(spec_dir)
    with pytest.raises(UserModuleError, match="preprocessing_fn"):
        transform.execute(ctx)


def test_missing_module_file_param_fails(tmp_path, penguins_inputs):
    with pytest.raises(ValueError, match="module_file"):  # refused by the params model, before any work
        make_context(
            tmp_path,
            "transform",
            {"transform_graph": "TransformGraph", "transformed_examples": "Examples"},
            params={},
            inputs={"examples": [penguins_inputs["examples"]], "schema": [penguins_inputs["schema"]]},
        )


def test_transform_params_point_at_the_shipped_module():
    assert TRANSFORM_PARAMS["module_file"] == "modules/penguins_transform.py"


def test_dense_non_float_features_are_read_sparse_by_default(penguins_inputs, penguins_transformed):
    import tensorflow as tf
    import tensorflow_transform as tft

    from airflow_provider_mlpipe.runtime.io import schema_tables

    schema = schema_tables.load_schema(penguins_inputs["schema"].uri)
    dense_non_float = sorted(f.name for f in schema.feature if f.HasField("shape") and f.type != 3)
    assert dense_non_float, "the fixture schema should have dense INT/BYTES features"
    graph = penguins_transformed["transform_graph"]
    assert sorted(graph.properties["relaxed_features"]) == dense_non_float
    spec = tft.TFTransformOutput(graph.uri).raw_feature_spec()
    assert all(isinstance(spec[name], tf.io.VarLenFeature) for name in dense_non_float)
    for feature in (f for f in schema.feature if f.type == 3):  # FLOAT features keep their shape (NaN if missing)
        expected = tf.io.FixedLenFeature if feature.HasField("shape") else tf.io.VarLenFeature
        assert isinstance(spec[feature.name], expected), feature.name


def test_list_batches_encode_nulls_as_missing_or_nan():
    import pyarrow as pa
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    from airflow_provider_mlpipe.runtime.io import schema_tables

    schema = schema_pb2.Schema()
    dense_float = schema.feature.add(name="x", type=schema_pb2.FLOAT)
    dense_float.shape.dim.add(size=1)
    dense_bytes = schema.feature.add(name="s", type=schema_pb2.BYTES)
    dense_bytes.shape.dim.add(size=1)
    schema.feature.add(name="n", type=schema_pb2.INT)
    table = pa.table({"x": [1.5, None], "s": ["a", None], "n": [None, 4], "ignored": [1, 2]})
    with pytest.raises(ValueError, match="always present"):
        schema_tables.to_list_batch(table, schema)
    batch = schema_tables.to_list_batch(table, schema, strict=False)
    assert batch.schema.names == ["x", "s", "n"]
    parsed = tf.io.parse_example(
        schema_tables.encode_examples(batch),
        {
            "x": tf.io.FixedLenFeature([1], tf.float32),
            "s": tf.io.FixedLenFeature([1], tf.string, default_value=["<missing>"]),
            "n": tf.io.VarLenFeature(tf.int64),
        },
    )
    x = parsed["x"].numpy().reshape(-1)
    assert x[0] == 1.5 and np.isnan(x[1])
    assert parsed["s"].numpy().reshape(-1).tolist() == [b"a", b"<missing>"]
    assert parsed["n"].indices.numpy().tolist() == [[1, 0]] and parsed["n"].values.numpy().tolist() == [4]


def test_strict_mode_keeps_the_schema_and_rejects_missing_values(tmp_path, penguins_inputs):
    import pyarrow as pa

    from tests.runtime.model_fixtures import penguins_table, write_examples

    table = penguins_table()
    islands = table.column("island").to_pylist()
    islands[0] = None  # row 0 goes to the eval split; the schema says island is always present
    table = table.set_column(table.schema.get_field_index("island"), "island", pa.array(islands))
    examples = write_examples(tmp_path / "examples", table)
    ctx = make_context(
        tmp_path,
        "transform",
        {"transform_graph": "TransformGraph", "transformed_examples": "Examples"},
        params={**TRANSFORM_PARAMS, "missing_values": "strict"},
        inputs={"examples": [examples], "schema": [penguins_inputs["schema"]]},
    )
    with pytest.raises(ValueError, match=r"island.*always present"):
        transform.execute(ctx)
