"""The built-in tabular transform and trainer: what a spec declares instead of two Python modules.

A Transform without ``module_file`` uses the built-in ``preprocessing_fn`` for ``features`` and ``label``; a
Trainer without ``module_file`` trains the built-in Keras model described by ``model`` on its output. The
Evaluator of such a pipeline needs neither ``label_key`` (``<label>_xf``) nor ``metrics`` (TFMA's default set for
the label's kind). Declared here, without TensorFlow, so the spec layer validates and lints them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from airflow_provider_mlpipe.stages.description import StageParams

LabelKind = Literal["binary", "multiclass", "regression"]
TRANSFORMED_SUFFIX = "_xf"


class LabelSpec(StageParams):
    name: str = Field(description="The label column.")
    kind: LabelKind = Field(description="binary, multiclass or regression.")
    positive: str | int | bool | None = Field(
        None,
        description="binary: the label value that is the positive class (default 1 or true; required for other "
        "values, e.g. M for malignant).",
    )

    @property
    def transformed_name(self) -> str:
        return self.name + TRANSFORMED_SUFFIX


class TabularFeatures(StageParams):
    model_config = ConfigDict(extra="forbid")

    numeric: list[str] = Field(default_factory=list, description="Imputed with the mean, z-scored.")
    categorical: list[str] = Field(
        default_factory=list, description="A vocabulary with OOV buckets; missing is its own token."
    )
    bucketize: dict[str, int] = Field(
        default_factory=dict, description="Numeric feature -> number of quantile buckets (each becomes a category)."
    )
    crosses: list[list[str]] = Field(
        default_factory=list, description="Crosses of categorical or bucketized features, hashed into buckets."
    )
    cross_buckets: int = Field(1000, ge=2, description="Hash buckets of each cross.")
    oov_buckets: int = Field(1, ge=1, description="Out-of-vocabulary buckets of each categorical feature.")

    @model_validator(mode="after")
    def _consistent(self) -> TabularFeatures:
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"{', '.join(both)} cannot be both numeric and categorical.")
        for feature, buckets in self.bucketize.items():
            if buckets < 2:
                raise ValueError(f"bucketize.{feature} needs at least 2 buckets, not {buckets}.")
        usable = set(self.categorical) | set(self.bucketize)
        for cross in self.crosses:
            unknown = [f for f in cross if f not in usable]
            if len(cross) < 2 or unknown:
                raise ValueError(
                    f"A cross takes two or more categorical or bucketized features; {cross} "
                    + (f"has {', '.join(unknown)}, which is neither." if unknown else "has fewer than two.")
                )
        return self

    def all_features(self) -> list[str]:
        return sorted(set(self.numeric) | set(self.categorical) | set(self.bucketize))


class TabularModel(StageParams):
    model_config = ConfigDict(extra="forbid")

    type: Literal["mlp", "wide_and_deep"] = Field(
        "mlp", description="mlp: embeddings for categoricals and dense layers; wide_and_deep adds a linear part."
    )
    hidden_units: list[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    embedding_dim: int = Field(8, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(30, ge=1, description="At most this many epochs; early stopping on the eval split.")
    early_stopping_patience: int = Field(3, ge=1)
    seed: int = 42


# TFMA's default metric set per kind (tfma.metrics.default_*_specs), as spec metrics.
DEFAULT_METRICS: dict[str, list[dict[str, Any]]] = {
    "binary": [
        {"class_name": "ExampleCount"},
        {"class_name": "AUC"},
        {"class_name": "AUCPrecisionRecall"},
        {"class_name": "Precision"},
        {"class_name": "Recall"},
        {"class_name": "BinaryAccuracy"},
        {"class_name": "BinaryCrossentropy"},
        {"class_name": "MeanLabel"},
        {"class_name": "MeanPrediction"},
        {"class_name": "Calibration"},
    ],
    "multiclass": [
        {"class_name": "ExampleCount"},
        {"class_name": "SparseCategoricalAccuracy"},
        {"class_name": "SparseCategoricalCrossentropy"},
        {"name": "precision_top_1", "class_name": "Precision", "config": {"top_k": 1}},
        {"name": "recall_top_1", "class_name": "Recall", "config": {"top_k": 1}},
    ],
    "regression": [
        {"class_name": "ExampleCount"},
        {"class_name": "MeanSquaredError"},
        {"class_name": "RootMeanSquaredError"},
        {"class_name": "MeanAbsoluteError"},
        {"class_name": "MeanLabel"},
        {"class_name": "MeanPrediction"},
    ],
}
