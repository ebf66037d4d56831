"""Stage checks beyond one field's type: what would otherwise pass the lint and fail at run time, after training.

- ExampleGen: an input pattern holds only the placeholders the runtime fills (``stages/example_gen.py``); any
  other ``{...}`` stays in the glob and matches no file.
- Evaluator: every metric class is one the Evaluator computes (``stages/evaluator.py``), with a "did you mean";
  ``engine: fast`` only with metrics the fast engine computes; and, when a curated schema is all the Evaluator
  can see (no Transform stage adds features), the slice features and the label are features of that schema;
  every declared KPI is a key that ``kpis()`` in the ``kpi_module`` returns, when its returns are dict literals.

Every check returns all the problems it finds, so one lint run lists them all. Nothing here imports the ML stack:
a curated ``schema.pbtxt`` is read as protobuf text with a small tokenizer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airflow_provider_mlpipe.spec.errors import FieldPath, SpecError, suggest
from airflow_provider_mlpipe.spec.loader import LoadedSpec
from airflow_provider_mlpipe.spec.model import PipelineSpec
from airflow_provider_mlpipe.stages.evaluator import (
    EVALUATOR_METRICS,
    FAST_ENGINE_METRICS,
    KPI_FUNCTION,
    UNAVAILABLE_METRICS,
    EvaluatorParams,
)
from airflow_provider_mlpipe.stages.example_gen import PATTERN_PLACEHOLDERS, ExampleGenParams

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
# Spellings from elsewhere that closeness alone does not map, keyed by their lower-case letters and digits.
_PLACEHOLDER_ALIASES = {"year": "{YYYY}", "month": "{MM}", "day": "{DD}", "date": "{SPAN}", "ver": "{VERSION}"}
_METRIC_ALIASES = {
    "areaundercurve": "AUC",
    "rocauc": "AUC",
    "aucroc": "AUC",
    "prauc": "AUCPrecisionRecall",
    "aucpr": "AUCPrecisionRecall",
    "f1": "F1Score",
    "logloss": "BinaryCrossentropy",
    "mse": "MeanSquaredError",
    "mae": "MeanAbsoluteError",
    "rmse": "RootMeanSquaredError",
    "mape": "MeanAbsolutePercentageError",
    "count": "ExampleCount",
}
_LISTED = 40  # schema features listed in one message at most (a schema may have thousands)
_PBTXT_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|#[^\n]*|[{}<>:;,\[\]]|[^\s{}<>:;,\[\]"\'#]+')


def _hint(word: str, aliases: dict[str, str], choices: Iterable[str]) -> str:
    alias = aliases.get(re.sub(r"[^a-z0-9]", "", word.lower()))
    return f" Did you mean {alias!r}?" if alias else suggest(word, choices)


def listing(names: Iterable[str], limit: int = _LISTED) -> str:
    ordered = sorted(names)
    more = f" and {len(ordered) - limit} more" if len(ordered) > limit else ""
    return ", ".join(ordered[:limit]) + more


def _raw(data: Any, path: FieldPath) -> Any:
    """The spec's own value at ``path`` (after overlays), or None."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def schema_feature_names(text: str) -> set[str]:
    """The names of the top-level ``feature { name: "..." }`` blocks of a schema in protobuf text format; an
    empty set when the text is not balanced (then nothing is checked against it)."""
    tokens = [t for t in _PBTXT_TOKEN.findall(text) if not t.startswith("#")]
    names: set[str] = set()
    depth, block = 0, ""
    for i, token in enumerate(tokens):
        if token in ("{", "<"):
            if depth == 0:
                block = tokens[i - 2] if i >= 2 and tokens[i - 1] == ":" else tokens[i - 1] if i else ""
            depth += 1
        elif token in ("}", ">"):
            depth -= 1
            if depth < 0:
                return set()
        elif depth == 1 and block == "feature" and token == "name" and tokens[i + 1 : i + 2] == [":"]:
            value = tokens[i + 2] if i + 2 < len(tokens) else ""
            if value[:1] in ('"', "'"):
                names.add(value[1:-1])
    return names if depth == 0 else set()


def _pattern_errors(loaded: LoadedSpec, name: str, params: ExampleGenParams) -> list[SpecError]:
    prefix: FieldPath = ("stages", name, "params", "input")
    patterns = [((*prefix, "pattern"), params.input.pattern)] if params.input.pattern else []
    patterns += [((*prefix, "splits", split), p) for split, p in (params.input.splits or {}).items()]
    errors = []
    for field, pattern in patterns:
        unknown = [p for p in _PLACEHOLDER.findall(pattern) if p not in PATTERN_PLACEHOLDERS]
        if unknown:
            hint = _hint(unknown[0], _PLACEHOLDER_ALIASES, PATTERN_PLACEHOLDERS)
            message = (
                f"{unknown[0]} in the input pattern {pattern!r} is not a placeholder, so no file would match it."
                f"{hint} The placeholders are {', '.join(PATTERN_PLACEHOLDERS)}."
            )
            errors.append(loaded.error(field, message))
    return errors


def _metric_errors(loaded: LoadedSpec, name: str, params: EvaluatorParams) -> list[SpecError]:
    prefix: FieldPath = ("stages", name, "params")
    errors = []
    for i, metric in enumerate(params.metrics):
        class_name = str(metric.class_name)
        if class_name in EVALUATOR_METRICS:
            continue
        raw = _raw(loaded.data, (*prefix, "metrics", i))
        key = "class_name" if isinstance(raw, dict) and "class_name" in raw else "name"
        if class_name in UNAVAILABLE_METRICS:
            message = f"The metric class {class_name!r} {UNAVAILABLE_METRICS[class_name]}."
        else:
            hint = _hint(class_name, _METRIC_ALIASES, EVALUATOR_METRICS)
            subject = (
                f"Unknown metric class {class_name!r}"
                if key == "class_name"
                else f"The metric name {class_name!r} is not a metric class, and no class_name is set"
            )
            known = "" if hint else f" The Evaluator computes {listing(EVALUATOR_METRICS, len(EVALUATOR_METRICS))}."
            message = f"{subject}.{hint}{known}"
        errors.append(loaded.error((*prefix, "metrics", i, key), message))
    if params.engine == "fast":
        classes = {str(m.class_name) for m in params.all_metrics()}
        missing = sorted(c for c in classes if c in EVALUATOR_METRICS and c not in FAST_ENGINE_METRICS)
        if missing:
            errors.append(
                loaded.error(
                    (*prefix, "engine"),
                    f"engine: fast cannot compute {', '.join(missing)}; it computes "
                    f"{listing(FAST_ENGINE_METRICS)}. Use engine: auto, which hands the other metrics to TFMA, "
                    "or engine: tfma.",
                )
            )
    return errors


def returned_keys(path: Path, function: str) -> set[str] | None:
    """The keys ``function`` in the module at ``path`` returns, when every ``return`` in it is a dict literal with
    string keys (e.g. ``return {"cost": cost}``); None when they cannot be known without running it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    returns = [n for n in ast.walk(found[0]) if isinstance(n, ast.Return)] if found else []
    keys: set[str] = set()
    for node in returns:
        literal = node.value
        if not isinstance(literal, ast.Dict):
            return None
        for key in literal.keys:
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return None
            keys.add(key.value)
    return keys if returns else None


def _kpi_errors(loaded: LoadedSpec, name: str, params: EvaluatorParams, module: Path) -> list[SpecError]:
    """A declared KPI (the only kind a threshold can judge) that ``kpis()`` visibly never returns."""
    keys = returned_keys(module, KPI_FUNCTION)
    if keys is None:
        return []
    return [
        loaded.error(
            ("stages", name, "params", "kpis", i, "name"),
            f"{module.name} returns the KPIs {sorted(keys)} from kpis(), not {kpi.name!r}.{suggest(kpi.name, keys)}",
        )
        for i, kpi in enumerate(params.kpis)
        if kpi.name not in keys
    ]


def curated_schema(spec: PipelineSpec, stage_params: dict[str, dict[str, Any]], base: Path) -> tuple[str, set[str]]:
    """(the schema file as written, its feature names) of the one enabled SchemaGen with a ``schema_file``;
    ("", empty) when there is none or it cannot be read."""
    enabled = {name: stage for name, stage in spec.stages.items() if stage.enabled}
    curated = [name for name, stage in enabled.items() if stage.kind == "schema_gen" and stage.params.schema_file]
    if len(curated) != 1:
        return "", set()
    try:
        text = (base / stage_params[curated[0]]["schema_file"]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "", set()
    return str(enabled[curated[0]].params.schema_file), schema_feature_names(text)


def _curated_features(spec: PipelineSpec, stage_params: dict[str, dict[str, Any]], base: Path) -> tuple[str, set[str]]:
    """The curated schema when it is every feature the Evaluator sees: no enabled Transform, whose outputs a
    slice may use."""
    if any(stage.kind == "transform" and stage.enabled for stage in spec.stages.values()):
        return "", set()
    return curated_schema(spec, stage_params, base)


def _feature_errors(
    loaded: LoadedSpec, name: str, params: EvaluatorParams, schema_file: str, features: set[str]
) -> list[SpecError]:
    prefix: FieldPath = ("stages", name, "params")
    wanted: list[tuple[FieldPath, str, str]] = [((*prefix, "label_key"), "label", params.label_key or "")]
    wanted += [((*prefix, "slices", i), "slice feature", f) for i, s in enumerate(params.slices) for f in s]
    errors = []
    for field, what, feature in wanted:
        if feature not in features:
            errors.append(
                loaded.error(
                    field,
                    f"The {what} {feature!r} is not a feature of the schema {schema_file}.{suggest(feature, features)}"
                    f" Its features are {listing(features)}.",
                )
            )
    return errors


def stage_errors(
    loaded: LoadedSpec, spec: PipelineSpec, stage_params: dict[str, dict[str, Any]], base: Path
) -> list[SpecError]:
    """Every problem of the stages' params that the params models cannot see on their own."""
    schema_file, features = _curated_features(spec, stage_params, base)
    errors: list[SpecError] = []
    for name, stage in spec.stages.items():
        if isinstance(stage.params, ExampleGenParams):
            errors += _pattern_errors(loaded, name, stage.params)
        if isinstance(stage.params, EvaluatorParams):
            errors += _metric_errors(loaded, name, stage.params)
            if stage.params.kpi_module:
                errors += _kpi_errors(loaded, name, stage.params, base / stage_params[name]["kpi_module"])
            if features:
                errors += _feature_errors(loaded, name, stage.params, schema_file, features)
    return errors
