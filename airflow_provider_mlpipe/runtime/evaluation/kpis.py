"""Business KPIs: the user's ``kpis(features, labels, predictions) -> dict[str, float]``, computed per slice.

The ``kpi_module`` (a file in the pipeline folder, ``evaluator.params.kpi_module``) is called once per slice and
model, with the examples of that slice only:

- ``features``: ``dict[str, numpy.ndarray]``, every raw column of the eval rows, one value per example, as the
  Parquet examples hold them (numbers as int64/float64, NaN where missing; strings as object arrays, None where
  missing);
- ``labels``: a 1-D ``numpy.ndarray``, the label the metrics judge (``label_key``: class ids, 0/1 or values);
- ``predictions``: a 2-D float ``numpy.ndarray`` ``[n, k]``, the model's output (``prediction_key``): ``k = 1``
  for a binary model (the probability of the positive class) or a regression, one column per class otherwise.

The slices are the metrics' own groups (``fast_engine.groups``: membership decided once, from the candidate's
view), so a KPI and a metric of the same slice describe the same examples, for the candidate and the baseline
alike. The predictions come from the fast engine's ``predict`` on both engines: TFMA hands no per-example
predictions to user code, so with ``engine: tfma`` the models are scored once more for the KPIs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_provider_mlpipe.runtime.context import load_user_module
from airflow_provider_mlpipe.stages.evaluator import KPI_FUNCTION

if TYPE_CHECKING:
    from airflow_provider_mlpipe.runtime.evaluation.fast_engine import Scored
    from airflow_provider_mlpipe.runtime.evaluation.metric_config import EvalSpec

KpiFunction = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], Mapping[str, Any]]
SliceValues = dict[str, dict[str, float]]


class KpiError(RuntimeError):
    """The user's kpis() raised or returned something that is not one number per KPI name."""


@dataclass
class KpiModule:
    """A loaded ``kpis`` function, where it came from (for messages) and the KPI names the spec declares."""

    function: KpiFunction
    source: str
    declared: list[str]

    def by_slice(self, scored: Scored, slice_groups: list[tuple[str, np.ndarray]]) -> SliceValues:
        """``{slice: {kpi: value}}`` for one model's scored examples (``scored`` read ``with_features``)."""
        labels = scored.inputs.labels.reshape(-1)
        out: SliceValues = {}
        for name, rows in slice_groups:
            features = {column: values[rows] for column, values in scored.features.items()}
            try:
                result = self.function(features, labels[rows], scored.inputs.predictions[rows])
            except Exception as exc:
                raise KpiError(
                    f"kpis() in {self.source} raised {type(exc).__name__} on the slice {name}: {exc}"
                ) from exc
            out[name] = self._numbers(result, name)
        return out

    def _numbers(self, result: Any, slice_name: str) -> dict[str, float]:
        if not isinstance(result, Mapping):
            raise KpiError(
                f"kpis() in {self.source} returned a {type(result).__name__} on the slice {slice_name}; it must "
                "return a dict of KPI name to number, e.g. {'cost': 12.5}."
            )
        values: dict[str, float] = {}
        for key, value in result.items():
            try:
                values[str(key)] = float(value)  # numpy scalars and 0-d arrays too
            except (TypeError, ValueError):
                raise KpiError(
                    f"kpis() in {self.source} returned {value!r} for {key!r} on the slice {slice_name}; "
                    "a KPI is one number."
                ) from None
        missing = [name for name in self.declared if name not in values]
        if missing:
            raise KpiError(
                f"kpis() in {self.source} returned no {missing} on the slice {slice_name} (it returned "
                f"{sorted(values)}); return every KPI the evaluator's kpis list declares."
            )
        return values


def load(module_file: str, spec_dir: str | None, declared: list[str]) -> KpiModule:
    module = load_user_module(module_file, spec_dir, required=(KPI_FUNCTION,))
    return KpiModule(getattr(module, KPI_FUNCTION), module_file, declared)


def evaluate(
    kpis: KpiModule, spec: EvalSpec, model_dir: str, baseline_dir: str | None, files: list[str], schema: Any
) -> tuple[SliceValues, SliceValues | None]:
    """Candidate and baseline KPIs on the candidate's slice groups, scoring the models with the fast engine's
    ``predict`` (the TFMA engine's path; the fast engine computes them from the predictions it already has)."""
    from airflow_provider_mlpipe.runtime.evaluation import fast_engine

    candidate = fast_engine.predict(model_dir, files, schema, spec, with_features=True)
    slice_groups = fast_engine.groups(spec, candidate.slice_values, len(candidate.inputs.labels))
    baseline = None
    if baseline_dir:
        baseline_scored = fast_engine.predict(baseline_dir, files, schema, spec, with_slices=False, with_features=True)
        baseline = kpis.by_slice(baseline_scored, slice_groups)
    return kpis.by_slice(candidate, slice_groups), baseline


def overall(values: SliceValues, overall_name: str) -> dict[str, float]:
    """The finite KPI values of the overall slice (what MLMD records on the evaluation artifact)."""
    return {name: value for name, value in values.get(overall_name, {}).items() if math.isfinite(value)}
