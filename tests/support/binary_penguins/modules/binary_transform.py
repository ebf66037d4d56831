"""tf.Transform preprocessing for the binary penguins pipeline: is this penguin an Adelie?

Like the penguins transform module, except that the label ``is_adelie_xf`` (1 for an Adelie, else 0) is derived
from the raw ``species`` column, and that bill length is left out: without it Adelie and Chinstrap penguins
overlap, so the classifier is good but not perfect and its ROC and calibration plots have something to show.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

NUMERIC_FEATURES = ["bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL_FEATURES = ["island", "sex"]
SPECIES_KEY = "species"
LABEL_KEY = "is_adelie_xf"
POSITIVE_SPECIES = "Adelie"


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
    species = _dense(inputs[SPECIES_KEY], tf.string, b"")
    outputs[LABEL_KEY] = tf.cast(tf.equal(species, POSITIVE_SPECIES), tf.int64)
    return outputs
