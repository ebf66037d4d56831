"""Evaluator: metrics by slice, thresholds against the baseline, and a blessing."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from airflow_provider_mlpipe.stages.description import (
    BASELINE_RESET,
    EXAMPLES,
    MODEL,
    MODEL_BLESSING,
    MODEL_EVALUATION,
    PUSHED_MODEL,
    SERVED_MODEL_EVALUATION,
    InputSlot,
    OutputSlot,
    ResolvedInput,
    StageDescription,
    StageParams,
)

EXAMPLE_COUNT = "example_count"
KPI_FUNCTION = "kpis"  # what a kpi_module defines: kpis(features, labels, predictions) -> dict[str, float]

# The metric classes the Evaluator computes, by the ``class_name`` TFMA 0.47 resolves (its registered metrics
# first, then tf_keras metrics by name): each one builds from a name alone and reports one number per slice.
# Declared here, without TensorFlow, so the spec layer lints class names before anything runs.
TFMA_METRICS = frozenset(
    {
        "AUC", "AUCPrecisionRecall", "BalancedAccuracy", "BinaryAccuracy", "BinaryCrossEntropy", "Calibration",
        "CategoricalCrossEntropy", "CoefficientOfDiscrimination", "DiagnosticOddsRatio", "ExactMatch",
        "ExampleCount", "F1Score", "FN", "FNR", "FP", "FPR", "FallOut", "FalseDiscoveryRate", "FalseNegatives",
        "FalseOmissionRate", "FalsePositives", "FowlkesMallowsIndex", "Informedness", "Markedness",
        "MatthewsCorrelationCoefficient", "MaxRecall", "MeanAbsoluteError", "MeanAbsolutePercentageError",
        "MeanLabel", "MeanPrediction", "MeanSquaredError", "MeanSquaredLogarithmicError", "MissRate", "NPV",
        "NegativeLikelihoodRatio", "NegativePredictiveValue", "PPV", "PositiveLikelihoodRatio", "Precision",
        "PredictedPositiveRate", "Prevalence", "PrevalenceThreshold", "Recall",
        "RelativeCoefficientOfDiscrimination", "Specificity", "SquaredPearsonCorrelation", "TN", "TNR", "TP",
        "TPR", "ThreatScore", "TrueNegatives", "TruePositives", "WeightedExampleCount",
    }
)  # fmt: skip
KERAS_METRICS = frozenset(
    {
        "Accuracy", "BinaryCrossentropy", "BinaryIoU", "CategoricalAccuracy", "CategoricalCrossentropy",
        "CategoricalHinge", "CosineSimilarity", "FBetaScore", "Hinge", "KLDivergence", "LogCoshError", "Poisson",
        "R2Score", "RootMeanSquaredError", "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
        "SparseTopKCategoricalAccuracy", "SquaredHinge", "TopKCategoricalAccuracy",
    }
)  # fmt: skip
# Metric classes that take constructor arguments, given in the metric's ``config`` (TFMA's MetricConfig.config).
ARGUMENT_METRICS: dict[str, tuple[str, ...]] = {
    "ConfusionMatrixAtThresholds": ("thresholds",),
    "PrecisionAtRecall": ("recall",),
    "RecallAtPrecision": ("precision",),
    "SensitivityAtSpecificity": ("specificity",),
    "SpecificityAtSensitivity": ("sensitivity",),
    "ThresholdAtRecall": ("recall",),
    "RecallAtFalsePositiveRate": ("false_positive_rate",),
}
EVALUATOR_METRICS = TFMA_METRICS | KERAS_METRICS | frozenset(ARGUMENT_METRICS)
# What the fast engine computes with TFMA's own computations (runtime/evaluation/fast_metrics.py has a numpy
# accumulator for each of their combiners; tests/runtime/test_metric_names.py holds this list against TFMA).
# ``engine: auto`` hands any other metric to TFMA, and ``engine: fast`` refuses it.
_CONFUSION_MATRIX_METRICS = (
    "AUC", "AUCPrecisionRecall", "BalancedAccuracy", "BinaryAccuracy", "DiagnosticOddsRatio", "F1Score", "FN",
    "FNR", "FP", "FPR", "FallOut", "FalseDiscoveryRate", "FalseNegatives", "FalseOmissionRate", "FalsePositives",
    "FowlkesMallowsIndex", "Informedness", "Markedness", "MatthewsCorrelationCoefficient", "MaxRecall", "MissRate",
    "NPV", "NegativeLikelihoodRatio", "NegativePredictiveValue", "PPV", "PositiveLikelihoodRatio", "Precision",
    "PredictedPositiveRate", "Prevalence", "PrevalenceThreshold", "Recall", "Specificity", "TN", "TNR", "TP", "TPR",
    "ThreatScore", "TrueNegatives", "TruePositives",
)  # fmt: skip
FAST_ENGINE_METRICS = frozenset(
    {
        "ExampleCount", "WeightedExampleCount", "MeanLabel", "MeanPrediction", "Calibration", "BinaryCrossEntropy",
        "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
        *_CONFUSION_MATRIX_METRICS, *ARGUMENT_METRICS, *KERAS_METRICS,
    }
)  # fmt: skip
# Which plots a model gets follows from its metrics: the kind of model they judge.
BINARY_METRICS = frozenset(
    {*_CONFUSION_MATRIX_METRICS, *ARGUMENT_METRICS, "Calibration", "BinaryCrossEntropy", "BinaryCrossentropy"}
)
MULTICLASS_METRICS = frozenset(
    {
        "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy", "CategoricalAccuracy",
        "CategoricalCrossentropy", "CategoricalCrossEntropy", "SparseTopKCategoricalAccuracy",
        "TopKCategoricalAccuracy",
    }
)  # fmt: skip
# Every other metric class TFMA 0.47 or tf_keras knows, with the reason a spec cannot use it (the lint says it).
_NEEDS_ARGUMENT = "needs constructor arguments ({}) that the Evaluator does not pass"
_COMPARING_METRICS = (
    "BooleanFlipRates", "NegToNegFlipRate", "NegToPosFlipRate", "PosToNegFlipRate", "PosToPosFlipRate",
    "SymmetricFlipRate", "ModelCosineSimilarity", "SymmetricPredictionDifference",
)  # fmt: skip
_VISION_METRICS = (
    "COCOAveragePrecision", "COCOAverageRecall", "COCOMeanAveragePrecision", "COCOMeanAverageRecall",
    "ObjectDetectionConfusionMatrixPlot", "ObjectDetectionMaxRecall", "ObjectDetectionPrecision",
    "ObjectDetectionPrecisionAtRecall", "ObjectDetectionRecall", "ObjectDetectionThresholdAtRecall",
    "SemanticSegmentationConfusionMatrix", "SemanticSegmentationFalsePositive", "SemanticSegmentationTruePositive",
)  # fmt: skip
_NOT_A_NUMBER = "writes a plot or a matrix, not one number per slice that a threshold can judge"
UNAVAILABLE_METRICS: dict[str, str] = {
    "IoU": _NEEDS_ARGUMENT.format("num_classes, target_class_ids"),
    "MeanIoU": _NEEDS_ARGUMENT.format("num_classes"),
    "OneHotIoU": _NEEDS_ARGUMENT.format("num_classes, target_class_ids"),
    "OneHotMeanIoU": _NEEDS_ARGUMENT.format("num_classes"),
    "MeanRelativeError": _NEEDS_ARGUMENT.format("normalizer"),
    "Mean": _NEEDS_ARGUMENT.format("feature_key_path"),
    "CalibrationPlot": _NOT_A_NUMBER,
    "ConfusionMatrixPlot": _NOT_A_NUMBER,
    "MultiClassConfusionMatrixAtThresholds": _NOT_A_NUMBER,
    "MultiClassConfusionMatrixPlot": _NOT_A_NUMBER,
    "MultiLabelConfusionMatrixPlot": _NOT_A_NUMBER,
    "ScoreDistributionPlot": _NOT_A_NUMBER,
    "FalseNegativeFeatureSampler": _NEEDS_ARGUMENT.format("feature_key, sample_size"),
    "FalsePositiveFeatureSampler": _NEEDS_ARGUMENT.format("feature_key, sample_size"),
    "NDCG": "is a ranking metric; it needs a query key and a gain key",
    "MinLabelPosition": "is a ranking metric; it needs a query key",
    "QueryStatistics": "is a ranking metric; it needs a query key",
    "SetMatchPrecision": "compares sets of predicted classes; it needs class and score outputs by name",
    "SetMatchRecall": "compares sets of predicted classes; it needs class and score outputs by name",
    "Bleu": "scores generated text",
    "Rouge": "scores generated text",
    **dict.fromkeys(
        _COMPARING_METRICS, "compares the candidate with a baseline model, which the first run has not got"
    ),
    **dict.fromkeys(
        ("MeanAttributions", "MeanAbsoluteAttributions", "TotalAttributions", "TotalAbsoluteAttributions"),
        "needs feature attributions, which mlpipe's models do not output",
    ),
    **dict.fromkeys(_VISION_METRICS, "is for object detection or image segmentation, which needs box or mask labels"),
    **dict.fromkeys(
        ("Sum", "MeanTensor"), "aggregates one tensor, not a label and a prediction; the Evaluator passes both"
    ),
    **dict.fromkeys(("Metric", "MeanMetricWrapper"), "is a base class for writing metrics, not a metric"),
}


def snake_case(name: str) -> str:
    """``BinaryAccuracy`` -> ``binary_accuracy``, ``AUCPrecisionRecall`` -> ``auc_precision_recall`` (TFMA's own
    default names keep an acronym in one piece)."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def plot_kind(class_names: set[str]) -> str:
    """``binary``, ``multiclass`` or ``regression``: the kind of model a set of metric classes judges."""
    if class_names & MULTICLASS_METRICS:
        return "multiclass"
    if class_names & BINARY_METRICS:
        return "binary"
    return "regression"


class ChangeThreshold(StageParams):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["absolute"]}, {"required": ["relative"]}]}
    )

    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    absolute: float | None = None
    relative: float | None = None

    @model_validator(mode="after")
    def _judges_something(self) -> ChangeThreshold:
        # TFMA would accept it and judge nothing: a blessing that looks guarded but is not.
        if self.absolute is None and self.relative is None:
            raise ValueError(
                "A change threshold needs `absolute`, `relative` or both, e.g. "
                "{direction: higher_is_better, absolute: -0.01}."
            )
        return self


class MetricThreshold(StageParams):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    lower_bound: float | None = None
    upper_bound: float | None = None
    change: ChangeThreshold | None = None
    slices: list[str] | None = Field(
        None,
        description="Judge only these slices (names as in metrics.json, e.g. 'Overall' or 'island=Biscoe'), "
        "like TFMA's per_slice_thresholds; all slices when unset.",
    )
    min_examples: int = Field(
        0, ge=0, description="A slice with fewer examples is reported but not judged by this threshold."
    )

    @model_validator(mode="after")
    def _judges_something(self) -> MetricThreshold:
        if self.lower_bound is None and self.upper_bound is None and self.change is None:
            raise ValueError(
                "A threshold needs `lower_bound`, `upper_bound` or `change`, e.g. {lower_bound: 0.8}; "
                "remove the threshold to only report the metric."
            )
        if self.lower_bound is not None and self.upper_bound is not None and self.lower_bound > self.upper_bound:
            raise ValueError(
                f"lower_bound {self.lower_bound} is above upper_bound {self.upper_bound}, so no value can pass."
            )
        return self


class ThresholdViews:
    """Flat views of a ``threshold`` field, which the engines and the validation read (metrics and KPIs alike)."""

    @property
    def lower_bound(self) -> float | None:
        return self.threshold.lower_bound if self.threshold else None

    @property
    def upper_bound(self) -> float | None:
        return self.threshold.upper_bound if self.threshold else None

    @property
    def change(self) -> ChangeThreshold | None:
        return self.threshold.change if self.threshold else None

    @property
    def has_value_threshold(self) -> bool:
        return self.lower_bound is not None or self.upper_bound is not None

    @property
    def has_change_threshold(self) -> bool:
        return self.change is not None and (self.change.absolute is not None or self.change.relative is not None)


class MetricSpec(ThresholdViews, StageParams):
    """A metric: ``class_name`` is the Keras/TFMA class; ``name`` defaults to its snake_case form."""

    name: str | None = None
    class_name: str | None = Field(
        None,
        description="Keras/TFMA metric class; defaults from the name.",
        # editors complete the names; the lint explains a refused one ("did you mean", or why it is unavailable)
        json_schema_extra={"anyOf": [{"enum": sorted(EVALUATOR_METRICS)}, {"type": "null"}]},
    )
    config: dict[str, Any] | None = Field(
        None,
        description="Constructor arguments of the metric class, as TFMA's MetricConfig.config, e.g. "
        "{thresholds: [0.3, 0.5]} or {top_k: 3}.",
    )
    threshold: MetricThreshold | None = None

    @model_validator(mode="after")
    def _names(self) -> MetricSpec:
        if not self.name and not self.class_name:
            raise ValueError("A metric needs a class_name (for example BinaryAccuracy) or a name.")
        self.class_name = self.class_name or self.name
        self.name = self.name or snake_case(str(self.class_name))
        if self.config and "name" in self.config:
            raise ValueError("Give the metric's name as `name`, not inside `config`.")
        needed = [a for a in ARGUMENT_METRICS.get(str(self.class_name), ()) if a not in (self.config or {})]
        if needed:
            raise ValueError(
                f"The metric class {self.class_name} needs {', '.join(needed)} in its config, "
                f"e.g. config: {{{needed[0]}: {'[0.5]' if needed[0] == 'thresholds' else '0.8'}}}."
            )
        return self


class KpiSpec(ThresholdViews, StageParams):
    """A business KPI the ``kpi_module`` returns, declared so that the lint knows it and a threshold can judge it."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", description="A key of the dict kpis() returns.")
    description: str | None = Field(None, description="What the number means, e.g. 'cost of errors in dollars'.")
    threshold: MetricThreshold | None = Field(
        None, description="Judged per slice like a metric's threshold; a failure withholds the blessing."
    )


class EvaluatorParams(StageParams):
    label_key: str | None = Field(
        None,
        description="The label as the model's examples carry it, e.g. species_xf. Implied by the built-in "
        "transform (<label>_xf); required otherwise.",
    )
    slices: list[list[str]] = Field(default_factory=lambda: [[]], description="Feature lists; [] is overall.")
    metrics: list[MetricSpec] = Field(
        default_factory=list,
        description="With the built-in transform and no metrics given: TFMA's default set for the label's kind.",
    )
    engine: Literal["auto", "fast", "tfma"] = "auto"
    eval_split: str = "eval"
    prediction_key: str | None = Field(None, description="The model output to evaluate, when it has several.")
    label_column: str | None = Field(
        None,
        description="The raw column the label comes from: eval rows without it are left out, since they have no "
        "truth to judge a prediction against (set for the built-in transform's label).",
    )
    example_weight_key: str | None = Field(
        None, description="A raw or transformed feature that weights each example, as TFMA's example_weight_key."
    )
    plots: bool = Field(True, description="Write ROC, PR, calibration and confusion-matrix data for the run view.")
    kpi_module: str | None = Field(
        None,
        description="A Python file in the pipeline folder defining kpis(features, labels, predictions) -> "
        "dict[str, float]: business KPIs computed per slice for the candidate and the baseline.",
    )
    kpis: list[KpiSpec] = Field(
        default_factory=list,
        description="KPIs of kpi_module to declare, each with an optional threshold; kpis() must return every "
        "declared name (it may return more, which are reported only).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> EvaluatorParams:
        names = [m.name for m in self.all_metrics()]
        if len(set(names)) != len(names):
            raise ValueError(f"The evaluator's metric names must be unique: {names}.")
        kpi_names = [k.name for k in self.kpis]
        if len(set(kpi_names)) != len(kpi_names):
            raise ValueError(f"The evaluator's KPI names must be unique: {kpi_names}.")
        if clash := sorted(set(names) & set(kpi_names)):
            # one threshold check reads both per slice, so a name must say which one it is
            raise ValueError(f"{clash} name both a metric and a KPI; rename the KPI.")
        if self.kpis and not self.kpi_module:
            raise ValueError(
                f"KPIs {kpi_names} are declared but no kpi_module computes them; set kpi_module to a Python "
                "file defining kpis(features, labels, predictions)."
            )
        return self

    def all_metrics(self) -> list[MetricSpec]:
        """The configured metrics, with ExampleCount first unless configured, as TFX reports it."""
        if any(m.class_name == "ExampleCount" for m in self.metrics):
            return list(self.metrics)
        return [MetricSpec(name=EXAMPLE_COUNT, class_name="ExampleCount"), *self.metrics]

    def all_slices(self) -> list[list[str]]:
        """The configured slices with the overall slice (``[]``) always first."""
        slices = [list(s) for s in self.slices]
        return slices if [] in slices else [[], *slices]


DESCRIPTION = StageDescription(
    name="evaluator",
    component="Evaluator",
    params=EvaluatorParams,
    executor="airflow_provider_mlpipe.runtime.executors.evaluator",
    inputs=(InputSlot("examples", EXAMPLES), InputSlot("model", MODEL)),
    resolved_inputs=(
        ResolvedInput("baseline_model", MODEL, "latest_blessed_model"),
        ResolvedInput("baseline_reset", BASELINE_RESET, "baseline_reset"),  # `mlpipe baseline reset`, while in effect
        ResolvedInput("served_model", PUSHED_MODEL, "served_model"),
    ),
    outputs=(
        OutputSlot("evaluation", MODEL_EVALUATION),
        OutputSlot("blessing", MODEL_BLESSING),
        OutputSlot("served_evaluation", SERVED_MODEL_EVALUATION),
    ),
    uses_beam=True,
    ui_color="#fff2cc",
    order=70,
    doc=(
        "a TFMA `EvalConfig` from the spec; the baseline is the newest blessed model whose training span is not "
        "later than the candidate's (from MLMD); "
        "value and change thresholds; writes metrics by slice and a ModelBlessing (`BLESSED` / `NOT_BLESSED` "
        "with the reason); also scores the served model (the newest pushed version of an earlier span) on the "
        "same eval split, as a `mlpipe.ServedModelEvaluation`"
    ),
)
