"""The built-in tabular ``preprocessing_fn``: missing values, scaling, vocabularies, buckets, crosses and the label.

Each raw feature arrives dense (``[batch, 1]``, NaN where a FLOAT value is missing) or sparse (a relaxed INT or
BYTES feature, or one without a fixed shape; a row without values is missing). Only a row's first value is used:
tabular columns hold one value. Outputs, one value per row:

- numeric ``<name>_xf`` (float32): missing (absent or NaN) imputed with the mean of the present values, z-scored;
- categorical ``<name>_xf`` (int64): numbers become strings, missing becomes ``__missing__``, then a vocabulary
  (file ``<name>``) with ``oov_buckets`` buckets for values unseen in the analysis;
- bucketized ``<name>_bucket_xf`` (int64): the imputed value in ``n`` quantile buckets;
- crosses ``<a>_X_<b>_xf`` (int64): the string forms of the categorical values and bucket ids, hashed into
  ``cross_buckets``;
- the label ``<label>_xf``: binary 1.0 when it is a positive value, else 0.0 (NaN when missing); multiclass its
  index in the vocabulary ``<label>_vocab`` (-1 when missing or unseen); regression float32 (NaN when missing).
  A missing label is no label, whatever the kind: the trainer skips such rows, the Evaluator leaves them out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from airflow_provider_mlpipe.runtime.builtin.tabular_config import (
    BUCKET_SUFFIX,
    MISSING_TOKEN,
    TabularConfig,
    cross_name,
    transformed_name,
)

# The hashed cross joins the parts' string forms with a character that tabular values do not hold.
_CROSS_JOIN = "\x1f"


def first_values(value: tf.Tensor | tf.SparseTensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(the first value of each row, whether it has one) as ``[batch]`` tensors, from a dense or sparse feature."""
    if isinstance(value, tf.SparseTensor):
        first = tf.sparse.retain(value, tf.equal(value.indices[:, 1], 0))
        shape = tf.stack([value.dense_shape[0], tf.constant(1, tf.int64)])
        values = tf.sparse.to_dense(tf.SparseTensor(first.indices, first.values, shape))
        present = tf.sparse.to_dense(
            tf.SparseTensor(first.indices, tf.ones_like(first.values, dtype=tf.bool), shape), default_value=False
        )
        return values[:, 0], present[:, 0]
    if isinstance(value, tf.Tensor):
        rows = tf.reshape(value, tf.stack([tf.shape(value)[0], -1]))[:, 0]
        return rows, tf.ones_like(rows, dtype=tf.bool)
    raise TypeError(
        f"The built-in tabular transform reads dense or sparse features, not {type(value).__name__}; "
        "give the transform a module_file for other layouts."
    )


def _numbers(value: tf.Tensor | tf.SparseTensor) -> tuple[tf.Tensor, tf.Tensor]:
    values, present = first_values(value)
    values = tf.cast(values, tf.float32)
    return values, tf.logical_and(present, tf.math.is_finite(values))


def _strings(value: tf.Tensor | tf.SparseTensor) -> tuple[tf.Tensor, tf.Tensor]:
    values, present = first_values(value)
    if values.dtype != tf.string:
        values = tf.strings.as_string(values)
    return values, present


def _imputed(name: str, value: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    values, present = _numbers(value)
    mean = tft.mean(tf.boolean_mask(values, present), name=f"mean_{name}")
    return tf.where(present, values, mean)


def _encoded_label(config: TabularConfig, value: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    if config.kind == "regression":
        values, present = _numbers(value)
        return tf.where(present, values, tf.fill(tf.shape(values), float("nan")))
    if config.kind == "binary":
        if config.types[config.label] == "BYTES":
            values, present = _strings(value)
        else:
            values, present = first_values(value)
        is_positive = tf.zeros_like(present)
        for positive in config.positive:
            is_positive = tf.logical_or(is_positive, tf.equal(values, tf.constant(positive, values.dtype)))
        return tf.where(present, tf.cast(is_positive, tf.float32), tf.fill(tf.shape(present), float("nan")))
    values, present = _strings(value)
    # The vocabulary holds the classes seen in the analysis data; a missing label is no class.
    vocabulary = tft.vocabulary(
        tf.boolean_mask(values, present), vocab_filename=config.label_vocabulary, name="label_vocabulary"
    )
    indices = tft.apply_vocabulary(values, vocabulary, default_value=-1)
    return tf.where(present, indices, tf.constant(-1, tf.int64))


def preprocessing_fn(inputs: dict[str, Any], config: TabularConfig) -> dict[str, tf.Tensor]:
    outputs: dict[str, tf.Tensor] = {}
    imputed = {name: _imputed(name, inputs[name]) for name in config.imputed_numeric()}
    for name in config.numeric:
        outputs[transformed_name(name)] = tft.scale_to_z_score(imputed[name], name=f"z_{name}")
    # String forms for the crosses: categorical values and bucket ids.
    cross_parts: dict[str, tf.Tensor] = {}
    for name in config.categorical:
        values, present = _strings(inputs[name])
        values = tf.where(present, values, tf.fill(tf.shape(values), MISSING_TOKEN))
        cross_parts[name] = values
        outputs[transformed_name(name)] = tft.compute_and_apply_vocabulary(
            values, num_oov_buckets=config.oov_buckets, vocab_filename=name, name=f"vocabulary_{name}"
        )
    for name, buckets in config.bucketize.items():
        bucket = tft.bucketize(imputed[name], buckets, name=f"bucketize_{name}")
        cross_parts[name] = tf.strings.as_string(bucket)
        outputs[name + BUCKET_SUFFIX] = bucket
    for cross in config.crosses:
        joined = tf.strings.join([cross_parts[name] for name in cross], separator=_CROSS_JOIN)
        outputs[cross_name(cross)] = tf.strings.to_hash_bucket_fast(joined, config.cross_buckets)
    outputs[config.transformed_label] = _encoded_label(config, inputs[config.label])
    return outputs


def make_preprocessing_fn(config: TabularConfig) -> Callable[[dict[str, Any]], dict[str, tf.Tensor]]:
    return functools.partial(preprocessing_fn, config=config)


def record_vocabularies(config: TabularConfig, transform_graph_uri: str) -> TabularConfig:
    """The config with the vocabulary sizes and class count of the analysed graph, for the trainer."""
    output = tft.TFTransformOutput(transform_graph_uri)
    config.vocabulary_sizes = {name: output.vocabulary_size_by_name(name) for name in config.categorical}
    if config.kind == "multiclass":
        config.classes = output.vocabulary_size_by_name(config.label_vocabulary)
        if config.classes < 2:
            raise ValueError(
                f"The multiclass label {config.label!r} has {config.classes} class(es) in the analysed data; "
                "a classifier needs at least two (use more data, or another label)."
            )
    return config
