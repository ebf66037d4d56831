"""tf.Transform preprocessing for the Palmer Penguins pipeline (the Transform stage's ``module_file``).

Numeric measurements are imputed with their mean over the present values and scaled to z-scores; island and
sex get vocabularies (a missing value is its own token, unseen values an OOV bucket); the species label becomes
its vocabulary index. Transformed features are named ``<raw name>_xf`` (the TFX convention), so the Evaluator
slices on raw values and reads its label as ``species_xf``.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

NUMERIC_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL_FEATURES = ["island", "sex"]
LABEL_KEY = "species"


def transformed_name(key: str) -> str:
    return f"{key}_xf"


def _dense(value, dtype: tf.DType, default):
    """A [batch] tensor from a dense [batch, 1] feature or a sparse (possibly missing) one."""
    if isinstance(value, tf.SparseTensor):
        value = tf.SparseTensor(value.indices, tf.cast(value.values, dtype), [value.dense_shape[0], 1])
        return tf.squeeze(tf.sparse.to_dense(value, default_value=default), axis=1)
    return tf.reshape(tf.cast(value, dtype), [-1])


def preprocessing_fn(inputs):
    outputs = {}
    for key in NUMERIC_FEATURES:
        value = _dense(inputs[key], tf.float32, float("nan"))
        present = tf.math.is_finite(value)
        mean = tft.mean(tf.boolean_mask(value, present), name=f"mean_{key}")
        outputs[transformed_name(key)] = tft.scale_to_z_score(tf.where(present, value, mean), name=f"z_{key}")
    for key in CATEGORICAL_FEATURES:
        outputs[transformed_name(key)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[key], tf.string, b""), num_oov_buckets=1, vocab_filename=key
        )
    outputs[transformed_name(LABEL_KEY)] = tft.compute_and_apply_vocabulary(
        _dense(inputs[LABEL_KEY], tf.string, b""), vocab_filename=LABEL_KEY, default_value=-1
    )
    return outputs
