"""What the built-in tabular transform does for one spec and schema, and what it tells the built-in trainer.

``resolve`` turns the spec's ``features`` (lists, or ``auto``) and ``label`` into a ``TabularConfig`` checked
against the schema: every feature exists and has a type that fits its use, the label is no feature, a binary
label's positive value fits the label's type. ``features: auto`` takes INT and FLOAT schema features as numeric and
BYTES ones as categorical, leaving out the label and identifiers (a feature named ``id`` or ending in ``_id``,
whatever its case), which would only let a model memorise rows.

After the analysis the Transform adds the vocabulary sizes and the number of classes and writes the config as
``mlpipe_tabular.json`` in the transform graph; the trainer builds its model inputs from it. No TensorFlow here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tensorflow_metadata.proto.v0 import schema_pb2

from airflow_provider_mlpipe.stages.tabular import TRANSFORMED_SUFFIX, TabularFeatures
from airflow_provider_mlpipe.stages.transform import TransformParams
from airflow_provider_mlpipe.storage import default_storage, join

CONFIG_FILE = "mlpipe_tabular.json"
MISSING_TOKEN = "__missing__"
BUCKET_SUFFIX = "_bucket" + TRANSFORMED_SUFFIX
CROSS_SEPARATOR = "_X_"
_TYPE_NAMES = {schema_pb2.INT: "INT", schema_pb2.FLOAT: "FLOAT", schema_pb2.BYTES: "BYTES"}
_TRUE_STRINGS = ["1", "true", "True", "TRUE"]
_FALSE_STRINGS = ["0", "false", "False", "FALSE"]

ModelInputKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class ModelInput:
    """One transformed feature the model reads: a z-score, or an id below ``size`` that gets an embedding."""

    name: str
    kind: ModelInputKind
    size: int = 0


@dataclass
class TabularConfig:
    label: str
    kind: str
    # binary: the raw label values that are the positive class (of the label's type)
    positive: list[Any]
    types: dict[str, str]  # raw feature (and label) -> INT, FLOAT or BYTES
    numeric: list[str]
    categorical: list[str]
    bucketize: dict[str, int]
    crosses: list[list[str]]
    cross_buckets: int
    oov_buckets: int
    # filled in after the analysis
    vocabulary_sizes: dict[str, int] = field(default_factory=dict)
    classes: int | None = None

    @property
    def transformed_label(self) -> str:
        return self.label + TRANSFORMED_SUFFIX

    @property
    def label_vocabulary(self) -> str:
        """The multiclass label's vocabulary file, whose size is the number of classes."""
        return self.label + "_vocab"

    def imputed_numeric(self) -> list[str]:
        """Features whose numeric value is imputed: the numeric and the bucketized ones."""
        return sorted(set(self.numeric) | set(self.bucketize))

    def model_inputs(self) -> list[ModelInput]:
        inputs = [ModelInput(transformed_name(name), "numeric") for name in self.numeric]
        for name in self.categorical:
            size = self.vocabulary_sizes.get(name)
            if size is None:
                raise ValueError(f"The tabular config has no vocabulary size for {name!r}; run the Transform again.")
            inputs.append(ModelInput(transformed_name(name), "categorical", size + self.oov_buckets))
        inputs += [ModelInput(name + BUCKET_SUFFIX, "categorical", n) for name, n in self.bucketize.items()]
        inputs += [ModelInput(cross_name(cross), "categorical", self.cross_buckets) for cross in self.crosses]
        return inputs

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TabularConfig:
        return cls(**json.loads(text))


def transformed_name(feature: str) -> str:
    return feature + TRANSFORMED_SUFFIX


def cross_name(cross: list[str]) -> str:
    return CROSS_SEPARATOR.join(cross) + TRANSFORMED_SUFFIX


def is_identifier(name: str) -> bool:
    lowered = name.lower()
    return lowered == "id" or lowered.endswith("_id")


def auto_features(schema: schema_pb2.Schema, label: str) -> TabularFeatures:
    """``features: auto``: numeric INT and FLOAT, categorical BYTES, without the label and identifiers."""
    numeric, categorical = [], []
    for feature in schema.feature:
        if feature.name == label or is_identifier(feature.name):
            continue
        if feature.type in (schema_pb2.INT, schema_pb2.FLOAT):
            numeric.append(feature.name)
        elif feature.type == schema_pb2.BYTES:
            categorical.append(feature.name)
    return TabularFeatures(numeric=numeric, categorical=categorical)


def _positive_values(label: str, label_type: str, positive: str | int | bool | None) -> list[Any]:
    if label_type == "BYTES":
        if positive is None or positive is True:
            return list(_TRUE_STRINGS)
        return list(_FALSE_STRINGS) if positive is False else [str(positive)]
    number = float if label_type == "FLOAT" else int
    if positive is None or isinstance(positive, bool):
        return [number(positive is not False)]
    try:
        return [number(positive)]
    except ValueError:
        lowered = str(positive).lower()
        if lowered in ("true", "false"):
            return [number(lowered == "true")]
        raise ValueError(
            f"The binary label {label!r} holds {label_type} values, so its positive value must be a number "
            f"(or true/false), not {positive!r}; fix label.positive in the transform's params."
        ) from None


def _check_features(features: TabularFeatures, types: dict[str, str], label: str) -> None:
    listed = set(features.all_features())
    unknown = sorted(listed - set(types))
    if unknown:
        raise ValueError(
            f"The transform's features {unknown} are not in the schema, which has {sorted(types)}; "
            "fix the feature lists or use features: auto."
        )
    if label in listed:
        raise ValueError(f"The label {label!r} is also listed as a feature; remove it from the feature lists.")
    not_numbers = sorted(f for f in set(features.numeric) | set(features.bucketize) if types[f] == "BYTES")
    if not_numbers:
        raise ValueError(
            f"{not_numbers} hold strings, so they cannot be numeric or bucketized; list them as categorical."
        )
    if not listed:
        raise ValueError("The built-in transform has no features; list some, or use features: auto.")


def resolve(params: TransformParams, schema: schema_pb2.Schema) -> TabularConfig:
    """The built-in transform's configuration for this schema; a ``ValueError`` says what to fix."""
    if params.label is None:
        raise ValueError("The built-in tabular transform needs a label, e.g. label: {name: churned, kind: binary}.")
    types = {f.name: _TYPE_NAMES[f.type] for f in schema.feature if f.type in _TYPE_NAMES}
    label = params.label.name
    if label not in types:
        raise ValueError(
            f"The label {label!r} is not in the schema, which has {sorted(types)}; fix label.name in the "
            "transform's params."
        )
    if params.label.kind == "regression" and types[label] == "BYTES":
        raise ValueError(f"The regression label {label!r} holds strings; use kind: binary or multiclass.")
    if params.label.positive is not None and params.label.kind != "binary":
        raise ValueError(f"label.positive is for binary labels; the {params.label.kind} label {label!r} has one.")
    features = params.features if isinstance(params.features, TabularFeatures) else auto_features(schema, label)
    _check_features(features, types, label)
    used = set(features.all_features()) | {label}
    return TabularConfig(
        label=label,
        kind=params.label.kind,
        positive=_positive_values(label, types[label], params.label.positive) if params.label.kind == "binary" else [],
        types={name: kind for name, kind in types.items() if name in used},
        numeric=list(features.numeric),
        categorical=list(features.categorical),
        bucketize=dict(features.bucketize),
        crosses=[list(cross) for cross in features.crosses],
        cross_buckets=features.cross_buckets,
        oov_buckets=features.oov_buckets,
    )


def write(config: TabularConfig, transform_graph_uri: str) -> None:
    default_storage().write_text(join(transform_graph_uri, CONFIG_FILE), config.to_json())


def read(transform_graph_uri: str | None) -> TabularConfig:
    """The config the built-in Transform wrote; a clear error when the graph came from a ``module_file``."""
    path = join(transform_graph_uri, CONFIG_FILE) if transform_graph_uri else None
    if path is None or not default_storage().exists(path):
        raise ValueError(
            "The built-in tabular trainer needs the output of the built-in tabular transform (a transform "
            f"without module_file), but {transform_graph_uri or 'no transform graph'} has no {CONFIG_FILE}; "
            "give the trainer a module_file, or let the transform use features and label."
        )
    return TabularConfig.from_json(default_storage().read_text(path))
