"""The built-in tabular trainer: a Keras model for the label's kind on the built-in transform's output.

``run_fn(fn_args)`` reads ``mlpipe_tabular.json`` from the transform graph and the model's hyperparameters
(``TabularModel``'s fields) from ``fn_args.hyperparameters``. The model:

- ``mlp``: the z-scored numerics concatenated with one embedding (``embedding_dim``) per categorical, bucketized
  and crossed feature, then the ``hidden_units`` dense layers (ReLU, with ``dropout``), then the output;
- ``wide_and_deep``: that deep part's logits plus a linear part over the one-hot categoricals, buckets and crosses.

Output and loss by kind: binary one sigmoid unit and binary cross-entropy; multiclass a softmax over the label's
classes and sparse categorical cross-entropy; regression one linear unit and mean squared error. Training runs for
up to ``epochs`` passes over the training files (``train_steps`` batches per epoch when the spec sets it), stops
early when the eval split's loss has not improved for ``early_stopping_patience`` epochs and keeps the best
weights. Rows without a usable label (multiclass -1, binary and regression NaN) are skipped.

The SavedModel's ``serving_default`` takes serialized raw ``tf.Example``s (the label may be absent), applies the
transform graph and returns ``{"outputs": ...}``; ``transform_features`` returns the transformed features,
where the Evaluator reads ``<label>_xf``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from airflow_provider_mlpipe.runtime.builtin import tabular_config
from airflow_provider_mlpipe.runtime.builtin.tabular_config import ModelInput, TabularConfig
from airflow_provider_mlpipe.stages.tabular import TabularModel

OUTPUT_KEY = "outputs"


def model_params(hyperparameters: dict[str, Any]) -> TabularModel:
    try:
        return TabularModel.model_validate(hyperparameters)
    except ValueError as exc:
        raise ValueError(
            f"The built-in trainer's hyperparameters are the fields of trainer.params.model; these do not fit: {exc}"
        ) from exc


def _model_features(features: dict[str, tf.Tensor], inputs: list[ModelInput]) -> dict[str, tf.Tensor]:
    """The model's inputs (``[batch, 1]``) from transformed features."""
    dtype = {"numeric": tf.float32, "categorical": tf.int64}
    return {i.name: tf.reshape(tf.cast(features[i.name], dtype[i.kind]), [-1, 1]) for i in inputs}


def _dataset(
    patterns: list[str],
    tft_output: tft.TFTransformOutput,
    config: TabularConfig,
    batch_size: int,
    *,
    training: bool,
    repeat: bool,
    seed: int,
) -> tf.data.Dataset:
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
    spec = tft_output.transformed_feature_spec()
    inputs = config.model_inputs()
    data = tf.data.TFRecordDataset(files, compression_type="GZIP")
    data = data.shuffle(4096, seed=seed) if training else data
    data = (data.repeat() if repeat else data).batch(batch_size)

    def parse(serialized: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        features = tf.io.parse_example(serialized, spec)
        label = tf.reshape(features[config.transformed_label], [-1])
        model_features = _model_features(features, inputs)
        usable = label >= 0 if config.kind == "multiclass" else tf.math.is_finite(label)
        kept = {name: tf.boolean_mask(value, usable) for name, value in model_features.items()}
        label = tf.boolean_mask(label, usable)
        return kept, tf.reshape(label, [-1, 1]) if config.kind == "binary" else label

    return data.map(parse).prefetch(2)


def _output(config: TabularConfig) -> tuple[int, str, keras.losses.Loss, list[keras.metrics.Metric]]:
    """(units, activation, loss, metrics) for the label's kind."""
    if config.kind == "binary":
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
        return 1, "sigmoid", keras.losses.BinaryCrossentropy(), metrics
    if config.kind == "multiclass":
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        return int(config.classes or 0), "softmax", keras.losses.SparseCategoricalCrossentropy(), metrics
    return 1, "linear", keras.losses.MeanSquaredError(), [keras.metrics.MeanAbsoluteError(name="mae")]


def build_model(config: TabularConfig, params: TabularModel) -> keras.Model:
    inputs = config.model_inputs()
    layers = {
        i.name: keras.Input(shape=(1,), name=i.name, dtype="float32" if i.kind == "numeric" else "int64")
        for i in inputs
    }
    numeric = [layers[i.name] for i in inputs if i.kind == "numeric"]
    categorical = [i for i in inputs if i.kind == "categorical"]
    embedded = [
        keras.layers.Flatten()(
            keras.layers.Embedding(i.size, params.embedding_dim, name=f"embed_{i.name}")(layers[i.name])
        )
        for i in categorical
    ]
    parts = numeric + embedded
    deep = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    for units in params.hidden_units:
        deep = keras.layers.Dense(units, activation="relu")(deep)
        if params.dropout:
            deep = keras.layers.Dropout(params.dropout, seed=params.seed)(deep)
    units, activation, _, _ = _output(config)
    logits = keras.layers.Dense(units, name="deep_logits")(deep)
    if params.type == "wide_and_deep":
        wide_parts = numeric + [
            keras.layers.CategoryEncoding(i.size, output_mode="one_hot", name=f"one_hot_{i.name}")(layers[i.name])
            for i in categorical
        ]
        wide = wide_parts[0] if len(wide_parts) == 1 else keras.layers.Concatenate()(wide_parts)
        logits = keras.layers.Add()([logits, keras.layers.Dense(units, name="wide_logits")(wide)])
    output = keras.layers.Activation(activation, name=OUTPUT_KEY)(logits)
    return keras.Model(inputs=layers, outputs=output)


def _raw_spec(tft_output: tft.TFTransformOutput, label: str | None) -> dict[str, Any]:
    """The raw parsing spec without ``label``; a dense FLOAT feature's missing value parses as NaN, which the
    transform imputes."""
    spec = {name: item for name, item in tft_output.raw_feature_spec().items() if name != label}
    for name, item in spec.items():
        if isinstance(item, tf.io.FixedLenFeature) and item.default_value is None and item.dtype == tf.float32:
            size = int(tf.TensorShape(item.shape).num_elements() or 1)
            spec[name] = tf.io.FixedLenFeature(item.shape, item.dtype, default_value=[float("nan")] * size)
    return spec


def _export(model: keras.Model, tft_output: tft.TFTransformOutput, config: TabularConfig, directory: str) -> None:
    model.tft_layer = tft_output.transform_features_layer()  # tracked, so the graph's assets are saved too
    serving_spec = _raw_spec(tft_output, config.label)
    full_spec = _raw_spec(tft_output, None)
    inputs = config.model_inputs()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(tf.io.parse_example(serialized, serving_spec))
        return {OUTPUT_KEY: model(_model_features(transformed, inputs))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return model.tft_layer(tf.io.parse_example(serialized, full_spec))

    model.save(
        directory,
        save_format="tf",
        signatures={"serving_default": serve_examples, "transform_features": transform_features},
    )


def run_fn(fn_args: Any) -> None:
    params = model_params(dict(fn_args.hyperparameters or {}))
    config = tabular_config.read(fn_args.transform_output)
    keras.utils.set_random_seed(params.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    steps = fn_args.train_steps
    train = _dataset(
        fn_args.train_files,
        tft_output,
        config,
        params.batch_size,
        training=True,
        repeat=steps is not None,
        seed=params.seed,
    )
    evaluation = _dataset(
        fn_args.eval_files,
        tft_output,
        config,
        params.batch_size,
        training=False,
        repeat=fn_args.eval_steps is not None,
        seed=params.seed,
    )
    model = build_model(config, params)
    _, _, loss, metrics = _output(config)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=loss, metrics=metrics)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
    )
    model.fit(
        train,
        epochs=params.epochs,
        steps_per_epoch=steps,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        callbacks=[stop, *fn_args.callbacks, keras.callbacks.TensorBoard(fn_args.model_run_dir, write_graph=False)],
        verbose=2,
    )
    _export(model, tft_output, config, fn_args.serving_model_dir)
