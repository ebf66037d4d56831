"""Slices that mean one thing: membership is decided once per example, from the candidate model's view.

A slice feature is a raw feature of the eval examples or one of the candidate's transformed features (an output
of its ``transform_features`` signature, e.g. a bucketized measurement). The baseline is scored on the groups
the candidate's view defines, so a baseline whose transform puts an example into another bucket is still
compared on the same examples, and a partition-style slice adds up to Overall.

TFMA, given two models with transforms, slices by the union of both models' transformed features. The TFMA
engine therefore writes the candidate's value of each transformed slice feature into the eval examples as a raw
feature under a private name (:func:`private_name`) and slices on that; the names in ``metrics.json`` are the
feature names, as the fast engine writes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from airflow_provider_mlpipe.runtime.evaluation.metric_config import EvalSpec, slice_name
from airflow_provider_mlpipe.storage import default_storage, join

PRIVATE_PREFIX = "__mlpipe_slice__"


def signature_outputs(saved_model_dir: str, name: str) -> list[str] | None:
    """The output names of the SavedModel's signature ``name`` (None without one), read from ``saved_model.pb``
    without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(default_storage().read_bytes(join(saved_model_dir, "saved_model.pb")))
    for graph in proto.meta_graphs:
        if name in graph.signature_def:
            return sorted(graph.signature_def[name].outputs)
    return None


def slice_features(spec: EvalSpec) -> list[str]:
    return sorted({feature for features in spec.slices for feature in features})


def check_features(spec: EvalSpec, raw_features: list[str], transformed_features: list[str]) -> None:
    """Fail, before any model is scored, on a slice feature or label the candidate cannot see."""
    known = set(raw_features) | set(transformed_features)
    problems = []
    unknown_slices = [f for f in slice_features(spec) if f not in known]
    if unknown_slices:
        problems.append(f"the slice feature(s) {unknown_slices} are not features of the eval examples")
    if spec.label_key not in known:
        problems.append(f"the label_key {spec.label_key!r} is not a feature of the eval examples")
    if not problems:
        return
    transformed = f" and the candidate model's transformed features {sorted(transformed_features)}"
    raise ValueError(
        f"The Evaluator's params do not match the data: {'; '.join(problems)}. The features that exist are the "
        f"raw features {sorted(raw_features)}{transformed if transformed_features else ''}; correct the "
        "evaluator's slices or label_key to use one of them."
    )


def transformed_slice_features(spec: EvalSpec, transformed_features: list[str]) -> list[str]:
    """The slice features the candidate's transform defines (they win over a raw feature of the same name, as
    in TFMA and the fast engine)."""
    return [f for f in slice_features(spec) if f in set(transformed_features)]


def private_name(feature: str) -> str:
    return PRIVATE_PREFIX + feature


def public_name(column: str) -> str:
    return column.removeprefix(PRIVATE_PREFIX)


def slice_value_column(values: np.ndarray) -> pa.Array:
    """One candidate value per example as a list column for the ``tf.Example`` encoder.

    The value is the first of each row, as the fast engine takes it. Its type is chosen so that TFMA reads back
    the value the fast engine names the slice by: integers as int64, float16/32 as float32 (exact), bytes as
    bytes; anything else (float64, bool) as the text the fast engine prints, since a ``tf.Example`` cannot hold it.
    """
    array = np.asarray(values)
    if array.ndim > 1:
        array = array.reshape(array.shape[0], -1)[:, 0]
    kind = array.dtype.kind
    if kind in "iu":
        return pa.array([[v] for v in array.astype(np.int64).tolist()], pa.list_(pa.int64()))
    if array.dtype in (np.float16, np.float32):
        return pa.array([[v] for v in array.astype(np.float32).tolist()], pa.list_(pa.float32()))
    texts = [v if isinstance(v, bytes) else str(v).encode() for v in array.tolist()]
    return pa.array([[v] for v in texts], pa.list_(pa.binary()))


def ordered_slice_name(spec: EvalSpec | None, pairs: list[tuple[str, Any]]) -> str:
    """The ``metrics.json`` name of a TFMA slice key: private names mapped back to feature names, and the columns
    of a cross in the order the spec lists them (TFMA sorts them by name; the fast engine keeps the spec's)."""
    pairs = [(public_name(column), value) for column, value in pairs]
    if spec is not None:
        columns = [column for column, _ in pairs]
        for features in spec.slices:
            if sorted(features) == sorted(columns):
                values = dict(pairs)
                pairs = [(feature, values[feature]) for feature in features]
                break
    return slice_name(pairs)
