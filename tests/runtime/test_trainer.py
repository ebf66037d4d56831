"""Trainer executor: FnArgs, export checks, NaN and user-error handling, hyperparameter overrides."""

from __future__ import annotations

import os
import textwrap

import pytest

from airflow_provider_mlpipe.protocol import ArtifactRef, StageRequest
from airflow_provider_mlpipe.runtime.executors import trainer
from airflow_provider_mlpipe.runtime.runner import validated_params
from airflow_provider_mlpipe.runtime.training.fn_args import NanLossError
from airflow_provider_mlpipe.stages import get_stage
from tests.runtime.model_fixtures import TRAINER_PARAMS, make_context

pytest_plugins = ["tests.runtime.model_fixtures"]
pytestmark = pytest.mark.runtime


def _ctx(tmp_path, inputs, params=None, conf=None, spec_dir=None):
    ctx = make_context(
        tmp_path,
        "trainer",
        {"model": "Model"},
        params=params or TRAINER_PARAMS,
        inputs={
            "examples": [inputs["transformed_examples"]],
            "schema": [inputs["schema"]],
            "transform_graph": [inputs["transform_graph"]],
        },
        conf=conf,
    )
    if spec_dir:
        ctx.spec_dir = str(spec_dir)
    return ctx


@pytest.fixture
def trainer_inputs(penguins_inputs, penguins_transformed) -> dict[str, ArtifactRef]:
    return {**penguins_transformed, "schema": penguins_inputs["schema"]}


def test_penguins_model_is_exported_with_both_signatures(penguins_model, penguins_inputs):
    serving = os.path.join(penguins_model.uri, "Format-Serving")
    assert os.path.isfile(os.path.join(serving, "saved_model.pb"))
    assert os.path.isfile(os.path.join(penguins_model.uri, "schema.pbtxt"))
    assert os.path.isdir(os.path.join(penguins_model.uri, "model_run"))
    assert penguins_model.properties["train_steps"] == TRAINER_PARAMS["train_steps"]
    assert penguins_model.properties["span"] == penguins_inputs["examples"].properties["span"]
    assert trainer._signatures(serving) == ["serving_default", "transform_features"]


def test_penguins_model_classifies_raw_examples(penguins_model, penguins_inputs):
    import numpy as np
    import pyarrow.parquet as pq
    import tensorflow as tf

    from airflow_provider_mlpipe.runtime.io import schema_tables

    schema = schema_tables.load_schema(penguins_inputs["schema"].uri)
    table = pq.read_table(schema_tables.split_files(penguins_inputs["examples"].uri, "eval"))
    serialized = tf.constant(schema_tables.encode_examples(schema_tables.to_list_batch(table, schema)))
    model = tf.saved_model.load(os.path.join(penguins_model.uri, "Format-Serving"))
    probs = model.signatures["serving_default"](examples=serialized)["probabilities"].numpy()
    labels = model.signatures["transform_features"](examples=serialized)["species_xf"].numpy()
    assert probs.shape == (table.num_rows, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(axis=1) == labels).mean() > 0.9


def test_fn_args_merge_spec_hyperparameters_with_run_overrides(tmp_path, trainer_inputs):
    conf = {"stages": {"trainer": {"hyperparameters": {"shuffle_labels": True, "seed": 3}}}}
    fn_args = trainer.build_fn_args(_ctx(tmp_path, trainer_inputs, conf=conf))
    assert fn_args.hyperparameters == {"learning_rate": 0.02, "batch_size": 16, "seed": 3, "shuffle_labels": True}
    assert fn_args.train_files[0].endswith(os.path.join("Split-train", "*.tfrecord.gz"))
    assert fn_args.eval_files[0].endswith(os.path.join("Split-eval", "*.tfrecord.gz"))
    assert fn_args.serving_model_dir.endswith("Format-Serving")
    assert fn_args.schema_file.endswith("schema.pbtxt") and os.path.isfile(fn_args.schema_file)
    assert fn_args.transform_output == trainer_inputs["transform_graph"].uri
    assert (fn_args.train_steps, fn_args.eval_steps) == (150, 5)


def test_run_overrides_reach_params_and_module_content_the_fingerprint(tmp_path):
    (tmp_path / "m.py").write_text("def run_fn(fn_args):\n    pass\n")
    request = StageRequest(
        pipeline="p",
        pipeline_root=str(tmp_path),
        stage="trainer",
        node_id="trainer",
        run_id="r",
        params={"module_file": "m.py", "train_steps": 1},
        spec_dir=str(tmp_path),
    )
    plain = validated_params(get_stage("trainer"), request)
    assert plain.hyperparameters == {}
    request.conf = {"stages": {"trainer": {"hyperparameters": {"shuffle_labels": True}}}}
    overridden = validated_params(get_stage("trainer"), request)
    assert overridden.hyperparameters == {"shuffle_labels": True}  # so the cache key, built from params, differs
    first = trainer.fingerprint(request, overridden)
    (tmp_path / "m.py").write_text("def run_fn(fn_args):\n    return None\n")
    assert trainer.fingerprint(request, overridden) != first


def _module(spec_dir, body: str) -> None:
    spec_dir.mkdir(exist_ok=True)
    (spec_dir / "user_trainer.py").write_text(textwrap.dedent(body))


def test_nan_loss_fails_the_stage(tmp_path, trainer_inputs):
    spec_dir = tmp_path / "spec"
    _module(
        spec_dir,
        """
        import numpy as np
        import tf_keras as keras

        def run_fn(fn_args):
            x = np.ones((64, 2), dtype="float32")
            x[5, 0] = np.inf
            model = keras.Sequential([keras.layers.Input(shape=(2,)), keras.layers.Dense(1)])
            model.compile(optimizer="sgd", loss="mse")
            model.fit(x, np.ones((64, 1)), batch_size=8, epochs=2, callbacks=fn_args.callbacks, verbose=0)
            model.save(fn_args.serving_model_dir, save_format="tf")
        """,
    )
    ctx = _ctx(tmp_path, trainer_inputs, params={"module_file": "user_trainer.py", "train_steps": 1}, spec_dir=spec_dir)
    with pytest.raises(NanLossError, match="diverged"):
        trainer.execute(ctx)


def test_user_exception_carries_its_traceback(tmp_path, trainer_inputs):
    spec_dir = tmp_path / "spec"
    _module(
        spec_dir,
        """
        def helper_that_breaks(n):
            return {}["missing_key_%d" % n]

        def run_fn(fn_args):
            helper_that_breaks(fn_args.train_steps)
        """,
    )
    ctx = _ctx(tmp_path, trainer_inputs, params={"module_file": "user_trainer.py", "train_steps": 7}, spec_dir=spec_dir)
    with pytest.raises(trainer.UserCodeError) as info:
        trainer.execute(ctx)
    text = str(info.value)
    assert "KeyError" in text and "missing_key_7" in text
    assert "helper_that_breaks" in text and "user_trainer.py" in text


def test_run_fn_that_exports_nothing_fails(tmp_path, trainer_inputs):
    spec_dir = tmp_path / "spec"
    _module(spec_dir, "def run_fn(fn_args):\n    return None\n")
    ctx = _ctx(tmp_path, trainer_inputs, params={"module_file": "user_trainer.py", "train_steps": 1}, spec_dir=spec_dir)
    with pytest.raises(trainer.UserCodeError, match="without exporting"):
        trainer.execute(ctx)


def test_train_steps_are_required(tmp_path, trainer_inputs):
    params = {k: v for k, v in TRAINER_PARAMS.items() if k != "train_steps"}
    with pytest.raises(ValueError, match="train_steps"):
        trainer.execute(_ctx(tmp_path, trainer_inputs, params=params))


def test_serving_accepts_examples_with_missing_features(penguins_model):
    """Rows or requests without a value (here every feature but one) still get class probabilities."""
    import numpy as np
    import tensorflow as tf

    example = tf.train.Example()
    example.features.feature["bill_length_mm"].float_list.value.append(45.0)
    model = tf.saved_model.load(os.path.join(penguins_model.uri, "Format-Serving"))
    probs = model.signatures["serving_default"](examples=tf.constant([example.SerializeToString()]))
    values = probs["probabilities"].numpy()
    assert values.shape == (1, 3) and np.isfinite(values).all()
    np.testing.assert_allclose(values.sum(), 1.0, rtol=1e-5)
