"""The tabular built-ins in the spec layer: what the built-in transform implies, and what its data must hold.

- Evaluator defaults: with the built-in transform, ``label_key`` defaults to ``<label>_xf`` and ``metrics`` to
  TFMA's default set for the label's kind (``stages/tabular.DEFAULT_METRICS``). They are filled in here, so the
  params the runtime receives always hold both; without the built-in transform, ``label_key`` is required.
- The built-in trainer trains on the built-in transform's output, so it needs one; no feature list holds the label.
- The transform's features and label are columns of the data, and the label's kind fits its values. The columns
  come from the curated schema when SchemaGen has a ``schema_file``, else from a sample of the first local file
  of ExampleGen's input (``data_sample``); the values from that sample. Remote or absent data is not checked,
  and the sample is read only by ``mlpipe lint`` and ``mlpipe init``, never while Airflow parses DAGs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.spec.data_sample import (
    SAMPLE_ROWS,
    DataSample,
    cached_sample,
    first_local_file,
    kind_problem,
    numeric_problem,
)
from airflow_provider_mlpipe.spec.errors import FieldPath, SpecError, suggest
from airflow_provider_mlpipe.spec.loader import LoadedSpec
from airflow_provider_mlpipe.spec.model import PipelineSpec
from airflow_provider_mlpipe.spec.stage_rules import curated_schema, listing
from airflow_provider_mlpipe.stages.evaluator import MetricSpec
from airflow_provider_mlpipe.stages.example_gen import input_format
from airflow_provider_mlpipe.stages.tabular import DEFAULT_METRICS, LabelSpec, TabularFeatures
from airflow_provider_mlpipe.stages.transform import TransformParams


def _builtin_transforms(spec: PipelineSpec) -> dict[str, TransformParams]:
    return {
        name: stage.params
        for name, stage in spec.stages.items()
        if stage.enabled and isinstance(stage.params, TransformParams) and stage.params.builtin
    }


def apply_evaluator_defaults(loaded: LoadedSpec, spec: PipelineSpec) -> None:
    """Fill each Evaluator's ``label_key``, ``metrics`` and ``label_column`` from the built-in transform's label;
    raises a SpecError for an Evaluator without ``label_key`` that nothing implies it for."""
    labels: dict[str, LabelSpec] = {}
    for params in _builtin_transforms(spec).values():
        if params.label is not None:
            labels.setdefault(params.label.transformed_name, params.label)
    for name, stage in spec.stages.items():
        if stage.kind != "evaluator":
            continue
        params = stage.params
        if params.label_key is None:
            if len(labels) != 1:
                raise loaded.error(("stages", name, "params", "label_key"), _label_key_missing(labels))
            params.label_key = next(iter(labels))
        label = labels.get(params.label_key) or (next(iter(labels.values())) if len(labels) == 1 else None)
        if label is not None and "metrics" not in params.model_fields_set:
            params.metrics = [MetricSpec.model_validate(metric) for metric in DEFAULT_METRICS[label.kind]]
        if label is not None and params.label_key == label.transformed_name and params.label_column is None:
            params.label_column = label.name  # eval rows without a label are left out, not scored against -1


def _label_key_missing(labels: dict[str, LabelSpec]) -> str:
    if labels:
        return (
            f"The built-in transforms label different columns ({', '.join(sorted(labels))}); set label_key to the "
            "one this evaluator judges."
        )
    return (
        "The evaluator needs label_key: the label as the model's examples carry it, e.g. species_xf from your "
        "transform module. Only the built-in transform (a transform with features and label, no module_file) "
        "implies it."
    )


@dataclass
class _Data:
    """What the lint knows of the data: column names and where they come from, and a sample of the values."""

    columns: set[str]
    source: str  # "the schema schemas/x.pbtxt" or "the data ../data/x.csv"
    sample: DataSample | None
    sample_where: str  # "the first 1000 rows of ../data/x.csv"


def _sample(loaded: LoadedSpec, spec: PipelineSpec, stage_params: dict[str, dict[str, Any]]) -> tuple[Any, str]:
    """A sample of the first local file of the one enabled ExampleGen's input, and that file as the spec's folder
    sees it; (None, "") when there is no such file."""
    example_gens = [n for n, s in spec.stages.items() if s.enabled and s.kind == "example_gen"]
    if len(example_gens) != 1:
        return None, ""
    source = stage_params[example_gens[0]]["input"]
    splits = source.get("splits") or {}
    pattern = source.get("pattern") or splits.get("train") or next(iter(splits.values()), None)
    path = first_local_file(pattern) if pattern else None
    if path is None:
        return None, ""
    fmt = input_format(source.get("format"), path)
    delimiter = (stage_params[example_gens[0]].get("csv") or {}).get("delimiter", ",")
    if fmt not in ("csv", "parquet"):
        return None, ""
    try:
        shown = os.path.relpath(path, loaded.path.resolve().parent)
    except ValueError:  # another drive
        shown = path
    return cached_sample(path, fmt, delimiter), shown


def _data(
    loaded: LoadedSpec, spec: PipelineSpec, stage_params: dict[str, dict[str, Any]], base: Path, check_data: bool
) -> _Data:
    sample, shown = _sample(loaded, spec, stage_params) if check_data else (None, "")
    where = ""
    if sample is not None:
        where = f"the first {sample.rows} rows of {shown}" if sample.rows >= SAMPLE_ROWS else f"{shown}"
    schema_file, names = curated_schema(spec, stage_params, base)
    if names:
        return _Data(names, f"the schema {schema_file}", sample, where)
    if sample is not None:
        return _Data(set(sample.columns), f"the data {shown}", sample, where)
    return _Data(set(), "", None, "")


def _feature_fields(prefix: FieldPath, features: TabularFeatures) -> list[tuple[FieldPath, str, str]]:
    """(field, feature, list) of every feature the lists name, crosses aside (they name listed features)."""
    out: list[tuple[FieldPath, str, str]] = []
    for role in ("numeric", "categorical"):
        out += [((*prefix, role, i), feature, role) for i, feature in enumerate(getattr(features, role))]
    out += [((*prefix, "bucketize", feature), feature, "bucketize") for feature in features.bucketize]
    return out


def _transform_errors(loaded: LoadedSpec, name: str, params: TransformParams, data: _Data) -> list[SpecError]:
    prefix: FieldPath = ("stages", name, "params")
    label = params.label
    assert label is not None  # TransformParams requires it of the built-in transform
    errors: list[SpecError] = []
    features = params.features
    fields = _feature_fields((*prefix, "features"), features) if isinstance(features, TabularFeatures) else []
    for field, feature, role in fields:
        if feature == label.name:
            errors.append(
                loaded.error(
                    field,
                    f"{feature!r} is the label; a feature list must not hold it, or the model would be handed the "
                    "answer.",
                )
            )
        elif data.columns and feature not in data.columns:
            errors.append(loaded.error(field, _not_a_column("feature", feature, data)))
        elif data.sample is not None and role in ("numeric", "bucketize") and feature in data.sample.columns:
            problem = numeric_problem(data.sample.columns[feature])
            if problem:
                errors.append(
                    loaded.error(
                        field,
                        f"{feature!r} {problem} in {data.sample_where}, so it cannot be {role}; list it under "
                        "categorical.",
                    )
                )
    if data.columns and label.name not in data.columns:
        errors.append(loaded.error((*prefix, "label", "name"), _not_a_column("label", label.name, data)))
    elif data.sample is not None and label.name in data.sample.columns:
        problem = kind_problem(label.kind, label.positive, data.sample.columns[label.name], data.sample_where)
        if problem:
            key, message = problem
            errors.append(loaded.error((*prefix, "label", key), message))  # a missing positive: the label's line
    return errors


def _not_a_column(what: str, name: str, data: _Data) -> str:
    return (
        f"The {what} {name!r} is not a column of {data.source}.{suggest(name, data.columns)} "
        f"Its columns are {listing(data.columns)}."
    )


def _trainer_errors(loaded: LoadedSpec, spec: PipelineSpec, transforms: dict[str, TransformParams]) -> list[SpecError]:
    """The built-in trainer needs the built-in transform's output."""
    if transforms:
        return []
    errors = []
    stages = spec.stages.values()
    modules = [s.params.module_file for s in stages if s.enabled and isinstance(s.params, TransformParams)]
    for name, stage in spec.stages.items():
        if not (stage.enabled and stage.kind == "trainer" and stage.params.builtin):
            continue
        if modules:
            found = f"the transform stage runs your module {modules[0]}"
            fix = "or give the transform features and label instead of its module_file"
        else:
            found = "the pipeline has no transform stage"
            fix = "or add one, e.g. transform: {params: {label: {name: churned, kind: binary}}}"
        message = (
            f"The built-in trainer (a trainer without module_file) trains on the built-in transform's output, but "
            f"{found}. Give the trainer a module_file with your run_fn, {fix}."
        )
        errors.append(loaded.error(("stages", name, "params", "module_file"), message))
    return errors


def tabular_errors(
    loaded: LoadedSpec,
    spec: PipelineSpec,
    stage_params: dict[str, dict[str, Any]],
    base: Path,
    check_data: bool = False,
) -> list[SpecError]:
    """Every problem of the built-in transform and trainer: their pairing, and the features and label against
    a curated schema, and (``check_data``) against a sample of the data."""
    transforms = _builtin_transforms(spec)
    errors = _trainer_errors(loaded, spec, transforms)
    if transforms:
        data = _data(loaded, spec, stage_params, base, check_data)
        for name, params in transforms.items():
            errors += _transform_errors(loaded, name, params, data)
    return errors
