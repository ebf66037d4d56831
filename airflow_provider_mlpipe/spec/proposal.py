"""What ``mlpipe init`` proposes from a data sample, and the commented spec it writes.

The proposal: every column but the label in a feature list by its type (``data_sample.feature_kind``), the label's
kind from its values (``data_sample.infer_kind``), and the input pattern with the file names' dates turned into
span placeholders (``span_pattern``). ``render`` writes it as a spec that uses the built-in transform and trainer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from airflow_provider_mlpipe.spec.data_sample import DataSample, feature_kind, value_text, yaml_scalar
from airflow_provider_mlpipe.stages.tabular import DEFAULT_METRICS, TabularModel

# A calendar date in a path: 2024-01-05, 2024_01_05, 2024/01/05, 2024.01.05 or 20240105.
_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)([-_./]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?!\d)")
_WILDCARD = re.compile(r"\*|\?")
_WIDTH = 110


@dataclass
class Proposal:
    name: str
    pattern: str  # the input pattern relative to the spec's folder
    span_dates: list[date]  # the dates the pattern's placeholders stand for in the files found
    fmt: str
    sample: DataSample
    label: str
    kind: str
    positive: Any
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # column -> why
    categorical_integers: list[str] = field(default_factory=list)  # integer columns proposed as categorical


def _date_in(text: str) -> tuple[re.Match[str], date] | None:
    for match in _DATE.finditer(text):
        try:
            return match, date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
        except ValueError:  # 2024-02-30 is not a date
            continue
    return None


def _placeholders(match: re.Match[str]) -> str:
    separator = match.group(2)
    return "{SPAN}" if not separator else separator.join(("{YYYY}", "{MM}", "{DD}"))


def _with_placeholders(text: str) -> str:
    found = _date_in(text)
    if found is None:
        return text
    match, _ = found
    return text[: match.start()] + _placeholders(match) + text[match.end() :]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob of ``*`` and ``?`` (no ``/`` crossed, as glob.glob) as a regex capturing each wildcard."""
    parts = _WILDCARD.split(pattern)
    wildcards = _WILDCARD.findall(pattern)
    regex = re.escape(parts[0])
    for wildcard, part in zip(wildcards, parts[1:], strict=True):
        regex += ("([^/]*)" if wildcard == "*" else "([^/])") + re.escape(part)
    return re.compile(regex + "$")


def _span_regex(pattern: str) -> re.Pattern[str]:
    """An input pattern with placeholders and wildcards as a regex, to check that every file fits it."""
    regex = re.escape(pattern).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    for placeholder, digits in (("{SPAN}", 8), ("{YYYY}", 4), ("{MM}", 2), ("{DD}", 2)):
        regex = regex.replace(re.escape(placeholder), rf"\d{{{digits}}}")
    return re.compile(regex + "$")


def span_pattern(data: str, files: list[str]) -> tuple[str, list[date]]:
    """The input pattern for ``data`` (a file or a glob, as given) and the span dates of ``files`` (what it
    matched): a date in the path becomes ``{YYYY}-{MM}-{DD}`` (with the path's separator) or ``{SPAN}``; a glob
    wildcard that matched a date in every file becomes those placeholders, the rest of it staying a wildcard.
    Without dates the pattern is ``data`` itself and every run reads the same files."""
    pattern = _with_placeholders(data)
    if pattern == data and _WILDCARD.search(data) and "[" not in data:
        captured = _glob_regex(data).match(files[0])
        wildcards = list(_WILDCARD.finditer(data))
        for index, wildcard in enumerate(wildcards):
            text = captured.group(index + 1) if captured else ""
            found = _date_in(text)
            if found is None:
                continue
            match, _ = found
            before = "*" if match.start() > 0 else ""
            after = "*" if match.end() < len(text) else ""
            replacement = before + _placeholders(match) + after
            pattern = data[: wildcard.start()] + replacement + data[wildcard.end() :]
            break
    if pattern == data:
        return data, []
    fits = _span_regex(pattern)
    dates = [found[1] for path in files if fits.match(path) and (found := _date_in(path)) is not None]
    if len(dates) != len(files):  # some files do not carry a date where the first one does: keep the glob
        return data, []
    return pattern, sorted(set(dates))


def propose_features(sample: DataSample, label: str) -> tuple[list[str], list[str], dict[str, str], list[str]]:
    """(numeric, categorical, left out with the reason, integer columns proposed as categorical)."""
    numeric, categorical, integers = [], [], []
    left_out: dict[str, str] = {}
    for name, column in sample.columns.items():
        if name == label:
            continue
        kind, why = feature_kind(column)
        if kind == "numeric":
            numeric.append(name)
        elif kind == "categorical":
            categorical.append(name)
            if column.type == "int":
                integers.append(name)
        else:
            left_out[name] = why
    return numeric, categorical, left_out, integers


# ----- the spec's text ----------------------------------------------------------------------------------------
def flow_list(key: str, values: list[Any], indent: int) -> list[str]:
    """``key: [a, b, ...]``, wrapped under the opening bracket past the line width."""
    head = " " * indent + f"{key}: ["
    lines, line = [], head
    for i, value in enumerate(values):
        item = yaml_scalar(value) + (", " if i < len(values) - 1 else "]")
        if len(line) + len(item.rstrip()) > _WIDTH and line.strip() != f"{key}: [":
            lines.append(line.rstrip())
            line = " " * len(head)
        line += item
    lines.append(line if values else head + "]")
    return lines


def _comment(text: str, indent: int) -> list[str]:
    """A comment wrapped at the line width."""
    prefix = " " * indent + "# "
    lines, line = [], ""
    for word in text.split():
        if line and len(prefix) + len(line) + 1 + len(word) > _WIDTH:
            lines.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, prefix + line] if line else lines


def _kind_words(proposal: Proposal) -> str:
    if proposal.kind == "binary":
        positive = value_text(proposal.positive) if proposal.positive is not None else "1/true"
        return f"binary, positive {positive}"
    return proposal.kind


def _metric_names(kind: str) -> str:
    return ", ".join(m.get("name") or m["class_name"] for m in DEFAULT_METRICS[kind])


def render(proposal: Proposal, today: date) -> str:
    """The commented spec."""
    p = proposal
    model = TabularModel()
    label = f"{{name: {yaml_scalar(p.label)}, kind: {p.kind}"
    label += f", positive: {yaml_scalar(p.positive)}}}" if p.positive is not None else "}"
    dated = bool(p.span_dates)
    start = min(p.span_dates) if dated else today
    missing = any(column.nulls for column in p.sample.columns.values())
    out = [
        *_comment(
            f"{p.name}: written by `mlpipe init` from a sample of {p.sample.path} ({p.sample.rows} rows). No "
            "Python: the built-in tabular transform and trainer. Paths are relative to this file's folder. Check "
            f"it with `mlpipe lint` on this file; run it with `airflow dags test {p.name}`. Every key is in the "
            'README ("A pipeline spec").',
            0,
        ),
        f"name: {yaml_scalar(p.name, flow=False)}",
        f"description: {yaml_scalar(f'Predicts {p.label} ({p.kind}) with the built-in tabular model.', flow=False)}",
        "tags: [tabular, builtin]",
        "",
        *_comment(
            "Each run reads the span of its date: the placeholders in the input pattern are the run's date."
            if dated
            else "Each run reads the input file as it is then (its name carries no date, so there are no spans).",
            0,
        ),
        'schedule: "@daily"',
        f"start_date: {start.isoformat()}",
        "catchup: false",
        "max_active_runs: 1",
        "",
        "# Artifacts and the MLMD lineage: $MLPIPE_PIPELINE_ROOT, else $AIRFLOW_HOME/mlpipe/pipelines.",
        "pipeline_root: ${MLPIPE_PIPELINE_ROOT:-${AIRFLOW_HOME}/mlpipe/pipelines}",
        "",
        "stages:",
        "  example_gen:",
        "    params:",
        "      input:",
        f"        pattern: {yaml_scalar(p.pattern, flow=False)}",
        f"        format: {p.fmt}",
        "      splits: {train: 2, eval: 1}  # hash buckets: two thirds of the rows train, one third evaluates",
        "  statistics_gen: {}",
    ]
    if missing:
        out += [
            "  schema_gen:",
            "    params:",
            "      allow_missing: true  # the sample has missing values: a missing value is a warning, not an error",
        ]
    else:
        out += ["  schema_gen: {}"]
    out += [
        "  example_validator: {}",
        "  transform:",
        *_comment(
            "The built-in tabular transform: numeric features are imputed with their mean and z-scored; "
            "categorical ones get a vocabulary (missing is a value of its own, unseen values an OOV bucket); "
            "bucketize: {feature: buckets} and crosses: [[a, b]] add more. The label is encoded for its kind.",
            4,
        ),
        "    params:",
        "      features:",
        *flow_list("numeric", p.numeric, 8),
    ]
    if p.categorical_integers:
        out += _comment(
            f"Integers with few distinct values are categorical: {', '.join(p.categorical_integers)}. "
            "Move any that measure an amount to numeric.",
            8,
        )
    out += flow_list("categorical", p.categorical, 8)
    for column, why in p.left_out.items():
        out += _comment(f"left out: {column} {why}", 8)
    out += [
        f"      label: {label}",
        "  trainer:",
        "    # The built-in Keras model for the label's kind, with early stopping on the eval split.",
        "    params:",
        "      model:",
        f"        type: {model.type}  # or wide_and_deep (adds a linear part)",
        *flow_list("hidden_units", list(model.hidden_units), 8),
        f"        epochs: {model.epochs}  # at most: training stops after {model.early_stopping_patience} epochs "
        "without a better eval loss",
        f"        batch_size: {model.batch_size}",
        f"        learning_rate: {model.learning_rate}",
        "  evaluator:",
        *_comment(
            f"label_key ({p.label}_xf) and the metrics follow from the label: TFMA's {p.kind} set "
            f"({_metric_names(p.kind)}). No threshold is set, so every model is blessed. To guard the push, list "
            "the metrics yourself (they replace the default set), e.g.",
            4,
        ),
        "    # params:",
        "    #   metrics:",
        f"    #     - class_name: {_guard_metric(p.kind)}",
        f"    #       threshold: {_guard_threshold(p.kind)}",
        "    params: {}",
        "  pusher:",
        "    params:",
        *_comment(
            f"Serving versions 1, 2, ... in $MLPIPE_SERVING_ROOT/{p.name} (default $AIRFLOW_HOME/mlpipe/serving).", 6
        ),
        f"      destination: ${{MLPIPE_SERVING_ROOT:-${{AIRFLOW_HOME}}/mlpipe/serving}}/{p.name}",
        "      keep_versions: 5",
        "",
        "# Bad data stops the run before training; a model that is not blessed is never pushed.",
        "gates:",
        "  data_validation: {policy: fail, min_severity: ERROR}",
        "  blessing: {policy: fail}",
    ]
    return "\n".join(out) + "\n"


def _guard_metric(kind: str) -> str:
    return {"binary": "AUC", "multiclass": "SparseCategoricalAccuracy", "regression": "RootMeanSquaredError"}[kind]


def _guard_threshold(kind: str) -> str:
    if kind == "regression":
        return "{change: {direction: lower_is_better, absolute: 0.05}}"
    return "{lower_bound: 0.7, change: {direction: higher_is_better, absolute: -0.01}}"
