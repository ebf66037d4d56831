"""Transform executor: tf.Transform on Beam over Parquet penguins, outputs per the contract."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.context import UserModuleError
from airflow_provider_mlpipe.runtime.executors import transform
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

    from airflow_provider_mlpipe.runtime import model_examples

    graph = penguins_transformed["transform_graph"].uri
    output = tft.TFTransformOutput(graph)
    schema = model_examples.load_schema(penguins_inputs["schema"].uri)
    table = pq.read_table(model_examples.split_files(penguins_inputs["examples"].uri, "eval"))
    serialized = model_examples.encode_examples(model_examples.to_list_batch(table, schema))
    raw = tf.io.parse_example(serialized, output.raw_feature_spec())
    by_graph = {k: v.numpy() for k, v in output.transform_raw_features(raw).items()}
    by_beam = _read_transformed(graph, os.path.join(penguins_transformed["transformed_examples"].uri, "Split-eval"))
    keys = sorted(by_beam)

    def rows(values: dict[str, np.ndarray]) -> np.ndarray:
        matrix = np.stack([values[k].astype(np.float64).reshape(-1) for k in keys], axis=1)
        return matrix[np.lexsort(matrix.T[::-1])]

    np.testing.assert_allclose(rows(by_graph), rows(by_beam), rtol=1e-6, atol=1e-6)


def test_fingerprint_tracks_module_content_and_overrides(tmp_path):
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
    first = transform.fingerprint(request)
    assert transform.fingerprint(request) == first
    (tmp_path / "prep.py").write_text("def preprocessing_fn(inputs):\n    return dict(inputs)\n")
    second = transform.fingerprint(request)
    assert second != first
    request.conf = {"stages": {"transform": {"anything": 1}}}
    assert transform.fingerprint(request) != second


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
    ctx = make_context(
        tmp_path,
        "transform",
        {"transform_graph": "TransformGraph", "transformed_examples": "Examples"},
        params={},
        inputs={"examples": [penguins_inputs["examples"]], "schema": [penguins_inputs["schema"]]},
    )
    with pytest.raises(ValueError, match="module_file"):
        transform.execute(ctx)


def test_transform_params_point_at_the_shipped_module():
    assert TRANSFORM_PARAMS["module_file"] == "modules/penguins_transform.py"
