"""Keras trainer for the binary penguins pipeline: one sigmoid output, the probability of an Adelie.

Exports a SavedModel with the penguins trainer's two signatures: ``serving_default`` takes serialized raw
``tf.Example``s (without ``species``), applies the transform graph and returns ``{"probabilities": [batch, 1]}``;
``transform_features`` returns the transformed features, where the Evaluator reads the label ``is_adelie_xf``.

Hyperparameters: ``learning_rate``, ``batch_size``, ``hidden_units`` and ``seed``.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

NUMERIC_FEATURES = ["bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL_FEATURES = ["island", "sex"]
SPECIES_KEY = "species"
LABEL_KEY = "is_adelie_xf"


def transformed_name(key: str) -> str:
    return f"{key}_xf"


def features_to_vector(features, tft_output: tft.TFTransformOutput):
    """One float vector per example: the z-scores, then one-hot island and sex (with their OOV bucket)."""
    parts = [tf.reshape(tf.cast(features[transformed_name(key)], tf.float32), [-1, 1]) for key in NUMERIC_FEATURES]
    for key in CATEGORICAL_FEATURES:
        depth = tft_output.vocabulary_size_by_name(key) + 1
        parts.append(tf.one_hot(tf.reshape(features[transformed_name(key)], [-1]), depth))
    return tf.concat(parts, axis=1)


def _dataset(pattern, tft_output, batch_size: int, seed: int):
    files = tf.io.gfile.glob(pattern) if isinstance(pattern, str) else [f for p in pattern for f in tf.io.gfile.glob(p)]
    spec = tft_output.transformed_feature_spec()
    data = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")
    data = data.shuffle(1024, seed=seed).repeat().batch(batch_size)

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        labels = tf.cast(tf.reshape(features.pop(LABEL_KEY), [-1, 1]), tf.float32)
        return features_to_vector(features, tft_output), labels

    return data.map(parse).prefetch(2)


def _raw_spec(tft_output: tft.TFTransformOutput, with_species: bool) -> dict:
    """The raw parsing spec; dense float features default to NaN, which the transform imputes."""
    spec = dict(tft_output.raw_feature_spec())
    if not with_species:
        spec.pop(SPECIES_KEY, None)
    for key, item in spec.items():
        if isinstance(item, tf.io.FixedLenFeature) and item.default_value is None and item.dtype == tf.float32:
            size = 1
            for dim in item.shape:
                size *= dim
            spec[key] = tf.io.FixedLenFeature(item.shape, item.dtype, default_value=[float("nan")] * size)
    return spec


def run_fn(fn_args) -> None:
    hp = dict(fn_args.hyperparameters or {})
    seed = int(hp.get("seed", 42))
    batch_size = int(hp.get("batch_size", 32))
    keras.utils.set_random_seed(seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)

    train = _dataset(fn_args.train_files, tft_output, batch_size, seed)
    evaluation = _dataset(fn_args.eval_files, tft_output, batch_size, seed)
    width = len(NUMERIC_FEATURES) + sum(tft_output.vocabulary_size_by_name(k) + 1 for k in CATEGORICAL_FEATURES)
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(width,), name="features"),
            keras.layers.Dense(int(hp.get("hidden_units", 8)), activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(float(hp.get("learning_rate", 0.01))),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    model.fit(
        train,
        steps_per_epoch=fn_args.train_steps,
        epochs=1,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps or 5,
        callbacks=list(fn_args.callbacks),
        verbose=2,
    )

    model.tft_layer = tft_output.transform_features_layer()
    serving_spec = _raw_spec(tft_output, with_species=False)
    full_spec = _raw_spec(tft_output, with_species=True)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        transformed = model.tft_layer(tf.io.parse_example(serialized, serving_spec))
        return {"probabilities": model(features_to_vector(transformed, tft_output))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, full_spec))

    model.save(
        fn_args.serving_model_dir,
        save_format="tf",
        signatures={"serving_default": serve_examples, "transform_features": transform_features},
    )
