"""The Evaluator's configuration: spec params -> metric specs, a TFMA ``EvalConfig``, and threshold checks.

Threshold semantics are TFMA's (``tensorflow_model_analysis/evaluators/metrics_validator.py``): a value
threshold passes when ``lower_bound <= value <= upper_bound``; a change threshold compares
``diff = candidate - baseline`` with ``absolute`` (``diff >= absolute`` when higher is better, ``<=`` when lower
is better) and ``diff / baseline`` with ``relative``. A threshold applies to every slice unless it names
``slices`` (TFMA's ``per_slice_thresholds``); a slice with fewer than its ``min_examples`` examples is reported
but not judged. Without a baseline, change thresholds are skipped (as in TFX). A KPI's threshold
(``evaluation/kpis.py``) is judged by the same rules, against the KPI's value for the slice, and its failures
carry ``"kpi": true``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlpipe.stages.evaluator import EvaluatorParams, KpiSpec, MetricSpec, ThresholdViews, plot_kind

OVERALL = "Overall"
CANDIDATE = "candidate"
BASELINE = "baseline"
TRANSFORM_SIGNATURE = "transform_features"
SliceValues = dict[str, dict[str, float]]  # {slice: {metric or KPI name: value}}


@dataclass
class EvalSpec:
    """What both engines compute: the params' metrics with ExampleCount, and its slices with Overall."""

    label_key: str
    slices: list[list[str]]
    metrics: list[MetricSpec]
    prediction_key: str | None = None
    engine: str = "auto"
    example_weight_key: str | None = None
    plots: bool = True
    label_column: str | None = None
    kpis: list[KpiSpec] = field(default_factory=list)
    kpi_module: str | None = None

    @property
    def judged(self) -> list[MetricSpec | KpiSpec]:
        """What thresholds may judge: the metrics, then the KPIs."""
        return [*self.metrics, *self.kpis]

    @property
    def kind(self) -> str:
        """``binary``, ``multiclass`` or ``regression``, from the configured metrics."""
        return plot_kind({str(m.class_name) for m in self.metrics})

    def example_count(self, values: dict[str, float]) -> float | None:
        for metric in self.metrics:
            if metric.class_name == "ExampleCount" and metric.name in values:
                return values[metric.name]
        return None


def eval_spec(params: EvaluatorParams) -> EvalSpec:
    """The engines' view of the already validated params (no second validation, no second defaults)."""
    return EvalSpec(
        label_key=params.label_key,
        slices=params.all_slices(),
        metrics=params.all_metrics(),
        prediction_key=params.prediction_key,
        engine=params.engine,
        example_weight_key=params.example_weight_key,
        plots=params.plots,
        label_column=params.label_column,
        kpis=list(params.kpis),
        kpi_module=params.kpi_module,
    )


def slice_name(pairs: list[tuple[str, Any]] | tuple[tuple[str, Any], ...]) -> str:
    """``Overall`` or ``island=Biscoe`` (``a=x, b=y`` for crosses), the names metrics.json uses."""
    if not pairs:
        return OVERALL
    parts = []
    for column, value in pairs:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        parts.append(f"{column}={value}")
    return ", ".join(parts)


def tfma_eval_config(spec: EvalSpec, has_transform: bool, with_baseline: bool, with_plots: bool = False) -> Any:
    """The TFMA ``EvalConfig`` for this spec (change thresholds only when a baseline exists; mlpipe judges
    thresholds itself, per slice, so TFMA's copy only cross-checks); ``with_plots`` adds the plot metrics."""
    import tensorflow_model_analysis as tfma

    from airflow_provider_mlpipe.runtime.evaluation.plots import PLOT_METRICS

    def model_spec(name: str, is_baseline: bool) -> Any:
        model = tfma.ModelSpec(
            name=name, signature_name="serving_default", label_key=spec.label_key, is_baseline=is_baseline
        )
        if spec.prediction_key:
            model.prediction_key = spec.prediction_key
        if spec.example_weight_key:
            model.example_weight_key = spec.example_weight_key
        if has_transform:
            model.preprocessing_function_names.append(TRANSFORM_SIGNATURE)
        return model

    metric_configs = []
    for metric in spec.metrics:
        arguments = {**(metric.config or {}), "name": metric.name}
        config = tfma.MetricConfig(class_name=metric.class_name, config=json.dumps(arguments))
        # A threshold limited to some slices or sizes is judged by validate() only: TFMA's copy would judge all.
        every_slice = metric.threshold is not None and not metric.threshold.slices and not metric.threshold.min_examples
        if every_slice and metric.has_value_threshold:
            value = config.threshold.value_threshold
            if metric.lower_bound is not None:
                value.lower_bound.value = metric.lower_bound
            if metric.upper_bound is not None:
                value.upper_bound.value = metric.upper_bound
        if every_slice and with_baseline and metric.has_change_threshold:
            change = config.threshold.change_threshold
            wanted = metric.change
            assert wanted is not None  # has_change_threshold
            change.direction = (
                tfma.MetricDirection.HIGHER_IS_BETTER
                if wanted.direction == "higher_is_better"
                else tfma.MetricDirection.LOWER_IS_BETTER
            )
            if wanted.absolute is not None:
                change.absolute.value = wanted.absolute
            if wanted.relative is not None:
                change.relative.value = wanted.relative
        metric_configs.append(config)
    if with_plots and spec.plots:
        for class_name, name, arguments in PLOT_METRICS[spec.kind]:
            metric_configs.append(
                tfma.MetricConfig(class_name=class_name, config=json.dumps({**arguments, "name": name}))
            )
    models = [model_spec(CANDIDATE, False)]
    if with_baseline:
        models.append(model_spec(BASELINE, True))
    config = tfma.EvalConfig(
        model_specs=models,
        slicing_specs=[tfma.SlicingSpec(feature_keys=s) if s else tfma.SlicingSpec() for s in spec.slices],
        metrics_specs=[tfma.MetricsSpec(metrics=metric_configs)],
    )
    # Only the configured metrics: not the Keras model's compiled loss and metrics, which TFMA adds by default.
    config.options.include_default_metrics.value = False
    return config


def validate(
    spec: EvalSpec,
    candidate: dict[str, dict[str, float]],
    baseline: dict[str, dict[str, float]] | None,
) -> list[dict[str, Any]]:
    """Failed thresholds, per slice and metric or KPI, with TFMA's rules; an empty list means blessed.

    ``candidate`` and ``baseline`` hold each slice's metrics and KPIs in one dict (``with_kpis``)."""
    failed: list[dict[str, Any]] = []
    for slice_key, values in candidate.items():
        for metric in spec.judged:
            kind = {"kpi": True} if isinstance(metric, KpiSpec) else {}
            value = values.get(metric.name)
            if value is None or not judges(metric, slice_key, spec.example_count(values)):
                continue
            if metric.has_value_threshold:
                lower = -math.inf if metric.lower_bound is None else metric.lower_bound
                upper = math.inf if metric.upper_bound is None else metric.upper_bound
                if not (lower <= value <= upper):
                    bound = f"lower_bound {lower}" if value < lower else f"upper_bound {upper}"
                    failed.append(
                        {"metric": metric.name, **kind, "slice": slice_key, "value": value, "threshold": bound}
                    )
            base = (baseline or {}).get(slice_key, {}).get(metric.name)
            change = metric.change
            if base is None or change is None or not metric.has_change_threshold:
                continue
            diff = value - base
            higher = change.direction == "higher_is_better"
            checks = []
            if change.absolute is not None:
                ok = diff >= change.absolute if higher else diff <= change.absolute
                checks.append((ok, f"change absolute {change.absolute} ({change.direction})"))
            if change.relative is not None:
                ratio = math.nan if math.isclose(base, 0.0) else diff / base
                ok = ratio >= change.relative if higher else ratio <= change.relative
                checks.append((ok, f"change relative {change.relative} ({change.direction})"))
            for ok, text in checks:
                if not ok:
                    failed.append(
                        {
                            "metric": metric.name,
                            **kind,
                            "slice": slice_key,
                            "value": value,
                            "baseline": base,
                            "diff": diff,
                            "threshold": text,
                        }
                    )
    return failed


def with_kpis(metrics: SliceValues, kpis: SliceValues | None) -> SliceValues:
    """Each slice's metrics and KPIs in one dict, as ``validate`` reads them (their names never clash)."""
    return {name: {**values, **(kpis or {}).get(name, {})} for name, values in metrics.items()}


def _applies(metric: ThresholdViews, slice_key: str) -> bool:
    """The metric has a threshold, and it names this slice in its ``slices`` (or names none)."""
    threshold = metric.threshold
    return threshold is not None and (not threshold.slices or slice_key in threshold.slices)


def _too_small(metric: ThresholdViews, examples: float | None) -> bool:
    minimum = metric.threshold.min_examples if metric.threshold else 0
    return bool(minimum) and examples is not None and examples < minimum


def judges(metric: ThresholdViews, slice_key: str, examples: float | None) -> bool:
    """Whether the metric's threshold judges this slice: it applies there, and the slice has at least
    ``min_examples`` examples."""
    return _applies(metric, slice_key) and not _too_small(metric, examples)


def unjudged(spec: EvalSpec, candidate: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Slices a threshold skipped for having fewer than its ``min_examples`` examples (reported, not judged)."""
    skipped = []
    for slice_key, values in candidate.items():
        examples = spec.example_count(values)
        for metric in spec.judged:
            if _applies(metric, slice_key) and _too_small(metric, examples):
                assert metric.threshold is not None  # _applies
                entry = {"metric": metric.name, "slice": slice_key, "examples": examples}
                skipped.append({**entry, "min_examples": metric.threshold.min_examples})
    return skipped


def reason(
    failed: list[dict[str, Any]],
    with_baseline: bool,
    skipped: list[dict[str, Any]] | None = None,
    baseline_reset: str = "",
) -> str:
    """The verdict in words; ``baseline_reset`` names the reset that left the candidate without a baseline."""
    note = f" The baseline was reset ({baseline_reset}): no change thresholds." if baseline_reset else ""
    if skipped:
        names = sorted({f"{s['slice']} ({s['examples']:g} examples)" for s in skipped})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        note += f" Not judged, below min_examples: {shown}."
    if not failed:
        against = "and the change thresholds against the baseline" if with_baseline else "(no baseline yet)"
        if baseline_reset and not with_baseline:
            against = "(baseline reset)"
        return f"All value thresholds {against} passed.{note}"
    parts = []
    for item in failed[:5]:
        what = f"KPI {item['metric']}" if item.get("kpi") else item["metric"]
        if "diff" in item:
            parts.append(
                f"{what} on {item['slice']}: {item['value']:.4f} vs baseline {item['baseline']:.4f} "
                f"(diff {item['diff']:+.4f}) fails {item['threshold']}"
            )
        else:
            parts.append(f"{what} on {item['slice']}: {item['value']:.4f} fails {item['threshold']}")
    more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
    return "; ".join(parts) + more + note
